package web_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

func TestFleetAuth(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.adminToken(t)
	acme := e.token(t, auth.RoleProject, "acme")
	acmeEmbed := e.embedToken(t, auth.RoleProject, "acme")
	session := e.sessionToken(t)
	expired, _, err := e.srv.IssueToken(auth.RoleAdmin, "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cookie := func(tok string) http.Header { return http.Header{"Cookie": {web.SessionCookie + "=" + tok}} }
	denied := func(scope string) []auditRecord {
		return []auditRecord{{fleet.TypeCrossAccess, "acme", "api:acme", map[string]string{
			"subject": "api:acme", "scope": scope, "route": "/api/v1/fleet",
		}}}
	}
	e.clock.Advance(2 * time.Minute)

	for _, tc := range []struct {
		name      string
		query     string
		header    http.Header
		status    int
		code      string // error code, or
		scope     string // the snapshot's scope
		wantAudit []auditRecord
	}{
		{name: "no token", status: 401, code: "unauthorized"},
		{name: "garbage token", header: bearer("nope"), status: 401, code: "unauthorized"},
		{name: "tampered token", header: bearer(flipLast(admin)), status: 401, code: "unauthorized"},
		{name: "expired token", header: bearer(expired), status: 401, code: "unauthorized"},
		{name: "not a bearer", header: http.Header{"Authorization": {"Basic YWRtaW46YWRtaW4="}}, status: 401, code: "unauthorized"},
		{name: "admin defaults to all", header: bearer(admin), status: 200, scope: "*"},
		{name: "admin asks a project", query: "?scope=acme", header: bearer(admin), status: 200, scope: "acme"},
		{name: "admin session", header: bearer(session), status: 200, scope: "*"},
		{name: "session cookie", header: cookie(session), status: 200, scope: "*"},
		{name: "api token in the cookie", header: cookie(admin), status: 401, code: "unauthorized"},
		{name: "project defaults to its own", header: bearer(acme), status: 200, scope: "acme"},
		{name: "project asks its own", query: "?scope=acme", header: bearer(acme), status: 200, scope: "acme"},
		{name: "project asks another", query: "?scope=globex", header: bearer(acme), status: 403, code: "forbidden", wantAudit: denied("globex")},
		{name: "project asks all", query: "?scope=*", header: bearer(acme), status: 403, code: "forbidden", wantAudit: denied("*")},
		{name: "bad scope", query: "?scope=Not+A+Project", header: bearer(admin), status: 400, code: "bad_request"},
		{name: "embed token in the URL", query: "?embed_token=" + acmeEmbed, status: 200, scope: "acme"},
		{name: "api token in the URL", query: "?embed_token=" + acme, status: 401, code: "unauthorized"},
		{name: "embed token as bearer", header: bearer(acmeEmbed), status: 200, scope: "acme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.audit.all())
			res := e.do(t, http.MethodGet, "/api/v1/fleet"+tc.query, "", tc.header)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			if tc.code != "" {
				if got := res.errorCode(t); got != tc.code {
					t.Errorf("code %q, want %q", got, tc.code)
				}
				if tc.status == 401 && res.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			} else {
				if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type %q", ct)
				}
				if diff := cmp.Diff(frameHead{Op: "snapshot", Scope: tc.scope, Seq: 7}, head(t, res.body)); diff != "" {
					t.Errorf("snapshot (-want +got):\n%s", diff)
				}
			}
			var got []auditRecord
			if recs := e.audit.records(t); len(recs) > before {
				got = recs[before:]
			}
			if diff := cmp.Diff(tc.wantAudit, got); diff != "" {
				t.Errorf("audit events (-want +got):\n%s", diff)
			}
		})
	}
	if strings.Contains(e.logs.String(), acmeEmbed) || strings.Contains(e.logs.String(), admin) {
		t.Error("a token appears in the log")
	}
}

func flipLast(tok string) string {
	b := []byte(tok)
	if b[len(b)-1] == 'A' {
		b[len(b)-1] = 'B'
	} else {
		b[len(b)-1] = 'A'
	}
	return string(b)
}

func TestIssueEmbedTokenLifetime(t *testing.T) {
	e := newEnv(t, nil)
	_, exp, err := e.srv.IssueEmbedToken(auth.RoleProject, "acme", 0)
	if err != nil || !exp.Equal(e.issuedAt().Add(web.DefaultEmbedTokenTTL)) {
		t.Errorf("IssueEmbedToken default: expires %s, %v", exp, err)
	}
	if _, _, err := e.srv.IssueEmbedToken(auth.RoleProject, "acme", 2*time.Hour); err == nil {
		t.Error("IssueEmbedToken accepted a 2 h lifetime")
	}
}

func TestIssueTokenRefusesBadRoles(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ role, project string }{
		{"root", ""}, {auth.RoleProject, ""}, {auth.RoleProject, "Bad!"}, {auth.RoleAdmin, "acme"},
	} {
		if tok, _, err := e.srv.IssueToken(tc.role, tc.project, 0); err == nil {
			t.Errorf("IssueToken(%q, %q) = %q, want an error", tc.role, tc.project, tok)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	hub, audit := newTestHub(), &testAuditor{}
	for name, cfg := range map[string]web.Config{
		"no signing key":     {},
		"short signing key":  {SigningKey: make([]byte, 31)},
		"bad origin pattern": {SigningKey: make([]byte, 32), AllowedOrigins: []string{"[a-"}},
	} {
		if _, err := web.New(cfg, hub, audit); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := web.New(web.Config{SigningKey: make([]byte, 32)}, nil, audit); err == nil {
		t.Error("New accepted a nil hub")
	}
}

func TestErrorsHaveOneShape(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.adminToken(t)
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		setup              func()
		status             int
		code               string
	}{
		{name: "unknown route", method: "GET", path: "/nope", status: 404, code: "not_found"},
		{name: "unknown api route", method: "GET", path: "/api/v1/nope", status: 404, code: "not_found"},
		{name: "wrong method", method: "DELETE", path: "/api/v1/auth/login", status: 405, code: "method_not_allowed"},
		{name: "panic", method: "GET", path: "/api/v1/fleet", header: bearer(admin), status: 500, code: "internal",
			setup: func() { e.hub.mu.Lock(); e.hub.panicOnSnap = true; e.hub.mu.Unlock() }},
		{name: "plain GET on /ws", method: "GET", path: "/ws", status: 400, code: "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			res := e.do(t, tc.method, tc.path, "", tc.header)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			if got := res.errorCode(t); got != tc.code {
				t.Errorf("code %q, want %q", got, tc.code)
			}
			for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
				if got := res.header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
		})
	}
	if !strings.Contains(e.logs.String(), "snapshot exploded") {
		t.Error("the panic was not logged")
	}
}

func TestStatusTable(t *testing.T) {
	want := map[string]int{
		"bad_request": 400, "unauthorized": 401, "budget_exceeded": 402, "forbidden": 403,
		"not_found": 404, "method_not_allowed": 405, "too_large": 413, "throttled": 429,
		"too_many_attempts": 429, "internal": 500, "unavailable": 503,
	}
	got := map[string]int{}
	for code := range want {
		got[code] = web.StatusOf(code)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status table (-want +got):\n%s", diff)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, nil)
	if res := e.do(t, "GET", "/healthz", "", nil); res.status != 200 {
		t.Errorf("/healthz: %d", res.status)
	}
	if res := e.do(t, "GET", "/readyz", "", nil); res.status != 200 {
		t.Errorf("/readyz: %d %s", res.status, res.body)
	}
	e.hub.setNotReady(errors.New("caught up to 10 of 20"))
	res := e.do(t, "GET", "/readyz", "", nil)
	if res.status != 503 || res.errorCode(t) != "unavailable" {
		t.Errorf("/readyz while catching up: %d %s", res.status, res.body)
	}
	if res := e.do(t, "GET", "/healthz", "", nil); res.status != 200 {
		t.Errorf("/healthz while catching up: %d", res.status)
	}
	if logs := e.logs.String(); strings.Contains(logs, "healthz") || strings.Contains(logs, "readyz") || strings.Contains(logs, "caught up") {
		t.Errorf("a probe was logged:\n%s", logs)
	}
}

func TestAccessLog(t *testing.T) {
	e := newEnv(t, nil)
	acme := e.token(t, auth.RoleProject, "acme")
	e.do(t, "GET", "/api/v1/fleet?scope=acme", "", bearer(acme))
	e.do(t, "GET", "/api/v1/fleet", "", nil)
	e.do(t, "GET", "/healthz", "", nil)

	type entry struct {
		Method, Route, Project string
		Status                 float64
	}
	var got []entry
	for _, l := range e.logs.lines(t) {
		if l["event"] != "http.request" {
			continue
		}
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("no duration_ms in %v", l)
		}
		got = append(got, entry{l["method"].(string), l["route"].(string), l["sagewai.project_id"].(string), l["status"].(float64)})
	}
	want := []entry{
		{"GET", "/api/v1/fleet", "acme", 200},
		{"GET", "/api/v1/fleet", "global", 401},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("access log (-want +got):\n%s", diff)
	}
	if strings.Contains(e.logs.String(), acme) {
		t.Error("the token appears in the log")
	}
}
