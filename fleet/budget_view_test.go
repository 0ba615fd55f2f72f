package fleet_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// TestGlobalBudgetFiguresInTheFleetViewOnly checks how a project's scope
// sees a global budget, which sums every project's spend: acme's work
// reached the global daily $0.37 stop cap ($0.2468 spent by the fleet) and
// its own $5.00 project budget. The whole fleet's view, snapshot and diff
// alike, has the global budget's figures and its ticker line with them;
// acme's has its own budget whole, the global one without limit_usd,
// spent_usd or pct (figures_withheld) and a ticker line that names the
// cap's period, action and reset only. A checkpoint keeps both, and a
// client decoding acme's JSON gets back what the fold sent.
func TestGlobalBudgetFiguresInTheFleetViewOnly(t *testing.T) {
	resets := t0.Truncate(24*time.Hour).AddDate(0, 0, 1)
	global := fleettest.E{Type: fleet.TypeBudgetExceeded, Time: t0, ProjectID: "acme",
		Data: fleet.BudgetNotice{Scope: "global", Period: "daily", LimitUSD: 370_000, SpentUSD: 246_800, Action: "stop", ResetsAt: resets}}.Event()
	own := fleettest.E{Type: fleet.TypeBudgetWarning, Time: t0, ProjectID: "acme",
		Data: fleet.BudgetNotice{Scope: "project", ScopeID: "acme", Period: "daily", LimitUSD: 5_000_000, SpentUSD: 4_100_000, Action: "warn", ResetsAt: resets}}.Event()
	s := fleet.NewState(nil)
	s.TakeChanges()
	feed(t, s, t0, global, own)
	ch := s.TakeChanges()

	const id = "acme/global::daily"
	full := fleet.Budget{ID: id, ProjectID: "acme", Scope: "global", Period: "daily", LimitUSD: 370_000, SpentUSD: 246_800, Pct: 66.7,
		Action: "stop", Status: "exceeded", ResetsAt: resets, UpdatedAt: t0}
	withheld := full
	withheld.LimitUSD, withheld.SpentUSD, withheld.Pct, withheld.FiguresWithheld = 0, 0, 0, true
	fleetLine := "budget exceeded: global - $0.25 of $0.37"
	acmeLine := "budget exceeded: a global daily cap (stop) applies to every project; resets " + resets.Format("2006-01-02 15:04 UTC")

	check := func(t *testing.T, what, scope string, budgets map[string]fleet.Budget, ticker []fleet.TickerEntry) {
		t.Helper()
		want, line := full, fleetLine
		if scope != fleet.ScopeAll {
			want, line = withheld, acmeLine
		}
		if diff := cmp.Diff(want, budgets[id]); diff != "" {
			t.Errorf("%s of %s: the global budget (-want +got):\n%s", what, scope, diff)
		}
		if b := budgets["acme/project:acme:daily"]; b.LimitUSD != 5_000_000 || b.SpentUSD != 4_100_000 || b.FiguresWithheld {
			t.Errorf("%s of %s: acme's own budget %+v; want its figures", what, scope, b)
		}
		if len(ticker) != 2 || ticker[0].Text != line {
			t.Errorf("%s of %s: ticker %+v; want %q first", what, scope, ticker, line)
		}
	}
	for _, scope := range []string{fleet.ScopeAll, "acme"} {
		v := s.View(scope)
		check(t, "view", scope, v.Budgets, v.Ticker)
		d := s.Delta(scope, ch)
		check(t, "delta", scope, d.Set.Budgets, d.Ticker)
	}

	// acme's JSON has no figure of the global budget, and decodes back.
	view, err := json.Marshal(s.View("acme"))
	if err != nil {
		t.Fatal(err)
	}
	var state struct{ Budgets map[string]json.RawMessage }
	if err := json.Unmarshal(view, &state); err != nil {
		t.Fatal(err)
	}
	b := state.Budgets[id]
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"action", "figures_withheld", "id", "period", "project_id", "resets_at", "scope", "status", "updated_at"},
		slices.Sorted(maps.Keys(keys))); diff != "" {
		t.Errorf("acme's global budget %s (-want +got keys):\n%s", b, diff)
	}
	var back fleet.Budget
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(withheld, back); diff != "" {
		t.Errorf("acme's global budget decoded from %s (-sent +decoded):\n%s", b, diff)
	}

	cp, err := s.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	r, err := fleet.RestoreState(cp, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, scope := range []string{fleet.ScopeAll, "acme"} {
		v := r.View(scope)
		check(t, "restored view", scope, v.Budgets, v.Ticker)
	}
}
