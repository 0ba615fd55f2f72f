package live_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/worker"
)

// TestEstimateCoversTheSyntheticAgent checks that the estimate the
// workload reserves for a mission is never less than what the synthetic
// agent then spends on it: an estimate too low would let a stop budget be
// overspent by the missions it let through.
func TestEstimateCoversTheSyntheticAgent(t *testing.T) {
	pricing := fleet.DefaultPricing()
	agent := worker.Synthetic(worker.SyntheticConfig{TimeScale: 1e-9, FailRate: -1, Seed: 3})
	for _, tn := range live.DefaultTenants() {
		for _, model := range tn.Models() {
			est := live.Estimate(pricing, model)
			price, priced := pricing.Lookup(model)
			if !priced {
				if est != 0 {
					t.Errorf("%s is unpriced but estimated at %s", model, est)
				}
				continue
			}
			var worst fleet.Micros
			for i := range 300 {
				var spent fleet.Micros
				m := worker.Mission{ID: fmt.Sprintf("m-%d", i), Attempt: 1, MissionQueued: fleet.MissionQueued{Model: model}}
				err := agent(context.Background(), m, func(ev fleet.Event) error {
					if ev.Type == fleet.TypeLLMCall {
						var c fleet.LLMCall
						if err := json.Unmarshal(ev.Data, &c); err != nil {
							return err
						}
						spent += price.Cost(c)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				worst = max(worst, spent)
			}
			if worst > est {
				t.Errorf("%s: estimate %s, the costliest of 300 missions %s; want costliest <= estimate", model, est, worst)
			}
		}
	}
}

// TestBudgetIDsAreTheServers checks the ids the workload computes for its
// budgets, which it uses to update them, against the domain's.
func TestBudgetIDsAreTheServers(t *testing.T) {
	for _, tn := range live.DefaultTenants() {
		for _, b := range tn.Budgets {
			lim := fleet.BudgetLimit{Scope: b.Scope, ProjectID: b.ProjectID, ScopeID: b.ScopeID, Period: b.Period, LimitUSD: b.LimitUSD, WarnPct: b.WarnPct, Action: b.Action, ThrottleModel: b.ThrottleModel}
			if err := lim.Normalize(); err != nil {
				t.Fatalf("%s: %v", b.ID(), err)
			}
			if lim.ID != b.ID() {
				t.Errorf("budget %+v: live says %s, the domain %s", b, b.ID(), lim.ID)
			}
		}
	}
}
