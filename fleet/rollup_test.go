package fleet_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// TestRollupIsTheFoldsMoney checks on random streams (duplicates, late and
// future times, invalid messages, unpriced models) that the Coster and a
// Rollup of everything count exactly what the fold counts, per project, to
// the micro-dollar: the money of GET /costs is the money of the HUD.
func TestRollupIsTheFoldsMoney(t *testing.T) {
	t.Parallel()
	for seed := range seeds() {
		msgs := generated(seed, 2000)
		s := fleettest.Fold(msgs)
		c := fleet.NewCoster(nil)
		r := fleet.NewRollup(time.Time{}, time.Time{})
		for _, m := range msgs {
			ev, err := fleet.DecodeEvent(m.Subject, m.Body)
			if err != nil {
				continue
			}
			if ch, ok := c.Apply(m.At, ev); ok {
				r.Add(ch)
			}
		}
		type money struct {
			Spend    fleet.Micros
			Tokens   int64
			Unpriced int64
		}
		got, want := map[string]money{}, map[string]money{}
		for id, p := range s.View(fleet.ScopeAll).Projects {
			if p.TokensTotal > 0 || p.UnpricedCalls > 0 {
				want[id] = money{p.SpendTotal, p.TokensTotal, p.UnpricedCalls}
			}
		}
		for _, g := range r.Groups(fleet.GroupProject) {
			got[g.Key] = money{g.Cost, g.Tokens, g.Unpriced}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("seed %d: per project (-fold +rollup):\n%s", seed, diff)
		}
		// Every dimension adds up to the same total.
		for _, dim := range fleet.GroupDims {
			var sum money
			for _, g := range r.Groups(dim) {
				sum.Spend += g.Cost
				sum.Tokens += g.Tokens
				sum.Unpriced += g.Unpriced
			}
			if tot := r.Total(); sum != (money{tot.Cost, tot.Tokens, tot.Unpriced}) {
				t.Errorf("seed %d: %s groups add up to %+v, total %+v", seed, dim, sum, tot)
			}
		}
	}
}

func TestCosterAttributesChargesLikeTheFold(t *testing.T) {
	c := fleet.NewCoster(nil)
	at := t0
	apply := func(ev fleet.Event, stored time.Time) (fleet.Charge, bool) {
		t.Helper()
		return c.Apply(stored, ev)
	}
	// The mission says who it is for; its run and calls do not.
	apply(fleettest.E{Type: fleet.TypeMissionQueued, Time: at, ProjectID: "acme", TeamID: "support", UserID: "u-7", MissionID: "m-1",
		Data: fleet.MissionQueued{Title: "t"}}.Event(), at)
	apply(fleettest.RunStarted("acme", "a-1", "r-1", "m-1", "claude-sonnet-4-5", at), at)
	call := fleettest.LLMCall("acme", "a-1", "r-1", "claude-sonnet-4-5", 1_000, 500, 20_000, 2_000, at)
	ch, ok := apply(call, at)
	want := fleet.Charge{EventID: call.ID, Time: at, ProjectID: "acme", TeamID: "support", UserID: "u-7", AgentID: "a-1", MissionID: "m-1", RunID: "r-1",
		Model: "claude-sonnet-4-5", Provider: "anthropic", Tokens: 23_500, Cost: 24_000, Priced: true}
	if diff := cmp.Diff(want, ch); !ok || diff != "" {
		t.Errorf("charge (-want +got):\n%s", diff)
	}
	if _, ok := apply(call, at.Add(time.Second)); ok {
		t.Errorf("a duplicate event was charged again")
	}
	// Another tenant's run of the same id learns nothing from acme's.
	other, _ := apply(fleettest.LLMCall("globex", "g-1", "r-1", "gpt-5", 1_000, 0, 0, 0, at), at)
	if other.TeamID != "" || other.UserID != "" || other.Cost != 1_250 {
		t.Errorf("globex's call: %+v", other)
	}
	// A worker with a fast clock cannot move the charge into tomorrow.
	future := fleettest.LLMCall("acme", "a-1", "r-1", "gpt-5", 0, 100, 0, 0, at.Add(48*time.Hour))
	if ch, _ := apply(future, at.Add(time.Minute)); !ch.Time.Equal(at.Add(time.Minute)) {
		t.Errorf("future call charged at %s, want the stream's clock %s", ch.Time, at.Add(time.Minute))
	}
	// An unpriced model: counted, never charged.
	if ch, ok := apply(fleettest.LLMCall("acme", "a-1", "r-1", "acme-finetune-7b", 9_999, 9_999, 0, 0, at), at); !ok || ch.Priced || ch.Cost != 0 || ch.Tokens != 19_998 {
		t.Errorf("unpriced call: %+v, %v", ch, ok)
	}
}

// TestPinnedCostsOfOtherProviders adds to TestCostOfOneCallOfEachKind: one
// call of each kind on a Google model, and a local model that is priced
// (free) rather than unpriced.
func TestPinnedCostsOfOtherProviders(t *testing.T) {
	p := fleet.DefaultPricing()
	tests := []struct {
		model           string
		in, out, cr, cw int64
		want            fleet.Micros
	}{
		{"gemini-2.5-pro", 12_345, 0, 0, 0, 15_431},         // 12,345 × 1.25 = 15,431.25
		{"gemini-2.5-pro", 0, 6_789, 0, 0, 67_890},          // 6,789 × 10.00
		{"gemini-2.5-pro", 0, 0, 100_001, 0, 12_500},        // 100,001 × 0.125 = 12,500.125
		{"gemini-2.5-pro", 0, 0, 0, 4_321, 5_401},           // the list has no cache-write price: input's, 4,321 × 1.25 = 5,401.25
		{"gemini-2.5-pro", 200_000, 0, 0, 0, 250_000},       // 200,000 input tokens: not above the tier, 200,000 × 1.25
		{"gemini-2.5-pro", 200_001, 1_000, 0, 0, 515_003},   // above 200,000: 200,001 × 2.50 + 1,000 × 15.00 = 515,002.5
		{"gemini-2.5-pro", 100_000, 0, 100_001, 0, 275_000}, // above by its cache reads: 100,000 × 2.50 + 100,001 × 0.25 = 275,000.25 → 275,000
		{"gemini-2.5-flash", 1_000, 1_000, 1_000, 0, 2_830}, // 300 + 2,500 + 30
		{"claude-haiku-4-5", 0, 0, 0, 4_321, 5_401},         // 4,321 × 1.25 = 5,401.25
		{"ollama/llama3.1:8b", 1_000_000, 1_000_000, 0, 0, 0},
	}
	for _, tt := range tests {
		price, ok := p.Lookup(tt.model)
		if !ok {
			t.Fatalf("%s is unpriced", tt.model)
		}
		if got := price.Cost(fleet.LLMCall{InputTokens: tt.in, OutputTokens: tt.out, CacheReadTokens: tt.cr, CacheWriteTokens: tt.cw}); got != tt.want {
			t.Errorf("%s %d/%d/%d/%d costs %d µ$, want %d", tt.model, tt.in, tt.out, tt.cr, tt.cw, got, tt.want)
		}
	}
	if got, ok := fleet.EstimateCost(p, "gpt-5", 10_000, 2_000); !ok || got != 32_500 {
		t.Errorf("EstimateCost(gpt-5, 10k in, 2k out) = %d, %v; want 32,500", got, ok)
	}
	if _, ok := fleet.EstimateCost(p, "mystery", 1, 1); ok {
		t.Errorf("an unpriced model was estimated")
	}
}

func TestRollupWindowAndGroups(t *testing.T) {
	from, to := t0, t0.Add(time.Hour)
	r := fleet.NewRollup(from, to)
	add := func(at time.Time, team, model string, cost fleet.Micros, priced bool) bool {
		return r.Add(fleet.Charge{Time: at, ProjectID: "acme", TeamID: team, RunID: "r-" + team, Model: model, Provider: "p", Tokens: 10, Cost: cost, Priced: priced})
	}
	if add(from.Add(-time.Nanosecond), "a", "m1", 100, true) || add(to, "a", "m1", 100, true) {
		t.Errorf("charges outside [from, to) were counted")
	}
	add(from, "a", "m1", 300, true)
	add(to.Add(-time.Nanosecond), "b", "m2", 100, true)
	add(from.Add(time.Minute), "", "m3", 0, false)
	want := []fleet.CostGroup{
		{Key: "a", Cost: 300, Tokens: 10, Calls: 1, Runs: 1, SharePct: 75},
		{Key: "b", Cost: 100, Tokens: 10, Calls: 1, Runs: 1, SharePct: 25},
		{Key: fleet.Unattributed, Tokens: 10, Calls: 1, Runs: 1, Unpriced: 1},
	}
	if diff := cmp.Diff(want, r.Groups(fleet.GroupTeam)); diff != "" {
		t.Errorf("by team (-want +got):\n%s", diff)
	}
	if got := r.Report("acme", "model"); got.Total.Cost != 400 || got.Total.Calls != 3 || !cmp.Equal(got.UnpricedModels, []string{"m3"}) || len(got.Groups) != 3 {
		t.Errorf("report %+v", got)
	}
	if g := r.Groups("colour"); len(g) != 0 {
		t.Errorf("an unknown dimension has groups: %+v", g)
	}
}
