package fleet_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// gaugeBenchStream is 20,000 events of 4 projects: priced llm.calls of
// three teams and ten users, with every budget's budget.status (7 per
// project: the project's daily and monthly, three teams', two users')
// every 500 events. through says whether the notices carry through_seq,
// which makes every call move its budgets' gauges.
func gaugeBenchStream(through bool) ([]fleet.Event, []time.Time) {
	projects := []string{"acme", "globex", "initech", "umbrella"}
	teams := []string{"support", "research", "ops"}
	var evs []fleet.Event
	var ats []time.Time
	at := t0
	add := func(ev fleet.Event) {
		evs, ats = append(evs, ev), append(ats, at)
	}
	statuses := func() {
		for _, p := range projects {
			for _, b := range []struct{ scope, id, period string }{
				{"project", p, "daily"}, {"project", p, "monthly"}, {"team", "support", "daily"}, {"team", "research", "daily"},
				{"team", "ops", "daily"}, {"user", "u-1", "daily"}, {"user", "u-2", "daily"},
			} {
				n := fleet.BudgetNotice{Scope: b.scope, ScopeID: b.id, Period: b.period, LimitUSD: 1000 * fleet.MicrosPerUSD,
					SpentUSD: fleet.Micros(len(evs)) * 10, Action: fleet.ActionWarn}
				if through {
					seq := uint64(max(0, len(evs)-5))
					n.ThroughSeq = &seq
				}
				add(fleettest.E{Type: fleet.TypeBudgetStatus, Time: at, ProjectID: p, Data: n}.Event())
			}
		}
	}
	for i := 0; len(evs) < 20_000; i++ {
		if i%500 == 0 {
			statuses()
		}
		at = at.Add(5 * time.Millisecond)
		add(fleettest.E{Type: fleet.TypeLLMCall, Time: at, ProjectID: projects[i%4], TeamID: teams[i%3], UserID: fmt.Sprintf("u-%d", i%10),
			AgentID: fmt.Sprintf("a-%d", i%50), Data: fleet.LLMCall{Provider: "openai", Model: "gpt-4o", InputTokens: 1200, OutputTokens: 300,
				LatencyMS: 400, Status: "ok"}}.Event())
	}
	return evs, ats
}

// BenchmarkApplyBudgetGauges measures what moving budget gauges with each
// call costs the fold: the same calls and statuses, with notices that
// carry through_seq (every call moves up to four gauges) and without
// (gauges move only by notices, as before issue 17). Compare events/s of
// the two in one run.
func BenchmarkApplyBudgetGauges(b *testing.B) {
	for _, through := range []bool{false, true} {
		name := "gauges=by-notice-only"
		if through {
			name = "gauges=move-with-calls"
		}
		b.Run(name, func(b *testing.B) {
			evs, ats := gaugeBenchStream(through)
			b.ReportAllocs()
			b.ResetTimer()
			s, i := fleet.NewState(nil), 0
			for n := 0; n < b.N; n++ {
				if i == len(evs) {
					b.StopTimer()
					s, i = fleet.NewState(nil), 0
					b.StartTimer()
				}
				s.Apply(uint64(i+1), ats[i], evs[i])
				i++
				if i%1000 == 0 {
					s.TakeChanges()
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
