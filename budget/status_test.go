package budget_test

import (
	"context"
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
