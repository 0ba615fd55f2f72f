package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
)

var update = flag.Bool("update", false, "rewrite testdata/pricing.golden.json")

// convertFixture runs pricegen on the fixtures, with list and overlay
// replaced when given, and returns the table it wrote.
func convertFixture(t *testing.T, list, overlay []byte) ([]byte, string, error) {
	t.Helper()
	dir := t.TempDir()
	if list == nil {
		list = read(t, "testdata/list.json")
	}
	if overlay == nil {
		overlay = read(t, "testdata/overlay.json")
	}
	listPath, overlayPath := filepath.Join(dir, "list.json"), filepath.Join(dir, "overlay.json")
	write(t, listPath, list)
	write(t, overlayPath, overlay)
	out := filepath.Join(dir, "pricing.json")
	var stdout, stderr bytes.Buffer
	err := run([]string{"-list", listPath, "-package", "testdata/package.json", "-overlay", overlayPath,
		"-as-of", "2026-09-23", "-out", out}, &stdout, &stderr)
	b, readErr := os.ReadFile(out)
	if err == nil && readErr != nil {
		t.Fatalf("pricegen succeeded but wrote no table: %v", readErr)
	}
	if err != nil && readErr == nil {
		t.Fatalf("pricegen failed (%v) but wrote a table", err)
	}
	return b, stderr.String(), err
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConvert converts the fixture list: the table is the golden one,
// byte for byte on every run, the server reads it, and it prices names as
// the list does.
func TestConvert(t *testing.T) {
	first, summary, err := convertFixture(t, nil, nil)
	if err != nil {
		t.Fatalf("pricegen: %v", err)
	}
	again, _, err := convertFixture(t, nil, nil)
	if err != nil {
		t.Fatalf("pricegen, again: %v", err)
	}
	if !bytes.Equal(first, again) {
		t.Errorf("two runs on the same input wrote different tables:\n%s", cmp.Diff(string(first), string(again)))
	}
	golden := "testdata/pricing.golden.json"
	if *update {
		write(t, golden, first)
	}
	if diff := cmp.Diff(string(read(t, golden)), string(first)); diff != "" {
		t.Errorf("the table differs from %s (go test -run TestConvert -update to accept) (-golden +got):\n%s", golden, diff)
	}
	wantSummary := "pricegen: 7 models of 2 providers converted (1 with tiers), 1 added by the overlay; " +
		"6 models skipped (RE2: 1, converted before: 1, finer than: 1, no token prices: 1, reasoning: 1, time of day: 1); " +
		"1 providers (1 models) not converted\n"
	if summary != wantSummary {
		t.Errorf("summary:\n%s\nwant:\n%s", summary, wantSummary)
	}

	table, err := fleet.ParsePricing(first)
	if err != nil {
		t.Fatalf("the server cannot read the table: %v", err)
	}
	if table.AsOf != "2026-09-23" {
		t.Errorf("as_of %q, want 2026-09-23", table.AsOf)
	}
	price := func(in, out, cr, cw string, tiers ...fleet.PriceTier) fleet.Price {
		p := fleet.Price{Input: mtok(t, in), Output: mtok(t, out), CacheRead: mtok(t, cr), CacheWrite: mtok(t, cw), Tiers: tiers}
		return p
	}
	tests := []struct {
		name     string
		provider string // "" for unpriced
		want     fleet.Price
	}{
		// Tiers per kind merged into one tier; the absent tier of cache
		// write keeps its one price; the one-hour cache write and searches
		// are left out.
		{"mk-large-2026", "maker", price("3", "15", "0.3", "3.75",
			fleet.PriceTier{AboveInputTokens: 200_000, Input: 6_000_000, Output: 22_500_000, CacheRead: 600_000, CacheWrite: 3_750_000})},
		{"MK-L", "maker", price("3", "15", "0.3", "3.75",
			fleet.PriceTier{AboveInputTokens: 200_000, Input: 6_000_000, Output: 22_500_000, CacheRead: 600_000, CacheWrite: 3_750_000})},
		// No cache-write price: cache writes cost what input does.
		{"mk-small-2026-01-01", "maker", price("0.25", "2", "0.025", "0.25")},
		{"mk-small-2026-02-02", "", fleet.Price{}}, // equals is exact
		// The same name at a later provider is the earlier provider's;
		// the later one keeps the names only it lists.
		{"mk-small", "maker", price("0.25", "2", "0.025", "0.25")},
		{"cloud/mk-small", "cloud", price("0.3", "2.4", "0.3", "0.3")},
		// The price in effect on the snapshot date; no cache prices at all.
		{"mk-dated", "maker", price("2", "8", "2", "2")},
		{"mk-pro-preview", "maker", price("1.25", "10", "1.25", "1.25")},
		{"mk-pro-preview-tts", "", fleet.Price{}}, // the translated lookahead
		{"mk-v-20260101", "maker", price("0.5", "1.5", "0.5", "0.5")},
		{"vendor/mk-v", "maker", price("0.5", "1.5", "0.5", "0.5")},
		{"x/mk-v@1", "maker", price("0.5", "1.5", "0.5", "0.5")},
		{"mk-free", "maker", price("0", "0", "0", "0")},
		{"local-model-7b", "local", price("0", "0", "0", "0")},
		// Skipped: time of day, reasoning, pages, finer than a micro-dollar,
		// a lookahead; and the reseller's copy.
		{"mk-night", "", fleet.Price{}},
		{"mk-think", "", fleet.Price{}},
		{"mk-ocr", "", fleet.Price{}},
		{"mk-tiny", "", fleet.Price{}},
		{"mk-look-x", "", fleet.Price{}},
	}
	for _, tt := range tests {
		got, ok := table.Lookup(tt.name)
		if ok != (tt.provider != "") {
			t.Errorf("Lookup(%q) priced = %v, want %v", tt.name, ok, tt.provider != "")
			continue
		}
		tt.want.Provider = tt.provider
		if diff := cmp.Diff(tt.want, got); ok && diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", tt.name, diff)
		}
	}
	for _, s := range []string{
		`{"provider":"maker","model":"mk-night","reason":"its prices change with the time of day`,
		`{"provider":"maker","model":"mk-think","reason":"it prices reasoning tokens apart`,
		`{"provider":"maker","model":"mk-ocr","reason":"it has no token prices (priced by input_document_kpages)"}`,
		`{"provider":"maker","model":"mk-tiny","reason":"input_mtok is 0.0000001 USD per million tokens, finer than a micro-dollar per million"}`,
		`{"provider":"maker","model":"mk-look","reason":"its match rule has the regular expression \"^mk-look(?=-x)\"`,
		`{"provider":"cloud","model":"mk-only-maker","reason":"every name its rule spells out exactly is priced by a provider converted before cloud"}`,
		`{"provider":"reseller","models":1,"reason":"a reseller: not converted"}`,
		`{"model":"mk-dated","from":"2027-01-01"}`,
		`"package": "@example/prices@1.2.3"`,
		`"url": "https://www.npmjs.com/package/@example/prices/v/1.2.3"`,
		`"license": "MIT"`,
	} {
		if !bytes.Contains(first, []byte(s)) {
			t.Errorf("the table does not record %s", s)
		}
	}
}

func mtok(t *testing.T, s string) fleet.Micros {
	t.Helper()
	m, err := fleet.ParseUSD(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRefusesUnknownShapes checks that a list the converter does not know
// stops it, naming where, and writes nothing.
func TestRefusesUnknownShapes(t *testing.T) {
	list := string(read(t, "testdata/list.json"))
	tests := []struct {
		name, old, new, wantErr string
	}{
		{"a new provider field", `"name": "Maker",`, `"name": "Maker", "currency": "EUR",`, `providers[0]: unknown field "currency"`},
		{"a new model field", `"name": "MK Large",`, `"name": "MK Large", "batch": true,`, `unknown field "batch"`},
		{"a new price key", `"web_searches_kcount": 10`, `"web_searches_kcount": 10, "thinking_mtok": 1`, `unknown price key "thinking_mtok"`},
		{"a new rule", `{"equals": "mk-night"}`, `{"glob": "mk-night*"}`, `unknown rule "glob"`},
		{"a new constraint", `{"start_date": "2027-01-01"}`, `{"weekday": "sunday"}`, `unknown field "weekday"`},
		{"a start date that is no date", `{"start_date": "2027-01-01"}`, `{"start_date": "2027-02-30"}`, "is not YYYY-MM-DD"},
		{"a constraint of mixed kinds", `{"start_date": "2027-01-01"}`, `{"start_date": "2027-01-01", "start_time": "00:00:00Z"}`, "an unknown price constraint"},
		{"a price as a string", `"input_mtok": 0.25,`, `"input_mtok": "0.25",`, "a price is a number or a tiered price"},
		{"a negative price", `"input_mtok": 0.25,`, `"input_mtok": -0.25,`, "is negative"},
		{"a tier of another shape", `{"start": 200000, "price": 6}`, `{"from": 200000, "price": 6}`, "a tier is {start, price} of numbers"},
		{"a fractional tier start", `{"start": 200000, "price": 6}`, `{"start": 200000.5, "price": 6}`, "is not a token count"},
		{"prices of another shape", `"prices": {"input_mtok": 0.5, "output_mtok": 1.5}`, `"prices": 7`, "prices are neither an object nor a non-empty array"},
		{"no models", `"models": [
      {"id": "mk-large", "match": {"equals": "mk-large"}, "prices": {"input_mtok": 4, "output_mtok": 20}}
    ]`, `"models": []`, "not a non-empty array"},
		{"not a list", list, `{"providers": []}`, "not a JSON array of providers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(list, tt.old) {
				t.Fatalf("the fixture has no %s", tt.old)
			}
			_, _, err := convertFixture(t, []byte(strings.Replace(list, tt.old, tt.new, 1)), nil)
			if !errors.Is(err, errShape) {
				t.Fatalf("pricegen: %v; want an unknown data shape", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not say %q", err, tt.wantErr)
			}
		})
	}
}

// TestRefusesATableThatDisagreesWithTheList checks the converter's own
// check: when Lookup would price a name otherwise than the list, or a
// required model is unpriced, nothing is written.
func TestRefusesATableThatDisagreesWithTheList(t *testing.T) {
	// cloud's "mk-large-x" prefix is more specific than maker's
	// "mk-large" for the name mk-large-x, which the list gives to maker.
	list := strings.Replace(string(read(t, "testdata/list.json")),
		`{"id": "mk-only-maker", "match": {"equals": "mk-l"}`,
		`{"id": "mk-large-x", "match": {"starts_with": "mk-large-x"}, "prices": {"input_mtok": 1, "output_mtok": 1}},
      {"id": "mk-only-maker", "match": {"equals": "mk-l"}`, 1)
	_, _, err := convertFixture(t, []byte(list), nil)
	if err == nil || !strings.Contains(err.Error(), `the list prices "mk-large-x" by model mk-large of maker at 3 in/15 out`) {
		t.Errorf("pricegen: %v; want it to refuse the table that prices mk-large-x by cloud's entry", err)
	}

	overlay := strings.Replace(string(read(t, "testdata/overlay.json")), `"local-model-7b"`, `"local-model-7b", "mk-night"`, 1)
	_, _, err = convertFixture(t, nil, []byte(overlay))
	if err == nil || !strings.Contains(err.Error(), `required model "mk-night" is unpriced`) {
		t.Errorf("pricegen: %v; want it to refuse a table without a required model", err)
	}

	overlay = strings.Replace(string(read(t, "testdata/overlay.json")), `"local-model"`, `"mk-small"`, 1)
	_, _, err = convertFixture(t, nil, []byte(overlay))
	if err == nil || !strings.Contains(err.Error(), `overlay: model "mk-small" is in the list too`) {
		t.Errorf("pricegen: %v; want it to refuse an overlay model the list has", err)
	}

	overlay = strings.Replace(string(read(t, "testdata/overlay.json")), `"reason": "runs on the user's machine", `, ``, 1)
	_, _, err = convertFixture(t, nil, []byte(overlay))
	if err == nil || !strings.Contains(err.Error(), `overlay: model "local-model" has no reason`) {
		t.Errorf("pricegen: %v; want it to refuse an overlay model without a reason", err)
	}
}

// FuzzConvert checks that no list panics the converter, and that a table
// it accepts is one the server reads, every converted model in it.
func FuzzConvert(f *testing.F) {
	list, err := os.ReadFile("testdata/list.json")
	if err != nil {
		f.Fatal(err)
	}
	pkg, err := os.ReadFile("testdata/package.json")
	if err != nil {
		f.Fatal(err)
	}
	overlay := []byte(`{"providers":{"include":["maker","cloud"],"reason_others_skipped":"not converted"}}`)
	f.Add(list)
	for _, s := range []string{
		`[]`, `null`, `{}`, `[{"id":"maker","models":[]}]`,
		`[{"id":"maker","models":[{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":1e-7}}]}]`,
		`[{"id":"maker","models":[{"id":"m","match":{"or":[{"regex":"("}]},"prices":{"input_mtok":{"base":1,"tiers":[{"start":1,"price":2},{"start":1,"price":3}]}}}]}]`,
		`[{"id":"maker","models":[{"id":"m","match":{"and":[{"starts_with":"m"}]},"prices":[{"constraint":{"start_date":"2099-01-01"},"prices":{"output_mtok":3}}]}]},{"id":"cloud","models":[{"id":"M","match":{"equals":"M"},"prices":{}}]}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, rep, err := convert(b, pkg, overlay, "2026-09-23")
		if err != nil {
			return
		}
		table, err := fleet.ParsePricing(out)
		if err != nil {
			t.Fatalf("convert wrote a table the server refuses: %v\n%s", err, out)
		}
		if got := len(table.Models()); got != rep.Converted {
			t.Fatalf("the table has %d models, the report says %d converted", got, rep.Converted)
		}
	})
}
