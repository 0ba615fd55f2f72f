package adminapp_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/adminapp"
)

// httpApp is an admin app for o behind httptest, with a client that keeps
// cookies and does not follow redirects.
type httpApp struct {
	t   *testing.T
	url string
	log *syncBuffer
	c   *http.Client
}

func newHTTPApp(t *testing.T, o *observatory, edit func(*adminapp.Config)) *httpApp {
	t.Helper()
	a := &httpApp{t: t, log: &syncBuffer{}}
	cfg := adminapp.Config{
		ObservatoryURL: o.url,
		AdminPassword:  obsPassword,
		Users:          []adminapp.User{{Name: "alice", Password: alicePassword, Project: "acme"}},
		Logger:         jsonLogger(a.log),
		Now:            o.clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	h, err := adminapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	a.url = srv.URL
	jar := &cookieJar{}
	a.c = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return a
}

// cookieJar keeps the app's cookies, whatever their path.
type cookieJar struct{ cookies []*http.Cookie }

func (j *cookieJar) SetCookies(_ *url.URL, cs []*http.Cookie) {
	for _, c := range cs {
		kept := j.cookies[:0]
		for _, old := range j.cookies {
			if old.Name != c.Name {
				kept = append(kept, old)
			}
		}
		j.cookies = kept
		if c.MaxAge >= 0 {
			j.cookies = append(j.cookies, c)
		}
	}
}

func (j *cookieJar) Cookies(*url.URL) []*http.Cookie { return j.cookies }

type answer struct {
	status int
	header http.Header
	body   string
}

// do sends a request as a browser on the app's own page would (same-origin
// fetch metadata), unless site says otherwise.
func (a *httpApp) do(method, path, site, contentType, body string) answer {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if site != "" {
		req.Header.Set("Sec-Fetch-Site", site)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

func (a *httpApp) signIn(password string) answer {
	a.t.Helper()
	form := url.Values{"username": {"alice"}, "password": {password}}.Encode()
	return a.do(http.MethodPost, "/signin", "same-origin", "application/x-www-form-urlencoded", form)
}

func (a *httpApp) refresh(site string) answer {
	a.t.Helper()
	return a.do(http.MethodPost, "/embed/refresh", site, "application/json", `{"reason":"manual"}`)
}

// TestSignInAndRefreshGuards: the app's own credentials: a wrong password
// signs nobody in, a form or fetch from another site is refused before
// anything is minted, a forged cookie is no session.
func TestSignInAndRefreshGuards(t *testing.T) {
	o := startObservatory(t)
	a := newHTTPApp(t, o, nil)

	if r := a.do(http.MethodGet, "/", "", "", ""); r.status != http.StatusSeeOther || r.header.Get("Location") != "/signin" {
		t.Errorf("GET / without a session: %d to %q, want 303 to /signin", r.status, r.header.Get("Location"))
	}
	if r := a.signIn("wrong"); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong user or password") {
		t.Errorf("a wrong password: %d, want 401 and the form again", r.status)
	}
	if r := a.refresh("same-origin"); r.status != http.StatusUnauthorized {
		t.Errorf("refresh without a session: %d, want 401", r.status)
	}
	form := url.Values{"username": {"alice"}, "password": {alicePassword}}.Encode()
	if r := a.do(http.MethodPost, "/signin", "cross-site", "application/x-www-form-urlencoded", form); r.status != http.StatusForbidden {
		t.Errorf("a sign-in form posted from another site: %d, want 403", r.status)
	}
	if r := a.do(http.MethodPost, "/signin", "", "application/x-www-form-urlencoded", form); r.status != http.StatusForbidden {
		t.Errorf("a sign-in without Sec-Fetch-Site or Origin: %d, want 403", r.status)
	}

	if r := a.signIn(alicePassword); r.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", r.status, r.body)
	}
	for _, site := range []string{"cross-site", "same-site", ""} {
		if r := a.refresh(site); r.status != http.StatusForbidden {
			t.Errorf("refresh with Sec-Fetch-Site %q: %d, want 403", site, r.status)
		}
	}
	if n := strings.Count(a.log.String(), "adminapp.embed_token.minted"); n != 0 {
		t.Errorf("refused requests minted %d tokens", n)
	}
	r := a.refresh("same-origin")
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	var got struct {
		URL         string    `json:"url"`
		ExpiresAt   time.Time `json:"expires_at"`
		RefreshInMS int64     `json:"refresh_in_ms"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(got.URL)
	if err != nil || u.Scheme+"://"+u.Host+u.Path != o.url+"/hud" || u.Query().Get("project") != "acme" || u.Query().Get("embed") != "1" {
		t.Errorf("refresh url %s: want %s/hud?embed=1&project=acme&embed_token=...", u.Redacted(), o.url)
	}
	if want := o.clock.Now().Add(adminapp.DefaultTTL).Truncate(time.Second); !got.ExpiresAt.Equal(want) {
		t.Errorf("expires %s, want %s (the default ttl)", got.ExpiresAt, want)
	}
	if want := (adminapp.DefaultTTL * 4 / 5).Milliseconds(); got.RefreshInMS != want {
		t.Errorf("refresh in %d ms, want %d (four fifths of the ttl)", got.RefreshInMS, want)
	}
	// The minted token reads acme's HUD.
	res, err := http.Get(got.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET the frame address: %s", res.Status)
	}
	checkLogNeverHasTokens(t, &app{log: a.log}, u.Query().Get("embed_token"))

	// Signing out from another site does nothing; from the page, it ends
	// the session.
	if r := a.do(http.MethodPost, "/signout", "cross-site", "application/x-www-form-urlencoded", ""); r.status != http.StatusForbidden {
		t.Errorf("sign-out posted from another site: %d, want 403", r.status)
	}
	if r := a.do(http.MethodGet, "/", "", "", ""); r.status != http.StatusOK {
		t.Errorf("GET / after a refused sign-out: %d, want 200 (still signed in)", r.status)
	}
	saved := *a.c.Jar.Cookies(nil)[0]
	if r := a.do(http.MethodPost, "/signout", "same-origin", "application/x-www-form-urlencoded", ""); r.status != http.StatusSeeOther || len(a.c.Jar.Cookies(nil)) != 0 {
		t.Errorf("sign-out: %d, %d cookies left; want 303 and none", r.status, len(a.c.Jar.Cookies(nil)))
	}
	if r := a.do(http.MethodGet, "/", "", "", ""); r.status != http.StatusSeeOther {
		t.Errorf("GET / after signing out: %d, want 303 to /signin", r.status)
	}

	// A cookie whose signature does not match is no session.
	a.c.Jar.SetCookies(nil, []*http.Cookie{&saved})
	c := a.c.Jar.Cookies(nil)[0]
	payload, _, _ := strings.Cut(c.Value, ".")
	c.Value = payload + ".AAAA"
	if r := a.do(http.MethodGet, "/", "", "", ""); r.status != http.StatusSeeOther {
		t.Errorf("GET / with a forged session cookie: %d, want 303 to /signin", r.status)
	}
}

// TestAppLogsInAgainWhenItsSessionEnds: the app's Observatory session
// expires (12 h on Observatory's clock); the next mint logs in again
// rather than failing the user.
func TestAppLogsInAgainWhenItsSessionEnds(t *testing.T) {
	o := startObservatory(t)
	a := newHTTPApp(t, o, func(c *adminapp.Config) { c.SessionTTL = 48 * time.Hour })
	if r := a.signIn(alicePassword); r.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", r.status)
	}
	if r := a.refresh("same-origin"); r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	o.clock.Advance(13 * time.Hour)
	if r := a.refresh("same-origin"); r.status != http.StatusOK {
		t.Fatalf("refresh after the app's Observatory session expired: %d %s", r.status, r.body)
	}
	log := a.log.String()
	if n := strings.Count(log, `"event":"adminapp.embed_token.failed"`); n != 0 {
		t.Errorf("%d failed mints logged, want none (the app logs in again)", n)
	}
	if n := strings.Count(log, `"event":"adminapp.observatory.login"`); n != 2 {
		t.Errorf("the app logged in to Observatory %d times, want 2 (once more after its session expired):\n%s", n, log)
	}
}

// TestObservatoryRefusesTheApp: with a wrong Observatory password the page
// says the live view is unavailable (502), the log says why, and neither
// shows the password.
func TestObservatoryRefusesTheApp(t *testing.T) {
	o := startObservatory(t)
	const wrong = "not-the-observatory-password"
	a := newHTTPApp(t, o, func(c *adminapp.Config) { c.AdminPassword = wrong })
	if r := a.signIn(alicePassword); r.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", r.status)
	}
	r := a.do(http.MethodGet, "/", "", "", "")
	if r.status != http.StatusBadGateway || !strings.Contains(r.body, `data-testid="app-error"`) {
		t.Errorf("GET / with Observatory refusing the app: %d, want 502 and the error page", r.status)
	}
	log := a.log.String()
	if !strings.Contains(log, `"event":"adminapp.embed_token.failed"`) || !strings.Contains(log, "401") {
		t.Errorf("the log does not say Observatory refused the login:\n%s", log)
	}
	if strings.Contains(log, wrong) || strings.Contains(r.body, wrong) {
		t.Error("the Observatory password shows in the log or the page")
	}
}

// TestConfigRefused: New refuses what cannot work, saying what to fix.
func TestConfigRefused(t *testing.T) {
	ok := adminapp.Config{ObservatoryURL: "http://127.0.0.1:3001", AdminPassword: "p",
		Users: []adminapp.User{{Name: "alice", Password: "a", Project: "acme"}}}
	for _, tc := range []struct {
		name string
		edit func(*adminapp.Config)
		want string
	}{
		{"no observatory", func(c *adminapp.Config) { c.ObservatoryURL = "" }, "ObservatoryURL"},
		{"observatory with a path", func(c *adminapp.Config) { c.ObservatoryURL = "http://o:3001/hud" }, "ObservatoryURL"},
		{"public url with a query", func(c *adminapp.Config) { c.PublicURL = "https://o?x=1" }, "PublicURL"},
		{"no admin password", func(c *adminapp.Config) { c.AdminPassword = "" }, "password"},
		{"no users", func(c *adminapp.Config) { c.Users = nil }, "user"},
		{"twice", func(c *adminapp.Config) { c.Users = append(c.Users, c.Users[0]) }, "twice"},
		{"bad project", func(c *adminapp.Config) { c.Users[0].Project = "Acme Corp" }, "project"},
		{"no user password", func(c *adminapp.Config) { c.Users[0].Password = "" }, "no password"},
		{"ttl too long", func(c *adminapp.Config) { c.TTL = 2 * time.Hour }, "ttl"},
		{"ttl too short", func(c *adminapp.Config) { c.TTL = 30 * time.Second }, "ttl"},
		{"refresh after expiry", func(c *adminapp.Config) { c.RefreshAfter = adminapp.DefaultTTL }, "refresh"},
		{"short session key", func(c *adminapp.Config) { c.SessionKey = []byte("short") }, "session key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.Users = append([]adminapp.User(nil), ok.Users...)
			tc.edit(&c)
			_, err := adminapp.New(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if _, err := adminapp.New(ok); err != nil {
		t.Errorf("New with a good config: %v", err)
	}
}

// FuzzSessionCookie: no cookie value but one the app signed is a session.
func FuzzSessionCookie(f *testing.F) {
	h, err := adminapp.New(adminapp.Config{ObservatoryURL: "http://127.0.0.1:1", AdminPassword: "p",
		Users: []adminapp.User{{Name: "alice", Password: "a", Project: "acme"}}, Logger: jsonLogger(io.Discard)})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", ".", "eyJ1IjoiYWxpY2UiLCJleHAiOjk5OTk5OTk5OTl9.", "eyJ1IjoiYWxpY2UiLCJleHAiOjk5OTk5OTk5OTl9.AAAA", "a.b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.AddCookie(&http.Cookie{Name: adminapp.SessionCookie, Value: v})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/signin" {
			t.Errorf("cookie %q: %d to %q, want 303 to /signin", v, rec.Code, rec.Header().Get("Location"))
		}
	})
}
