package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
)

// newLedgerEnv is newAdminEnv with the budget ledger as gate and store,
// its events audited on AUDIT and FLEET by the real publisher, as serve
// wires it. The ledger keeps the wall clock: it charges calls in the
// window of the time NATS stores them.
func newLedgerEnv(t *testing.T) (*adminEnv, *budget.Ledger) {
	t.Helper()
	n := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	reg, err := stream.OpenRegistry(ctx, n.JS, stream.RegistryConfig{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	l, err := budget.NewLedger(ctx, n.JS, budget.Config{Auditor: n.Publisher, EventEvery: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
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
	streamtest.Eventually(t, hangBound, func() bool { return l.Ready() == nil }, "ledger not ready")
	a := &adminEnv{env: &env{logs: &syncBuffer{}, clock: fleettest.NewClock()}, nats: n, reg: reg, events: &flakyEvents{pub: n.Publisher}}
	srv, err := web.New(web.Config{
		AdminPassword: adminPassword,
		SigningKey:    bytes.Repeat([]byte("k"), 32),
		Logger:        slog.New(slog.NewJSONHandler(a.logs, nil)),
		Now:           a.clock.Now,
		BcryptCost:    bcrypt.MinCost,
		Records:       reg.Records,
		Work:          reg.Work,
		Events:        a.events,
		Missions:      reg.Missions,
		AuditLog:      stream.NewAuditLog(n.JS),
		Budgets:       l,
		BudgetStore:   l,
	}, n.Hub, n.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	a.srv, a.url = srv, newTestServer(t, srv)
	a.admin = a.adminToken(t)
	return a, l
}

// globalFigures lists what of the global budget of
// TestGlobalBudgetFiguresNeverReachTenants a tenant's answer shows: its
// cap ($0.37), the fleet's spend against it ($0.2468, $0.25 in a ticker
// line), its share (66.7 %) and any field that holds a cap, a spend, a
// reservation or a warn threshold (acme and globex have no budget of
// their own there; a mission's progress has a "pct" too, so the budget
// entries' keys are checked on their own). A time's seconds never follow
// a ":" with one digit, nor a "$".
func globalFigures(body []byte) []string {
	var found []string
	for _, s := range []string{":0.37", `"0.37`, "$0.37", ":0.2468", `"0.2468`, "$0.25", ":66.7",
		`"limit_usd"`, `"spent_usd"`, `"reserved_usd"`, `"warn_pct"`} {
		if bytes.Contains(body, []byte(s)) {
			found = append(found, s)
		}
	}
	return found
}

// TestGlobalBudgetFiguresNeverReachTenants reproduces the rest of finding
// 8 of issue 12 against real NATS, the hub's fold and the server: globex
// and initech spend $0.1234 each of a global daily $0.37 stop cap
// (initech's call crosses its 50 % warn threshold); then globex's and
// acme's $0.15 missions are refused (402) and acme's $0.01 one is
// accepted with a warning. The gate records each of these
// (budget.warning, budget.exceeded) under the project whose spend or work
// reached the cap, with the cap and the fleet's spend. Before the fix a project's token read those figures
// in its /api/v1/fleet answer, its /ws frames and ticker, and its
// /api/v1/audit answer. Now none of them holds a figure of the global
// budget, in any frame; each still says that a global daily stop cap
// applies and when it resets; and the admin's "*" view, frames and audit
// show the figures.
func TestGlobalBudgetFiguresNeverReachTenants(t *testing.T) {
	a, l := newLedgerEnv(t)
	tenants := map[string]string{}
	for _, p := range []string{"acme", "globex", "initech"} {
		a.project(t, p)
		tenants[p] = a.projectToken(t, p)
	}
	acme := tenants["acme"]
	var created struct {
		ResetsAt time.Time `json:"resets_at"`
	}
	a.must(t, "POST", "/api/v1/budgets", a.admin, `{"scope":"global","period":"daily","limit_usd":"0.37","warn_pct":50,"action":"stop"}`,
		http.StatusCreated, &created)

	// acme's and the admin's live connections, open before anything
	// happens: every diff they get is checked.
	acmeWS := a.mustDial(t, "", bearer(acme))
	send(t, acmeWS, subscribeFrame("acme"))
	adminWS := a.mustDial(t, "", bearer(a.admin))
	send(t, adminWS, subscribeFrame(fleet.ScopeAll))

	// globex's and initech's spend, $0.1234 each, stamped with the wall
	// clock as NATS stores it: the fleet's $0.2468 is no tenant's own.
	var seq uint64
	for _, p := range []string{"globex", "initech"} {
		var err error
		seq, err = a.nats.Publisher.Publish(context.Background(), fleettest.E{Type: fleet.TypeLLMCall, Time: time.Now(),
			ProjectID: p, AgentID: p + "-a", Data: fleet.LLMCall{Model: "gpt-5", OutputTokens: 12_340}}.Event())
		if err != nil {
			t.Fatal(err)
		}
	}
	waitLedger(t, l, seq)
	for _, p := range []string{"globex", "acme"} {
		if res := a.call(t, "POST", "/api/v1/projects/"+p+"/missions", tenants[p], `{"title":"t","model":"gpt-5","estimate_usd":"0.15"}`); res.status != http.StatusPaymentRequired {
			t.Fatalf("%s's $0.15 mission: %d %s; want 402", p, res.status, res.body)
		}
	}
	a.must(t, "POST", "/api/v1/projects/acme/missions", acme, `{"title":"t","model":"gpt-5","estimate_usd":"0.01"}`, http.StatusCreated, nil)
	resets := created.ResetsAt.UTC().Format("2006-01-02 15:04 UTC")
	// What a tenant is told, in its ticker: initech's spend crossed the
	// warn threshold (50 %); globex's mission was refused; acme's was
	// refused, then its smaller one accepted with a warning.
	exceeded := "budget exceeded: a global daily cap (stop) applies to every project; resets " + resets
	warning := "budget warning: a global daily cap (stop) applies to every project; resets " + resets
	lines := map[string][]string{"initech": {warning}, "globex": {exceeded}, "acme": {exceeded, warning}}
	types := map[string][]string{"initech": {fleet.TypeBudgetWarning}, "globex": {fleet.TypeBudgetExceeded},
		"acme": {fleet.TypeBudgetExceeded, fleet.TypeBudgetWarning}}

	// acme's frames until its view has the warning: none shows a figure.
	got := map[string]bool{}
	for !got["warning"] || !got[warning] {
		b := mustRead(t, acmeWS)
		if f := globalFigures(b); f != nil {
			t.Fatalf("an acme /ws frame shows %q: %s", f, b)
		}
		var fr struct {
			State struct {
				Budgets map[string]fleet.Budget
				Ticker  []fleet.TickerEntry
			}
			Set    struct{ Budgets map[string]fleet.Budget }
			Ticker []fleet.TickerEntry
		}
		if err := json.Unmarshal(b, &fr); err != nil {
			t.Fatal(err)
		}
		for _, bs := range []map[string]fleet.Budget{fr.State.Budgets, fr.Set.Budgets} {
			if bu, ok := bs["acme/global::daily"]; ok && bu.FiguresWithheld {
				got[bu.Status] = true
			}
		}
		for _, e := range append(fr.State.Ticker, fr.Ticker...) {
			got[e.Text] = true
		}
	}
	// The admin's frames show the figures.
	for seen := false; !seen; {
		b := mustRead(t, adminWS)
		seen = bytes.Contains(b, []byte(`"limit_usd":0.370000,"spent_usd":0.246800`)) &&
			bytes.Contains(b, []byte("budget exceeded: global - $0.25 of $0.37"))
	}
	// The audit trail has both projects' records before the answers are read.
	streamtest.Eventually(t, hangBound, func() bool {
		evs, err := stream.NewAuditLog(a.nats.JS).Read(context.Background(), "", "", time.Time{}, time.Time{}, 1000)
		n := 0
		for _, ev := range evs {
			if strings.HasPrefix(ev.Type, "budget.") {
				n++
			}
		}
		return err == nil && n == 4
	}, "the four budget events never reached AUDIT")

	for p, tok := range tenants {
		t.Run(p, func(t *testing.T) {
			res := a.call(t, "GET", "/api/v1/fleet?scope="+p, tok, "")
			var fr struct {
				State struct {
					Budgets map[string]map[string]any
					Ticker  []fleet.TickerEntry
				}
			}
			if err := json.Unmarshal(res.body, &fr); err != nil || res.status != http.StatusOK {
				t.Fatalf("GET /api/v1/fleet: %d %s: %v", res.status, res.body, err)
			}
			if f := globalFigures(res.body); f != nil {
				t.Errorf("GET /api/v1/fleet shows %q: %s", f, res.body)
			}
			b := fr.State.Budgets[p+"/global::daily"]
			if diff := cmp.Diff([]string{"action", "figures_withheld", "id", "period", "project_id", "resets_at", "scope", "status", "updated_at"},
				slices.Sorted(maps.Keys(b))); diff != "" {
				t.Errorf("the global budget in %s's view: %v (-want +got keys):\n%s", p, b, diff)
			}
			if b["action"] != "stop" || b["period"] != "daily" || b["figures_withheld"] != true {
				t.Errorf("the global budget in %s's view: %v; want the daily stop cap, figures withheld", p, b)
			}
			var texts []string
			for _, e := range fr.State.Ticker {
				if strings.HasPrefix(e.Type, "budget.") {
					texts = append(texts, e.Text)
				}
			}
			if diff := cmp.Diff(lines[p], texts); diff != "" {
				t.Errorf("%s's ticker (-want +got):\n%s", p, diff)
			}

			// A fresh snapshot on /ws.
			c := a.mustDial(t, "", bearer(tok))
			send(t, c, subscribeFrame(p))
			snap := mustRead(t, c)
			if h := head(t, snap); h.Op != "snapshot" {
				t.Fatalf("first frame %s", snap)
			}
			if f := globalFigures(snap); f != nil {
				t.Errorf("the /ws snapshot shows %q: %s", f, snap)
			}
			if !bytes.Contains(snap, []byte(`"figures_withheld":true`)) {
				t.Errorf("the /ws snapshot has no withheld global budget: %s", snap)
			}
			c.Close(websocket.StatusNormalClosure, "")

			// The audit log: the decisions, without the figures.
			res = a.call(t, "GET", "/api/v1/audit?project="+p, tok, "")
			var out struct{ Events []fleet.Event }
			if err := json.Unmarshal(res.body, &out); err != nil || res.status != http.StatusOK {
				t.Fatalf("GET /api/v1/audit: %d %s: %v", res.status, res.body, err)
			}
			if f := globalFigures(res.body); f != nil {
				t.Errorf("GET /api/v1/audit shows %q: %s", f, res.body)
			}
			var audited []string
			for _, ev := range out.Events {
				if !strings.HasPrefix(ev.Type, "budget.") {
					continue
				}
				audited = append(audited, ev.Type)
				var d map[string]any
				if err := json.Unmarshal(ev.Data, &d); err != nil {
					t.Fatal(err)
				}
				if d["scope"] != "global" || d["period"] != "daily" || d["action"] != "stop" || d["resets_at"] == nil || d["figures_withheld"] != true {
					t.Errorf("audited %s: %s; want the global daily stop cap, its reset, figures withheld", ev.Type, ev.Data)
				}
			}
			if diff := cmp.Diff(types[p], audited); diff != "" {
				t.Errorf("audited budget events (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("admin", func(t *testing.T) {
		res := a.call(t, "GET", "/api/v1/fleet?scope=*", a.admin, "")
		var fr struct {
			State struct {
				Budgets map[string]fleet.Budget
				Ticker  []fleet.TickerEntry
			}
		}
		if err := json.Unmarshal(res.body, &fr); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"acme/global::daily", "globex/global::daily", "initech/global::daily"} {
			if b := fr.State.Budgets[id]; b.LimitUSD != 370_000 || b.SpentUSD != 246_800 || b.Pct != 66.7 || b.FiguresWithheld {
				t.Errorf("the admin's %s: %+v; want the cap and the spend", id, b)
			}
		}
		if !bytes.Contains(res.body, []byte("budget exceeded: global - $0.25 of $0.37")) {
			t.Errorf("the admin's ticker lacks the figures: %s", res.body)
		}
		res = a.call(t, "GET", "/api/v1/audit?project=acme&type=budget.exceeded", a.admin, "")
		var out struct{ Events []fleet.Event }
		if err := json.Unmarshal(res.body, &out); err != nil || len(out.Events) != 1 {
			t.Fatalf("the admin's audit: %s: %v", res.body, err)
		}
		var full map[string]json.RawMessage
		if err := json.Unmarshal(out.Events[0].Data, &full); err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{"limit_usd": "0.370000", "spent_usd": "0.246800", "warn_pct": "50"} {
			if string(full[k]) != want {
				t.Errorf("the admin's audited refusal: %s = %s, want %s (%s)", k, full[k], want, out.Events[0].Data)
			}
		}
	})
}
