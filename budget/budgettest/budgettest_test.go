package budgettest_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/budget/budgettest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestVerifyFlagsEveryBreach feeds Verify hand-made histories of one
// $1.00 stop budget: each rule must flag its breach and nothing else, and
// a history within the rules must pass.
func TestVerifyFlagsEveryBreach(t *testing.T) {
	at := fleettest.Epoch()
	later := at.Add(time.Hour)
	hold := func(amount fleet.Micros) budgettest.Hold { return budgettest.Hold{Amount: amount, Expires: later} }
	rev := func(n uint64, spent fleet.Micros, calls int64, holds map[string]budgettest.Hold) budgettest.Entry {
		return budgettest.Entry{Key: "project.acme.acme.daily.g.2026-11-27", Revision: n, Budget: "project.acme.acme.daily",
			Window: "2026-11-27", Spent: spent, Calls: calls, Holds: holds}
	}
	other := budgettest.Entry{Key: "user.acme.u-1.daily.g.2026-11-27", Revision: 9, Budget: "user.acme.u-1.daily",
		Window: "2026-11-27", Spent: 5_000_000} // not a budget the check is given: ignored
	for _, tc := range []struct {
		name      string
		overshoot fleet.Micros
		history   []budgettest.Entry
		want      []string // a fragment of each line Verify returns
		placed    []string
		expired   int
	}{
		{
			name: "within the cap to the micro-dollar",
			history: []budgettest.Entry{
				rev(1, 0, 0, map[string]budgettest.Hold{"r1": hold(600_000)}),
				rev(2, 0, 0, map[string]budgettest.Hold{"r1": hold(600_000), "r2": hold(400_000)}),
				rev(3, 600_000, 1, map[string]budgettest.Hold{"r1": hold(0), "r2": hold(400_000)}), // r1's work cost its estimate
				rev(4, 600_000, 1, map[string]budgettest.Hold{"r2": hold(400_000)}),
				other,
			},
			placed: []string{"r1", "r2"},
		},
		{
			name: "a hold placed past the cap",
			history: []budgettest.Entry{
				rev(1, 0, 0, map[string]budgettest.Hold{"r1": hold(600_000)}),
				rev(2, 0, 0, map[string]budgettest.Hold{"r1": hold(600_000), "r2": hold(400_001)}),
			},
			want:   []string{"revision 2 places hold [r2]", "revision 2: spent"},
			placed: []string{"r1", "r2"},
		},
		{
			name: "a hold that grows without being placed",
			history: []budgettest.Entry{
				rev(1, 0, 0, map[string]budgettest.Hold{"r1": hold(100_000)}),
				rev(2, 0, 0, map[string]budgettest.Hold{"r1": hold(200_000)}),
			},
			want:   []string{"revision 2 places no hold, yet reserved grew"},
			placed: []string{"r1"},
		},
		{
			name:      "a charge past its hold by more than the overshoot",
			overshoot: 50_000,
			history: []budgettest.Entry{
				rev(1, 0, 0, map[string]budgettest.Hold{"r1": hold(1_000_000)}),
				rev(2, 1_050_000, 1, map[string]budgettest.Hold{"r1": hold(0)}), // within one call's overshoot
				rev(3, 1_100_001, 2, map[string]budgettest.Hold{"r1": hold(0)}), // two calls: up to $1.10
				rev(4, 1_150_001, 2, map[string]budgettest.Hold{"r1": hold(0)}), // no new call, yet more spend
			},
			want:   []string{"revision 3: spent", "revision 4: spent"},
			placed: []string{"r1"},
		},
		{
			name: "an expired hold does not count",
			history: []budgettest.Entry{
				rev(1, 0, 0, map[string]budgettest.Hold{"old": {Amount: 900_000, Expires: at}}),
				rev(2, 0, 0, map[string]budgettest.Hold{"old": {Amount: 900_000, Expires: at}, "r1": hold(1_000_000)}),
			},
			placed:  []string{"old", "r1"},
			expired: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := budgettest.Check{Caps: map[string]fleet.Micros{"project.acme.acme.daily": 1_000_000},
				Now: func(budgettest.Entry) time.Time { return at }, Overshoot: tc.overshoot}
			res, bad := c.Verify(tc.history)
			if len(bad) != len(tc.want) {
				t.Fatalf("Verify found %d breaches, want %d:\n%s", len(bad), len(tc.want), strings.Join(bad, "\n"))
			}
			for i, w := range tc.want {
				if !strings.Contains(bad[i], w) {
					t.Errorf("breach %d = %q, want it to say %q", i, bad[i], w)
				}
			}
			if diff := cmp.Diff(tc.placed, res.Placed["project.acme.acme.daily"]); diff != "" {
				t.Errorf("placed (-want +got):\n%s", diff)
			}
			if res.Expired != tc.expired {
				t.Errorf("%d expired holds, want %d", res.Expired, tc.expired)
			}
			want := 0
			for _, e := range tc.history {
				if e.Budget == "project.acme.acme.daily" {
					want++
				}
			}
			if res.Revisions != want {
				t.Errorf("%d revisions checked, want %d", res.Revisions, want)
			}
		})
	}
}

// TestHistoryNeedsEveryRevision checks that History reads every revision
// a ledger wrote once KeepHistory lifted the limit, and refuses to answer
// when the bucket kept only the last one of a key, as production runs it:
// a check that could miss the write that overspent must fail, not pass.
func TestHistoryNeedsEveryRevision(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(map[bool]string{true: "kept", false: "as production keeps it"}[keep], func(t *testing.T) {
			env := streamtest.Start(t, stream.HubConfig{})
			ctx := context.Background()
			clk := fleettest.NewClock()
			l, err := budget.NewLedger(ctx, env.JS, budget.Config{Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			if keep {
				if err := budgettest.KeepHistory(ctx, env.JS); err != nil {
					t.Fatal(err)
				}
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- l.Run(rctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			})
			streamtest.Eventually(t, 10*time.Second, func() bool { return l.Ready() == nil }, "ledger not ready")
			if _, err := l.CreateBudget(ctx, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1_000_000, Action: "stop"}); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for range 3 {
				dec, err := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Estimate: 100_000})
				if err != nil || !dec.Allowed {
					t.Fatalf("Reserve: %+v, %v", dec, err)
				}
				ids = append(ids, dec.Reservation)
			}
			history, err := budgettest.History(ctx, env.JS)
			if !keep {
				if err == nil || !strings.Contains(err.Error(), "missing") {
					t.Fatalf("History of a bucket that kept one revision per key: %d entries, %v; want a missing revision", len(history), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res, bad := budgettest.Check{Caps: map[string]fleet.Micros{"project.acme.acme.daily": 1_000_000},
				Now: func(budgettest.Entry) time.Time { return clk.Now() }}.Verify(history)
			if len(bad) > 0 || res.Revisions != 3 {
				t.Errorf("%d revisions checked, breaches %v; want 3 and none", res.Revisions, bad)
			}
			if diff := cmp.Diff(ids, res.Placed["project.acme.acme.daily"]); diff != "" {
				t.Errorf("holds placed (-reserved +placed):\n%s", diff)
			}
			var reserved []fleet.Micros
			for _, e := range history {
				reserved = append(reserved, e.Reserved(clk.Now()))
			}
			if diff := cmp.Diff([]fleet.Micros{100_000, 200_000, 300_000}, reserved); diff != "" {
				t.Errorf("reserved at each revision (-want +got):\n%s", diff)
			}
		})
	}
}
