package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/budget/budgettest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// budgetServer is one server with its own NATS connection, registry and
// budget ledger, as one `observatory serve` process has.
type budgetServer struct {
	*env
	ledger *budget.Ledger
	admin  string
}

// newBudgetServers starts NATS and n servers sharing it, each with the
// admin API, the ledger as budget gate and store, and cost rollups.
func newBudgetServers(t *testing.T, n int) (*streamtest.Env, []*budgetServer) {
	t.Helper()
	nats := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond})
	var out []*budgetServer
	for i := range n {
		js := nats.JS
		if i > 0 {
			nc, err := stream.Connect("", nats.Server, fmt.Sprintf("server-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			if js, err = jetstream.New(nc); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		reg, err := stream.OpenRegistry(ctx, js, stream.RegistryConfig{})
		if err != nil {
			t.Fatal(err)
		}
		pub := stream.NewPublisher(js)
		discard := slog.New(slog.DiscardHandler)
		l, err := budget.NewLedger(ctx, js, budget.Config{Auditor: pub, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ledger: %v", err)
			}
		})
		streamtest.Eventually(t, 10*time.Second, func() bool { return l.Ready() == nil }, "ledger not ready")
		// These servers keep the wall clock, not the test clock: the ledger
		// and the cost rollups go by the times NATS stores (the wall's),
		// and a cost report's default window ends at the server's now, so
		// the two clocks must agree as they do in production.
		e := &env{logs: &syncBuffer{}} // no test clock: see Now
		srv, err := web.New(web.Config{
			AdminPassword: adminPassword,
			SigningKey:    bytes.Repeat([]byte("k"), 32),
			Logger:        slog.New(slog.NewJSONHandler(e.logs, nil)),
			Now:           time.Now,
			BcryptCost:    bcrypt.MinCost,
			Records:       reg.Records,
			Work:          reg.Work,
			Events:        pub,
			Missions:      reg.Missions,
			Budgets:       l,
			BudgetStore:   l,
			Costs:         stream.NewCosts(js, nil),
		}, nats.Hub, pub)
		if err != nil {
			t.Fatal(err)
		}
		e.srv, e.url = srv, newTestServer(t, srv)
		out = append(out, &budgetServer{env: e, ledger: l, admin: e.adminToken(t)})
	}
	return nats, out
}

func (b *budgetServer) call(t *testing.T, method, path, tok, body string) response {
	t.Helper()
	var h http.Header
	if tok != "" {
		h = bearer(tok)
	}
	return b.do(t, method, path, body, h)
}

func (b *budgetServer) must(t *testing.T, method, path, tok, body string, status int, out any) {
	t.Helper()
	res := b.call(t, method, path, tok, body)
	if res.status != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.status, status, res.body)
	}
	if out != nil {
		if err := json.Unmarshal(res.body, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, res.body)
		}
	}
}

// budgetJSON is a budget as the API answers it.
type budgetJSON struct {
	ID            string       `json:"id"`
	Scope         string       `json:"scope"`
	ProjectID     string       `json:"project_id"`
	ScopeID       string       `json:"scope_id"`
	Period        string       `json:"period"`
	LimitUSD      fleet.Micros `json:"limit_usd"`
	WarnPct       float64      `json:"warn_pct"`
	Action        string       `json:"action"`
	ThrottleModel string       `json:"throttle_model"`
	Window        string       `json:"window"`
	ResetsAt      time.Time    `json:"resets_at"`
	SpentUSD      fleet.Micros `json:"spent_usd"`
	ReservedUSD   fleet.Micros `json:"reserved_usd"`
	Pct           float64      `json:"pct"`
	Status        string       `json:"status"`
}

func TestBudgetsAPI(t *testing.T) {
	nats, srvs := newBudgetServers(t, 1)
	s := srvs[0]
	acmeTok := s.token(t, auth.RoleProject, "acme")
	globexTok := s.token(t, auth.RoleProject, "globex")

	var team budgetJSON
	s.must(t, "POST", "/api/v1/budgets", s.admin,
		`{"scope":"team","project_id":"acme","scope_id":"support","period":"daily","limit_usd":5,"action":"throttle","throttle_model":"claude-haiku-4-5"}`,
		http.StatusCreated, &team)
	now := time.Now().UTC() // the ledger's window is the day of NATS's stored times: the wall clock's
	want := budgetJSON{ID: "team.acme.support.daily", Scope: "team", ProjectID: "acme", ScopeID: "support", Period: "daily",
		LimitUSD: 5_000_000, WarnPct: 80, Action: "throttle", ThrottleModel: "claude-haiku-4-5", Window: now.Format(time.DateOnly),
		ResetsAt: time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC), Status: "ok"}
	if diff := cmp.Diff(want, team); diff != "" {
		t.Errorf("created budget (-want +got):\n%s", diff)
	}
	s.must(t, "POST", "/api/v1/budgets", s.admin, `{"scope":"global","period":"monthly","limit_usd":"1000","action":"stop"}`, http.StatusCreated, nil)
	s.must(t, "POST", "/api/v1/budgets", s.admin, `{"scope":"project","project_id":"globex","period":"monthly","limit_usd":20,"warn_pct":50,"action":"warn"}`, http.StatusCreated, nil)

	t.Run("one budget per scope and period", func(t *testing.T) {
		res := s.call(t, "POST", "/api/v1/budgets", s.admin, `{"scope":"team","project_id":"acme","scope_id":"support","period":"daily","limit_usd":1,"action":"stop"}`)
		if res.status != http.StatusConflict || res.errorCode(t) != "conflict" {
			t.Errorf("duplicate: %d %s, want 409 conflict", res.status, res.body)
		}
	})
	t.Run("who sees what", func(t *testing.T) {
		ids := func(tok, query string) []string {
			var out struct{ Budgets []budgetJSON }
			s.must(t, "GET", "/api/v1/budgets"+query, tok, "", http.StatusOK, &out)
			var ids []string
			for _, b := range out.Budgets {
				ids = append(ids, b.ID)
			}
			return ids
		}
		if got := ids(s.admin, ""); !cmp.Equal(got, []string{"global._._.monthly", "project.globex.globex.monthly", "team.acme.support.daily"}) {
			t.Errorf("admin sees %v", got)
		}
		if got := ids(s.admin, "?project=acme"); !cmp.Equal(got, []string{"team.acme.support.daily"}) {
			t.Errorf("admin, project acme, sees %v", got)
		}
		if got := ids(acmeTok, ""); !cmp.Equal(got, []string{"team.acme.support.daily"}) {
			t.Errorf("acme's token sees %v", got)
		}
		if res := s.call(t, "GET", "/api/v1/budgets?project=acme", globexTok, ""); res.status != http.StatusForbidden {
			t.Errorf("globex reading acme's budgets: %d, want 403", res.status)
		}
		if res := s.call(t, "GET", "/api/v1/budgets/team.acme.support.daily", globexTok, ""); res.status != http.StatusNotFound {
			t.Errorf("globex reading acme's budget: %d, want 404", res.status)
		}
		if res := s.call(t, "GET", "/api/v1/budgets/global._._.monthly", acmeTok, ""); res.status != http.StatusNotFound {
			t.Errorf("a project token reading the global budget: %d, want 404", res.status)
		}
		for _, r := range []struct{ method, path, body string }{
			{"POST", "/api/v1/budgets", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":1,"action":"stop"}`},
			{"PUT", "/api/v1/budgets/team.acme.support.daily", `{"limit_usd":100,"action":"warn"}`},
			{"DELETE", "/api/v1/budgets/team.acme.support.daily", ""},
		} {
			if res := s.call(t, r.method, r.path, acmeTok, r.body); res.status != http.StatusForbidden {
				t.Errorf("%s %s with a project token: %d, want 403", r.method, r.path, res.status)
			}
		}
	})
	t.Run("a new cap keeps the window's spend; a budget made again does not", func(t *testing.T) {
		// A worker stamps its calls with the wall clock, as NATS stores them.
		ev := fleettest.E{Type: fleet.TypeLLMCall, Time: time.Now(), ProjectID: "acme", TeamID: "support", AgentID: "acme-a",
			Data: fleet.LLMCall{Model: "gpt-5", OutputTokens: 25_000}}.Event() // $0.25
		seq, err := nats.Publisher.Publish(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		waitLedger(t, s.ledger, seq)
		var b budgetJSON
		s.must(t, "PUT", "/api/v1/budgets/team.acme.support.daily", s.admin, `{"limit_usd":"0.30","action":"stop"}`, http.StatusOK, &b)
		if b.LimitUSD != 300_000 || b.SpentUSD != 250_000 || b.Action != "stop" || b.ThrottleModel != "" || b.Status != "warning" || b.Pct != 83.3 {
			t.Errorf("after PUT: %+v; want $0.25 of $0.30 spent, stop, warning at 83.3 %%", b)
		}
		res := s.call(t, "PUT", "/api/v1/budgets/team.acme.support.daily", s.admin, `{"period":"monthly","limit_usd":1,"action":"stop"}`)
		if res.status != http.StatusBadRequest || !strings.Contains(string(res.body), "identity") {
			t.Errorf("PUT changing the period: %d %s, want 400 about identity", res.status, res.body)
		}
		s.must(t, "DELETE", "/api/v1/budgets/team.acme.support.daily", s.admin, "", http.StatusNoContent, nil)
		if res := s.call(t, "GET", "/api/v1/budgets/team.acme.support.daily", s.admin, ""); res.status != http.StatusNotFound {
			t.Errorf("GET after DELETE: %d, want 404", res.status)
		}
		s.must(t, "POST", "/api/v1/budgets", s.admin, `{"scope":"team","project_id":"acme","scope_id":"support","period":"daily","limit_usd":1,"action":"stop"}`, http.StatusCreated, &b)
		if b.SpentUSD != 0 {
			t.Errorf("the budget made again starts at $%s, want 0", b.SpentUSD)
		}
	})
	t.Run("preflight holds nothing", func(t *testing.T) {
		var d fleet.BudgetDecision
		s.must(t, "POST", "/api/v1/budgets/preflight", acmeTok, `{"team_id":"support","model":"gpt-5","estimate_usd":"2"}`, http.StatusOK, &d)
		if d.Allowed || d.Action != "stop" || d.Reservation != "" || len(d.Breaches) != 1 || d.Breaches[0].ScopeID != "support" {
			t.Errorf("preflight of $2 against a $1 stop cap: %+v", d)
		}
		var b budgetJSON
		s.must(t, "GET", "/api/v1/budgets/team.acme.support.daily", acmeTok, "", http.StatusOK, &b)
		if b.ReservedUSD != 0 {
			t.Errorf("preflight reserved $%s", b.ReservedUSD)
		}
		if res := s.call(t, "POST", "/api/v1/budgets/preflight", globexTok, `{"project_id":"acme","estimate_usd":1}`); res.status != http.StatusForbidden {
			t.Errorf("globex preflighting acme: %d, want 403", res.status)
		}
	})
}

// TestBadBudgetInputIs400 checks that every malformed budget gets 400 with
// a message a person can act on, naming the field.
func TestBadBudgetInputIs400(t *testing.T) {
	_, srvs := newBudgetServers(t, 1)
	s := srvs[0]
	tests := []struct {
		name, body, field, says string
	}{
		{"negative cap", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":-5,"action":"stop"}`, "limit_usd", "more than 0"},
		{"zero cap", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":0,"action":"stop"}`, "limit_usd", "more than 0"},
		{"no cap", `{"scope":"project","project_id":"acme","period":"daily","action":"stop"}`, "limit_usd", "required"},
		{"a cap that is not money", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":"lots","action":"stop"}`, "limit_usd", "US dollars"},
		{"a cap strconv refuses", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":"1e5x","action":"stop"}`, "limit_usd", "limit_usd must be an amount of US dollars"},
		{"a cap that is an object", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":{"usd":5},"action":"stop"}`, "limit_usd", "limit_usd must be an amount of US dollars"},
		{"a cap past any budget", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":1e400,"action":"stop"}`, "limit_usd", "limit_usd is out of range"},
		{"a warn threshold in words", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"warn_pct":"high","action":"warn"}`, "warn_pct", `field "warn_pct" must be a number in range, not string`},
		{"unknown scope", `{"scope":"tenant","project_id":"acme","period":"daily","limit_usd":5,"action":"stop"}`, "scope", "user, team, project, global"},
		{"bad period", `{"scope":"project","project_id":"acme","period":"weekly","limit_usd":5,"action":"stop"}`, "period", "daily or monthly"},
		{"unknown action", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"action":"panic"}`, "action", "warn, throttle or stop"},
		{"throttle without a model", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"action":"throttle"}`, "throttle_model", "cheaper model"},
		{"throttle to an unpriced model", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"action":"throttle","throttle_model":"mystery-1"}`, "throttle_model", "pricing table"},
		{"warn threshold zero", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"warn_pct":0,"action":"warn"}`, "warn_pct", "more than 0"},
		{"warn threshold past 100", `{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"warn_pct":150,"action":"warn"}`, "warn_pct", "at most 100"},
		{"team without an id", `{"scope":"team","project_id":"acme","period":"daily","limit_usd":5,"action":"stop"}`, "scope_id", "team id"},
		{"user without a project", `{"scope":"user","scope_id":"u-1","period":"daily","limit_usd":5,"action":"stop"}`, "project_id", "project_id"},
		{"global with a project", `{"scope":"global","project_id":"acme","period":"daily","limit_usd":5,"action":"stop"}`, "scope_id", "global budget"},
		{"a bad project id", `{"scope":"project","project_id":"Acme Inc","period":"daily","limit_usd":5,"action":"stop"}`, "project_id", "not a project id"},
		{"a misspelt field", `{"scope":"project","project_id":"acme","period":"daily","limit":5,"action":"stop"}`, "", `unknown field "limit"`},
		{"not JSON", `{"scope":`, "", "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.call(t, "POST", "/api/v1/budgets", s.admin, tt.body)
			if res.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", res.status, res.body)
			}
			var body struct {
				Error struct {
					Code, Message string
					Details       struct{ Field string }
				}
			}
			if err := json.Unmarshal(res.body, &body); err != nil {
				t.Fatal(err)
			}
			if body.Error.Code != "bad_request" || !strings.Contains(body.Error.Message, tt.says) || body.Error.Details.Field != tt.field {
				t.Errorf("error %+v; want bad_request saying %q about field %q", body.Error, tt.says, tt.field)
			}
			if leak := goInternals(body.Error.Message); leak != "" {
				t.Errorf("message %q speaks Go (%q), not the API", body.Error.Message, leak)
			}
		})
	}
	// The preflight's estimate, in the same words.
	for _, tt := range []struct{ name, estimate, says string }{
		{"not money", `"a lot"`, "estimate_usd must be an amount of US dollars"},
		{"strconv refuses", `"1e5x"`, "estimate_usd must be an amount of US dollars"},
		{"a boolean", `true`, "estimate_usd must be an amount of US dollars"},
		{"out of range", `1e400`, "estimate_usd is out of range"},
	} {
		t.Run("preflight estimate "+tt.name, func(t *testing.T) {
			res := s.call(t, "POST", "/api/v1/budgets/preflight", s.admin, `{"project_id":"acme","estimate_usd":`+tt.estimate+`}`)
			if res.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", res.status, res.body)
			}
			if code, msg := res.errorOf(t); code != "bad_request" || !strings.Contains(msg, tt.says) || goInternals(msg) != "" {
				t.Errorf("error %s %q; want bad_request saying %q in the API's words", code, msg, tt.says)
			}
		})
	}
	var list struct{ Budgets []budgetJSON }
	s.must(t, "GET", "/api/v1/budgets", s.admin, "", http.StatusOK, &list)
	if len(list.Budgets) != 0 {
		t.Errorf("bad input left budgets behind: %+v", list.Budgets)
	}
}

func waitLedger(t *testing.T, l *budget.Ledger, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.WaitSeq(ctx, seq); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentMissionsNeverOverspend sends 500 mission requests at once
// against a $1.00 stop cap, to one server or spread over two sharing one
// NATS, with real work costing less than its $0.012 estimate, exactly it,
// or more. Every request is either accepted or refused with 402 and the
// JSON body; the work of the accepted ones runs (llm.call,
// mission.completed). The ledger bucket keeps every revision, and each one
// is checked: no hold was ever placed past the cap, and spent plus
// reserved passed it only by what work cost beyond its estimate. At the
// end the ledger holds the sum of the real costs, which is what the fold
// shows.
func TestConcurrentMissionsNeverOverspend(t *testing.T) {
	const (
		n         = 500
		budgetID  = "project.acme.acme.daily"
		limit     = fleet.Micros(1_000_000)
		estimate  = fleet.Micros(12_000) // "0.012" below
		perToken  = 10                   // gpt-5's price of an output token, µ$
		estTokens = int64(estimate / perToken)
	)
	for _, tc := range []struct {
		name string
		// tokens is the real output of a mission's work; vs says how its
		// cost compares with the estimate (-1 at most, 0 equal, 1 more);
		// overshoot is the most the cost passes the estimate by.
		tokens    func() int64
		vs        int
		overshoot fleet.Micros
	}{
		{"below the estimate", func() int64 { return estTokens*5/12 + rand.Int64N(estTokens*7/12+1) }, -1, 0}, // $0.005 to $0.012
		{"at the estimate", func() int64 { return estTokens }, 0, 0},
		{"above the estimate", func() int64 { return estTokens * 6 / 5 }, 1, estimate / 5}, // $0.0144
	} {
		for _, servers := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s, %d servers", tc.name, servers), func(t *testing.T) {
				nats, srvs := newBudgetServers(t, servers)
				// After the last NewLedger (newBudgetServers made them
				// all), which configures the bucket as production runs it,
				// and before the budget's first write.
				if err := budgettest.KeepHistory(context.Background(), nats.JS); err != nil {
					t.Fatal(err)
				}
				srvs[0].must(t, "POST", "/api/v1/projects", srvs[0].admin, `{"id":"acme","name":"Acme"}`, http.StatusCreated, nil)
				srvs[0].must(t, "POST", "/api/v1/budgets", srvs[0].admin, `{"scope":"project","project_id":"acme","period":"daily","limit_usd":"1.00","action":"stop"}`, http.StatusCreated, nil)
				for _, s := range srvs {
					streamtest.Eventually(t, 5*time.Second, func() bool { return s.ledger.Stats().Budgets == 1 }, "budget not seen")
				}

				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				t.Cleanup(client.CloseIdleConnections)
				var (
					wg              sync.WaitGroup
					created, denied atomic.Int64
					realSum         atomic.Int64
					lastSeq         atomic.Uint64
					problem         atomic.Value
					mu              sync.Mutex // guards reservations
					reservations    []string   // of the missions created
				)
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s := srvs[i%len(srvs)]
						body := `{"title":"answer ticket","model":"gpt-5","team_id":"support","user_id":"u-` + fmt.Sprint(i%9) + `","estimate_usd":"0.012"}`
						req, _ := http.NewRequest("POST", s.url+"/api/v1/projects/acme/missions", strings.NewReader(body))
						req.Header.Set("Authorization", "Bearer "+s.admin)
						resp, err := client.Do(req)
						if err != nil {
							problem.Store(err.Error())
							return
						}
						raw, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						switch resp.StatusCode {
						case http.StatusPaymentRequired:
							denied.Add(1)
							var eb struct {
								Error struct {
									Code    string
									Message string
									Details struct {
										Action   string
										Breaches []fleet.BudgetBreach
									}
								}
							}
							if err := json.Unmarshal(raw, &eb); err != nil || eb.Error.Code != "budget_exceeded" || eb.Error.Details.Action != "stop" ||
								len(eb.Error.Details.Breaches) == 0 || eb.Error.Details.Breaches[0].LimitUSD != limit || eb.Error.Details.Breaches[0].ResetsAt.IsZero() {
								problem.Store("402 body: " + string(raw))
							}
						case http.StatusCreated:
							created.Add(1)
							var m struct{ ID, Reservation string }
							if err := json.Unmarshal(raw, &m); err != nil || m.Reservation == "" {
								problem.Store(fmt.Sprintf("201 body without a reservation: %s (%v)", raw, err))
								return
							}
							mu.Lock()
							reservations = append(reservations, m.Reservation)
							mu.Unlock()
							out := tc.tokens()
							realSum.Add(out * perToken)
							// The work of the mission, stamped as a worker does: the wall clock.
							ev := fleettest.E{Type: fleet.TypeLLMCall, Time: time.Now(), ProjectID: "acme", AgentID: "acme-a", MissionID: m.ID,
								Data: fleet.LLMCall{Model: "gpt-5", OutputTokens: out}}.Event()
							if _, err := nats.Publisher.Publish(context.Background(), ev); err != nil {
								problem.Store(err.Error())
							}
							seq, err := nats.Publisher.Publish(context.Background(), fleettest.MissionCompleted("acme", m.ID, time.Now()))
							if err != nil {
								problem.Store(err.Error())
							}
							for old := lastSeq.Load(); seq > old && !lastSeq.CompareAndSwap(old, seq); old = lastSeq.Load() {
							}
						default:
							problem.Store(fmt.Sprintf("status %d: %s", resp.StatusCode, raw))
						}
					}()
				}
				wg.Wait()
				if p, _ := problem.Load().(string); p != "" {
					t.Fatal(p)
				}
				for _, s := range srvs {
					waitLedger(t, s.ledger, lastSeq.Load())
				}

				// Every revision the ledger wrote. Now is nil: these
				// ledgers run on the wall clock (see newBudgetServers), the
				// clock JetStream stamps a stored revision with, so a
				// revision's stored time is the ledger's clock at its write
				// give or take the write's own latency, which is nothing
				// next to the holds' 30 minutes.
				history, err := budgettest.History(context.Background(), nats.JS)
				if err != nil {
					t.Fatal(err)
				}
				res, bad := budgettest.Check{Caps: map[string]fleet.Micros{budgetID: limit}, Overshoot: tc.overshoot}.Verify(history)
				var b budgetJSON
				srvs[len(srvs)-1].must(t, "GET", "/api/v1/budgets/"+budgetID, srvs[0].admin, "", http.StatusOK, &b)
				t.Logf("%d created, %d refused; %d ledger revisions checked; worst committed $%s; spent $%s",
					created.Load(), denied.Load(), res.Revisions, res.Worst[budgetID], b.SpentUSD)
				for i, line := range bad {
					if i == 10 {
						t.Errorf("... and %d more", len(bad)-10)
						break
					}
					t.Error(line)
				}
				if res.Expired != 0 {
					t.Errorf("%d expired holds in the history: none may expire in a test this short", res.Expired)
				}
				// The holds the history shows placed are exactly the
				// reservations of the missions the API created: the check
				// saw every one, and no refused request left a hold.
				if diff := cmp.Diff(sorted(reservations), sorted(res.Placed[budgetID])); diff != "" {
					t.Errorf("holds placed are not the reservations of the created missions (-created +placed):\n%s", diff)
				}
				// The cap bound: at some write it was too full for one
				// more estimate, so the refusals were the cap's doing and
				// the check above covered the case that matters.
				if res.Worst[budgetID]+estimate <= limit {
					t.Errorf("worst committed $%s: the $%s cap never bound", res.Worst[budgetID], limit)
				}
				// Each mission's one call was charged once, whichever
				// server's follower got there first.
				calls := map[string]int64{}
				for _, e := range history {
					if e.Budget == budgetID {
						calls[e.Key] = e.Calls // the last revision of each entry wins
					}
				}
				var charged int64
				for _, c := range calls {
					charged += c
				}
				if charged != created.Load() {
					t.Errorf("%d calls charged, want one per created mission: %d", charged, created.Load())
				}

				if denied.Load() == 0 || created.Load()+denied.Load() != n {
					t.Errorf("%d created and %d refused of %d; want some refused", created.Load(), denied.Load(), n)
				}
				// Work that costs less than its estimate frees room for
				// more missions than the cap holds estimates; at the
				// estimate exactly that many fit; above it, fewer, but no
				// fewer than the cap holds real costs.
				fit, fitReal := int64(limit/estimate), int64(limit/(estimate+tc.overshoot))
				switch got := created.Load(); {
				case tc.vs < 0 && got < fit:
					t.Errorf("%d created, want at least %d: the cap holds that many estimates", got, fit)
				case tc.vs == 0 && got != fit:
					t.Errorf("%d created, want exactly %d: the cap holds that many estimates", got, fit)
				case tc.vs > 0 && (got > fit || got < fitReal):
					t.Errorf("%d created, want %d to %d: no more than the cap holds estimates, no fewer than it holds real costs", got, fitReal, fit)
				}
				if b.SpentUSD != fleet.Micros(realSum.Load()) || b.ReservedUSD != 0 {
					t.Errorf("ledger: spent $%s reserved $%s; want the real costs $%s and nothing held", b.SpentUSD, b.ReservedUSD, fleet.Micros(realSum.Load()))
				}
				if most := limit + fleet.Micros(created.Load())*tc.overshoot; b.SpentUSD > most {
					t.Errorf("spent $%s, past the cap plus what work cost beyond its estimates ($%s)", b.SpentUSD, most)
				}
				streamtest.WaitSeq(t, nats.Hub, lastSeq.Load())
				v, _, err := nats.Hub.View(context.Background(), "acme")
				if err != nil {
					t.Fatal(err)
				}
				if v.Projects["acme"].SpendTotal != b.SpentUSD {
					t.Errorf("fold $%s, ledger $%s", v.Projects["acme"].SpendTotal, b.SpentUSD)
				}
			})
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestProjectCosts(t *testing.T) {
	nats, srvs := newBudgetServers(t, 1)
	s := srvs[0]
	// Calls in and out of the default window (the last 24 h by the
	// server's clock, the wall's here: see newBudgetServers).
	now := time.Now().UTC()
	calls := []struct {
		team, user, agent, model string
		in, out                  int64
		at                       time.Time
	}{
		{"support", "u-1", "acme-triager", "claude-sonnet-4-5", 10_000, 1_000, now.Add(-2 * time.Hour)}, // 30,000 + 15,000 = 45,000
		{"support", "u-2", "acme-triager", "claude-sonnet-4-5", 2_000, 500, now.Add(-time.Hour)},        // 6,000 + 7,500 = 13,500
		{"research", "u-1", "acme-analyst", "gpt-5", 8_000, 2_000, now.Add(-time.Hour)},                 // 10,000 + 20,000 = 30,000
		{"research", "", "acme-analyst", "llama3.1", 50_000, 5_000, now.Add(-time.Hour)},                // local: 0
		{"research", "u-3", "acme-analyst", "acme-finetune-7b", 1_000, 1_000, now.Add(-time.Hour)},      // unpriced: 0
		{"support", "u-1", "acme-triager", "gpt-5", 1_000, 0, now.Add(-30 * time.Hour)},                 // outside the default window: 1,250
	}
	var seq uint64
	for i, c := range calls {
		ev := fleettest.E{Type: fleet.TypeLLMCall, Time: c.at, ProjectID: "acme", TeamID: c.team, UserID: c.user, AgentID: c.agent,
			RunID: fmt.Sprintf("r-%d", i%3), Data: fleet.LLMCall{Model: c.model, InputTokens: c.in, OutputTokens: c.out}}.Event()
		var err error
		if seq, err = nats.Publisher.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	other := fleettest.LLMCall("globex", "g-a", "g-r", "gpt-5", 1_000_000, 0, 0, 0, now) // another tenant's $1.25
	if seq, _ = nats.Publisher.Publish(context.Background(), other); seq == 0 {
		t.Fatal("publish failed")
	}
	streamtest.WaitSeq(t, nats.Hub, seq)

	type group struct {
		Key      string
		Cost     fleet.Micros `json:"cost_usd"`
		Calls    int64
		Unpriced int64 `json:"unpriced_calls"`
	}
	var rep struct {
		ProjectID      string `json:"project_id"`
		GroupBy        string `json:"group_by"`
		Total          group
		Groups         []group
		UnpricedModels []string `json:"unpriced_models"`
		PricingAsOf    string   `json:"pricing_as_of"`
	}
	s.must(t, "GET", "/api/v1/projects/acme/costs?group_by=model", s.admin, "", http.StatusOK, &rep)
	wantModels := []group{{"claude-sonnet-4-5", 58_500, 2, 0}, {"gpt-5", 30_000, 1, 0}, {"acme-finetune-7b", 0, 1, 1}, {"llama3.1", 0, 1, 0}}
	if diff := cmp.Diff(wantModels, rep.Groups); diff != "" {
		t.Errorf("by model, last 24 h (-want +got):\n%s", diff)
	}
	if rep.Total.Cost != 88_500 || rep.Total.Calls != 5 || !cmp.Equal(rep.UnpricedModels, []string{"acme-finetune-7b"}) || rep.PricingAsOf == "" {
		t.Errorf("report %+v", rep)
	}
	s.must(t, "GET", "/api/v1/projects/acme/costs?group_by=team", s.admin, "", http.StatusOK, &rep)
	if diff := cmp.Diff([]group{{"support", 58_500, 2, 0}, {"research", 30_000, 3, 1}}, rep.Groups); diff != "" {
		t.Errorf("by team (-want +got):\n%s", diff)
	}
	s.must(t, "GET", "/api/v1/projects/acme/costs?group_by=user", s.token(t, auth.RoleProject, "acme"), "", http.StatusOK, &rep)
	if diff := cmp.Diff([]group{{"u-1", 75_000, 2, 0}, {"u-2", 13_500, 1, 0}, {"(none)", 0, 1, 0}, {"u-3", 0, 1, 1}}, rep.Groups); diff != "" {
		t.Errorf("by user (-want +got):\n%s", diff)
	}
	// Everything, since the start: the same money as the fold.
	from := now.Add(-48 * time.Hour).Format(time.RFC3339)
	s.must(t, "GET", "/api/v1/projects/acme/costs?group_by=agent&from="+from, s.admin, "", http.StatusOK, &rep)
	v, _, err := nats.Hub.View(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total.Cost != 89_750 || v.Projects["acme"].SpendTotal != rep.Total.Cost {
		t.Errorf("rollup since the start $%s, fold $%s; want both $0.08975", rep.Total.Cost, v.Projects["acme"].SpendTotal)
	}
	if diff := cmp.Diff([]group{{"acme-triager", 59_750, 3, 0}, {"acme-analyst", 30_000, 3, 1}}, rep.Groups); diff != "" {
		t.Errorf("by agent (-want +got):\n%s", diff)
	}

	for _, q := range []string{"group_by=colour", "from=yesterday", "to=2026-13-01", "from=2026-11-27&to=2026-11-26", "from=2026-01-01&to=2026-11-01"} {
		if res := s.call(t, "GET", "/api/v1/projects/acme/costs?"+q, s.admin, ""); res.status != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", q, res.status)
		}
	}
	if res := s.call(t, "GET", "/api/v1/projects/acme/costs", s.token(t, auth.RoleProject, "globex"), ""); res.status != http.StatusForbidden {
		t.Errorf("globex reading acme's costs: %d, want 403", res.status)
	}
}
