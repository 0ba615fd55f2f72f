package budget_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestGlobalBudgetFiguresStayWithTheFleetView checks what becomes of a
// global budget's figures once the gate refuses a project's work on it:
// globex spends $0.2468 of a global daily $0.37 stop cap, and acme asks
// for $0.15. The budget.exceeded the gate records under acme carries the
// cap, the spend and when the period resets (the admin's audit trail);
// the fold shows them in the whole fleet's view only, while acme's own
// view has the budget with its figures withheld and a ticker line that
// names the cap's period, action and reset. No budget.status is ever
// published for a global budget, under any project. (The ledger keeps the
// wall clock: the call's charge goes by the time NATS stores.)
func TestGlobalBudgetFiguresStayWithTheFleetView(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond})
	l := startLedger(t, env.JS, budget.Config{Now: fleettest.NewClockAt(time.Now().UTC()).Now, Auditor: env.Publisher,
		Events: env.Publisher, StatusEvery: 20 * time.Millisecond, EventEvery: -1})
	ctx := context.Background()
	global := mustCreate(t, l, fleet.BudgetLimit{Scope: "global", Period: "daily", LimitUSD: 370_000, WarnPct: 50, Action: "stop"})
	mustCreate(t, l, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 5_000_000, Action: "warn"})
	waitSeq(t, l, call(t, env, "globex", "", "", "m-1", "gpt-5", 24_680, time.Now()))
	dec, err := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Model: "gpt-5", Estimate: 150_000, Ref: "m-2"})
	if err != nil {
		t.Fatal(err)
	}
	if dec.Allowed || dec.Action != fleet.ActionStop {
		t.Fatalf("acme's $0.15 past the global cap: allowed %v, action %q; want refused", dec.Allowed, dec.Action)
	}
	resets := standing(t, l, global.ID).Window.End

	const id = "acme/global::daily"
	var all fleet.View
	streamtest.Eventually(t, 10*time.Second, func() bool {
		all, _, _ = env.Hub.View(ctx, fleet.ScopeAll)
		return all.Budgets[id].Status == "exceeded"
	}, "the refusal never reached the fold")
	want := fleet.Budget{ID: id, ProjectID: "acme", Scope: "global", Period: "daily", LimitUSD: 370_000, SpentUSD: 246_800,
		Pct: 66.7, Action: "stop", Status: "exceeded", ResetsAt: resets, UpdatedAt: all.Budgets[id].UpdatedAt}
	if diff := cmp.Diff(want, all.Budgets[id]); diff != "" {
		t.Errorf("the whole fleet's view of the global budget (-want +got):\n%s", diff)
	}
	mine, _, err := env.Hub.View(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	want.LimitUSD, want.SpentUSD, want.Pct, want.FiguresWithheld = 0, 0, 0, true
	if diff := cmp.Diff(want, mine.Budgets[id]); diff != "" {
		t.Errorf("acme's view of the global budget (-want +got):\n%s", diff)
	}
	line := "budget exceeded: a global daily cap (stop) applies to every project; resets " + resets.Format("2006-01-02 15:04 UTC")
	if n := len(mine.Ticker); n == 0 || mine.Ticker[n-1].Text != line {
		t.Errorf("acme's ticker %+v; want it to end with %q", mine.Ticker, line)
	}
	body, err := json.Marshal(mine)
	if err != nil {
		t.Fatal(err)
	}
	// The amounts as JSON numbers and dollars, and the share (a time's
	// seconds never follow a ":" with one digit, nor a "$").
	for _, figure := range []string{":0.37", "$0.37", ":0.2468", "$0.25", ":66.7"} {
		if strings.Contains(string(body), figure) {
			t.Errorf("acme's view shows %q: %s", figure, body)
		}
	}

	// The audit trail keeps the figures, for the admin.
	evs, err := stream.NewAuditLog(env.JS).Read(ctx, "acme", fleet.TypeBudgetExceeded, time.Time{}, time.Time{}, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("acme's budget.exceeded in AUDIT: %d events, %v; want 1", len(evs), err)
	}
	var data struct {
		Scope    string       `json:"scope"`
		LimitUSD fleet.Micros `json:"limit_usd"`
		SpentUSD fleet.Micros `json:"spent_usd"`
		ResetsAt time.Time    `json:"resets_at"`
	}
	if err := json.Unmarshal(evs[0].Data, &data); err != nil || data.Scope != "global" || data.LimitUSD != 370_000 ||
		data.SpentUSD != 246_800 || !data.ResetsAt.Equal(resets) {
		t.Errorf("the audited refusal %s (%v); want the global cap, spend and reset", evs[0].Data, err)
	}

	// budget.status: acme's own budget is published under acme; the
	// global one under no project. A round goes through the budgets in
	// id order, "global..." before "project...", so once acme's standing
	// is stored the global budget has had its turn.
	st, err := env.JS.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	subjects := func() map[string]uint64 {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("fleet.*.budget.status"))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return subjects()["fleet.acme.budget.status"] > 0 },
		"acme's budget.status never stored")
	for subject := range subjects() {
		if subject != "fleet.acme.budget.status" {
			t.Errorf("budget.status stored on %s; want acme's own budget's only", subject)
		}
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"fleet.*.budget.status"}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(1000)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		var ev fleet.Event
		var n fleet.BudgetNotice
		if err := json.Unmarshal(m.Data(), &ev); err != nil || json.Unmarshal(ev.Data, &n) != nil {
			t.Fatalf("budget.status %s: %v", m.Data(), err)
		}
		if n.Scope != "project" || n.ResetsAt.IsZero() {
			t.Errorf("budget.status %s; want acme's project budget with its reset", ev.Data)
		}
	}
}
