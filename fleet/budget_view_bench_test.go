package fleet_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// BenchmarkBudgetsSnapshot encodes the snapshot state of the whole fleet
// and of one project when each of three projects has 200 team budgets and
// the two global ones (daily and monthly, whose figures a project's scope
// withholds), to measure what BudgetMap's encoding and the withholding
// cost a frame:
//
//	go test ./fleet -run '^$' -bench BenchmarkBudgetsSnapshot -benchmem -cpu 1 -count 6
func BenchmarkBudgetsSnapshot(b *testing.B) {
	s := fleet.NewState(nil)
	seq := uint64(0)
	notice := func(p, scope, scopeID, period string) {
		seq++
		s.Apply(seq, t0, fleettest.E{Type: fleet.TypeBudgetWarning, Time: t0, ProjectID: p,
			Data: fleet.BudgetNotice{Scope: scope, ScopeID: scopeID, Period: period, LimitUSD: 1_000_000, SpentUSD: 900_000, Action: "stop"}}.Event())
	}
	for _, p := range fleettest.DefaultProjects {
		for i := range 200 {
			notice(p, "team", fmt.Sprintf("t-%03d", i), "daily")
		}
		notice(p, "global", "", "daily")
		notice(p, "global", "", "monthly")
	}
	for _, scope := range []string{fleet.ScopeAll, "acme"} {
		b.Run("scope="+scope, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(s.View(scope)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
