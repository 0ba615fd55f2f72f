package web_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// TestMetricsNeedsAToken: GET /metrics lists every tenant's ids, spend
// and budgets, so on the main listener it answers only a bearer admin or
// metrics token (issue 12 finding 9); a metrics token opens nothing else.
func TestMetricsNeedsAToken(t *testing.T) {
	e := newEnv(t, func(c *web.Config) {
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "acme_spend 9000\n") })
	})
	admin := e.adminToken(t)
	session := e.sessionToken(t)
	project := e.token(t, auth.RoleProject, "acme")
	embed := e.embedToken(t, auth.RoleProject, "acme")
	metrics, _, err := e.srv.IssueMetricsToken("vm", 0)
	if err != nil {
		t.Fatal(err)
	}
	short, _, err := e.srv.IssueMetricsToken("short", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cookie := func(tok string) http.Header { return http.Header{"Cookie": {web.SessionCookie + "=" + tok}} }
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
		status int
	}{
		{name: "no token", status: http.StatusUnauthorized},
		{name: "garbage", header: bearer("garbage"), status: http.StatusUnauthorized},
		{name: "tampered admin token", header: bearer(flipLast(admin)), status: http.StatusUnauthorized},
		{name: "a project token", header: bearer(project), status: http.StatusForbidden},
		{name: "an embed token as bearer", header: bearer(embed), status: http.StatusForbidden},
		{name: "an embed token in the URL", query: "?embed_token=" + embed, status: http.StatusUnauthorized},
		{name: "the session cookie", header: cookie(session), status: http.StatusUnauthorized},
		{name: "an admin session token", header: bearer(session), status: http.StatusOK},
		{name: "an admin API token", header: bearer(admin), status: http.StatusOK},
		{name: "a metrics token", header: bearer(metrics), status: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, http.MethodGet, "/metrics"+tc.query, "", tc.header)
			if r.status != tc.status {
				t.Fatalf("GET /metrics: %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status != http.StatusOK && string(r.body) == "acme_spend 9000\n" {
				t.Fatal("the exposition was served")
			}
			if tc.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	e.clock.Advance(time.Minute)
	if r := e.do(t, http.MethodGet, "/metrics", "", bearer(short)); r.status != http.StatusUnauthorized {
		t.Errorf("an expired metrics token: %d", r.status)
	}

	// A metrics token reads /metrics and nothing else.
	for _, path := range []string{"/api/v1/fleet?scope=*", "/api/v1/projects", "/api/v1/audit", "/api/v1/budgets"} {
		if r := e.do(t, http.MethodGet, path, "", bearer(metrics)); r.status != http.StatusUnauthorized {
			t.Errorf("GET %s with a metrics token: %d %s, want 401", path, r.status, r.body)
		}
	}
	for _, path := range []string{"/api/v1/metrics-tokens", "/api/v1/projects"} {
		if r := e.do(t, http.MethodPost, path, `{"name":"x","id":"x"}`, bearer(metrics)); r.status != http.StatusUnauthorized {
			t.Errorf("POST %s with a metrics token: %d %s, want 401", path, r.status, r.body)
		}
	}
	c := e.mustDial(t, "", bearer(metrics))
	send(t, c, subscribeFrame("*"))
	if code, status := closedWith(t, c); code != protocol.CodeUnauthorized || status != protocol.CloseUnauthorized {
		t.Errorf("/ws with a metrics token: %q %d, want unauthorized 4401", code, status)
	}
}

// TestMetricsTokensRoute: an admin mints a metrics token that reads
// /metrics; its lifetime is capped; nobody else may mint one.
func TestMetricsTokensRoute(t *testing.T) {
	e := newEnv(t, func(c *web.Config) {
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "# exposition\n") })
	})
	admin := e.adminToken(t)
	res := e.do(t, http.MethodPost, "/api/v1/metrics-tokens", `{"name":"victoriametrics","ttl":"30d"}`, bearer(admin))
	if res.status != http.StatusCreated {
		t.Fatalf("POST /api/v1/metrics-tokens: %d %s", res.status, res.body)
	}
	tok := decode[issued](t, res)
	if want := e.issuedAt().Add(30 * 24 * time.Hour); !tok.ExpiresAt.Equal(want) || !auth.ValidTokenID(tok.ID) {
		t.Errorf("token %+v: want an id and expiry %s", tok, want)
	}
	if r := e.do(t, http.MethodGet, "/metrics", "", bearer(tok.Token)); r.status != http.StatusOK {
		t.Errorf("/metrics with the minted token: %d %s", r.status, r.body)
	}
	if res := e.do(t, http.MethodPost, "/api/v1/metrics-tokens", `{"name":"vm"}`, bearer(admin)); res.status != http.StatusCreated ||
		!decode[issued](t, res).ExpiresAt.Equal(e.issuedAt().Add(web.DefaultMetricsTokenTTL)) {
		t.Errorf("default lifetime: %d %s", res.status, res.body)
	}
	issuedBefore := len(e.audit.all())
	for _, tc := range []struct {
		name, body, token string
		status            int
	}{
		{"91 days", `{"name":"vm","ttl":"91d"}`, admin, http.StatusBadRequest},
		{"no name", `{"ttl":"1d"}`, admin, http.StatusBadRequest},
		{"a project token", `{"name":"vm"}`, e.token(t, auth.RoleProject, "acme"), http.StatusForbidden},
		{"no token", `{"name":"vm"}`, "", http.StatusUnauthorized},
	} {
		var h http.Header
		if tc.token != "" {
			h = bearer(tc.token)
		}
		if r := e.do(t, http.MethodPost, "/api/v1/metrics-tokens", tc.body, h); r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
		}
	}
	for _, ev := range e.audit.all()[issuedBefore:] {
		if ev.Type == web.TypeTokenIssued {
			t.Errorf("a refused request was audited as issued: %+v", ev)
		}
	}
}

// TestTokenLifetimeCaps: project tokens last at most 90 days, embed
// tokens an hour (issue 12: project tokens lasted up to 365 days).
func TestTokenLifetimeCaps(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	for _, tc := range []struct {
		ttl    string
		status int
	}{
		{"90d", http.StatusCreated},
		{"2160h", http.StatusCreated},
		{"91d", http.StatusBadRequest},
		{"365d", http.StatusBadRequest},
		{"2161h", http.StatusBadRequest},
	} {
		if r := a.call(t, http.MethodPost, "/api/v1/projects/acme/tokens", a.admin, `{"name":"ci","ttl":"`+tc.ttl+`"}`); r.status != tc.status {
			t.Errorf("ttl %s: %d %s, want %d", tc.ttl, r.status, r.body, tc.status)
		}
	}
	if _, _, err := a.srv.IssueToken(auth.RoleAdmin, "", 91*24*time.Hour); err == nil {
		t.Error("IssueToken minted a 91-day token")
	}
	if _, _, err := a.srv.IssueEmbedToken(auth.RoleProject, "acme", 61*time.Minute); err == nil {
		t.Error("IssueEmbedToken minted a 61-minute token")
	}
	if _, err := web.New(web.Config{SigningKey: make([]byte, 32), TokenTTL: 8 * 24 * time.Hour}, newTestHub(), &testAuditor{}); err == nil {
		t.Error("a server with 8-day sessions started")
	}
}
