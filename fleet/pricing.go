package fleet

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// defaultPricing is a snapshot of the @pydantic/genai-prices list, made by
// scripts/pricing.sh (tools/pricegen) with the overlay pricing_overlay.json.
//
//go:embed pricing.json
var defaultPricing []byte

// Price is what a model costs, in micro-dollars per million tokens of each
// kind. Tiers, ascending by threshold, replace the four base prices of a
// call whose input (input, cache read and cache write tokens together) is
// above a tier's threshold: the last such tier applies. A Price from
// Lookup shares Tiers with its table: read it, never write to it.
type Price struct {
	Provider   string
	Input      Micros
	Output     Micros
	CacheRead  Micros
	CacheWrite Micros
	Tiers      []PriceTier
}

// PriceTier is the price of a call whose input is above AboveInputTokens.
type PriceTier struct {
	AboveInputTokens int64
	Input            Micros
	Output           Micros
	CacheRead        Micros
	CacheWrite       Micros
}

// Pricing is a dated table of model prices. The zero value prices nothing.
// A Pricing is immutable once built and safe for concurrent use.
type Pricing struct {
	AsOf    string
	entries []pricingEntry // sorted by name
	byName  map[string]int // lower-case entry name → index in entries
	exact   map[string][]int
	ordered []matchAtom // the atoms other than exact ones, most specific first
}

// pricingEntry is one model of the table: its name, its price and the rule
// saying which model names it prices.
type pricingEntry struct {
	name  string // lower case
	price Price
	match Match
}

// MaxTokensPerKind bounds each token count of one call so that cost
// arithmetic cannot overflow int64 (with MaxPricePerMillion).
const MaxTokensPerKind = 1_000_000_000

// MaxPricePerMillion bounds each price of a table: $2,000 per million
// tokens, far above any model's, and low enough that one call of
// MaxTokensPerKind tokens of each of the four kinds costs less than int64
// can hold.
const MaxPricePerMillion Micros = 2_000 * MicrosPerUSD

// MaxTiers bounds the tiers of one model; lists have one or two.
const MaxTiers = 16

// pricingFile is the JSON format of a table. Fields other than these
// (source, skipped, notes) document the table and are not read.
type pricingFile struct {
	AsOf   string                      `json:"as_of"`
	Models map[string]pricingFileModel `json:"models"`
}

type pricingFileModel struct {
	Provider   string            `json:"provider"`
	Match      *Match            `json:"match"`
	Input      string            `json:"input"`
	Output     string            `json:"output"`
	CacheRead  string            `json:"cache_read"`
	CacheWrite string            `json:"cache_write"`
	Tiers      []pricingFileTier `json:"tiers"`
}

type pricingFileTier struct {
	AboveInputTokens int64  `json:"above_input_tokens"`
	Input            string `json:"input"`
	Output           string `json:"output"`
	CacheRead        string `json:"cache_read"`
	CacheWrite       string `json:"cache_write"`
}

// DefaultPricing returns the embedded pricing table. It is parsed once and
// shared: a Pricing is immutable (AsOf must not be assigned).
func DefaultPricing() *Pricing { return embeddedPricing() }

var embeddedPricing = sync.OnceValue(func() *Pricing {
	p, err := ParsePricing(defaultPricing)
	if err != nil {
		panic("fleet: embedded pricing.json: " + err.Error())
	}
	return p
})

// ParsePricing reads a pricing table in the format of the embedded
// pricing.json: prices are decimal strings in USD per million tokens. A
// model without a match rule prices its own name and every name it
// prefixes; tiers are optional.
func ParsePricing(b []byte) (*Pricing, error) {
	var f pricingFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse pricing: %w", err)
	}
	if f.AsOf == "" {
		return nil, fmt.Errorf("parse pricing: as_of date is missing")
	}
	if len(f.Models) == 0 {
		return nil, fmt.Errorf("parse pricing: no models")
	}
	entries := make([]pricingEntry, 0, len(f.Models))
	names := make(map[string]string, len(f.Models)) // lower case → as written
	for name, m := range f.Models {
		if strings.TrimSpace(name) == "" {
			// Without a rule, an empty name would prefix, and so price,
			// every model: a default price by accident.
			return nil, fmt.Errorf("parse pricing: a model name is empty")
		}
		if other, ok := names[strings.ToLower(name)]; ok {
			a, b := min(name, other), max(name, other)
			return nil, fmt.Errorf("parse pricing: models %q and %q are one name (names are case-insensitive)", a, b)
		}
		names[strings.ToLower(name)] = name
		e, err := parseEntry(name, m)
		if err != nil {
			return nil, fmt.Errorf("parse pricing: model %q: %w", name, err)
		}
		entries = append(entries, e)
	}
	return buildPricing(f.AsOf, entries), nil
}

func parseEntry(name string, m pricingFileModel) (pricingEntry, error) {
	e := pricingEntry{name: strings.ToLower(name)}
	e.price.Provider = m.Provider
	if err := parsePrices("", m.Input, m.Output, m.CacheRead, m.CacheWrite,
		&e.price.Input, &e.price.Output, &e.price.CacheRead, &e.price.CacheWrite); err != nil {
		return e, err
	}
	if len(m.Tiers) > MaxTiers {
		return e, fmt.Errorf("%d tiers, more than %d", len(m.Tiers), MaxTiers)
	}
	for i, t := range m.Tiers {
		if t.AboveInputTokens <= 0 || t.AboveInputTokens >= 4*MaxTokensPerKind {
			return e, fmt.Errorf("tier %d: above_input_tokens %d is not between 1 and %d", i, t.AboveInputTokens, 4*MaxTokensPerKind-1)
		}
		if i > 0 && t.AboveInputTokens <= m.Tiers[i-1].AboveInputTokens {
			return e, fmt.Errorf("tier %d: above_input_tokens %d does not ascend", i, t.AboveInputTokens)
		}
		pt := PriceTier{AboveInputTokens: t.AboveInputTokens}
		if err := parsePrices(fmt.Sprintf("tier %d: ", i), t.Input, t.Output, t.CacheRead, t.CacheWrite,
			&pt.Input, &pt.Output, &pt.CacheRead, &pt.CacheWrite); err != nil {
			return e, err
		}
		e.price.Tiers = append(e.price.Tiers, pt)
	}
	if m.Match == nil {
		// Without a rule an entry prices its name and what the name
		// prefixes, as tables always did.
		e.match = Match{Or: []Match{{Equals: e.name}, {StartsWith: e.name}}}
	} else {
		if err := m.Match.compile(0); err != nil {
			return e, fmt.Errorf("match: %w", err)
		}
		e.match = *m.Match
	}
	return e, nil
}

// parsePrices parses the four prices of a model or of one of its tiers.
func parsePrices(where, in, out, cr, cw string, dIn, dOut, dCR, dCW *Micros) error {
	for _, field := range []struct {
		s   string
		dst *Micros
		key string
	}{{in, dIn, "input"}, {out, dOut, "output"}, {cr, dCR, "cache_read"}, {cw, dCW, "cache_write"}} {
		if field.s == "" {
			return fmt.Errorf("%s%s price is missing", where, field.key)
		}
		v, err := ParseUSD(field.s)
		if err != nil {
			return fmt.Errorf("%s%s: %w", where, field.key, err)
		}
		if v < 0 {
			return fmt.Errorf("%s%s price is negative", where, field.key)
		}
		if v > MaxPricePerMillion {
			return fmt.Errorf("%s%s price %s is above %s per million tokens", where, field.key, v, MaxPricePerMillion)
		}
		*field.dst = v
	}
	return nil
}

// buildPricing indexes entries for Lookup.
func buildPricing(asOf string, entries []pricingEntry) *Pricing {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	p := &Pricing{AsOf: asOf, entries: entries, byName: make(map[string]int, len(entries)), exact: map[string][]int{}}
	for i, e := range entries {
		p.byName[e.name] = i
		for _, a := range e.match.atoms(nil) {
			a.entry = i
			if a.kind == atomEquals {
				p.exact[a.value] = append(p.exact[a.value], i)
				continue
			}
			p.ordered = append(p.ordered, a)
		}
	}
	sort.SliceStable(p.ordered, func(i, j int) bool { return p.ordered[i].before(p.ordered[j]) })
	return p
}

// Merge returns the table p with the entries of over on top: an entry of
// over replaces p's entry of the same name (names are case-insensitive),
// the others are added. The result's AsOf names both tables, so that state
// priced by the merged table is never taken for state priced by p alone.
func (p *Pricing) Merge(over *Pricing) *Pricing {
	if over == nil {
		return p
	}
	if p == nil {
		return over
	}
	entries := make([]pricingEntry, 0, len(p.entries)+len(over.entries))
	for _, e := range p.entries {
		if _, replaced := over.byName[e.name]; !replaced {
			entries = append(entries, e)
		}
	}
	entries = append(entries, over.entries...)
	return buildPricing(p.AsOf+" + "+over.AsOf, entries)
}

// Models returns the names of the table's entries, sorted.
func (p *Pricing) Models() []string {
	if p == nil {
		return nil
	}
	names := make([]string, len(p.entries))
	for i, e := range p.entries {
		names[i] = e.name
	}
	return names
}

// Entry returns the price of the table's entry named name (case-insensitive),
// whatever names its match rule prices: what the table says of that model.
func (p *Pricing) Entry(name string) (Price, bool) {
	if p == nil {
		return Price{}, false
	}
	i, ok := p.byName[strings.ToLower(name)]
	if !ok {
		return Price{}, false
	}
	return p.entries[i].price, true
}

// Lookup finds the price of a model by the entries' match rules (names are
// case-insensitive). When several entries match, the most specific match
// wins: an exact name first, then the longest matching prefix, then the
// longest suffix, then the longest contained string, then a regular
// expression; at a tie the entry whose name sorts first. ok is false for
// an unpriced model; there is never a default price.
func (p *Pricing) Lookup(model string) (Price, bool) {
	if p == nil {
		return Price{}, false
	}
	m := strings.ToLower(model)
	for _, i := range p.exact[m] { // in entry-name order, as entries are
		if p.entries[i].match.matches(m) {
			return p.entries[i].price, true
		}
	}
	for _, a := range p.ordered {
		if a.hit(m) && p.entries[a.entry].match.matches(m) {
			return p.entries[a.entry].price, true
		}
	}
	return Price{}, false
}

// Cost returns the cost of one call in micro-dollars, rounded half up to
// the micro-dollar. Input tokens exclude cache reads and writes; the tier
// is chosen by all three together.
func (pr Price) Cost(c LLMCall) Micros {
	in, out, cr, cw := clampTokens(c.InputTokens), clampTokens(c.OutputTokens), clampTokens(c.CacheReadTokens), clampTokens(c.CacheWriteTokens)
	t := pr.tierFor(in + cr + cw)
	sum := in*int64(t.Input) + out*int64(t.Output) + cr*int64(t.CacheRead) + cw*int64(t.CacheWrite)
	return Micros((sum + 500_000) / 1_000_000)
}

// tierFor returns the prices that apply to a call of inputTokens input.
func (pr Price) tierFor(inputTokens int64) PriceTier {
	t := PriceTier{Input: pr.Input, Output: pr.Output, CacheRead: pr.CacheRead, CacheWrite: pr.CacheWrite}
	for _, tier := range pr.Tiers {
		if inputTokens > tier.AboveInputTokens {
			t = tier
		}
	}
	return t
}

// lowest and highest return, per token kind, the lowest and the highest
// price over the base and the tiers: a call's cost lies between the same
// tokens priced by the two.
func (pr Price) lowest() PriceTier {
	return pr.extreme(func(a, b Micros) Micros { return min(a, b) })
}

func (pr Price) highest() PriceTier {
	return pr.extreme(func(a, b Micros) Micros { return max(a, b) })
}

func (pr Price) extreme(pick func(a, b Micros) Micros) PriceTier {
	t := PriceTier{Input: pr.Input, Output: pr.Output, CacheRead: pr.CacheRead, CacheWrite: pr.CacheWrite}
	for _, tier := range pr.Tiers {
		t.Input, t.Output = pick(t.Input, tier.Input), pick(t.Output, tier.Output)
		t.CacheRead, t.CacheWrite = pick(t.CacheRead, tier.CacheRead), pick(t.CacheWrite, tier.CacheWrite)
	}
	return t
}

func clampTokens(n int64) int64 {
	if n < 0 {
		return 0
	}
	if n > MaxTokensPerKind {
		return MaxTokensPerKind
	}
	return n
}
