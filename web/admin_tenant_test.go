package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web/auth"
)

// adminRoute is one admin route aimed at project acme, with a body it
// accepts.
type adminRoute struct {
	method, template string
	path             func(t *testing.T) string
	body             string
	adminOnly        bool
}

func acmeRoutes(a *adminEnv) []adminRoute {
	fixed := func(p string) func(*testing.T) string { return func(*testing.T) string { return p } }
	// Completing needs a run still running: each call starts one.
	freshRun := func(t *testing.T) string {
		var r runOut
		a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager"}`, 201, &r)
		return "/api/v1/projects/acme/runs/" + r.ID + "/complete"
	}
	return []adminRoute{
		{"GET", "/api/v1/projects/:project/agents", fixed("/api/v1/projects/acme/agents"), "", false},
		{"POST", "/api/v1/projects/:project/agents", fixed("/api/v1/projects/acme/agents"), `{"name":"bot","model":"gpt-5-mini"}`, false},
		{"GET", "/api/v1/projects/:project/missions", fixed("/api/v1/projects/acme/missions"), "", false},
		{"POST", "/api/v1/projects/:project/missions", fixed("/api/v1/projects/acme/missions"), `{"title":"t","model":"gpt-5-mini"}`, false},
		{"GET", "/api/v1/projects/:project/runs", fixed("/api/v1/projects/acme/runs"), "", false},
		{"POST", "/api/v1/projects/:project/runs", fixed("/api/v1/projects/acme/runs"), `{"agent_id":"acme-triager"}`, false},
		{"POST", "/api/v1/projects/:project/runs/:run/complete", freshRun, `{"status":"completed","duration_ms":10}`, false},
		{"POST", "/api/v1/projects/:project/tokens", fixed("/api/v1/projects/acme/tokens"), `{"name":"ci"}`, true},
		{"GET", "/api/v1/audit", fixed("/api/v1/audit?project=acme"), "", false},
	}
}

// outcome sums up a response for the matrix: "2xx", or status and code.
func outcome(t *testing.T, res response) string {
	t.Helper()
	if res.status < 300 {
		return "2xx"
	}
	return http.StatusText(res.status) + " " + res.errorCode(t)
}

func TestAdminTenantMatrix(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	a.project(t, "globex")
	a.agent(t, "acme", "acme-triager", "claude-haiku-4-5")
	toks := map[string]string{
		"admin":   a.admin,
		"session": a.sessionToken(t),
		"own":     a.projectToken(t, "acme"),
		"other":   a.projectToken(t, "globex"),
		"embed":   a.embedToken(t, auth.RoleProject, "acme"),
		"none":    "",
	}
	const (
		ok           = "2xx"
		unauthorized = "Unauthorized unauthorized"
		forbidden    = "Forbidden forbidden"
	)
	var wantDenied []map[string]string
	for _, r := range acmeRoutes(a) {
		for _, who := range []string{"admin", "session", "own", "other", "embed", "none"} {
			want := ok
			switch {
			case who == "none", who == "embed" && r.method != http.MethodGet:
				want = unauthorized // embed tokens are read-only everywhere
			case who == "embed", who == "other", who == "own" && r.adminOnly:
				want = forbidden
			}
			t.Run(r.method+" "+r.template+" as "+who, func(t *testing.T) {
				path := r.path(t)
				before := a.lastSeqs(t)
				if got := outcome(t, a.call(t, r.method, path, toks[who], r.body)); got != want {
					t.Fatalf("%s, want %s", got, want)
				}
				if want != ok {
					if diff := cmp.Diff(before, a.lastSeqs(t)); diff != "" {
						t.Errorf("a refused request wrote (-before +after):\n%s", diff)
					}
				}
			})
			if who == "other" {
				wantDenied = append(wantDenied, map[string]string{"subject": "api:globex", "scope": "acme", "route": r.template})
			}
		}
	}

	// Another project's token is refused before the target's existence is
	// looked at: no probing for project ids.
	if got := outcome(t, a.call(t, "GET", "/api/v1/projects/nobody/agents", toks["other"], "")); got != forbidden {
		t.Errorf("another project's token on an unknown project: %s", got)
	}
	wantDenied = append(wantDenied, map[string]string{"subject": "api:globex", "scope": "nobody", "route": "/api/v1/projects/:project/agents"})

	// Every cross-tenant attempt is on AUDIT, and nothing else was
	// recorded as one.
	var got []map[string]string
	for _, ev := range auditEvents(t, a, a.admin, "?type="+fleet.TypeCrossAccess+"&limit=1000") {
		if ev.ProjectID != "globex" || ev.UserID != "api:globex" {
			t.Errorf("denial recorded for project %q user %q", ev.ProjectID, ev.UserID)
		}
		var data map[string]string
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		got = append(got, data)
	}
	if diff := cmp.Diff(wantDenied, got); diff != "" {
		t.Errorf("tenant.cross_access_denied events (-want +got):\n%s", diff)
	}
	for _, l := range a.logs.lines(t) {
		if l["event"] == fleet.TypeCrossAccess && l["sagewai.project_id"] != "globex" {
			t.Errorf("denial log line %v", l)
		}
	}
}

func TestAdminBadInput(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	a.agent(t, "acme", "acme-triager", "claude-haiku-4-5")
	var run runOut
	a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager"}`, 201, &run)
	complete := "/api/v1/projects/acme/runs/" + run.ID + "/complete"
	big := `{"name":"x","model":"m","description":"` + strings.Repeat("x", 40<<10) + `"}`
	huge := `{"id":"acme2","description":"` + strings.Repeat("x", 2<<20) + `"}`
	before := a.lastSeqs(t)

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
		says                     string // a fragment of the message; "" checks only that it is in the API's words
	}{
		// Projects.
		{"project: malformed JSON", "POST", "/api/v1/projects", `{"id":`, 400, "bad_request", ""},
		{"project: not an object", "POST", "/api/v1/projects", `["acme"]`, 400, "bad_request", "the body must be a JSON object"},
		{"project: wrong type", "POST", "/api/v1/projects", `{"id":42}`, 400, "bad_request", `field "id" must be a string, not number`},
		{"project: unknown field", "POST", "/api/v1/projects", `{"id":"x","colour":"red"}`, 400, "bad_request", `unknown field "colour"`},
		{"project: trailing data", "POST", "/api/v1/projects", `{"id":"x"}{"id":"y"}`, 400, "bad_request", ""},
		{"project: no body", "POST", "/api/v1/projects", ``, 400, "bad_request", ""},
		{"project: missing id", "POST", "/api/v1/projects", `{"name":"x"}`, 400, "bad_request", ""},
		{"project: bad id", "POST", "/api/v1/projects", `{"id":"Not A Project"}`, 400, "bad_request", ""},
		{"project: the reserved id", "POST", "/api/v1/projects", `{"id":"global"}`, 400, "bad_request", `the project id "global" is reserved`},
		{"project: control characters", "POST", "/api/v1/projects", `{"id":"x","name":"a\u0007b"}`, 400, "bad_request", ""},
		{"project: oversize", "POST", "/api/v1/projects", big, 413, "too_large", ""},
		{"project: past the server's limit", "POST", "/api/v1/projects", huge, 413, "too_large", ""},
		{"project: taken", "POST", "/api/v1/projects", `{"id":"acme"}`, 409, "conflict", ""},
		{"projects: bad limit", "GET", "/api/v1/projects?limit=0", ``, 400, "bad_request", ""},
		// Agents.
		{"agent: unknown project", "POST", "/api/v1/projects/nobody/agents", `{"name":"x","model":"m"}`, 404, "not_found", ""},
		{"agent: malformed project", "POST", "/api/v1/projects/No_Such!/agents", `{"name":"x","model":"m"}`, 400, "bad_request", ""},
		{"agent: malformed JSON", "POST", "/api/v1/projects/acme/agents", `{"name":"x",}`, 400, "bad_request", ""},
		{"agent: tools not a list", "POST", "/api/v1/projects/acme/agents", `{"name":"x","model":"m","tools":"grep"}`, 400, "bad_request", ""},
		{"agent: a tool not a string", "POST", "/api/v1/projects/acme/agents", `{"name":"x","model":"m","tools":[1]}`, 400, "bad_request", `field "tools" must be a string, not number`},
		{"agent: tools an object", "POST", "/api/v1/projects/acme/agents", `{"name":"x","model":"m","tools":{}}`, 400, "bad_request", `field "tools" must be an array, not object`},
		{"agent: unknown field", "POST", "/api/v1/projects/acme/agents", `{"name":"x","model":"m","temperature":1}`, 400, "bad_request", ""},
		{"agent: missing name", "POST", "/api/v1/projects/acme/agents", `{"model":"m"}`, 400, "bad_request", ""},
		{"agent: missing model", "POST", "/api/v1/projects/acme/agents", `{"name":"x"}`, 400, "bad_request", ""},
		{"agent: bad id", "POST", "/api/v1/projects/acme/agents", `{"id":"Bad Id","name":"x","model":"m"}`, 400, "bad_request", ""},
		{"agent: oversize", "POST", "/api/v1/projects/acme/agents", big, 413, "too_large", ""},
		{"agent: taken id", "POST", "/api/v1/projects/acme/agents", `{"id":"acme-triager","name":"x","model":"m"}`, 409, "conflict", ""},
		{"agents: unknown project", "GET", "/api/v1/projects/nobody/agents", ``, 404, "not_found", ""},
		{"agents: bad limit", "GET", "/api/v1/projects/acme/agents?limit=many", ``, 400, "bad_request", ""},
		// Missions.
		{"mission: unknown project", "POST", "/api/v1/projects/nobody/missions", `{"title":"x","model":"m"}`, 404, "not_found", ""},
		{"mission: estimate not a number", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","estimate_usd":true}`, 400, "bad_request", "estimate_usd must be an amount of US dollars"},
		{"mission: estimate not money", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","estimate_usd":"lots"}`, 400, "bad_request", "estimate_usd must be an amount of US dollars"},
		{"mission: estimate strconv refuses", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","estimate_usd":"1e5x"}`, 400, "bad_request", "estimate_usd must be an amount of US dollars"},
		{"mission: estimate an object", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","estimate_usd":{"usd":1}}`, 400, "bad_request", "estimate_usd must be an amount of US dollars"},
		{"mission: estimate out of range", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","estimate_usd":1e400}`, 400, "bad_request", "estimate_usd is out of range"},
		{"mission: estimate out of range in a string", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","estimate_usd":"12345678901234"}`, 400, "bad_request", "estimate_usd is out of range"},
		{"mission: labels a number", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","labels":42}`, 400, "bad_request", "labels must be an object or a list"},
		{"mission: negative estimate", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","estimate_usd":-1}`, 400, "bad_request", "estimate_usd must not be negative"},
		{"mission: priority a number", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","priority":5}`, 400, "bad_request", ""},
		{"mission: unknown priority", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","priority":"asap"}`, 400, "bad_request", ""},
		{"mission: missing title", "POST", "/api/v1/projects/acme/missions", `{"model":"m"}`, 400, "bad_request", ""},
		{"mission: missing model", "POST", "/api/v1/projects/acme/missions", `{"title":"x"}`, 400, "bad_request", ""},
		{"mission: bad user id", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","user_id":"a b"}`, 400, "bad_request", ""},
		{"mission: unknown field", "POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m","agent":"y"}`, 400, "bad_request", ""},
		{"mission: oversize", "POST", "/api/v1/projects/acme/missions", big, 413, "too_large", ""},
		{"missions: bad limit", "GET", "/api/v1/projects/acme/missions?limit=5000", ``, 400, "bad_request", ""},
		// Runs.
		{"run: unknown project", "POST", "/api/v1/projects/nobody/runs", `{"agent_id":"acme-triager"}`, 404, "not_found", ""},
		{"run: agent id a number", "POST", "/api/v1/projects/acme/runs", `{"agent_id":7}`, 400, "bad_request", `field "agent_id" must be a string, not number`},
		{"run: estimate not money", "POST", "/api/v1/projects/acme/runs", `{"agent_id":"acme-triager","estimate_usd":"a lot"}`, 400, "bad_request", "estimate_usd must be an amount of US dollars"},
		{"run: estimate strconv refuses", "POST", "/api/v1/projects/acme/runs", `{"agent_id":"acme-triager","estimate_usd":"2e"}`, 400, "bad_request", "estimate_usd must be an amount of US dollars"},
		{"run: missing agent", "POST", "/api/v1/projects/acme/runs", `{}`, 400, "bad_request", ""},
		{"run: unknown agent", "POST", "/api/v1/projects/acme/runs", `{"agent_id":"nobody"}`, 404, "not_found", ""},
		{"run: unknown field", "POST", "/api/v1/projects/acme/runs", `{"agent_id":"acme-triager","cost_usd":1}`, 400, "bad_request", ""},
		{"run: oversize", "POST", "/api/v1/projects/acme/runs", big, 413, "too_large", ""},
		{"complete: unknown run", "POST", "/api/v1/projects/acme/runs/r-nope/complete", `{"status":"completed","duration_ms":1}`, 404, "not_found", ""},
		{"complete: malformed run id", "POST", "/api/v1/projects/acme/runs/R%20X/complete", `{"status":"completed","duration_ms":1}`, 404, "not_found", ""},
		{"complete: unknown status", "POST", complete, `{"status":"done","duration_ms":1}`, 400, "bad_request", ""},
		{"complete: duration a string", "POST", complete, `{"status":"completed","duration_ms":"fast"}`, 400, "bad_request", `field "duration_ms" must be a number in range, not string`},
		{"complete: duration past a float", "POST", complete, `{"status":"completed","duration_ms":1e400}`, 400, "bad_request", `field "duration_ms" must be a number in range, not 1e400`},
		{"complete: negative duration", "POST", complete, `{"status":"completed","duration_ms":-1}`, 400, "bad_request", ""},
		{"complete: missing duration", "POST", complete, `{"status":"completed"}`, 400, "bad_request", ""},
		{"complete: error on success", "POST", complete, `{"status":"completed","duration_ms":1,"error":"x"}`, 400, "bad_request", ""},
		{"complete: unknown field", "POST", complete, `{"status":"completed","duration_ms":1,"tokens":5}`, 400, "bad_request", ""},
		{"complete: oversize", "POST", complete, big, 413, "too_large", ""},
		{"runs: unknown project", "GET", "/api/v1/projects/nobody/runs", ``, 404, "not_found", ""},
		// Tokens.
		{"token: ttl a number", "POST", "/api/v1/projects/acme/tokens", `{"name":"ci","ttl":3600}`, 400, "bad_request", `field "ttl" must be a string, not number`},
		{"token: ttl nonsense", "POST", "/api/v1/projects/acme/tokens", `{"name":"ci","ttl":"forever"}`, 400, "bad_request", ""},
		{"token: ttl too short", "POST", "/api/v1/projects/acme/tokens", `{"name":"ci","ttl":"1s"}`, 400, "bad_request", ""},
		{"token: ttl too long", "POST", "/api/v1/projects/acme/tokens", `{"name":"ci","ttl":"400d"}`, 400, "bad_request", ""},
		{"token: missing name", "POST", "/api/v1/projects/acme/tokens", `{"ttl":"1h"}`, 400, "bad_request", ""},
		{"token: bad name", "POST", "/api/v1/projects/acme/tokens", `{"name":"a b"}`, 400, "bad_request", ""},
		{"token: unknown field", "POST", "/api/v1/projects/acme/tokens", `{"name":"ci","role":"admin"}`, 400, "bad_request", ""},
		{"token: unknown project", "POST", "/api/v1/projects/nobody/tokens", `{"name":"ci"}`, 404, "not_found", ""},
		{"token: oversize", "POST", "/api/v1/projects/acme/tokens", big, 413, "too_large", ""},
		// Enrollment keys: a pool list names each pool, the default one too;
		// the body is checked before the projects are looked up.
		{"enrollment key: an empty pool", "POST", "/api/v1/enrollment-keys", `{"projects":["acme"],"pools":[""]}`, 400, "bad_request", `pools[0] is empty: name a pool, or "default"`},
		{"enrollment key: an empty pool among others", "POST", "/api/v1/enrollment-keys", `{"projects":["acme"],"pools":["gpu",""]}`, 400, "bad_request", `pools[1] is empty`},
		{"enrollment key: an empty pool, unknown project", "POST", "/api/v1/enrollment-keys", `{"projects":["nope"],"pools":[""]}`, 400, "bad_request", `pools[0] is empty`},
		{"enrollment key: pools a string", "POST", "/api/v1/enrollment-keys", `{"projects":["acme"],"pools":"gpu"}`, 400, "bad_request", `field "pools" must be an array, not string`},
		// Audit.
		{"audit: bad from", "GET", "/api/v1/audit?from=yesterday", ``, 400, "bad_request", ""},
		{"audit: to before from", "GET", "/api/v1/audit?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", ``, 400, "bad_request", ""},
		{"audit: bad type", "GET", "/api/v1/audit?type=Auth.*", ``, 400, "bad_request", ""},
		{"audit: bad project", "GET", "/api/v1/audit?project=Acme", ``, 400, "bad_request", ""},
		{"audit: bad limit", "GET", "/api/v1/audit?limit=-3", ``, 400, "bad_request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := a.call(t, tc.method, tc.path, a.admin, tc.body)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			code, msg := res.errorOf(t)
			if code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
			if !strings.Contains(msg, tc.says) {
				t.Errorf("message %q, want it to say %q", msg, tc.says)
			}
			if leak := goInternals(msg); leak != "" {
				t.Errorf("message %q speaks Go (%q), not the API", msg, leak)
			}
		})
	}

	// A body streamed without a length is cut at the limit as well.
	req, err := http.NewRequest("POST", a.url+"/api/v1/projects/acme/agents", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if req.ContentLength != 0 || res.StatusCode != 413 {
		t.Errorf("chunked oversize body: length %d, status %d; want a chunked request and 413", req.ContentLength, res.StatusCode)
	}

	if diff := cmp.Diff(before, a.lastSeqs(t)); diff != "" {
		t.Errorf("bad requests wrote (-before +after):\n%s", diff)
	}
	var l struct {
		Runs []runOut `json:"runs"`
	}
	a.must(t, "GET", "/api/v1/projects/acme/runs", a.admin, "", 200, &l)
	if len(l.Runs) != 1 || l.Runs[0].Status != "running" {
		t.Errorf("runs after bad completions: %+v", l.Runs)
	}
}
