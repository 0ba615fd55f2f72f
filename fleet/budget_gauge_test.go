package fleet_test

import (
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// gaugeNotice is a budget.status (or another notice type) about a daily
// budget of acme, its spend charged through seq through (nil: not said).
func gaugeNotice(typ, scope, scopeID string, spent fleet.Micros, through *uint64, at time.Time) fleet.Event {
	end, _ := fleet.WindowOf(fleet.PeriodDaily, at)
	return fleettest.E{Type: typ, Time: at, ProjectID: "acme",
		Data: fleet.BudgetNotice{Scope: scope, ScopeID: scopeID, Period: fleet.PeriodDaily, LimitUSD: 10_000_000,
			SpentUSD: spent, Action: fleet.ActionStop, ResetsAt: end.End, ThroughSeq: through}}.Event()
}

func seqPtr(v uint64) *uint64 { return &v }

// gaugeCall is a priced llm.call of acme for team and user, and its cost.
func gaugeCall(t *testing.T, team, user string, at time.Time) (fleet.Event, fleet.Micros) {
	t.Helper()
	ev := fleettest.E{Type: fleet.TypeLLMCall, Time: at, ProjectID: "acme", TeamID: team, UserID: user, AgentID: "a-1",
		Data: fleet.LLMCall{Provider: "openai", Model: "gpt-4o", InputTokens: 1000, OutputTokens: 200, LatencyMS: 300, Status: "ok"}}.Event()
	price, ok := fleet.DefaultPricing().Lookup("gpt-4o")
	if !ok {
		t.Fatal("gpt-4o is not in the default pricing table")
	}
	return ev, price.Cost(fleet.LLMCall{Model: "gpt-4o", InputTokens: 1000, OutputTokens: 200})
}

// TestBudgetGaugeMovesWithEachCall checks issue 17's gauge: after a notice
// that says through which seq its spend holds every charge, each priced
// call moves the project's budget (and its row's gauge) at once, the way
// the gate charges it; the next notice replaces the figure without
// counting a call twice, and keeps the calls above its through_seq.
func TestBudgetGaugeMovesWithEachCall(t *testing.T) {
	s := fleet.NewState(nil)
	const id = "acme/project:acme:daily"
	spent := func() (fleet.Micros, fleet.Micros) {
		v := s.View("acme")
		pb := v.Projects["acme"].Budget
		if pb == nil {
			t.Fatal("acme has no budget gauge")
		}
		return v.Budgets[id].SpentUSD, pb.SpentUSD
	}
	feed(t, s, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 1_000_000, seqPtr(0), t0))
	call, cost := gaugeCall(t, "support", "u-1", t0)
	feed(t, s, t0, call)
	firstCall := s.Seq()
	if b, pb := spent(); b != 1_000_000+cost || pb != b {
		t.Fatalf("after one call of %s: budget %s, project gauge %s; want %s", cost, b, pb, 1_000_000+cost)
	}
	if kpi := s.View("acme").Projects["acme"].SpendToday; kpi != cost {
		t.Fatalf("spend today %s; want %s", kpi, cost)
	}
	call2, _ := gaugeCall(t, "support", "u-1", t0)
	feed(t, s, t0, call2)
	// The gate charged the first call (through its seq) but not yet the
	// second when it read the standing: the figure is its spend plus the
	// second call, not plus both.
	feed(t, s, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 1_000_000+cost, seqPtr(firstCall), t0))
	if b, pb := spent(); b != 1_000_000+2*cost || pb != b {
		t.Fatalf("after a status through the first call: budget %s, project gauge %s; want %s", b, pb, 1_000_000+2*cost)
	}
	// A notice without through_seq (an older server) stands as it is.
	feed(t, s, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 5_000_000, nil, t0))
	call3, _ := gaugeCall(t, "support", "u-1", t0)
	feed(t, s, t0, call3)
	if b, _ := spent(); b != 5_000_000 {
		t.Fatalf("after a notice without through_seq and a call: budget %s; want the notice's $5.00", b)
	}
}

// TestBudgetGaugeChargesWhomTheGateCharges checks which budgets a call
// moves: its team's and user's (as the call names them), never another
// team's, and never a global budget's, whose figures sum every project.
func TestBudgetGaugeChargesWhomTheGateCharges(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0,
		gaugeNotice(fleet.TypeBudgetStatus, fleet.BudgetScopeTeam, "support", 0, seqPtr(0), t0),
		gaugeNotice(fleet.TypeBudgetStatus, fleet.BudgetScopeTeam, "research", 0, seqPtr(0), t0),
		gaugeNotice(fleet.TypeBudgetStatus, fleet.BudgetScopeUser, "u-1", 0, seqPtr(0), t0),
		gaugeNotice(fleet.TypeBudgetWarning, fleet.BudgetScopeGlobal, "", 9_000_000, seqPtr(0), t0),
	)
	call, cost := gaugeCall(t, "support", "u-1", t0)
	feed(t, s, t0, call)
	v := s.View(fleet.ScopeAll)
	for id, want := range map[string]fleet.Micros{
		"acme/team:support:daily": cost, "acme/team:research:daily": 0, "acme/user:u-1:daily": cost, "acme/global::daily": 9_000_000,
	} {
		if got := v.Budgets[id].SpentUSD; got != want {
			t.Errorf("%s: spent %s; want %s", id, got, want)
		}
	}
}

// TestBudgetGaugeStartsTheNextWindowAtZero checks the period's end: a
// call after the budget's resets_at is the first of the next window, as
// the gate keeps a new ledger entry for it.
func TestBudgetGaugeStartsTheNextWindowAtZero(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 7_000_000, seqPtr(0), t0))
	win, _ := fleet.WindowOf(fleet.PeriodDaily, t0)
	next := win.End.Add(time.Minute)
	call, cost := gaugeCall(t, "", "", next)
	feed(t, s, next, call)
	b := s.View("acme").Budgets["acme/project:acme:daily"]
	if b.SpentUSD != cost || !b.ResetsAt.Equal(win.End.AddDate(0, 0, 1)) {
		t.Fatalf("after a call of the next day: spent %s, resets %s; want %s, %s", b.SpentUSD, b.ResetsAt, cost, win.End.AddDate(0, 0, 1))
	}
}

// TestBudgetGaugeSurvivesACheckpoint checks that a fold restored from a
// checkpoint moves the gauge exactly as the one that wrote it.
func TestBudgetGaugeSurvivesACheckpoint(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 1_000_000, seqPtr(0), t0))
	call, cost := gaugeCall(t, "", "", t0)
	feed(t, s, t0, call)
	through := s.Seq()
	call2, _ := gaugeCall(t, "", "", t0)
	feed(t, s, t0, call2)
	b, err := s.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	r, err := fleet.RestoreState(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*fleet.State{s, r} {
		feed(t, st, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 1_000_000+cost, seqPtr(through), t0))
		if got := st.View("acme").Budgets["acme/project:acme:daily"].SpentUSD; got != 1_000_000+2*cost {
			t.Fatalf("spent %s; want %s (the restored fold must keep the call above through_seq)", got, 1_000_000+2*cost)
		}
	}
}

// TestBudgetGaugeAfterManyCallsReadsLowNeverHigh checks the gauge's bound:
// of more calls than it keeps between a notice's through_seq and the
// notice, it can only leave some out (reading low until the next notice),
// never count one twice; and a notice through the last call is exact.
func TestBudgetGaugeAfterManyCallsReadsLowNeverHigh(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 0, seqPtr(0), t0))
	var seqs []uint64
	var cost fleet.Micros
	for range 100 {
		var call fleet.Event
		call, cost = gaugeCall(t, "", "", t0)
		feed(t, s, t0, call)
		seqs = append(seqs, s.Seq())
	}
	spent := func() fleet.Micros { return s.View("acme").Budgets["acme/project:acme:daily"].SpentUSD }
	if got := spent(); got != 100*cost {
		t.Fatalf("after 100 calls: spent %s; want %s", got, 100*cost)
	}
	feed(t, s, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 10*cost, seqPtr(seqs[9]), t0))
	if got := spent(); got > 100*cost || got < 64*cost {
		t.Fatalf("after a notice through the 10th call: spent %s; want between %s and %s", got, 64*cost, 100*cost)
	}
	feed(t, s, t0, gaugeNotice(fleet.TypeBudgetStatus, "project", "acme", 100*cost, seqPtr(seqs[99]), t0))
	if got := spent(); got != 100*cost {
		t.Fatalf("after a notice through the last call: spent %s; want %s", got, 100*cost)
	}
}
