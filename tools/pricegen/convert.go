package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/sagewai/observatory/fleet"
)

// overlayFile is fleet/pricing_overlay.json: what the converter takes from
// the list and what it adds to it.
type overlayFile struct {
	// Providers are the list's providers converted, in order; the others
	// are skipped for Reason.
	Providers struct {
		Include []string `json:"include"`
		Reason  string   `json:"reason_others_skipped"`
	} `json:"providers"`
	// Models are added to the table as they are; each says why.
	Models map[string]json.RawMessage `json:"models"`
	// Required names must be priced by the result.
	Required []string `json:"required"`
}

// overlayModel is the part of an overlay entry the converter checks; the
// entry is copied whole.
type overlayModel struct {
	Reason string `json:"reason"`
}

// packageFile is the package.json of the npm package.
type packageFile struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	License    string `json:"license"`
	Repository struct {
		URL string `json:"url"`
	} `json:"repository"`
}

// outModel is one converted model of the table.
type outModel struct {
	Provider   string       `json:"provider"`
	Match      *fleet.Match `json:"match,omitempty"`
	Input      string       `json:"input"`
	Output     string       `json:"output"`
	CacheRead  string       `json:"cache_read"`
	CacheWrite string       `json:"cache_write"`
	Tiers      []outTier    `json:"tiers,omitempty"`
}

type outTier struct {
	AboveInputTokens int64  `json:"above_input_tokens"`
	Input            string `json:"input"`
	Output           string `json:"output"`
	CacheRead        string `json:"cache_read"`
	CacheWrite       string `json:"cache_write"`
}

// skip is one entry of the output's "skipped": a model, or a whole
// provider with its count of models.
type skip struct {
	Provider string `json:"provider"`
	Model    string `json:"model,omitempty"`
	Models   int    `json:"models,omitempty"`
	Reason   string `json:"reason"`
}

// scheduled is a dated price of the list that starts after the snapshot.
type scheduled struct {
	Model string `json:"model"`
	From  string `json:"from"`
}

// report is what a conversion did, for the summary line.
type report struct {
	Providers, Converted, Tiered, Overlay int
	SkippedModels, SkippedProviders       int
	SkippedInProviders                    int
	Reasons                               map[string]int
}

// conversion is one run of the converter over its inputs.
type conversion struct {
	list    []provider
	pkg     packageFile
	overlay overlayFile
	asOf    string

	models    map[string]outModel // by key
	keyOf     map[*model]string   // converted models
	prices    map[*model]fleet.Price
	skipped   []skip
	scheduled []scheduled
	rep       report
}

// convert turns the list into the table's JSON.
func convert(listJSON, packageJSON, overlayJSON []byte, asOf string) ([]byte, report, error) {
	c := &conversion{asOf: asOf, models: map[string]outModel{}, keyOf: map[*model]string{}, prices: map[*model]fleet.Price{},
		rep: report{Reasons: map[string]int{}}}
	if !isDate(asOf) {
		return nil, c.rep, fmt.Errorf("-as-of %q is not YYYY-MM-DD", asOf)
	}
	if err := json.Unmarshal(packageJSON, &c.pkg); err != nil || c.pkg.Name == "" || c.pkg.Version == "" || c.pkg.License == "" {
		return nil, c.rep, fmt.Errorf("%w: package.json has no name, version or license", errShape)
	}
	dec := json.NewDecoder(bytes.NewReader(overlayJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.overlay); err != nil {
		return nil, c.rep, fmt.Errorf("overlay: %w", err)
	}
	if len(c.overlay.Providers.Include) == 0 || c.overlay.Providers.Reason == "" {
		return nil, c.rep, fmt.Errorf("overlay: providers.include and providers.reason_others_skipped are required")
	}
	var err error
	if c.list, err = decodeList(listJSON); err != nil {
		return nil, c.rep, err
	}
	byID := map[string]*provider{}
	for i := range c.list {
		byID[c.list[i].id] = &c.list[i]
	}
	for _, id := range c.overlay.Providers.Include {
		p := byID[id]
		if p == nil {
			return nil, c.rep, fmt.Errorf("overlay: provider %q is not in the list", id)
		}
		if err := c.convertProvider(p); err != nil {
			return nil, c.rep, err
		}
	}
	included := set(c.overlay.Providers.Include...)
	for _, p := range c.list {
		if !included[p.id] {
			c.skipped = append(c.skipped, skip{Provider: p.id, Models: len(p.models), Reason: c.overlay.Providers.Reason})
			c.rep.SkippedProviders++
			c.rep.SkippedInProviders += len(p.models)
		}
	}
	out, err := c.render()
	if err != nil {
		return nil, c.rep, err
	}
	if err := c.check(out); err != nil {
		return nil, c.rep, err
	}
	return out, c.rep, nil
}

// convertProvider converts the models of one provider, in the list's
// order, skipping and listing those it cannot price faithfully.
func (c *conversion) convertProvider(p *provider) error {
	c.rep.Providers++
	for i := range p.models {
		m := &p.models[i]
		path := "provider " + p.id + " model " + m.id
		om, price, sched, err := c.convertModel(m, path)
		var np notPriceable
		if errors.As(err, &np) {
			c.skipped = append(c.skipped, skip{Provider: p.id, Model: m.id, Reason: np.reason})
			c.rep.SkippedModels++
			c.rep.Reasons[reasonClass(np.reason)]++
			continue
		}
		if err != nil {
			return err
		}
		key := strings.ToLower(m.id)
		if _, taken := c.models[key]; taken {
			key = p.id + ":" + key // the same id at an earlier provider
		}
		if _, taken := c.models[key]; taken {
			return fmt.Errorf("%w: %s: the table name %q is taken twice", errShape, path, key)
		}
		c.models[key] = om
		c.keyOf[m] = key
		c.prices[m] = price
		c.rep.Converted++
		if len(om.Tiers) > 0 {
			c.rep.Tiered++
		}
		for _, from := range sched {
			c.scheduled = append(c.scheduled, scheduled{Model: key, From: from})
		}
	}
	return nil
}

// unshadowed drops from a rule the exact names that a provider converted
// earlier prices: Lookup prefers no provider over another, and the list,
// read with the providers in the overlay's order, gives such a name to the
// earlier one. ok is false when nothing is left.
func (c *conversion) unshadowed(r rule, provider string) (rule, bool) {
	switch r.op {
	case "equals":
		if first := c.firstMatchBefore(r.s, provider); first != nil {
			return rule{}, false
		}
		return r, true
	case "or":
		out := rule{op: "or"}
		for _, sub := range r.subs {
			if u, ok := c.unshadowed(sub, provider); ok {
				out.subs = append(out.subs, u)
			}
		}
		if len(out.subs) == 0 {
			return rule{}, false
		}
		if len(out.subs) == 1 {
			return out.subs[0], true
		}
		return out, true
	}
	return r, true
}

// reasonClass shortens a skip reason for the summary.
func reasonClass(reason string) string {
	for _, k := range []string{"time of day", "reasoning", "no token prices", "finer than", "above", "RE2", "tier starts", "tiers", "converted before"} {
		if strings.Contains(reason, k) {
			return k
		}
	}
	return reason
}

func (c *conversion) convertModel(m *model, path string) (outModel, fleet.Price, []string, error) {
	if re := m.rule.unrunnable(); re != "" {
		return outModel{}, fleet.Price{}, nil, notPriceable{fmt.Sprintf("its match rule has the regular expression %q, which RE2 (Go) cannot run as JavaScript does", re)}
	}
	raw, sched, err := selectPrices(m.prices, path+".prices", c.asOf)
	if err != nil {
		return outModel{}, fleet.Price{}, nil, err
	}
	prices, err := readPrices(raw, path+".prices")
	if err != nil {
		return outModel{}, fleet.Price{}, nil, err
	}
	// The list's arithmetic: an absent input or output price is zero; an
	// absent cache price leaves cached tokens priced as input.
	in, out := prices["input_mtok"], prices["output_mtok"]
	cr, ok := prices["cache_read_mtok"]
	if !ok {
		cr = in
	}
	cw, ok := prices["cache_write_mtok"]
	if !ok {
		cw = in
	}
	kinds := [4]tiered{in, out, cr, cw}
	var starts []int64
	seen := map[int64]bool{}
	for _, k := range kinds {
		for _, t := range k.tiers {
			if !seen[t.start] {
				seen[t.start] = true
				starts = append(starts, t.start)
			}
		}
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	if len(starts) > fleet.MaxTiers {
		return outModel{}, fleet.Price{}, nil, notPriceable{fmt.Sprintf("it has %d tiers, more than %d", len(starts), fleet.MaxTiers)}
	}
	r, ok := c.unshadowed(m.rule, m.provider)
	if !ok {
		return outModel{}, fleet.Price{}, nil, notPriceable{"every name its rule spells out exactly is priced by a provider converted before " + m.provider}
	}
	match := r.toMatch()
	om := outModel{Provider: m.provider, Match: &match,
		Input: decimal(in.base), Output: decimal(out.base), CacheRead: decimal(cr.base), CacheWrite: decimal(cw.base)}
	price := fleet.Price{Provider: m.provider, Input: in.base, Output: out.base, CacheRead: cr.base, CacheWrite: cw.base}
	for _, s := range starts {
		t := fleet.PriceTier{AboveInputTokens: s, Input: in.at(s), Output: out.at(s), CacheRead: cr.at(s), CacheWrite: cw.at(s)}
		price.Tiers = append(price.Tiers, t)
		om.Tiers = append(om.Tiers, outTier{AboveInputTokens: s,
			Input: decimal(t.Input), Output: decimal(t.Output), CacheRead: decimal(t.CacheRead), CacheWrite: decimal(t.CacheWrite)})
	}
	return om, price, sched, nil
}

// render writes the table: the header, one line per model sorted by name,
// the overlay's models with theirs, and the skipped and scheduled lists.
func (c *conversion) render() ([]byte, error) {
	for _, name := range sortedKeys(c.overlay.Models) {
		raw := c.overlay.Models[name]
		var om overlayModel
		if err := json.Unmarshal(raw, &om); err != nil || om.Reason == "" {
			return nil, fmt.Errorf("overlay: model %q has no reason", name)
		}
		if _, taken := c.models[strings.ToLower(name)]; taken {
			return nil, fmt.Errorf("overlay: model %q is in the list too; remove it from the overlay", name)
		}
		c.rep.Overlay++
	}
	src := map[string]string{
		"package":    c.pkg.Name + "@" + c.pkg.Version,
		"url":        "https://www.npmjs.com/package/" + c.pkg.Name + "/v/" + c.pkg.Version,
		"license":    c.pkg.License,
		"repository": strings.TrimPrefix(c.pkg.Repository.URL, "git+"),
		"list_date":  "the list carries no date or version of its own; the package version is its version",
		"made_by":    "scripts/pricing.sh (make pricing): tools/pricegen over the package's price list and fleet/pricing_overlay.json",
	}
	notes := []string{
		"Prices are USD per million tokens; Observatory adds them up in integer micro-dollars, and the converter refuses a list price finer than a micro-dollar per million.",
		"as_of is the snapshot date: of the list's dated prices, those in effect on it are taken; later ones are under scheduled.",
		"input excludes cached tokens; a tier's prices apply when a call's input, cache read and cache write tokens together are above above_input_tokens (the list's rule).",
		"A missing cache_read or cache_write price in the list is its input price (the list charges cached tokens as input unless it prices them apart); a missing input or output price is 0, and a model the list gives no prices at all is free, as the list's own arithmetic (calcPrice) has it.",
		"Not converted: prices of audio, images, video, searches, requests and the one-hour cache-write surcharge (llm.call counts none of them apart).",
		"match is the list's rule for the model's names; Lookup takes the most specific match: exact name, then longest prefix, suffix, contained string, then a regular expression.",
	}
	var b bytes.Buffer
	b.WriteString("{\n")
	fmt.Fprintf(&b, "  \"as_of\": %s,\n", mustJSON(c.asOf))
	fmt.Fprintf(&b, "  \"source\": %s,\n", indentJSON(src))
	fmt.Fprintf(&b, "  \"notes\": %s,\n", indentJSON(notes))
	b.WriteString("  \"models\": {\n")
	all := map[string]json.RawMessage{}
	for k, m := range c.models {
		all[k] = mustJSON(m)
	}
	for k, raw := range c.overlay.Models {
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			return nil, fmt.Errorf("overlay: model %q: %w", k, err)
		}
		all[k] = compact.Bytes()
	}
	keys := sortedKeys(all)
	for i, k := range keys {
		fmt.Fprintf(&b, "    %s: %s%s\n", mustJSON(k), all[k], comma(i, len(keys)))
	}
	b.WriteString("  },\n")
	b.WriteString("  \"skipped\": [\n")
	for i, s := range c.skipped {
		fmt.Fprintf(&b, "    %s%s\n", mustJSON(s), comma(i, len(c.skipped)))
	}
	b.WriteString("  ],\n")
	b.WriteString("  \"scheduled\": [\n")
	for i, s := range c.scheduled {
		fmt.Fprintf(&b, "    %s%s\n", mustJSON(s), comma(i, len(c.scheduled)))
	}
	b.WriteString("  ]\n}\n")
	return b.Bytes(), nil
}

func comma(i, n int) string {
	if i < n-1 {
		return ","
	}
	return ""
}

func mustJSON(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only our own plain values are encoded
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func indentJSON(v any) []byte {
	var b bytes.Buffer
	if err := json.Indent(&b, mustJSON(v), "  ", "  "); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// check parses the output as the server will and compares it with the
// list: every name a converted model's rule spells out must be priced as
// the list prices it within that model's provider, and every required name
// must be priced.
func (c *conversion) check(out []byte) error {
	table, err := fleet.ParsePricing(out)
	if err != nil {
		return fmt.Errorf("the output does not parse: %w", err)
	}
	for k := range c.models {
		want := c.models[k]
		got, ok := table.Entry(k)
		if !ok || got.Provider != want.Provider {
			return fmt.Errorf("the output lost model %q", k)
		}
	}
	var problems []string
	for _, id := range c.overlay.Providers.Include {
		p := c.provider(id)
		for i := range p.models {
			m := &p.models[i]
			if _, converted := c.keyOf[m]; !converted {
				continue
			}
			for _, name := range m.rule.probes(nil) {
				first := c.firstMatch(name)
				if first == nil {
					continue // a name the rule spells out but excludes (and/not)
				}
				got, priced := table.Lookup(name)
				want, convertedFirst := c.prices[first]
				switch {
				case !convertedFirst && priced:
					problems = append(problems, fmt.Sprintf("the list prices %q by the skipped model %s of %s, the table at %s", name, first.id, first.provider, describe(got)))
				case convertedFirst && !priced:
					problems = append(problems, fmt.Sprintf("the list prices %q by model %s of %s, the table leaves it unpriced", name, first.id, first.provider))
				case convertedFirst && (!samePrice(got, want) || got.Provider != want.Provider):
					problems = append(problems, fmt.Sprintf("the list prices %q by model %s of %s at %s, the table by %s at %s", name, first.id, first.provider, describe(want), got.Provider, describe(got)))
				}
			}
		}
	}
	for _, name := range c.overlay.Required {
		if _, ok := table.Lookup(name); !ok {
			problems = append(problems, fmt.Sprintf("required model %q is unpriced", name))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("the table disagrees with the list (%d):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}

// firstMatch is the model the list prices name by, the converted
// providers taken in the overlay's order: the first model whose rule
// matches, of the first provider that has one. So when two providers
// price one name differently (a model and its reseller), the earlier
// provider's price is the table's.
func (c *conversion) firstMatch(name string) *model {
	return c.firstMatchBefore(name, "")
}

// firstMatchBefore is firstMatch among the providers converted before
// provider ("" for all).
func (c *conversion) firstMatchBefore(name, provider string) *model {
	name = strings.ToLower(strings.TrimSpace(name))
	for _, id := range c.overlay.Providers.Include {
		if id == provider {
			return nil
		}
		p := c.provider(id)
		for i := range p.models {
			if p.models[i].rule.matches(name) {
				return &p.models[i]
			}
		}
	}
	return nil
}

func (c *conversion) provider(id string) *provider {
	for i := range c.list {
		if c.list[i].id == id {
			return &c.list[i]
		}
	}
	return nil
}

func samePrice(a, b fleet.Price) bool {
	a.Provider, b.Provider = "", ""
	if len(a.Tiers) != len(b.Tiers) {
		return false
	}
	for i := range a.Tiers {
		if a.Tiers[i] != b.Tiers[i] {
			return false
		}
	}
	a.Tiers, b.Tiers = nil, nil
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func describe(p fleet.Price) string {
	s := fmt.Sprintf("%s in/%s out/%s cache read/%s cache write", decimal(p.Input), decimal(p.Output), decimal(p.CacheRead), decimal(p.CacheWrite))
	for _, t := range p.Tiers {
		s += fmt.Sprintf(" (above %d: %s/%s/%s/%s)", t.AboveInputTokens, decimal(t.Input), decimal(t.Output), decimal(t.CacheRead), decimal(t.CacheWrite))
	}
	return s
}
