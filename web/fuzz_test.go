package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// The fuzz targets below post arbitrary bytes as the JSON body of every
// admin API route that decodes one, through the real server over
// loopback, backed by a real in-process NATS (the registry, the mission
// queue, the budget ledger). Whatever the body, the answer is never a 5xx;
// a refusal has the JSON error shape with a code that maps to its status;
// and a refused body writes nothing: no stream, bucket or audit event
// changes, except the audit events a route documents for a refusal (a
// failed login, a denied enrollment), and the message says what was wrong
// in the API's words, never Go's (no Go type, no json or strconv error
// text). A body that is accepted answers JSON. Their seeds (valid bodies and near misses) run under plain go
// test; `go test -fuzz FuzzX ./web` explores further.

// fuzzServer is the server the fuzz targets post to.
type fuzzServer struct {
	*env
	nats  *streamtest.Env
	reg   *stream.Registry
	admin string
	// run is a run still running, for the complete route; "" once an
	// input completed it.
	run string
}

// fuzzBudget is the budget the fuzz server holds, for PUT.
const fuzzBudget = "project.acme.acme.daily"

func newFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	n := streamtest.Start(tb, stream.HubConfig{Tick: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	reg, err := stream.OpenRegistry(ctx, n.JS, stream.RegistryConfig{})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	audit := &testAuditor{}
	ledger, err := budget.NewLedger(ctx, n.JS, budget.Config{Auditor: audit, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ledger.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("ledger: %v", err)
		}
	})
	streamtest.Eventually(tb, hangBound, func() bool { return ledger.Ready() == nil }, "ledger not ready")

	s := &fuzzServer{env: &env{audit: audit, clock: fleettest.NewClock(), logs: &syncBuffer{}}, nats: n, reg: reg}
	srv, err := web.New(web.Config{
		AdminPassword: adminPassword,
		SigningKey:    bytes.Repeat([]byte("k"), 32),
		Logger:        slog.New(slog.DiscardHandler),
		Now:           s.clock.Now,
		BcryptCost:    bcrypt.MinCost,
		// Every login attempt reaches the password check.
		LoginMaxFailures: 1 << 30,
		Records:          reg.Records,
		Work:             reg.Work,
		Events:           n.Publisher,
		Missions:         reg.Missions,
		AuditLog:         stream.NewAuditLog(n.JS),
		BudgetStore:      ledger,
	}, n.Hub, audit)
	if err != nil {
		tb.Fatal(err)
	}
	s.srv = srv
	s.url = newTestServer(tb, srv)
	if s.admin, _, err = srv.IssueToken(auth.RoleAdmin, "", 0); err != nil {
		tb.Fatal(err)
	}
	s.setup(tb, "POST", "/api/v1/projects", `{"id":"acme","name":"Acme"}`)
	s.setup(tb, "POST", "/api/v1/projects", `{"id":"globex","name":"Globex"}`)
	s.setup(tb, "POST", "/api/v1/projects/acme/agents", `{"id":"acme-triager","name":"Triager","model":"claude-haiku-4-5"}`)
	s.setup(tb, "POST", "/api/v1/budgets", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"action":"stop"}`)
	return s
}

// setup sends a request that must succeed and returns its body.
func (s *fuzzServer) setup(tb testing.TB, method, path, body string) []byte {
	tb.Helper()
	status, _, b, err := s.send(method, path, s.admin, []byte(body))
	if err != nil || status/100 != 2 {
		tb.Fatalf("%s %s: %d %s %v", method, path, status, b, err)
	}
	return b
}

// send posts body as JSON with the bearer token tok ("" for none).
func (s *fuzzServer) send(method, path, tok string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b, err
}

// runPath returns the complete route of a running run, starting one when
// the last was completed.
func (s *fuzzServer) runPath(t *testing.T) string {
	if s.run == "" {
		var r struct{ ID string }
		if err := json.Unmarshal(s.setup(t, "POST", "/api/v1/projects/acme/runs", `{"agent_id":"acme-triager"}`), &r); err != nil {
			t.Fatal(err)
		}
		s.run = r.ID
	}
	return "/api/v1/projects/acme/runs/" + s.run + "/complete"
}

// written returns the last sequence of every stream and bucket a request
// may write to. The ledger's own bucket is left out: its follower saves
// its cursor there on its own schedule.
func (s *fuzzServer) written(t *testing.T) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	out := map[string]uint64{}
	for _, name := range []string{
		stream.FleetStream, stream.MissionsStream, stream.AuditStream,
		"KV_" + stream.RegistryBucket, "KV_" + stream.WorkBucket,
		"KV_" + budget.BudgetsBucket, "KV_" + budget.ReservationsBucket,
	} {
		st, err := s.nats.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = st.CachedInfo().State.LastSeq
	}
	return out
}

// fuzzRoute is one route whose body is fuzzed.
type fuzzRoute struct {
	method string
	path   func(s *fuzzServer, t *testing.T) string
	// public routes take no token (the body carries the credential).
	public bool
	// refusalAudits are the audit event types a refusal may record.
	refusalAudits []string
	// accepted checks a 2xx answer beyond its being JSON; nil checks
	// nothing more.
	accepted func(s *fuzzServer, t *testing.T, body []byte)
	// answered checks every answer against the request body sent; nil
	// checks nothing more.
	answered func(t *testing.T, req []byte, status int, res []byte)
}

func fixedPath(p string) func(*fuzzServer, *testing.T) string {
	return func(*fuzzServer, *testing.T) string { return p }
}

// fuzzBody fuzzes r's body, from seeds.
func fuzzBody(f *testing.F, r fuzzRoute, seeds ...string) {
	s := newFuzzServer(f)
	for _, seed := range seeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		path := r.path(s, t)
		before, audits := s.written(t), len(s.audit.all())
		tok := s.admin
		if r.public {
			tok = ""
		}
		status, header, res, err := s.send(r.method, path, tok, body)
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
		switch {
		case status >= 500 || status < 200 || status >= 300 && status < 400:
			t.Fatalf("%s %s with %q: status %d: %s", r.method, path, body, status, res)
		case status >= 400:
			code, msg := response{status: status, body: res}.errorOf(t)
			if web.StatusOf(code) != status || ct != "application/json" {
				t.Fatalf("%d (%s) with code %q, which is %d", status, ct, code, web.StatusOf(code))
			}
			if leak := goInternals(msg); leak != "" {
				t.Fatalf("%q refused with %q, which speaks Go (%q), not the API", body, msg, leak)
			}
			if diff := cmp.Diff(before, s.written(t)); diff != "" {
				t.Fatalf("a body refused with %d %s wrote (-before +after):\n%s\nbody %q", status, res, diff, body)
			}
			for _, ev := range s.audit.all()[audits:] {
				if !slices.Contains(r.refusalAudits, ev.Type) {
					t.Fatalf("a body refused with %d %s recorded %s on AUDIT; body %q", status, res, ev.Type, body)
				}
			}
		default:
			if status != http.StatusNoContent && (ct != "application/json" || !json.Valid(res)) {
				t.Fatalf("%d answered %s %q", status, ct, res)
			}
			if r.accepted != nil {
				r.accepted(s, t, res)
			}
		}
		if r.answered != nil {
			r.answered(t, body, status, res)
		}
	})
}

// emptyPoolRefused checks the answer to a body whose pools list an empty
// pool id: it is no pool id (not the default pool, which is named
// "default"), so the body is refused with 400, or 413 when it is too
// large to read. The body is read as the server reads it, field names
// matched without regard to case.
func emptyPoolRefused(t *testing.T, req []byte, status int, res []byte) {
	var b struct{ Pools []string }
	if json.Unmarshal(req, &b) != nil || !slices.Contains(b.Pools, "") {
		return
	}
	if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
		t.Fatalf("pools %q answered %d %s; an empty pool id must be refused with 400", b.Pools, status, res)
	}
}

func FuzzProjectBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/projects")},
		`{"id":"initech","name":"Initech","description":"paper"}`,
		`{"id":"acme","name":"again"}`,
		`{"id":"Not A Project"}`,
		`{"id":"x","name":"a\u0007b"}`,
		`{"id":"x","colour":"red"}`,
		`{"id":42}`,
		`{"id":"x"}{"id":"y"}`,
		`["acme"]`,
		`null`,
		``,
	)
}

func FuzzAgentBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/projects/acme/agents")},
		`{"id":"acme-bot","name":"Bot","role":"triage","model":"gpt-5-mini","version":"1.0","tools":["search"],"skills":["s"],"description":"d"}`,
		`{"name":"Refund Bot!","model":"gpt-5-mini"}`,
		`{"id":"acme-triager","name":"x","model":"m"}`,
		`{"id":"Bad Id","name":"x","model":"m"}`,
		`{"name":"x","model":"m","tools":"grep"}`,
		`{"name":"x","model":"m","tools":[1]}`,
		`{"name":"x","model":"m","temperature":1}`,
		`{"model":"m"}`,
		`{"name":"x",}`,
	)
}

func FuzzMissionBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/projects/acme/missions")},
		`{"title":"Refund order 1234","priority":"high","team_id":"support","user_id":"u-42","model":"claude-sonnet-4-5","estimate_usd":0.25}`,
		`{"title":"render","model":"gpt-5","pool":"gpu","labels":["gpu=a100","ssd"],"agent_id":"acme-triager"}`,
		`{"title":"render","model":"gpt-5","labels":{"gpu":"a100"},"estimate_usd":"0.012"}`,
		`{"title":"x","model":"m","agent_id":"nobody"}`,
		`{"title":"x","model":"m","estimate_usd":-1}`,
		`{"title":"x","model":"m","estimate_usd":true}`,
		`{"title":"x","model":"m","estimate_usd":"lots"}`,
		`{"title":"x","model":"m","estimate_usd":"1e5x"}`,
		`{"title":"x","model":"m","estimate_usd":1e400}`,
		`{"title":"x","model":"m","labels":42}`,
		`{"title":"x","model":"m","priority":"asap"}`,
		`{"title":"x","model":"m","labels":["a=1","a=2"]}`,
		`{"title":"x","model":"m","pool":"GPU"}`,
		`{"title":"x"}`,
	)
}

func FuzzRunBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/projects/acme/runs")},
		`{"agent_id":"acme-triager"}`,
		`{"agent_id":"acme-triager","team_id":"support","user_id":"u-1","model":"gpt-5","estimate_usd":1}`,
		`{"agent_id":"acme-triager","mission_id":"m-nope"}`,
		`{"agent_id":"nobody"}`,
		`{"agent_id":7}`,
		`{"agent_id":"acme-triager","cost_usd":1}`,
		`{"agent_id":"acme-triager","estimate_usd":"1e5x"}`,
		`{}`,
	)
}

func FuzzRunCompletionBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: (*fuzzServer).runPath, accepted: func(s *fuzzServer, t *testing.T, _ []byte) { s.run = "" }},
		`{"status":"completed","duration_ms":1234.5}`,
		`{"status":"failed","duration_ms":5,"error":"tool timed out"}`,
		`{"status":"done","duration_ms":1}`,
		`{"status":"completed","duration_ms":"fast"}`,
		`{"status":"completed","duration_ms":-1}`,
		`{"status":"completed"}`,
		`{"status":"completed","duration_ms":1,"error":"x"}`,
		`{"status":"failed","duration_ms":1e308}`,
	)
}

func FuzzTokenBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/projects/acme/tokens")},
		`{"name":"ci-runner","ttl":"24h"}`,
		`{"name":"n","ttl":"30d"}`,
		`{"name":"n"}`,
		`{"name":"ci","ttl":3600}`,
		`{"name":"ci","ttl":"forever"}`,
		`{"name":"ci","ttl":"1s"}`,
		`{"name":"ci","ttl":"400d"}`,
		`{"name":"ci","ttl":"-5d"}`,
		`{"name":"a b"}`,
		`{"name":"ci","role":"admin"}`,
	)
}

func FuzzBudgetBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/budgets")},
		`{"scope":"team","project_id":"acme","scope_id":"support","period":"daily","limit_usd":5,"action":"throttle","throttle_model":"claude-haiku-4-5"}`,
		`{"scope":"global","period":"monthly","limit_usd":"1000","action":"stop"}`,
		`{"scope":"user","project_id":"acme","scope_id":"u-1","period":"daily","limit_usd":"0.30","warn_pct":50,"action":"warn"}`,
		`{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"action":"stop"}`,
		`{"scope":"project","project_id":"acme","period":"daily","limit_usd":-5,"action":"stop"}`,
		`{"scope":"project","project_id":"acme","period":"daily","limit_usd":"lots","action":"stop"}`,
		`{"scope":"project","project_id":"acme","period":"weekly","limit_usd":5,"action":"stop"}`,
		`{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"warn_pct":150,"action":"warn"}`,
		`{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"action":"throttle","throttle_model":"mystery-1"}`,
		`{"scope":"project","project_id":"acme","period":"daily","limit":5,"action":"stop"}`,
		`{"scope":"project","project_id":"acme","period":"daily","limit_usd":1e400,"action":"stop"}`,
	)
}

func FuzzBudgetUpdateBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "PUT", path: fixedPath("/api/v1/budgets/" + fuzzBudget)},
		`{"limit_usd":"0.30","action":"stop"}`,
		`{"limit_usd":100,"warn_pct":90,"action":"throttle","throttle_model":"claude-haiku-4-5"}`,
		`{"scope":"project","project_id":"acme","period":"daily","limit_usd":7,"action":"warn"}`,
		`{"period":"monthly","limit_usd":1,"action":"stop"}`,
		`{"project_id":"globex","limit_usd":1,"action":"stop"}`,
		`{"limit_usd":0,"action":"stop"}`,
		`{"limit_usd":null,"action":"stop"}`,
		`{"limit_usd":1,"warn_pct":0,"action":"stop"}`,
	)
}

func FuzzPreflightBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/budgets/preflight")},
		`{"project_id":"acme","team_id":"support","user_id":"u-1","model":"gpt-5","estimate_usd":"2"}`,
		`{"project_id":"acme","estimate_usd":1}`,
		`{"project_id":"globex"}`,
		`{"team_id":"support"}`,
		`{"project_id":"Acme Inc","estimate_usd":1}`,
		`{"project_id":"acme","estimate_usd":-1}`,
		`{"project_id":"acme","estimate_usd":"a lot"}`,
		`{"project_id":"acme","estimate_usd":"2e"}`,
	)
}

func FuzzEnrollmentKeyBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/enrollment-keys"), answered: emptyPoolRefused},
		`{"projects":["globex","acme"],"pools":["gpu","default"],"ttl":"1h"}`,
		`{"projects":["acme"],"pools":[""]}`,
		`{"projects":["nope"],"pools":["gpu",""]}`,
		`{"projects":["acme"]}`,
		`{"projects":["acme","acme"],"ttl":"30d"}`,
		`{"projects":["nope"]}`,
		`{"projects":[]}`,
		`{"projects":["acme"],"pools":["GPU"]}`,
		`{"projects":["acme"],"ttl":"forever"}`,
		`{"projects":["acme"],"scope":"everything"}`,
		`{"projects":"acme"}`,
	)
}

func FuzzEnrollBody(f *testing.F) {
	r := fuzzRoute{method: "POST", path: fixedPath("/api/v1/workers/enroll"), public: true,
		refusalAudits: []string{web.TypeWorkerEnrollDenied}, answered: emptyPoolRefused,
		accepted: func(s *fuzzServer, t *testing.T, body []byte) {
			// A grant never exceeds the key's scope.
			var g grantOut
			if err := json.Unmarshal(body, &g); err != nil {
				t.Fatalf("200 with %q: %v", body, err)
			}
			if len(g.Projects) == 0 || len(g.Pools) == 0 {
				t.Fatalf("an empty grant %+v", g)
			}
			for _, p := range g.Projects {
				if p != "acme" && p != "globex" {
					t.Fatalf("granted project %q outside the key", p)
				}
			}
			for _, p := range g.Pools {
				if p != "default" && p != "gpu" {
					t.Fatalf("granted pool %q outside the key", p)
				}
			}
		}}
	// The seeds carry a key signed with the servers' signing key.
	key := fuzzEnrollKey(f)
	fuzzBody(f, r,
		`{"key":"`+key+`","worker_id":"w-1"}`,
		`{"key":"`+key+`","worker_id":"w-1","projects":["globex","x"],"pools":["gpu"],"models":["gpt-5"],"labels":{"a":"b"},"host":"h1","version":"1.2","capacity":3}`,
		`{"key":"`+key+`","worker_id":"w-1","labels":["a=b","c"]}`,
		`{"key":"`+key+`","worker_id":"w-1","projects":["initech"]}`,
		`{"key":"`+key+`","worker_id":"w-1","pools":["cpu"]}`,
		`{"key":"`+key+`","worker_id":"W 1"}`,
		`{"key":"`+key+`","worker_id":"w-1","capacity":-1}`,
		`{"key":"`+key+`","worker_id":"w-1","labels":null,"pools":[""]}`,
		`{"key":"`+key+`","worker_id":"w-1","pools":["gpu",""]}`,
		`{"key":"`+key[:len(key)-2]+`xx","worker_id":"w-1"}`,
		`{"key":"","worker_id":""}`,
		`[]`,
	)
}

// fuzzEnrollKey is an enrollment key for acme and globex, the default and
// gpu pools, signed with the fuzz servers' signing key and valid for a day
// from the test clock's start.
func fuzzEnrollKey(tb testing.TB) string {
	tb.Helper()
	srv, err := web.New(web.Config{SigningKey: bytes.Repeat([]byte("k"), 32), Now: fleettest.NewClock().Now,
		Logger: slog.New(slog.DiscardHandler), BcryptCost: bcrypt.MinCost}, newTestHub(), &testAuditor{})
	if err != nil {
		tb.Fatal(err)
	}
	key, _, err := srv.IssueEnrollmentKey([]string{"acme", "globex"}, []string{"default", "gpu"}, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func FuzzLoginBody(f *testing.F) {
	fuzzBody(f, fuzzRoute{method: "POST", path: fixedPath("/api/v1/auth/login"), public: true,
		refusalAudits: []string{fleet.TypeLoginFailed}},
		`{"username":"admin","password":"`+adminPassword+`"}`,
		`{"username":"admin","password":"admin"}`,
		`{"username":"root","password":"`+adminPassword+`"}`,
		`{"username":"ad\nmin","password":"x"}`,
		`{"username":"admin","password":"`+strings.Repeat("x", 100)+`"}`,
		`{"username":"admin"}`,
		`{"username":"admin","pasword":"x"}`,
		`{"username":"admin","password":42}`,
		`42`,
		`{"username":"admin","password":"x"} {}`,
		`{"username":"admin",`,
		`["admin"]`,
	)
}
