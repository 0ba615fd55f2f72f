package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/sagewai/observatory/costreport"
	"github.com/sagewai/observatory/fleet"
)

// TestPricingFileMergesOnTop runs `observatory cost --pricing FILE`: the
// file's models replace the embedded entries of the same name (gpt-5 made
// free) and add the others (the fine-tune, unpriced by the embedded
// table), and every other model keeps its embedded price.
func TestPricingFileMergesOnTop(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pricing.json")
	table := `{"as_of":"2027-01-01","models":{
		"gpt-5":               {"provider":"openai","input":"0","output":"0","cache_read":"0","cache_write":"0"},
		"contoso-finetune-7b": {"provider":"self-hosted","input":"1","output":"2","cache_read":"0","cache_write":"0"}}}`
	if err := os.WriteFile(file, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	var fig costreport.Figures
	if err := json.Unmarshal([]byte(runCmd(t, "cost", "--json", "--missions", "4", "--pricing", file)), &fig); err != nil {
		t.Fatal(err)
	}
	if want := fleet.DefaultPricing().AsOf + " + 2027-01-01"; fig.PricingAsOf != want {
		t.Errorf("pricing_as_of %q, want %q", fig.PricingAsOf, want)
	}
	costs := map[string]costreport.ModelCost{}
	for _, m := range fig.ByModel {
		costs[m.Model] = m
	}
	for model, priced := range map[string]bool{"gpt-5": false, "contoso-finetune-7b": true, "claude-sonnet-4-5": true, "gpt-5-mini": true} {
		m, ok := costs[model]
		switch {
		case !ok || m.Calls == 0:
			t.Errorf("%s made no calls: %+v", model, fig.ByModel)
		case m.Unpriced:
			t.Errorf("%s is unpriced with the file on top of the embedded table", model)
		case priced && m.CostUSD == 0:
			t.Errorf("%s cost nothing, want its price (from the file or the embedded table)", model)
		case !priced && m.CostUSD != 0:
			t.Errorf("%s cost %s, want 0 (the file makes it free)", model, m.CostUSD)
		}
	}
}
