package browser_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/hud"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestBudgetGaugeMovesWithTheSpend is issue 17's promise in a browser:
// after each call the project's budget gauge shows the spend the KPI
// shows and the ledger has charged, in the same frame, and not only when
// the next budget.status comes (here the gate publishes one an hour, so
// only the fold can move the gauge).
func TestBudgetGaugeMovesWithTheSpend(t *testing.T) {
	r := newRig(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	l, err := budget.NewLedger(ctx, r.env.JS, budget.Config{Auditor: r.env.Publisher, Events: r.env.Publisher,
		StatusEvery: time.Hour, Logger: quiet})
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
	streamtest.Eventually(t, 20*time.Second, func() bool { return l.Ready() == nil }, "the ledger never got ready")
	st, err := l.CreateBudget(ctx, fleet.BudgetLimit{Scope: fleet.BudgetScopeProject, ProjectID: "acme", ScopeID: "acme",
		Period: fleet.PeriodDaily, LimitUSD: fleet.MicrosPerUSD, Action: fleet.ActionWarn})
	if err != nil {
		t.Fatal(err)
	}

	tb := newTab(t, 1920, 1080)
	r.login(tb, "/hud")
	gauge := `document.querySelector('[data-testid=budget-gauge][data-project=acme]')`
	tb.waitTrue("acme's budget gauge shows its $1.00 cap", gauge+` && `+gauge+`.querySelector('[data-f=limit]').textContent === '$1.00'`, 30*time.Second)

	type figures struct {
		KPI   string `json:"kpi"`
		Spent string `json:"spent"`
		Pct   string `json:"pct"`
	}
	read := `(() => ({kpi: document.querySelector('[data-testid=kpi-spend-today]').textContent.trim(),
	  spent: ` + gauge + `.querySelector('[data-f=spent]').textContent.trim(),
	  pct: ` + gauge + `.querySelector('[data-f=pct]').textContent.trim()}))()`
	var charged fleet.Micros
	for i := range 5 {
		ev := fleettest.LLMCall("acme", "acme-agent", "", "gpt-5", 1000, int64(2000+1000*i), 0, 0, time.Now())
		r.publish(ev)
		v, seq := r.view(fleet.ScopeAll)
		if err := l.WaitSeq(ctx, seq); err != nil {
			t.Fatal(err)
		}
		now, err := l.Budget(ctx, st.Budget.ID)
		if err != nil {
			t.Fatal(err)
		}
		if now.Spent <= charged {
			t.Fatalf("call %d: the ledger charged nothing (%s after %s)", i+1, now.Spent, charged)
		}
		charged = now.Spent
		want := hud.FormatUSD(charged)
		if kpi := hud.FormatUSD(v.Posture.SpendToday); kpi != want {
			t.Fatalf("call %d: the fold's spend today is %s; the ledger charged %s", i+1, kpi, want)
		}
		// Wait for the frame that shows the call's spend, then read the
		// gauge from the same page state.
		tb.waitTrue(fmt.Sprintf("the spend KPI shows %s after call %d", want, i+1),
			`document.querySelector('[data-testid=kpi-spend-today]').textContent.trim() === '`+want+`'`, 20*time.Second)
		got := eval[figures](tb, read)
		if got.Spent != want || got.KPI != want {
			t.Fatalf("call %d: the KPI shows %s and the gauge %s (%s); the ledger has charged %s", i+1, got.KPI, got.Spent, got.Pct, want)
		}
		if wantPct := hud.FormatPct(fleet.Pct(charged, fleet.MicrosPerUSD)); got.Pct != wantPct {
			t.Errorf("call %d: the gauge shows %s; want %s", i+1, got.Pct, wantPct)
		}
	}
}
