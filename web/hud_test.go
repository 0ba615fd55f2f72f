package web_test

import (
	"bytes"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/coder/websocket"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/static"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// page is one answer of the HUD's HTML routes, redirects not followed.
type page struct {
	status int
	header http.Header
	body   string
	doc    *goquery.Document
}

func (e *env) page(t *testing.T, method, path string, form url.Values, header http.Header) page {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(res.Body); err != nil {
		t.Fatal(err)
	}
	p := page{status: res.StatusCode, header: res.Header, body: buf.String()}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		p.doc, err = goquery.NewDocumentFromReader(strings.NewReader(p.body))
		if err != nil {
			t.Fatal(err)
		}
		p.doc.Find("template").Remove() // the script's empty rows

	}
	return p
}

func (p page) cookie(name string) *http.Cookie {
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func cookieHeader(tok string) http.Header {
	return http.Header{"Cookie": {web.SessionCookie + "=" + tok}}
}

func TestHUDWithoutCredentialsGoesToLogin(t *testing.T) {
	e := newEnv(t, nil)
	expiredEmbed := e.embedToken(t, auth.RoleProject, "acme")
	e.clock.Advance(web.DefaultEmbedTokenTTL)
	for _, tc := range []struct {
		name, path string
		header     http.Header
		status     int
		location   string
	}{
		{"no credential", "/hud", nil, 303, "/login"},
		{"the scope is kept", "/hud?project=acme", nil, 303, "/login?next=%2Fhud%3Fproject%3Dacme"},
		{"a bad cookie", "/hud", cookieHeader("nope"), 303, "/login"},
		{"an embedded page cannot log in", "/hud?embed=1", nil, 401, ""},
		{"a tampered embed token", "/hud?embed=1&embed_token=" + e.embedToken(t, auth.RoleProject, "acme") + "x", nil, 401, ""},
		{"an expired embed token", "/hud?embed=1&embed_token=" + expiredEmbed, nil, 401, ""},
		{"a fresh embed token", "/hud?embed=1&embed_token=" + e.embedToken(t, auth.RoleProject, "acme"), nil, 200, ""},
		{"a session token in the URL", "/hud?embed_token=" + e.sessionToken(t), nil, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.page(t, http.MethodGet, tc.path, nil, tc.header)
			if p.status != tc.status || p.header.Get("Location") != tc.location {
				t.Fatalf("GET %s: %d Location %q, want %d %q", tc.path, p.status, p.header.Get("Location"), tc.status, tc.location)
			}
			if tc.status == 401 && (p.doc == nil || p.doc.Find("[data-testid=error-page]").Length() != 1) {
				t.Errorf("GET %s: no error page in %q", tc.path, p.body)
			}
			if tc.name == "an expired embed token" && !strings.Contains(p.doc.Find("[data-testid=error-page]").Text(), "token expired") {
				t.Errorf("GET %s: the error page does not say the token expired:\n%s", tc.path, p.body)
			}
		})
	}
	if p := e.page(t, http.MethodGet, "/hud", nil, cookieHeader("nope")); p.cookie(web.SessionCookie) == nil || p.cookie(web.SessionCookie).MaxAge >= 0 {
		t.Error("a bad session cookie is not cleared")
	}
}

func TestLoginFormSetsTheSessionCookie(t *testing.T) {
	e := newEnv(t, nil)
	p := e.page(t, http.MethodGet, "/login", nil, nil)
	if p.status != 200 || p.doc.Find(`form[method=post][action="/login"] input[name=username]`).Length() != 1 ||
		p.doc.Find(`input[name=password][type=password]`).Length() != 1 {
		t.Fatalf("GET /login: %d, no login form in\n%s", p.status, p.body)
	}

	p = e.page(t, http.MethodPost, "/login", url.Values{"username": {"admin"}, "password": {adminPassword}}, nil)
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/hud" {
		t.Fatalf("POST /login: %d Location %q, want 303 /hud", p.status, p.header.Get("Location"))
	}
	ck := p.cookie(web.SessionCookie)
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/", ck)
	}
	// The cookie lives exactly as long as its token, by the server's clock
	// (which the test clock may have put years away from the wall's).
	cl, err := auth.NewSigner(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := cl.Verify(ck.Value, e.clock.Now())
	if err != nil {
		t.Fatalf("the cookie's token: %v", err)
	}
	if want := e.issuedAt().Add(web.DefaultTokenTTL); !claims.ExpiresAt.Equal(want) {
		t.Errorf("the token expires at %s, want %s: the server's clock plus the session TTL", claims.ExpiresAt, want)
	}
	if left := claims.ExpiresAt.Sub(e.clock.Now()); ck.MaxAge != int(math.Ceil(left.Seconds())) {
		t.Errorf("Max-Age %d, want the token's lifetime by the server's clock, %s", ck.MaxAge, left)
	}
	if !ck.Expires.Equal(claims.ExpiresAt) {
		t.Errorf("Expires %s, want the token's expiry %s", ck.Expires, claims.ExpiresAt)
	}
	// The cookie opens the HUD and the socket.
	hud := e.page(t, http.MethodGet, "/hud", nil, cookieHeader(ck.Value))
	if hud.status != 200 || hud.doc.Find("[data-testid=live-indicator]").Length() != 1 {
		t.Fatalf("GET /hud with the cookie: %d\n%s", hud.status, hud.body)
	}
	c := e.mustDial(t, "", cookieHeader(ck.Value))
	send(t, c, subscribeFrame("*"))
	if h := head(t, mustRead(t, c)); h.Op != "snapshot" {
		t.Errorf("the session cookie on /ws: got %+v, want a snapshot", h)
	}
	// A browser holding a session skips the form.
	if p := e.page(t, http.MethodGet, "/login", nil, cookieHeader(ck.Value)); p.status != 303 || p.header.Get("Location") != "/hud" {
		t.Errorf("GET /login with a session: %d %q, want 303 /hud", p.status, p.header.Get("Location"))
	}
	got := e.audit.records(t)
	if len(got) != 1 || got[0].Type != fleet.TypeLoginSucceeded || got[0].UserID != "admin" {
		t.Errorf("audit %+v, want one auth.login.succeeded for admin", got)
	}
}

func TestLoginFormRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		form    url.Values
		header  http.Header
		status  int
		message string
	}{
		{"wrong password", url.Values{"username": {"admin"}, "password": {"admin"}}, nil, 401, "bad username or password"},
		{"unknown user", url.Values{"username": {"root"}, "password": {adminPassword}}, nil, 401, "bad username or password"},
		{"nothing", url.Values{"username": {""}, "password": {""}}, nil, 400, "Enter a user name and a password."},
		{"from another site", url.Values{"username": {"admin"}, "password": {adminPassword}},
			http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403, "A login form may only be posted from this site."},
		{"from another origin", url.Values{"username": {"admin"}, "password": {adminPassword}},
			http.Header{"Origin": {"https://evil.example"}}, 403, "A login form may only be posted from this site."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			p := e.page(t, http.MethodPost, "/login", tc.form, tc.header)
			if p.status != tc.status {
				t.Fatalf("POST /login: %d, want %d\n%s", p.status, tc.status, p.body)
			}
			if p.cookie(web.SessionCookie) != nil {
				t.Error("a refused login set a cookie")
			}
			msg := strings.TrimSpace(p.doc.Find("[data-testid=login-error], [data-testid=error-page] p").Text())
			if msg != tc.message {
				t.Errorf("message %q, want %q", msg, tc.message)
			}
			if tc.status == 401 {
				if v, _ := p.doc.Find("input[name=username]").Attr("value"); v != tc.form.Get("username") {
					t.Errorf("the form forgot the user name: %q", v)
				}
				if got := e.audit.records(t); len(got) != 1 || got[0].Type != fleet.TypeLoginFailed {
					t.Errorf("audit %+v, want one auth.login.failed", got)
				}
			}
		})
	}
}

func TestLoginFormSlowDown(t *testing.T) {
	e := newEnv(t, nil)
	bad := url.Values{"username": {"admin"}, "password": {"guess"}}
	for i := range 5 {
		if p := e.page(t, http.MethodPost, "/login", bad, nil); p.status != 401 {
			t.Fatalf("attempt %d: %d, want 401", i+1, p.status)
		}
	}
	good := url.Values{"username": {"admin"}, "password": {adminPassword}}
	p := e.page(t, http.MethodPost, "/login", good, nil)
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" || p.cookie(web.SessionCookie) != nil {
		t.Fatalf("after 5 failures: %d Retry-After %q, want 429 and no cookie", p.status, p.header.Get("Retry-After"))
	}
	if msg := p.doc.Find("[data-testid=login-error]").Text(); !strings.HasPrefix(msg, "Too many failed logins") {
		t.Errorf("message %q", msg)
	}
	e.clock.Advance(31 * time.Second)
	if p := e.page(t, http.MethodPost, "/login", good, nil); p.status != 303 {
		t.Errorf("after the lockout: %d, want 303", p.status)
	}
}

func TestLoginNext(t *testing.T) {
	e := newEnv(t, nil)
	for next, want := range map[string]string{
		"/hud?project=acme":        "/hud?project=acme",
		"https://evil.example/hud": "/hud",
		"//evil.example/hud":       "/hud",
		"/api/v1/fleet":            "/hud",
		"/hud?embed_token=x":       "/hud",
	} {
		form := url.Values{"username": {"admin"}, "password": {adminPassword}, "next": {next}}
		if p := e.page(t, http.MethodPost, "/login", form, nil); p.header.Get("Location") != want {
			t.Errorf("next %q: Location %q, want %q", next, p.header.Get("Location"), want)
		}
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t, nil)
	p := e.page(t, http.MethodPost, "/logout", url.Values{}, cookieHeader(e.sessionToken(t)))
	if p.status != 303 || p.header.Get("Location") != "/login" {
		t.Fatalf("POST /logout: %d %q", p.status, p.header.Get("Location"))
	}
	if ck := p.cookie(web.SessionCookie); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("the cookie is not cleared: %+v", ck)
	}
}

func TestHUDFramingHeaders(t *testing.T) {
	for _, tc := range []struct {
		name      string
		origins   []string
		ancestors string
		xfo       string
	}{
		{"no embed origins", nil, "frame-ancestors 'none'", "DENY"},
		{"embed origins", []string{"https://admin.example.com", "https://*.sagewai.dev"}, "frame-ancestors https://admin.example.com https://*.sagewai.dev", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *web.Config) { c.EmbedOrigins = tc.origins })
			p := e.page(t, http.MethodGet, "/hud", nil, bearer(e.adminToken(t)))
			csp := p.header.Get("Content-Security-Policy")
			if p.status != 200 || !strings.HasSuffix(csp, tc.ancestors) || p.header.Get("X-Frame-Options") != tc.xfo {
				t.Errorf("GET /hud: %d CSP %q X-Frame-Options %q, want ...%s and %q", p.status, csp, p.header.Get("X-Frame-Options"), tc.ancestors, tc.xfo)
			}
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %s", csp, want)
				}
			}
			if p.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", p.header.Get("Cache-Control"))
			}
			// The login page is never framed.
			l := e.page(t, http.MethodGet, "/login", nil, nil)
			if !strings.HasSuffix(l.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || l.header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("GET /login may be framed: %v", l.header)
			}
		})
	}
}

func TestNewRefusesBadEmbedOrigins(t *testing.T) {
	for _, o := range []string{"*", "https:", "https://a.example; script-src *", "javascript:alert(1)", "https://a b", "'none'", ""} {
		cfg := web.Config{SigningKey: bytes.Repeat([]byte("k"), 32), EmbedOrigins: []string{o}}
		if _, err := web.New(cfg, newTestHub(), &testAuditor{}); err == nil {
			t.Errorf("EmbedOrigins %q accepted", o)
		}
	}
	for _, o := range []string{"'self'", "https://admin.example.com", "http://localhost:8080", "https://*.example.com", "https://a.example:*"} {
		cfg := web.Config{SigningKey: bytes.Repeat([]byte("k"), 32), EmbedOrigins: []string{o}}
		if _, err := web.New(cfg, newTestHub(), &testAuditor{}); err != nil {
			t.Errorf("EmbedOrigins %q refused: %v", o, err)
		}
	}
}

func TestStaticAssets(t *testing.T) {
	e := newEnv(t, nil)
	v := static.Version()
	for _, tc := range []struct {
		path, ctype, cache string
		status             int
	}{
		{"/static/hud.js?v=" + v, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", 200},
		{"/static/hud.css", "text/css; charset=utf-8", "no-cache", 200},
		{"/static/favicon.svg?v=old", "image/svg+xml", "no-cache", 200},
		{"/static/nope.js", "application/json", "", 404},
		{"/static/../server.go", "application/json", "", 404},
	} {
		p := e.page(t, http.MethodGet, tc.path, nil, nil)
		if p.status != tc.status || !strings.HasPrefix(p.header.Get("Content-Type"), tc.ctype) || p.header.Get("Cache-Control") != tc.cache {
			t.Errorf("GET %s: %d %q %q, want %d %q %q", tc.path, p.status, p.header.Get("Content-Type"), p.header.Get("Cache-Control"), tc.status, tc.ctype, tc.cache)
		}
	}
	p := e.page(t, http.MethodGet, "/static/hud.js", nil, http.Header{"If-None-Match": {`"` + v + `"`}})
	if p.status != http.StatusNotModified {
		t.Errorf("a revalidation with the current ETag: %d, want 304", p.status)
	}
	// The page links its assets with the version, and nothing off-site.
	hud := e.page(t, http.MethodGet, "/hud", nil, bearer(e.adminToken(t)))
	if hud.doc.Find("script[src]").Length() == 0 || hud.doc.Find(`link[rel=stylesheet][href]`).Length() == 0 {
		t.Fatalf("GET /hud links no script or no stylesheet: nothing to check\n%s", hud.body)
	}
	hud.doc.Find("script[src], link[href]").Each(func(_ int, s *goquery.Selection) {
		ref := s.AttrOr("src", s.AttrOr("href", ""))
		if !strings.HasPrefix(ref, "/static/") || !strings.HasSuffix(ref, "?v="+v) {
			t.Errorf("asset %q: want /static/...?v=%s", ref, v)
		}
	})
}

func TestHUDEmbedTokenSeesOnlyItsProject(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.embedToken(t, auth.RoleProject, "acme")
	p := e.page(t, http.MethodGet, "/hud?embed=1&embed_token="+tok, nil, nil)
	if p.status != 200 {
		t.Fatalf("GET /hud with an embed token: %d\n%s", p.status, p.body)
	}
	if s, _ := p.doc.Find("#hud").Attr("data-scope"); s != "acme" || p.doc.Find(".brand").Length() != 0 {
		t.Errorf("embedded page: scope %q, chrome %d; want acme without chrome", s, p.doc.Find(".brand").Length())
	}
	var tabs []string
	p.doc.Find("[data-testid=tenant-tab]").Each(func(_ int, s *goquery.Selection) { tabs = append(tabs, s.AttrOr("data-scope", "")) })
	if strings.Join(tabs, ",") != "acme" {
		t.Errorf("tabs %v, want acme alone", tabs)
	}
	// Another project, by URL: refused and audited.
	p = e.page(t, http.MethodGet, "/hud?embed=1&project=globex&embed_token="+tok, nil, nil)
	if p.status != 403 {
		t.Errorf("GET /hud?project=globex with acme's embed token: %d, want 403", p.status)
	}
	if got := e.audit.records(t); len(got) != 1 || got[0].Type != fleet.TypeCrossAccess || got[0].ProjectID != "acme" || got[0].Data["scope"] != "globex" {
		t.Errorf("audit %+v, want tenant.cross_access_denied of acme for globex", got)
	}
	// Another project, by the socket: 4403.
	c := e.mustDial(t, "?embed_token="+tok, nil)
	send(t, c, subscribeFrame("globex"))
	if code, status := closedWith(t, c); code != "forbidden" || status != 4403 {
		t.Errorf("subscribe globex with acme's embed token: %q %d, want forbidden 4403", code, status)
	}
	// The same holds for a token signed by `observatory embed-token`.
	key := bytes.Repeat([]byte("k"), 32)
	signed, exp, err := web.SignEmbedToken(key, "acme", time.Hour, e.clock.Now())
	if want := e.issuedAt().Add(time.Hour); err != nil || !exp.Equal(want) {
		t.Fatalf("SignEmbedToken: %v, expires %s, want %s", err, exp, want)
	}
	c = e.mustDial(t, "?embed_token="+signed, nil)
	send(t, c, subscribeFrame("acme"))
	if h := head(t, mustRead(t, c)); h.Op != "snapshot" || h.Scope != "acme" {
		t.Errorf("a signed embed token on its own project: %+v", h)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestSignEmbedTokenLimits(t *testing.T) {
	key := bytes.Repeat([]byte("k"), 32)
	for _, tc := range []struct {
		name    string
		key     []byte
		project string
		ttl     time.Duration
	}{
		{"over an hour", key, "acme", 61 * time.Minute},
		{"not a project", key, "*", time.Minute},
		{"a short key", key[:8], "acme", time.Minute},
	} {
		if _, _, err := web.SignEmbedToken(tc.key, tc.project, tc.ttl, fleettest.Epoch()); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	now := fleettest.Epoch().Add(300 * time.Millisecond) // tokens carry whole seconds
	_, exp, err := web.SignEmbedToken(key, "acme", 0, now)
	if want := now.Truncate(time.Second).Add(web.DefaultEmbedTokenTTL); err != nil || !exp.Equal(want) {
		t.Errorf("default ttl: expires %s, %v; want %s", exp, err, want)
	}
}
