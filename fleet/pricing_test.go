package fleet_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// TestCostOfOneCallOfEachKind pins what one call costs, per token kind, for
// the two most used models. The expected micro-dollars are worked out by
// hand from pricing.json (USD per million tokens):
//
//	claude-sonnet-4-5: input 3.00, output 15.00, cache read 0.30, cache write 3.75;
//	                   above 200,000 input tokens (cache included): 6.00, 22.50, 0.60, 7.50
//	gpt-5:             input 1.25, output 10.00, cache read 0.125, cache write 1.25
//	                   (the list prices no cache writes: they cost what input does)
//
// cost in micro-dollars = tokens × (USD per million) — the millions cancel —
// rounded half up to a whole micro-dollar. Input tokens exclude cache reads
// and cache writes (Anthropic style), so the four kinds never overlap.
func TestCostOfOneCallOfEachKind(t *testing.T) {
	tests := []struct {
		name            string
		model           string
		in, out, cr, cw int64
		want            fleet.Micros
	}{
		{"sonnet input only", "claude-sonnet-4-5", 12_345, 0, 0, 0, 37_035},                       // 12,345 × 3.00 = 37,035
		{"sonnet output only", "claude-sonnet-4-5", 0, 6_789, 0, 0, 101_835},                      // 6,789 × 15.00 = 101,835
		{"sonnet cache read only", "claude-sonnet-4-5", 0, 0, 100_001, 0, 30_000},                 // 100,001 × 0.30 = 30,000.3 → 30,000
		{"sonnet cache write only", "claude-sonnet-4-5", 0, 0, 0, 4_321, 16_204},                  // 4,321 × 3.75 = 16,203.75 → 16,204
		{"sonnet all four kinds", "claude-sonnet-4-5", 1_000, 500, 20_000, 2_000, 24_000},         // 3,000 + 7,500 + 6,000 + 7,500
		{"sonnet half a micro-dollar rounds up", "claude-sonnet-4-5", 0, 0, 0, 2, 8},              // 2 × 3.75 = 7.5 → 8
		{"sonnet one million output tokens", "claude-sonnet-4-5", 0, 1_000_000, 0, 0, 15_000_000}, // $15.00
		{"gpt-5 input only", "gpt-5", 12_345, 0, 0, 0, 15_431},                                    // 12,345 × 1.25 = 15,431.25 → 15,431
		{"gpt-5 output only", "gpt-5", 0, 6_789, 0, 0, 67_890},                                    // 6,789 × 10.00 = 67,890
		{"gpt-5 cache read only", "gpt-5", 0, 0, 100_001, 0, 12_500},                              // 100,001 × 0.125 = 12,500.125 → 12,500
		{"gpt-5 cache write only", "gpt-5", 0, 0, 0, 4_321, 5_401},                                // 4,321 × 1.25 = 5,401.25 → 5,401
		{"gpt-5 half a micro-dollar rounds up", "gpt-5", 2, 0, 0, 0, 3},                           // 2 × 1.25 = 2.5 → 3
		{"gpt-5 one token of cache read", "gpt-5", 0, 0, 1, 0, 0},                                 // 1 × 0.125 = 0.125 → 0
		// The tier is chosen by input, cache read and cache write together.
		{"sonnet at the tier threshold", "claude-sonnet-4-5", 150_000, 1_000, 50_000, 0, 480_000},       // 200,000 is not above: 450,000 + 15,000 + 15,000
		{"sonnet one token above the tier", "claude-sonnet-4-5", 150_000, 1_000, 50_001, 0, 952_501},    // 900,000 + 22,500 + 30,000.6 → 952,501
		{"sonnet above the tier by cache writes", "claude-sonnet-4-5", 1_000, 0, 0, 199_001, 1_498_508}, // 6,000 + 199,001 × 7.50 = 1,498,507.5 → 1,498,508
		{"sonnet far above the tier", "claude-sonnet-4-5", 1_000_000, 0, 0, 0, 6_000_000},               // $6.00
	}
	pricing := fleet.DefaultPricing()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			price, ok := pricing.Lookup(tt.model)
			if !ok {
				t.Fatalf("%s is unpriced", tt.model)
			}
			call := fleet.LLMCall{Model: tt.model, InputTokens: tt.in, OutputTokens: tt.out, CacheReadTokens: tt.cr, CacheWriteTokens: tt.cw}
			if got := price.Cost(call); got != tt.want {
				t.Errorf("Price.Cost = %d µ$, want %d µ$", got, tt.want)
			}
			// The fold charges the project, the agent and today exactly that.
			s := fleet.NewState(nil)
			feed(t, s, t0, fleettest.LLMCall("acme", "a1", "r1", tt.model, tt.in, tt.out, tt.cr, tt.cw, t0))
			v := s.View("acme")
			got := []fleet.Micros{v.Projects["acme"].SpendTotal, v.Projects["acme"].SpendToday, v.Agents["a1"].Spend, v.Posture.SpendTotal}
			want := []fleet.Micros{tt.want, tt.want, tt.want, tt.want}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("project total, project today, agent, posture spend (-want +got):\n%s", diff)
			}
			if tokens := v.Projects["acme"].TokensTotal; tokens != tt.in+tt.out+tt.cr+tt.cw {
				t.Errorf("tokens_total = %d, want %d", tokens, tt.in+tt.out+tt.cr+tt.cw)
			}
		})
	}
}

func TestPricingLookup(t *testing.T) {
	p := fleet.DefaultPricing()
	price := func(name string) fleet.Price {
		pr, ok := p.Lookup(name)
		if !ok {
			t.Fatalf("%s is not in pricing.json", name)
		}
		return pr
	}
	tests := []struct {
		model  string
		want   fleet.Price
		priced bool
	}{
		{"claude-sonnet-4-5", price("claude-sonnet-4-5"), true},
		{"claude-sonnet-4-5-20250929", price("claude-sonnet-4-5"), true}, // not claude-sonnet-4: the longest prefix wins
		{"claude-sonnet-4-20250514", price("claude-sonnet-4"), true},
		{"gpt-5-mini-2025-08-07", price("gpt-5-mini"), true}, // not gpt-5
		{"gpt-5-2025-08-07", price("gpt-5"), true},
		{"gemini-2.5-flash-lite-preview-09-2025", price("gemini-2.5-flash-lite"), true}, // not gemini-2.5-flash
		{"Claude-Sonnet-4-5", price("claude-sonnet-4-5"), true},                         // names are case-insensitive
		{"ollama/qwen3:8b", price("ollama/"), true},
		{"llama3.1", price("llama3.1"), true},
		{"claude", fleet.Price{}, false}, // shorter than every entry
		{"my-gpt-5", fleet.Price{}, false},
		{"acme-finetune-7b", fleet.Price{}, false},
		{"", fleet.Price{}, false},
		// The list's own rules: gpt-5 is the names it spells out, not a
		// prefix; gemini-2.5-pro is a prefix except for speech models;
		// Vertex AI's names for Claude contain the model's; grok-4.3 takes
		// dated names by a regular expression.
		{"gpt-5-2026-01-01", fleet.Price{}, false},
		{"gpt-5-chat-latest", price("gpt-5"), true},
		{"gemini-2.5-pro-preview-06-05", price("gemini-2.5-pro"), true},
		{"gemini-2.5-pro-tts-x", fleet.Price{}, false},
		{"claude-sonnet-4-5@20250929", price("claude-sonnet-4-5"), true},
		{"grok-4.3-20260101", price("grok-4.3"), true},
		{"grok-4.3-2026", fleet.Price{}, false},
		// The local mistral is free; Mistral's hosted models are not.
		{"mistral:7b", price("mistral"), true},
		{"mistral-large-latest", price("mistral-large"), true},
	}
	for _, tt := range tests {
		got, ok := p.Lookup(tt.model)
		if ok != tt.priced {
			t.Errorf("Lookup(%q) priced = %v, want %v", tt.model, ok, tt.priced)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", tt.model, diff)
		}
	}
	if pr := price("claude-sonnet-4-5"); pr.Provider != "anthropic" || pr.Output != 15_000_000 {
		t.Errorf("claude-sonnet-4-5 = %+v, want anthropic at 15 USD per million output tokens", pr)
	}
	if pr := price("mistral-large-latest"); pr.Provider != "mistral" || pr.Input == 0 {
		t.Errorf("mistral-large-latest = %+v, want Mistral's price, not the free local mistral", pr)
	}
	// Google lists Claude too (Vertex AI): a name both list is Anthropic's.
	if pr := price("claude-sonnet-4"); pr.Provider != "anthropic" {
		t.Errorf("claude-sonnet-4 is priced as %s's, want anthropic's", pr.Provider)
	}
	var none *fleet.Pricing
	if _, ok := none.Lookup("gpt-5"); ok {
		t.Errorf("a nil Pricing priced gpt-5")
	}
}

// TestUnpricedModelIsCountedNeverCharged checks that a model missing from
// the table costs nothing, is counted where the HUD shows it, and that its
// tokens still count.
func TestUnpricedModelIsCountedNeverCharged(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0,
		fleettest.LLMCall("acme", "a1", "r1", "acme-finetune-7b", 1000, 1000, 1000, 1000, t0),
		fleettest.LLMCall("acme", "a1", "r1", "claude", 5, 5, 0, 0, t0),
		fleettest.LLMCall("acme", "a1", "r1", "gpt-5", 1000, 0, 0, 0, t0), // 1,000 × 1.25 = 1,250 µ$
		fleettest.LLMCall("globex", "g1", "r2", "mystery", 10, 0, 0, 0, t0),
	)
	if got := s.Counts().Unpriced; got != 3 {
		t.Errorf("Counts().Unpriced = %d, want 3", got)
	}
	v := s.View(fleet.ScopeAll)
	type row struct {
		Unpriced int64
		Spend    fleet.Micros
		Tokens   int64
	}
	got := map[string]row{}
	for id, p := range v.Projects {
		got[id] = row{p.UnpricedCalls, p.SpendTotal, p.TokensTotal}
	}
	want := map[string]row{"acme": {2, 1250, 5010}, "globex": {1, 0, 10}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("per project unpriced calls, spend, tokens (-want +got):\n%s", diff)
	}
	if v.Posture.UnpricedCalls != 3 {
		t.Errorf("posture unpriced_calls = %d, want 3", v.Posture.UnpricedCalls)
	}
	if text := s.View("globex").Ticker[0].Text; !strings.Contains(text, "unpriced") {
		t.Errorf("ticker says %q, want it to say the call is unpriced", text)
	}
}

func TestParsePricing(t *testing.T) {
	good := `{"as_of":"2027-01-01","models":{"house-model":{"provider":"self","input":"0.5","output":"1.5","cache_read":"0.05","cache_write":"0"}}}`
	p, err := fleet.ParsePricing([]byte(good))
	if err != nil {
		t.Fatalf("ParsePricing: %v", err)
	}
	want := fleet.Price{Provider: "self", Input: 500_000, Output: 1_500_000, CacheRead: 50_000}
	got, ok := p.Lookup("house-model-v2")
	if !ok || !cmp.Equal(want, got) || p.AsOf != "2027-01-01" {
		t.Errorf("Lookup(house-model-v2) = %+v, %v as of %q; want %+v as of 2027-01-01", got, ok, p.AsOf, want)
	}
	if _, ok := p.Lookup("gpt-5"); ok {
		t.Errorf("a custom table priced gpt-5: tables must not fall back to the default")
	}
	// A fold with that table charges by it.
	s := fleet.NewState(p)
	feed(t, s, t0, fleettest.LLMCall("acme", "a1", "r1", "house-model", 2000, 1000, 0, 0, t0)) // 2,000 × 0.5 + 1,000 × 1.5 = 2,500
	if got := s.View("acme").Projects["acme"].SpendTotal; got != 2500 {
		t.Errorf("spend with the custom table = %d µ$, want 2500", got)
	}

	bad := []struct{ name, json, wantErr string }{
		{"not JSON", `{`, "parse pricing"},
		{"no date", `{"models":{"m":{"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`, "as_of"},
		{"no models", `{"as_of":"2027-01-01","models":{}}`, "no models"},
		{"a missing price", `{"as_of":"2027-01-01","models":{"m":{"input":"1","output":"1","cache_read":"1"}}}`, "cache_write price is missing"},
		{"a price that is not a number", `{"as_of":"2027-01-01","models":{"m":{"input":"one","output":"1","cache_read":"1","cache_write":"1"}}}`, `"m": input`},
		{"a negative price", `{"as_of":"2027-01-01","models":{"m":{"input":"1","output":"-1","cache_read":"1","cache_write":"1"}}}`, "output price is negative"},
		{"a price as a JSON number", `{"as_of":"2027-01-01","models":{"m":{"input":1,"output":"1","cache_read":"1","cache_write":"1"}}}`, "parse pricing"},
		// Found by FuzzParsePricing: which of two such entries priced the
		// model depended on map order.
		{"one name twice in two cases", `{"as_of":"2027-01-01","models":{"House":{"input":"1","output":"1","cache_read":"1","cache_write":"1"},"house":{"input":"2","output":"2","cache_read":"2","cache_write":"2"}}}`, `"House" and "house" are one name`},
		// Found by FuzzParsePricing: a call of the largest token counts
		// overflowed the cost at such a price.
		{"a price too large to compute with", `{"as_of":"2027-01-01","models":{"m":{"input":"2000.000001","output":"1","cache_read":"1","cache_write":"1"}}}`, "input price 2000.000001 is above 2000.000000"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p, err := fleet.ParsePricing([]byte(tt.json))
			if err == nil {
				t.Fatalf("ParsePricing accepted it: %+v", p)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultPricingCoversTheFleetModels(t *testing.T) {
	p := fleet.DefaultPricing()
	if p.AsOf == "" {
		t.Errorf("the embedded table has no date")
	}
	for _, m := range fleettest.PricedModels {
		if _, ok := p.Lookup(m); !ok {
			t.Errorf("%s is unpriced in the embedded table", m)
		}
	}
	if _, ok := p.Lookup(fleettest.UnpricedModel); ok {
		t.Errorf("%s is priced; the generator needs an unpriced model", fleettest.UnpricedModel)
	}
}
