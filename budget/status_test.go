package budget_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestBudgetStatusReachesTheHUD checks the gate's budget.status events: a
// budget created on one of two ledgers sharing a NATS shows on the hub's
// view (what the HUD draws) with its cap, before any warning, and the two
// ledgers' statuses of the same standing are stored once.
func TestBudgetStatusReachesTheHUD(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond})
	cfg := budget.Config{Auditor: env.Publisher, Events: env.Publisher, StatusEvery: time.Hour}
	a := startLedger(t, env.JS, cfg)
	second := secondConn(t, env)
	startLedger(t, second, budget.Config{Auditor: stream.NewPublisher(second), Events: stream.NewPublisher(second), StatusEvery: time.Hour})

	mustCreate(t, a, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", ScopeID: "acme", Period: "monthly", LimitUSD: 250 * fleet.MicrosPerUSD, Action: "warn"})
	ctx := context.Background()
	streamtest.Eventually(t, 10*time.Second, func() bool {
		v, _, err := env.Hub.View(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		pb := v.Projects["acme"].Budget
		return pb != nil && pb.LimitUSD == 250*fleet.MicrosPerUSD && pb.Period == "monthly" && pb.SpentUSD == 0
	}, "the new budget never showed on the hub's view")

	// Both ledgers saw the change and published the same standing: one is
	// stored. (Wait until the second ledger has had its turn: its cache
	// holds the budget once it answers for it.)
	streamtest.Eventually(t, 10*time.Second, func() bool {
		_, err := a.Budget(ctx, "project.acme.acme.monthly")
		return err == nil
	}, "budget not readable")
	st, err := env.JS.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	count := func() uint64 {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("fleet.acme.budget.status"))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return count() >= 1 }, "no budget.status stored")
	// A second budget: a fresh round on both ledgers, which publish the new
	// budget's standing (stored once) and not the first one's again.
	b := mustCreate(t, a, fleet.BudgetLimit{Scope: "team", ProjectID: "acme", ScopeID: "support", Period: "daily", LimitUSD: fleet.MicrosPerUSD, Action: "warn"})
	streamtest.Eventually(t, 10*time.Second, func() bool {
		v, _, _ := env.Hub.View(ctx, "acme")
		_, ok := v.Budgets["acme/team:support:daily"]
		return ok
	}, "the team budget "+b.ID+" never showed")
	if n := count(); n != 2 {
		t.Errorf("%d budget.status events stored for two budgets' standings published by two ledgers; want 2", n)
	}
}

// TestHUDGaugeEqualsTheLedger checks issue 17's promise: the budget gauge
// the HUD draws moves with each call, so whenever the fold has folded
// what the ledger has charged, the gauge shows what the ledger holds (and
// the project's spend KPI the same figure), not what the ledger held at
// its last budget.status. Statuses come every 20 ms, so they race the
// bursts of calls: some are read before the ledger charged a burst's last
// calls, and the fold adds those above the status's through_seq.
func TestHUDGaugeEqualsTheLedger(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond})
	l := startLedger(t, env.JS, budget.Config{Auditor: env.Publisher, Events: env.Publisher, StatusEvery: 20 * time.Millisecond})
	project := mustCreate(t, l, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", ScopeID: "acme", Period: "daily",
		LimitUSD: 100 * fleet.MicrosPerUSD, Action: "warn"})
	team := mustCreate(t, l, fleet.BudgetLimit{Scope: "team", ProjectID: "acme", ScopeID: "support", Period: "daily",
		LimitUSD: 100 * fleet.MicrosPerUSD, Action: "warn"})
	ctx := context.Background()
	streamtest.Eventually(t, 10*time.Second, func() bool {
		v, _, _ := env.Hub.View(ctx, "acme")
		_, p := v.Budgets["acme/project:acme:daily"]
		_, tm := v.Budgets["acme/team:support:daily"]
		return p && tm
	}, "the budgets never showed on the hub's view")

	moved := 0
	for burst := range 12 {
		var last uint64
		for i := range 1 + burst%4 {
			team := "support"
			if i == 2 {
				team = "research" // charged to the project, not to support
			}
			last = call(t, env, "acme", team, "u-1", fmt.Sprintf("m-%d-%d", burst, i), "gpt-5", int64(1000+100*i), time.Now())
		}
		waitSeq(t, l, last)
		want := map[string]fleet.Micros{"acme/project:acme:daily": standing(t, l, project.ID).Spent,
			"acme/team:support:daily": standing(t, l, team.ID).Spent}
		var got map[string]fleet.Micros
		var kpi fleet.Micros
		streamtest.Eventually(t, 20*time.Second, func() bool {
			v, seq, err := env.Hub.View(ctx, "acme")
			if err != nil || seq < last {
				return false
			}
			got = map[string]fleet.Micros{}
			for id := range want {
				got[id] = v.Budgets[id].SpentUSD
			}
			kpi = v.Projects["acme"].SpendToday
			if pb := v.Projects["acme"].Budget; pb == nil || pb.SpentUSD != got["acme/project:acme:daily"] {
				return false
			}
			return true
		}, fmt.Sprintf("burst %d: the hub never folded seq %d with the project's gauge on its row", burst, last))
		for id, w := range want {
			if got[id] != w {
				t.Errorf("burst %d, at seq ≥ %d: the HUD's %s shows %s spent; the ledger has charged %s", burst, last, id, got[id], w)
			}
		}
		if kpi != want["acme/project:acme:daily"] {
			t.Errorf("burst %d: spend today %s, project budget's spent %s: two figures for one thing", burst, kpi, want["acme/project:acme:daily"])
		}
		moved++
	}
	if moved != 12 {
		t.Fatalf("%d of 12 bursts compared", moved)
	}
}
