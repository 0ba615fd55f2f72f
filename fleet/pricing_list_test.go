package fleet_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
)

// mtok reads a price as the list writes it, in USD per million tokens.
func mtok(t *testing.T, usd string) fleet.Micros {
	t.Helper()
	m, err := fleet.ParseUSD(usd)
	if err != nil {
		t.Fatalf("ParseUSD(%q): %v", usd, err)
	}
	return m
}

// TestEmbeddedPricingFollowsTheList pins prices of the embedded table to
// the figures of the list it is converted from: @pydantic/genai-prices
// 0.1.8, file package/dist/index.js of its npm tarball (the provider list
// the module embeds, exported through waitForUpdate()), at the line of
// each model's `id:`. A refresh that changes them changes this test.
func TestEmbeddedPricingFollowsTheList(t *testing.T) {
	type kinds struct{ in, out, cacheRead, cacheWrite string }
	tests := []struct {
		name     string // the name looked up
		provider string
		base     kinds
		above    int64 // a tier's threshold in input tokens, 0 for none
		tier     kinds
	}{
		// anthropic, id "claude-sonnet-4-5" (line 675): input_mtok {base 3,
		// tiers [{start 200000, price 6}]}, output_mtok {15, 22.5},
		// cache_read_mtok {0.3, 0.6}, cache_write_mtok {3.75, 7.5}.
		{"claude-sonnet-4-5-20250929", "anthropic", kinds{"3", "15", "0.3", "3.75"}, 200_000, kinds{"6", "22.5", "0.6", "7.5"}},
		// anthropic, id "claude-haiku-4-5" (line 304): input_mtok 1,
		// output_mtok 5, cache_read_mtok 0.1, cache_write_mtok 1.25.
		{"claude-haiku-4-5", "anthropic", kinds{"1", "5", "0.1", "1.25"}, 0, kinds{}},
		// openai, id "gpt-5-mini" (line 16881): input_mtok 0.25, output_mtok
		// 2, cache_read_mtok 0.025, no cache_write_mtok (cache writes cost
		// what input does).
		{"gpt-5-mini-2025-08-07", "openai", kinds{"0.25", "2", "0.025", "0.25"}, 0, kinds{}},
		// openai, id "o3" (line 18336): from start_date 2025-06-10,
		// input_mtok 2, output_mtok 8, cache_read_mtok 0.5 (10 and 40
		// before).
		{"o3", "openai", kinds{"2", "8", "0.5", "2"}, 0, kinds{}},
		// google, id "gemini-2.5-pro" (line 8414): input_mtok {1.25, tiers
		// [{200000, 2.5}]}, output_mtok {10, 15}, cache_read_mtok {0.125,
		// 0.25}, no cache_write_mtok.
		{"gemini-2.5-pro", "google", kinds{"1.25", "10", "0.125", "1.25"}, 200_000, kinds{"2.5", "15", "0.25", "2.5"}},
		// mistral, id "mistral-large" (line 14653): input_mtok 2,
		// output_mtok 6, no cache prices.
		{"mistral-large-latest", "mistral", kinds{"2", "6", "2", "2"}, 0, kinds{}},
		// x-ai, id "grok-4.3" (line 30062), a dated name by its regex:
		// input_mtok {1.25, tiers [{199999, 2.5}]}, output_mtok {2.5, 5},
		// cache_read_mtok {0.2, 0.4}.
		{"grok-4.3-20260101", "x-ai", kinds{"1.25", "2.5", "0.2", "1.25"}, 199_999, kinds{"2.5", "5", "0.4", "2.5"}},
	}
	p := fleet.DefaultPricing()
	if p.AsOf != "2026-09-23" {
		t.Errorf("as_of %q, want 2026-09-23 (the publish date of @pydantic/genai-prices 0.1.8)", p.AsOf)
	}
	for _, tt := range tests {
		want := fleet.Price{Provider: tt.provider, Input: mtok(t, tt.base.in), Output: mtok(t, tt.base.out),
			CacheRead: mtok(t, tt.base.cacheRead), CacheWrite: mtok(t, tt.base.cacheWrite)}
		if tt.above > 0 {
			want.Tiers = []fleet.PriceTier{{AboveInputTokens: tt.above, Input: mtok(t, tt.tier.in), Output: mtok(t, tt.tier.out),
				CacheRead: mtok(t, tt.tier.cacheRead), CacheWrite: mtok(t, tt.tier.cacheWrite)}}
		}
		got, ok := p.Lookup(tt.name)
		if !ok {
			t.Errorf("%s is unpriced", tt.name)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-list +table):\n%s", tt.name, diff)
		}
	}
}

// TestPricingMatchRules checks how Lookup chooses among entries whose
// rules match a name: the most specific match wins, whatever the order of
// the file.
func TestPricingMatchRules(t *testing.T) {
	const table = `{"as_of":"2027-01-01","models":{
		"plain":    {"input":"1","output":"1","cache_read":"1","cache_write":"1"},
		"exact":    {"match":{"or":[{"equals":"plain-x"},{"equals":"Named-Exactly"}]},"input":"2","output":"2","cache_read":"2","cache_write":"2"},
		"longer":   {"match":{"starts_with":"plain-long"},"input":"3","output":"3","cache_read":"3","cache_write":"3"},
		"suffix":   {"match":{"ends_with":"-turbo"},"input":"4","output":"4","cache_read":"4","cache_write":"4"},
		"contains": {"match":{"contains":"vision"},"input":"5","output":"5","cache_read":"5","cache_write":"5"},
		"dated":    {"match":{"regex":"^model-\\d{8}$"},"input":"6","output":"6","cache_read":"6","cache_write":"6"},
		"no-tts":   {"match":{"and":[{"starts_with":"speech"},{"not":{"contains":"-tts"}}]},"input":"7","output":"7","cache_read":"7","cache_write":"7"}
	}}`
	p, err := fleet.ParsePricing([]byte(table))
	if err != nil {
		t.Fatalf("ParsePricing: %v", err)
	}
	tests := []struct {
		model string
		want  string // the entry that prices it, "" for unpriced
	}{
		{"plain", "plain"},                    // an entry without a rule: its name
		{"plain-2", "plain"},                  // and what the name prefixes
		{"plain-x", "exact"},                  // an exact name beats a prefix
		{"named-exactly", "exact"},            // in any case
		{"plain-long-1", "longer"},            // the longest prefix wins
		{"plain-turbo", "plain"},              // a prefix beats a suffix
		{"fast-turbo", "suffix"},              //
		{"fast-vision-turbo", "suffix"},       // a suffix beats a contained string
		{"big-vision-1", "contains"},          //
		{"model-20270101", "dated"},           // a regular expression
		{"model-2027", ""},                    //
		{"speech-1", "no-tts"},                // and, not
		{"speech-1-tts", ""},                  //
		{"unknown", ""},                       //
		{"PLAIN-LONG-X", "longer"},            // names are case-insensitive
		{"my-plain", ""},                      // a prefix is a prefix
		{"named-exactly-2", ""},               // an exact name is exact
		{"vision-model-20270101", "contains"}, // a contained string beats a regular expression
	}
	for _, tt := range tests {
		got, ok := p.Lookup(tt.model)
		var want fleet.Price
		if tt.want != "" {
			want, _ = p.Entry(tt.want)
		}
		if ok != (tt.want != "") || !cmp.Equal(want, got) {
			t.Errorf("Lookup(%q) = %+v, %v; want entry %q", tt.model, got, ok, tt.want)
		}
	}
}

// TestPricingMerge checks what --pricing files do: their entries replace
// the embedded table's entries of the same name and add the others; the
// rest of the embedded table stays.
func TestPricingMerge(t *testing.T) {
	over, err := fleet.ParsePricing([]byte(`{"as_of":"2027-02-01","models":{
		"GPT-5":       {"provider":"openai","input":"1","output":"9","cache_read":"0.1","cache_write":"0"},
		"house-model": {"provider":"self","input":"0.5","output":"1.5","cache_read":"0.05","cache_write":"0"}}}`))
	if err != nil {
		t.Fatalf("ParsePricing: %v", err)
	}
	base := fleet.DefaultPricing()
	merged := base.Merge(over)
	if want := base.AsOf + " + 2027-02-01"; merged.AsOf != want {
		t.Errorf("merged as_of %q, want %q", merged.AsOf, want)
	}
	tests := []struct {
		model string
		want  fleet.Price
	}{
		// The override's gpt-5 has no rule: it prices its name and what the
		// name prefixes, and the embedded entry's names are gone with it.
		{"gpt-5", fleet.Price{Provider: "openai", Input: 1_000_000, Output: 9_000_000, CacheRead: 100_000}},
		{"gpt-5-2026-01-01", fleet.Price{Provider: "openai", Input: 1_000_000, Output: 9_000_000, CacheRead: 100_000}},
		{"house-model-v2", fleet.Price{Provider: "self", Input: 500_000, Output: 1_500_000, CacheRead: 50_000}},
	}
	for _, tt := range tests {
		got, ok := merged.Lookup(tt.model)
		if !ok || !cmp.Equal(tt.want, got) {
			t.Errorf("merged Lookup(%q) = %+v, %v; want %+v", tt.model, got, ok, tt.want)
		}
	}
	// The embedded entries not overridden keep pricing, gpt-5-mini before
	// the override's gpt-5 prefix.
	for _, m := range []string{"claude-sonnet-4-5", "gpt-5-mini", "gemini-2.5-pro", "llama3.1"} {
		want, _ := base.Lookup(m)
		if got, ok := merged.Lookup(m); !ok || !cmp.Equal(want, got) {
			t.Errorf("merged Lookup(%q) = %+v, %v; want the embedded %+v", m, got, ok, want)
		}
	}
	// gpt-5-chat was a name of the embedded gpt-5 only.
	if got, ok := merged.Lookup("gpt-5-chat"); !ok || got.Output != 9_000_000 {
		t.Errorf("merged Lookup(gpt-5-chat) = %+v, %v; want the override's gpt-5 by its prefix", got, ok)
	}
	if got, ok := base.Lookup("gpt-5"); !ok || got.Output != 10_000_000 {
		t.Errorf("Merge changed the embedded table: gpt-5 = %+v", got)
	}
}

func TestParsePricingTiersAndRules(t *testing.T) {
	good := `{"as_of":"2027-01-01","models":{"m":{"input":"1","output":"2","cache_read":"0.1","cache_write":"1.25",
		"tiers":[{"above_input_tokens":100,"input":"2","output":"4","cache_read":"0.2","cache_write":"2.5"},
		         {"above_input_tokens":1000,"input":"3","output":"6","cache_read":"0.3","cache_write":"3.75"}]}}}`
	p, err := fleet.ParsePricing([]byte(good))
	if err != nil {
		t.Fatalf("ParsePricing: %v", err)
	}
	price, _ := p.Lookup("m")
	for _, tt := range []struct {
		in, out, cr, cw int64
		want            fleet.Micros
	}{
		{100, 0, 0, 0, 100},               // 100 is not above 100: 100 × 1
		{100, 0, 1, 0, 200},               // 101 is: 100 × 2 + 1 × 0.2 = 200.2
		{1_000, 10, 0, 0, 2_040},          // 1,000 is not above 1,000: 1,000 × 2 + 10 × 4
		{0, 10, 0, 1_001, 3_814},          // 1,001 by cache writes: 10 × 6 + 1,001 × 3.75 = 3,813.75
		{50, 1_000_000, 50, 0, 2_000_055}, // output does not choose the tier: 50 × 1 + 1,000,000 × 2 + 50 × 0.1
		{-5, 0, 0, 0, 0},                  // a negative count counts as none
	} {
		call := fleet.LLMCall{InputTokens: tt.in, OutputTokens: tt.out, CacheReadTokens: tt.cr, CacheWriteTokens: tt.cw}
		if got := price.Cost(call); got != tt.want {
			t.Errorf("%d/%d/%d/%d tokens cost %d µ$, want %d", tt.in, tt.out, tt.cr, tt.cw, got, tt.want)
		}
	}
	bad := []struct{ name, json, wantErr string }{
		{"tiers not ascending", `{"as_of":"2027-01-01","models":{"m":{"input":"1","output":"1","cache_read":"1","cache_write":"1","tiers":[{"above_input_tokens":10,"input":"1","output":"1","cache_read":"1","cache_write":"1"},{"above_input_tokens":10,"input":"1","output":"1","cache_read":"1","cache_write":"1"}]}}}`, "does not ascend"},
		{"a tier at zero", `{"as_of":"2027-01-01","models":{"m":{"input":"1","output":"1","cache_read":"1","cache_write":"1","tiers":[{"input":"1","output":"1","cache_read":"1","cache_write":"1"}]}}}`, "above_input_tokens 0"},
		{"a tier price missing", `{"as_of":"2027-01-01","models":{"m":{"input":"1","output":"1","cache_read":"1","cache_write":"1","tiers":[{"above_input_tokens":10,"input":"1","output":"1","cache_read":"1"}]}}}`, "tier 0: cache_write price is missing"},
		{"a tier price too large", `{"as_of":"2027-01-01","models":{"m":{"input":"1","output":"1","cache_read":"1","cache_write":"1","tiers":[{"above_input_tokens":10,"input":"2000.000001","output":"1","cache_read":"1","cache_write":"1"}]}}}`, "tier 0: input price"},
		// Found by FuzzParsePricing: an empty name prefixed every model.
		{"an empty name", `{"as_of":"2027-01-01","models":{"":{"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`, "a model name is empty"},
		{"a rule of two kinds", `{"as_of":"2027-01-01","models":{"m":{"match":{"equals":"a","starts_with":"b"},"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`, "exactly one"},
		{"an empty rule", `{"as_of":"2027-01-01","models":{"m":{"match":{},"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`, "exactly one"},
		{"an empty or", `{"as_of":"2027-01-01","models":{"m":{"match":{"or":[]},"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`, "empty or/and"},
		{"a bad regex", `{"as_of":"2027-01-01","models":{"m":{"match":{"regex":"(?!x)"},"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`, "regex"},
		{"only a not", `{"as_of":"2027-01-01","models":{"m":{"match":{"not":{"equals":"x"}},"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`, "every way to match"},
		{"an or with a bare not", `{"as_of":"2027-01-01","models":{"m":{"match":{"or":[{"equals":"x"},{"not":{"equals":"y"}}]},"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`, "every way to match"},
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

// BenchmarkLookup measures Lookup in the embedded table (the fold prices
// every llm.call with it): a name the list spells out, a dated name found
// by a prefix, and an unpriced name, which tries every rule.
func BenchmarkLookup(b *testing.B) {
	p := fleet.DefaultPricing()
	for _, model := range []string{"gpt-5", "claude-sonnet-4-5-20250929", "acme-finetune-7b"} {
		b.Run(model, func(b *testing.B) {
			for b.Loop() {
				p.Lookup(model)
			}
		})
	}
}
