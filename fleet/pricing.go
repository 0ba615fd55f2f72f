package fleet

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

//go:embed pricing.json
var defaultPricing []byte

// Price is what a model costs, in micro-dollars per million tokens of each kind.
type Price struct {
	Provider   string
	Input      Micros
	Output     Micros
	CacheRead  Micros
	CacheWrite Micros
}

// Pricing is a dated table of model prices. The zero value prices nothing.
// A Pricing is immutable once built and safe for concurrent use.
type Pricing struct {
	AsOf   string
	models map[string]Price
	keys   []string // sorted longest first, for prefix lookup
}

// MaxTokensPerKind bounds each token count of one call so that cost
// arithmetic cannot overflow int64 (with MaxPricePerMillion).
const MaxTokensPerKind = 1_000_000_000

// MaxPricePerMillion bounds each price of a table: $2,000 per million
// tokens, far above any model's, and low enough that one call of
// MaxTokensPerKind tokens of each of the four kinds costs less than int64
// can hold.
const MaxPricePerMillion Micros = 2_000 * MicrosPerUSD

type pricingFile struct {
	AsOf   string `json:"as_of"`
	Models map[string]struct {
		Provider   string `json:"provider"`
		Input      string `json:"input"`
		Output     string `json:"output"`
		CacheRead  string `json:"cache_read"`
		CacheWrite string `json:"cache_write"`
	} `json:"models"`
}

// DefaultPricing returns the embedded pricing table.
func DefaultPricing() *Pricing {
	p, err := ParsePricing(defaultPricing)
	if err != nil {
		panic("fleet: embedded pricing.json: " + err.Error())
	}
	return p
}

// ParsePricing reads a pricing table in the format of the embedded
// pricing.json: prices are decimal strings in USD per million tokens.
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
	p := &Pricing{AsOf: f.AsOf, models: make(map[string]Price, len(f.Models))}
	names := make(map[string]string, len(f.Models)) // lower case → as written
	for name, m := range f.Models {
		if other, ok := names[strings.ToLower(name)]; ok {
			a, b := min(name, other), max(name, other)
			return nil, fmt.Errorf("parse pricing: models %q and %q are one name (names are case-insensitive)", a, b)
		}
		names[strings.ToLower(name)] = name
		var pr Price
		pr.Provider = m.Provider
		for _, field := range []struct {
			s   string
			dst *Micros
			key string
		}{{m.Input, &pr.Input, "input"}, {m.Output, &pr.Output, "output"}, {m.CacheRead, &pr.CacheRead, "cache_read"}, {m.CacheWrite, &pr.CacheWrite, "cache_write"}} {
			if field.s == "" {
				return nil, fmt.Errorf("parse pricing: model %q: %s price is missing", name, field.key)
			}
			v, err := ParseUSD(field.s)
			if err != nil {
				return nil, fmt.Errorf("parse pricing: model %q: %s: %w", name, field.key, err)
			}
			if v < 0 {
				return nil, fmt.Errorf("parse pricing: model %q: %s price is negative", name, field.key)
			}
			if v > MaxPricePerMillion {
				return nil, fmt.Errorf("parse pricing: model %q: %s price %s is above %s per million tokens", name, field.key, v, MaxPricePerMillion)
			}
			*field.dst = v
		}
		p.models[strings.ToLower(name)] = pr
		p.keys = append(p.keys, strings.ToLower(name))
	}
	sort.Slice(p.keys, func(i, j int) bool {
		if len(p.keys[i]) != len(p.keys[j]) {
			return len(p.keys[i]) > len(p.keys[j])
		}
		return p.keys[i] < p.keys[j]
	})
	return p, nil
}

// Lookup finds the price of a model: the exact name first, then the longest
// table entry that is a prefix of the name. ok is false for an unpriced
// model; there is never a default price.
func (p *Pricing) Lookup(model string) (Price, bool) {
	if p == nil {
		return Price{}, false
	}
	m := strings.ToLower(model)
	if pr, ok := p.models[m]; ok {
		return pr, true
	}
	for _, k := range p.keys {
		if strings.HasPrefix(m, k) {
			return p.models[k], true
		}
	}
	return Price{}, false
}

// Cost returns the cost of one call in micro-dollars, rounded half up to
// the micro-dollar. Input tokens exclude cache reads and writes.
func (pr Price) Cost(c LLMCall) Micros {
	sum := clampTokens(c.InputTokens)*int64(pr.Input) +
		clampTokens(c.OutputTokens)*int64(pr.Output) +
		clampTokens(c.CacheReadTokens)*int64(pr.CacheRead) +
		clampTokens(c.CacheWriteTokens)*int64(pr.CacheWrite)
	return Micros((sum + 500_000) / 1_000_000)
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
