package web_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/revoke"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// cluster is a NATS with the streams and a hub, and the key ring and
// clock that every replica on it shares, as the servers of one
// deployment share a key file.
type cluster struct {
	nats  *streamtest.Env
	reg   *stream.Registry
	ring  *keyring.Ring
	clock *fleettest.Clock
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	n := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	reg, err := stream.OpenRegistry(ctx, n.JS, stream.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	clock := fleettest.NewClock()
	ring, err := keyring.New(clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{nats: n, reg: reg, ring: ring, clock: clock}
}

// replica starts one more server on the cluster, with a revocation store
// of its own on a connection of its own, as another `serve` process would
// have. edit may change its config.
func (cl *cluster) replica(t testing.TB, edit func(*web.Config)) *env {
	t.Helper()
	nc, err := nats.Connect(cl.nats.Server.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	rev, err := revoke.Open(ctx, js, revoke.Config{MaxAge: auth.MaxLifetime, Now: cl.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rev.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("revocations: %v", err)
		}
	})
	e := &env{clock: cl.clock, logs: &syncBuffer{}}
	cfg := web.Config{
		AdminPassword: adminPassword,
		Keys:          cl.ring,
		Revocations:   rev,
		Logger:        slog.New(slog.NewJSONHandler(e.logs, nil)),
		Now:           cl.clock.Now,
		BcryptCost:    bcrypt.MinCost,
		Records:       cl.reg.Records,
		Work:          cl.reg.Work,
		Events:        cl.nats.Publisher,
		Missions:      cl.reg.Missions,
		AuditLog:      stream.NewAuditLog(cl.nats.JS),
		SweepInterval: 10 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := web.New(cfg, cl.nats.Hub, cl.nats.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.url = srv, newTestServer(t, srv)
	return e
}

// audited returns the AUDIT events of type typ.
func (cl *cluster) audited(t *testing.T, typ string) []fleet.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	evs, err := stream.NewAuditLog(cl.nats.JS).Read(ctx, "", typ, time.Time{}, time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// revocationsStored is how many entries the revocation bucket holds.
func (cl *cluster) revocationsStored(t testing.TB) uint64 {
	t.Helper()
	s, err := cl.nats.JS.Stream(context.Background(), "KV_"+revoke.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	return v
}

type issued struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	URL       string    `json:"url"`
}

// TestRevokedTokenRefusedOnEveryReplica: an admin revokes a project token
// on one replica; that replica refuses it at once, the other within
// moments (HTTP 401), and the other's /ws connection streaming under it
// is closed with 4401. The revocation is audited; the admin's own token
// still works.
func TestRevokedTokenRefusedOnEveryReplica(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.replica(t, nil), cl.replica(t, nil)
	admin := a.adminToken(t)
	if r := a.do(t, http.MethodPost, "/api/v1/projects", `{"id":"acme","name":"Acme"}`, bearer(admin)); r.status != http.StatusCreated {
		t.Fatalf("create project: %d %s", r.status, r.body)
	}
	res := a.do(t, http.MethodPost, "/api/v1/projects/acme/tokens", `{"name":"ci","ttl":"30d"}`, bearer(admin))
	if res.status != http.StatusCreated {
		t.Fatalf("create token: %d %s", res.status, res.body)
	}
	victim := decode[issued](t, res)
	if !auth.ValidTokenID(victim.ID) {
		t.Fatalf("token id %q", victim.ID)
	}
	for _, e := range []*env{a, b} {
		if r := e.do(t, http.MethodGet, "/api/v1/fleet", "", bearer(victim.Token)); r.status != http.StatusOK {
			t.Fatalf("before the revocation: %d %s", r.status, r.body)
		}
	}
	ws := b.mustDial(t, "", bearer(victim.Token))
	send(t, ws, subscribeFrame("acme"))
	if h := head(t, mustRead(t, ws)); h.Op != protocol.OpSnapshot {
		t.Fatalf("first frame %+v", h)
	}

	revoked := time.Now() // the wall clock: this measures propagation
	r := a.do(t, http.MethodDelete, "/api/v1/tokens/"+victim.ID, "", bearer(admin))
	if r.status != http.StatusOK {
		t.Fatalf("DELETE /api/v1/tokens/%s: %d %s", victim.ID, r.status, r.body)
	}
	if r := a.do(t, http.MethodGet, "/api/v1/fleet", "", bearer(victim.Token)); r.status != http.StatusUnauthorized || r.errorCode(t) != web.CodeUnauthorized {
		t.Errorf("the revoking replica, right after: %d %s, want 401", r.status, r.body)
	}
	streamtest.Eventually(t, hangBound, func() bool {
		return b.do(t, http.MethodGet, "/api/v1/fleet", "", bearer(victim.Token)).status == http.StatusUnauthorized
	}, "the other replica never refused the revoked token")
	t.Logf("the other replica refused the token %s after the revocation", time.Since(revoked))
	if code, status := closedWith(t, ws); code != protocol.CodeUnauthorized || status != protocol.CloseUnauthorized {
		t.Errorf("/ws on the other replica: error %q, close %d; want unauthorized, 4401", code, status)
	}
	t.Logf("the other replica's /ws closed %s after the revocation", time.Since(revoked))
	for _, e := range []*env{a, b} {
		if r := e.do(t, http.MethodGet, "/api/v1/fleet?scope=*", "", bearer(admin)); r.status != http.StatusOK {
			t.Errorf("the admin's token after revoking another: %d %s", r.status, r.body)
		}
	}
	// Audited once, by the replica that revoked, naming the id.
	evs := cl.audited(t, web.TypeTokenRevoked)
	if len(evs) != 1 {
		t.Fatalf("%d auth.token.revoked events, want 1", len(evs))
	}
	var data map[string]string
	if err := json.Unmarshal(evs[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if data["token_id"] != victim.ID || data["reason"] != "admin" || evs[0].UserID != "api:admin" {
		t.Errorf("audit event %+v %v", evs[0], data)
	}
	if strings.Contains(a.logs.String(), victim.Token) || strings.Contains(b.logs.String(), victim.Token) {
		t.Error("a token appears in the logs")
	}
}

// TestRevokeRefusals: an id that is not a token id is refused with 400,
// and only an admin may revoke; none of the refusals writes a
// revocation or an audit event, and the token stays good.
func TestRevokeRefusals(t *testing.T) {
	cl := newCluster(t)
	e := cl.replica(t, nil)
	admin := e.adminToken(t)
	project := e.token(t, auth.RoleProject, "acme")
	embed := e.embedToken(t, auth.RoleProject, "acme")
	metrics, _, err := e.srv.IssueMetricsToken("vm", 0)
	if err != nil {
		t.Fatal(err)
	}
	good := auth.NewID()
	for _, tc := range []struct {
		name, id, token string
		status          int
	}{
		{"upper case", "ABCDEFGHIJKLMNOPQRST", admin, http.StatusBadRequest},
		{"too short", "abc", admin, http.StatusBadRequest},
		{"too long", strings.Repeat("a", 65), admin, http.StatusBadRequest},
		{"a NATS wildcard", "abcdefghijklmnop*", admin, http.StatusBadRequest},
		{"a KV subject", "abcdefghijklmnop.qrst", admin, http.StatusBadRequest},
		{"an escaped slash", "abcdefghijklmnop%2Fqrst", admin, http.StatusBadRequest},
		{"a NATS tail wildcard", "%3E", admin, http.StatusBadRequest},
		{"a project token", good, project, http.StatusForbidden},
		{"an embed token", good, embed, http.StatusUnauthorized},
		{"a metrics token", good, metrics, http.StatusUnauthorized},
		{"no token", good, "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h http.Header
			if tc.token != "" {
				h = bearer(tc.token)
			}
			if r := e.do(t, http.MethodDelete, "/api/v1/tokens/"+tc.id, "", h); r.status != tc.status {
				t.Errorf("DELETE: %d %s, want %d", r.status, r.body, tc.status)
			}
		})
	}
	if n := cl.revocationsStored(t); n != 0 {
		t.Errorf("%d revocations stored by refused requests", n)
	}
	if evs := cl.audited(t, web.TypeTokenRevoked); len(evs) != 0 {
		t.Errorf("refusals audited as revocations: %+v", evs)
	}
	if r := e.do(t, http.MethodGet, "/api/v1/fleet", "", bearer(project)); r.status != http.StatusOK {
		t.Errorf("the project token after the refusals: %d", r.status)
	}
	// A server without revocations says so.
	off := newEnv(t, nil)
	if r := off.do(t, http.MethodDelete, "/api/v1/tokens/"+good, "", bearer(off.adminToken(t))); r.status != http.StatusServiceUnavailable {
		t.Errorf("without revocations: %d %s, want 503", r.status, r.body)
	}
}

// TestLogoutRevokesSession: POST /logout revokes the session the cookie
// carries: a copy of the cookie (or its token as a bearer) is refused
// afterwards on every replica, and the logout is audited.
func TestLogoutRevokesSession(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.replica(t, nil), cl.replica(t, nil)
	session := a.sessionToken(t)
	cookie := http.Header{"Cookie": {web.SessionCookie + "=" + session}}
	if r := b.do(t, http.MethodGet, "/api/v1/fleet?scope=*", "", cookie); r.status != http.StatusOK {
		t.Fatalf("the session before logout: %d %s", r.status, r.body)
	}
	lo := http.Header{"Cookie": cookie["Cookie"], "Origin": {a.url}, "Sec-Fetch-Site": {"same-origin"},
		"Content-Type": {"application/x-www-form-urlencoded"}}
	res := noRedirect(t, http.MethodPost, a.url+"/logout", lo)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /logout: %s", res.Status)
	}
	if ck := res.Cookies(); len(ck) != 1 || ck[0].Name != web.SessionCookie || ck[0].MaxAge >= 0 {
		t.Errorf("logout cookies %v: want the session cookie cleared", ck)
	}
	for _, h := range []http.Header{cookie, bearer(session)} {
		if r := a.do(t, http.MethodGet, "/api/v1/fleet?scope=*", "", h); r.status != http.StatusUnauthorized {
			t.Errorf("the logged-out session on the same replica: %d", r.status)
		}
		streamtest.Eventually(t, hangBound, func() bool {
			return b.do(t, http.MethodGet, "/api/v1/fleet?scope=*", "", h).status == http.StatusUnauthorized
		}, "the other replica still takes the logged-out session")
	}
	evs := cl.audited(t, web.TypeTokenRevoked)
	if len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"reason":"logout"`) || evs[0].UserID != "admin" {
		t.Errorf("audit %+v", evs)
	}
}

// noRedirect sends a request without following a redirect.
func noRedirect(t *testing.T, method, u string, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// TestEmbedTokensRoute: an admin mints a project's embed token through
// the API; its url frames that project's HUD, its /ws stream ends with
// 4401 when it expires; the lifetime is capped at an hour, and only an
// admin may mint one, for a project that exists.
func TestEmbedTokensRoute(t *testing.T) {
	cl := newCluster(t)
	e := cl.replica(t, nil)
	admin := e.adminToken(t)
	if r := e.do(t, http.MethodPost, "/api/v1/projects", `{"id":"acme","name":"Acme"}`, bearer(admin)); r.status != http.StatusCreated {
		t.Fatalf("create project: %d %s", r.status, r.body)
	}
	res := e.do(t, http.MethodPost, "/api/v1/projects/acme/embed-tokens", `{"ttl":"10m"}`, bearer(admin))
	if res.status != http.StatusCreated {
		t.Fatalf("embed-tokens: %d %s", res.status, res.body)
	}
	tok := decode[issued](t, res)
	if want := e.issuedAt().Add(10 * time.Minute); !tok.ExpiresAt.Equal(want) {
		t.Errorf("expires %s, want %s", tok.ExpiresAt, want)
	}
	u, err := url.Parse(tok.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.Scheme+"://"+u.Host+u.Path, e.url+"/hud"; got != want || u.Query().Get("embed") != "1" ||
		u.Query().Get("project") != "acme" || u.Query().Get("embed_token") != tok.Token {
		t.Errorf("url %s: want %s?embed=1&project=acme&embed_token=<the token>", tok.URL, want)
	}
	page, err := http.Get(tok.URL)
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != http.StatusOK {
		t.Errorf("GET the url: %s", page.Status)
	}
	ws := e.mustDial(t, "?embed_token="+url.QueryEscape(tok.Token), nil)
	send(t, ws, subscribeFrame("acme"))
	if h := head(t, mustRead(t, ws)); h.Op != protocol.OpSnapshot {
		t.Fatalf("first frame %+v", h)
	}
	cl.clock.Advance(10 * time.Minute)
	if code, status := closedWith(t, ws); code != protocol.CodeUnauthorized || status != protocol.CloseUnauthorized {
		t.Errorf("/ws at the embed token's expiry: %q %d, want unauthorized 4401", code, status)
	}
	if evs := cl.audited(t, web.TypeTokenIssued); len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"kind":"embed"`) {
		t.Errorf("audit %+v", evs)
	}

	project := e.token(t, auth.RoleProject, "acme")
	for _, tc := range []struct {
		name, path, body, token string
		status                  int
	}{
		{"two hours", "/api/v1/projects/acme/embed-tokens", `{"ttl":"2h"}`, admin, http.StatusBadRequest},
		{"61 minutes", "/api/v1/projects/acme/embed-tokens", `{"ttl":"61m"}`, admin, http.StatusBadRequest},
		{"seconds", "/api/v1/projects/acme/embed-tokens", `{"ttl":"30s"}`, admin, http.StatusBadRequest},
		{"not a duration", "/api/v1/projects/acme/embed-tokens", `{"ttl":"soon"}`, admin, http.StatusBadRequest},
		{"unknown field", "/api/v1/projects/acme/embed-tokens", `{"ttl":"5m","scope":"*"}`, admin, http.StatusBadRequest},
		{"no such project", "/api/v1/projects/globex/embed-tokens", `{}`, admin, http.StatusNotFound},
		{"the project's own token", "/api/v1/projects/acme/embed-tokens", `{}`, project, http.StatusForbidden},
		{"no token", "/api/v1/projects/acme/embed-tokens", `{}`, "", http.StatusUnauthorized},
	} {
		var h http.Header
		if tc.token != "" {
			h = bearer(tc.token)
		}
		if r := e.do(t, http.MethodPost, tc.path, tc.body, h); r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
		}
	}
	if evs := cl.audited(t, web.TypeTokenIssued); len(evs) != 1 {
		t.Errorf("refused requests minted tokens: %d issued", len(evs))
	}
}

// TestRevokedMetricsToken: a revoked metrics token no longer reads
// /metrics.
func TestRevokedMetricsToken(t *testing.T) {
	cl := newCluster(t)
	e := cl.replica(t, func(c *web.Config) {
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("# exposition\n")) })
	})
	admin := e.adminToken(t)
	res := e.do(t, http.MethodPost, "/api/v1/metrics-tokens", `{"name":"vm"}`, bearer(admin))
	if res.status != http.StatusCreated {
		t.Fatalf("metrics-tokens: %d %s", res.status, res.body)
	}
	mt := decode[issued](t, res)
	if r := e.do(t, http.MethodGet, "/metrics", "", bearer(mt.Token)); r.status != http.StatusOK {
		t.Fatalf("/metrics with the metrics token: %d %s", r.status, r.body)
	}
	if r := e.do(t, http.MethodDelete, "/api/v1/tokens/"+mt.ID, "", bearer(admin)); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := e.do(t, http.MethodGet, "/metrics", "", bearer(mt.Token)); r.status != http.StatusUnauthorized {
		t.Errorf("/metrics with the revoked metrics token: %d %s, want 401", r.status, r.body)
	}
}

// FuzzRevokeID: DELETE /api/v1/tokens/{id} revokes exactly the ids
// auth.ValidTokenID accepts; any other id is refused with nothing
// stored.
func FuzzRevokeID(f *testing.F) {
	cl := newCluster(f)
	e := cl.replica(f, nil)
	admin, _, err := e.srv.IssueToken(auth.RoleAdmin, "", 0)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{auth.NewID(), "", "abc", "ABCDEFGHIJKLMNOPQRST", "abcdefghijklmnop.q", "..", "%2e%2e",
		strings.Repeat("z", 64), strings.Repeat("z", 65), "a b", "abcdefghijklmnop*", "abcdefghijklmnop>", "abcdefghij/klmnopq"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		before := cl.revocationsStored(t)
		r := e.do(t, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), "", bearer(admin))
		if auth.ValidTokenID(id) {
			if r.status != http.StatusOK {
				t.Fatalf("DELETE %q: %d %s", id, r.status, r.body)
			}
			return
		}
		if r.status == http.StatusOK {
			t.Fatalf("DELETE %q revoked: %s", id, r.body)
		}
		if after := cl.revocationsStored(t); after != before {
			t.Fatalf("DELETE %q (%d) stored %d revocations", id, r.status, after-before)
		}
	})
}

// FuzzNewTokenBodies: any body of POST .../embed-tokens and POST
// /api/v1/metrics-tokens is answered 201 with a token that works where it
// should, or a 4xx in the error shape; never a 5xx, never a token of a
// lifetime past its cap.
func FuzzNewTokenBodies(f *testing.F) {
	cl := newCluster(f)
	e := cl.replica(f, func(c *web.Config) {
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("# exposition\n")) })
	})
	admin, _, err := e.srv.IssueToken(auth.RoleAdmin, "", 0)
	if err != nil {
		f.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, e.url+"/api/v1/projects", strings.NewReader(`{"id":"acme","name":"Acme"}`))
	if err != nil {
		f.Fatal(err)
	}
	req.Header = http.Header{"Authorization": {"Bearer " + admin}, "Content-Type": {"application/json"}}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		f.Fatalf("create project: %s", res.Status)
	}
	for _, s := range []string{`{}`, `{"ttl":"15m"}`, `{"ttl":"1h"}`, `{"ttl":"61m"}`, `{"name":"vm"}`, `{"name":"vm","ttl":"90d"}`,
		`{"name":"vm","ttl":"91d"}`, `{"ttl":null}`, `[]`, `{"ttl":"-5m"}`, `{"name":"` + strings.Repeat("a", 65) + `"}`, ``} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body string, metrics bool) {
		path, caps := "/api/v1/projects/acme/embed-tokens", auth.MaxEmbedLifetime
		if metrics {
			path, caps = "/api/v1/metrics-tokens", auth.MaxMetricsLifetime
		}
		r := e.do(t, http.MethodPost, path, body, http.Header{"Authorization": {"Bearer " + admin}, "Content-Type": {"application/json"}})
		switch {
		case r.status == http.StatusCreated:
			tok := decode[issued](t, r)
			if life := tok.ExpiresAt.Sub(e.issuedAt()); life <= 0 || life > caps {
				t.Fatalf("%s %q: a token for %s", path, body, life)
			}
			check := "/metrics"
			if !metrics {
				check = "/api/v1/fleet?embed_token=" + url.QueryEscape(tok.Token)
			}
			h := http.Header{}
			if metrics {
				h = bearer(tok.Token)
			}
			if got := e.do(t, http.MethodGet, check, "", h); got.status != http.StatusOK {
				t.Fatalf("the minted token on %s: %d", check, got.status)
			}
		case r.status >= 400 && r.status < 500:
			if code := r.errorCode(t); web.StatusOf(code) != r.status {
				t.Fatalf("%d with code %q", r.status, code)
			}
		default:
			t.Fatalf("%s %q: %d %s", path, body, r.status, r.body)
		}
	})
}
