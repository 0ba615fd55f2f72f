package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// errShape is wrapped by every error about data whose shape the converter
// does not know: the list changed, and the converter must learn it before
// the table is refreshed.
var errShape = errors.New("unknown data shape")

func shapeErr(path, format string, args ...any) error {
	return fmt.Errorf("%w at %s: %s", errShape, path, fmt.Sprintf(format, args...))
}

// The fields of a provider and of a model that the converter knows. Only
// id, models, match and prices are read; the others describe.
var (
	providerFields = set("id", "name", "description", "pricing_urls", "api_pattern", "price_comments",
		"model_match", "provider_match", "extractors", "fallback_model_providers", "models")
	modelFields = set("id", "name", "description", "price_comments", "context_window", "deprecated", "match", "prices")
)

// The price keys of the list. tokenKeys are the four kinds llm.call
// carries; ignoredKeys price what llm.call does not count (audio, images,
// searches, requests, the one-hour cache-write surcharge) and are left
// out; reasoningKey makes a model unpriceable here.
var (
	tokenKeys   = []string{"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"}
	ignoredKeys = set("cache_write_1h_mtok", "input_audio_mtok", "cache_audio_read_mtok", "output_audio_mtok",
		"input_image_mtok", "cache_image_read_mtok", "output_image_mtok", "input_video_mtok", "output_video_mtok",
		"output_citation_mtok", "web_searches_kcount", "storage_searches_kcount", "requests_kcount",
		"audio_hours", "input_audio_hours", "input_document_kpages", "input_annotated_document_kpages",
		"input_text_messages_kcount")
	reasoningKey = "output_reasoning_mtok"
)

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// provider is one provider of the list, its models in the list's order.
type provider struct {
	id     string
	models []model
}

// model is one model of the list, read as far as the converter needs.
type model struct {
	provider string
	id       string
	rule     rule
	prices   json.RawMessage
}

// decodeList reads the list: a JSON array of providers.
func decodeList(b []byte) ([]provider, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, fmt.Errorf("%w: the list is not a JSON array of providers: %v", errShape, err)
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("%w: the list has no providers", errShape)
	}
	var out []provider
	seen := map[string]bool{}
	for i, raw := range raws {
		path := fmt.Sprintf("providers[%d]", i)
		fields, err := object(raw, path, providerFields)
		if err != nil {
			return nil, err
		}
		var p provider
		if err := str(fields["id"], path+".id", &p.id); err != nil {
			return nil, err
		}
		if seen[p.id] {
			return nil, shapeErr(path, "provider %q twice", p.id)
		}
		seen[p.id] = true
		path = "provider " + p.id
		var models []json.RawMessage
		if err := json.Unmarshal(fields["models"], &models); err != nil || len(models) == 0 {
			return nil, shapeErr(path+".models", "not a non-empty array")
		}
		for j, mraw := range models {
			mpath := fmt.Sprintf("%s.models[%d]", path, j)
			mf, err := object(mraw, mpath, modelFields)
			if err != nil {
				return nil, err
			}
			m := model{provider: p.id, prices: mf["prices"]}
			if err := str(mf["id"], mpath+".id", &m.id); err != nil {
				return nil, err
			}
			mpath = path + " model " + m.id
			if mf["match"] == nil || mf["prices"] == nil {
				return nil, shapeErr(mpath, "no match or no prices")
			}
			if m.rule, err = parseRule(mf["match"], mpath+".match", 0); err != nil {
				return nil, err
			}
			p.models = append(p.models, m)
		}
		out = append(out, p)
	}
	return out, nil
}

// object decodes a JSON object and refuses fields not in known.
func object(raw json.RawMessage, path string, known map[string]bool) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, shapeErr(path, "not an object")
	}
	for _, k := range sortedKeys(m) {
		if !known[k] {
			return nil, shapeErr(path, "unknown field %q", k)
		}
	}
	return m, nil
}

func str(raw json.RawMessage, path string, dst *string) error {
	if err := json.Unmarshal(raw, dst); err != nil || *dst == "" {
		return shapeErr(path, "not a non-empty string")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rule is a match rule of the list. It evaluates as the list does (string
// tests on the lower-cased name) and converts to a fleet.Match.
type rule struct {
	op   string // equals, starts_with, ends_with, contains, regex, or, and, not
	s    string
	re   *regexp.Regexp // nil for a regex RE2 cannot run
	subs []rule
}

// jsOnlyRegexes translates the regular expressions of the list that use
// JavaScript syntax RE2 lacks (lookahead) into rules with the same
// meaning. Each is matched by its exact text.
var jsOnlyRegexes = map[string]rule{
	// Not a text-to-speech variant: no "-tts" segment, in any case, that
	// ends the name or is followed by "-". Lower-cased names make the
	// character classes plain strings.
	`^(?!.*-[tT][tT][sS](?:$|-))`: {op: "not", subs: []rule{{op: "or", subs: []rule{{op: "contains", s: "-tts-"}, {op: "ends_with", s: "-tts"}}}}},
}

// parseRule reads a rule of the list.
func parseRule(raw json.RawMessage, path string, depth int) (rule, error) {
	if depth > 8 {
		return rule{}, shapeErr(path, "rules nest too deeply")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || len(m) != 1 {
		return rule{}, shapeErr(path, "a rule is an object of exactly one field")
	}
	for op, v := range m {
		switch op {
		case "equals", "starts_with", "ends_with", "contains":
			r := rule{op: op}
			if err := str(v, path+"."+op, &r.s); err != nil {
				return rule{}, err
			}
			r.s = strings.ToLower(r.s)
			return r, nil
		case "regex":
			var src string
			if err := str(v, path+".regex", &src); err != nil {
				return rule{}, err
			}
			if t, ok := jsOnlyRegexes[src]; ok {
				return t, nil
			}
			r := rule{op: "regex", s: src}
			if re2Safe(src) {
				if re, err := regexp.Compile(src); err == nil {
					r.re = re
				}
			}
			return r, nil
		case "or", "and":
			var subs []json.RawMessage
			if err := json.Unmarshal(v, &subs); err != nil || len(subs) == 0 {
				return rule{}, shapeErr(path+"."+op, "not a non-empty array")
			}
			r := rule{op: op}
			for i, s := range subs {
				sub, err := parseRule(s, fmt.Sprintf("%s.%s[%d]", path, op, i), depth+1)
				if err != nil {
					return rule{}, err
				}
				r.subs = append(r.subs, sub)
			}
			return r, nil
		default:
			return rule{}, shapeErr(path, "unknown rule %q", op)
		}
	}
	panic("unreachable")
}

// re2Safe reports whether a JavaScript regular expression means the same
// in RE2: no group syntax other than a plain non-capturing group, no
// back-references, no JavaScript-only escapes. A regex it refuses is not
// guessed at: the model is skipped with the reason.
func re2Safe(src string) bool {
	if strings.Contains(strings.ReplaceAll(src, "(?:", ""), "(?") {
		return false
	}
	for i := 0; i+1 < len(src); i++ {
		if src[i] == '\\' {
			switch c := src[i+1]; {
			case c >= '1' && c <= '9', c == 'k', c == 'c', c == 'u', c == 'x', c == '0':
				return false
			}
			i++
		}
	}
	return true
}

// matches evaluates the rule as the list does, on a lower-cased name. An
// expression RE2 cannot run matches nothing (its model is skipped).
func (r rule) matches(name string) bool {
	switch r.op {
	case "equals":
		return name == r.s
	case "starts_with":
		return strings.HasPrefix(name, r.s)
	case "ends_with":
		return strings.HasSuffix(name, r.s)
	case "contains":
		return strings.Contains(name, r.s)
	case "regex":
		return r.re != nil && r.re.MatchString(name)
	case "or":
		for _, s := range r.subs {
			if s.matches(name) {
				return true
			}
		}
		return false
	case "and":
		for _, s := range r.subs {
			if !s.matches(name) {
				return false
			}
		}
		return true
	case "not":
		return !r.subs[0].matches(name)
	}
	return false
}

// unrunnable returns the first regular expression of the rule RE2 cannot
// run, or "".
func (r rule) unrunnable() string {
	if r.op == "regex" && r.re == nil {
		return r.s
	}
	for _, s := range r.subs {
		if u := s.unrunnable(); u != "" {
			return u
		}
	}
	return ""
}

// toMatch converts the rule into the table's rule.
func (r rule) toMatch() fleet.Match {
	var subs []fleet.Match
	for _, s := range r.subs {
		subs = append(subs, s.toMatch())
	}
	switch r.op {
	case "equals":
		return fleet.Match{Equals: r.s}
	case "starts_with":
		return fleet.Match{StartsWith: r.s}
	case "ends_with":
		return fleet.Match{EndsWith: r.s}
	case "contains":
		return fleet.Match{Contains: r.s}
	case "regex":
		return fleet.Match{Regex: r.s}
	case "or":
		return fleet.Match{Or: subs}
	case "and":
		return fleet.Match{And: subs}
	}
	return fleet.Match{Not: &subs[0]}
}

// probes returns the names the rule spells out: the strings of its
// positive string conditions.
func (r rule) probes(dst []string) []string {
	switch r.op {
	case "equals", "starts_with", "ends_with", "contains":
		return append(dst, r.s)
	case "not":
		return dst
	}
	for _, s := range r.subs {
		dst = s.probes(dst)
	}
	return dst
}

// tiered is one price of the list: a base price per million and tiers.
type tiered struct {
	base  fleet.Micros
	tiers []tier
}

type tier struct {
	start int64
	price fleet.Micros
}

// at returns the price for a call whose input is above start (the last
// tier whose own start is at most start applies).
func (t tiered) at(start int64) fleet.Micros {
	p := t.base
	for _, tr := range t.tiers {
		if tr.start <= start {
			p = tr.price
		}
	}
	return p
}

// notPriceable is why a model is skipped rather than converted.
type notPriceable struct{ reason string }

func (n notPriceable) Error() string { return n.reason }

// selectPrices picks the model's prices in effect on asOf: the list's
// own rule (calcPrice) walks the dated prices from the last and takes the
// first that has started; later ones are returned as scheduled.
func selectPrices(raw json.RawMessage, path, asOf string) (json.RawMessage, []string, error) {
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return raw, nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		return nil, nil, shapeErr(path, "prices are neither an object nor a non-empty array")
	}
	type dated struct {
		start  string
		prices json.RawMessage
	}
	var ds []dated
	timeOfDay := false
	for i, c := range list {
		cpath := fmt.Sprintf("%s[%d]", path, i)
		f, err := object(c, cpath, set("constraint", "prices"))
		if err != nil {
			return nil, nil, err
		}
		if f["prices"] == nil {
			return nil, nil, shapeErr(cpath, "no prices")
		}
		d := dated{prices: f["prices"]}
		if f["constraint"] != nil {
			con, err := object(f["constraint"], cpath+".constraint", set("type", "start_date", "start_time", "end_time"))
			if err != nil {
				return nil, nil, err
			}
			var typ string
			if con["type"] != nil {
				if err := str(con["type"], cpath+".constraint.type", &typ); err != nil {
					return nil, nil, err
				}
			}
			switch {
			case con["start_date"] != nil && len(con) == 1+btoi(typ != "") && (typ == "" || typ == "start_date"):
				if err := str(con["start_date"], cpath+".constraint.start_date", &d.start); err != nil {
					return nil, nil, err
				}
				if !isDate(d.start) {
					return nil, nil, shapeErr(cpath+".constraint.start_date", "%q is not YYYY-MM-DD", d.start)
				}
			case con["start_time"] != nil && con["end_time"] != nil && len(con) == 2+btoi(typ != "") && (typ == "" || typ == "time_of_date"):
				timeOfDay = true
			default:
				return nil, nil, shapeErr(cpath+".constraint", "an unknown price constraint")
			}
		} else if i > 0 {
			return nil, nil, shapeErr(cpath, "an unconstrained price after the first")
		}
		ds = append(ds, d)
	}
	if timeOfDay {
		return nil, nil, notPriceable{"its prices change with the time of day; the table has one price per model"}
	}
	var scheduled []string
	for i := len(ds) - 1; i >= 0; i-- {
		if ds[i].start == "" || ds[i].start <= asOf {
			return ds[i].prices, scheduled, nil
		}
		scheduled = append([]string{ds[i].start}, scheduled...)
	}
	// The list falls back to the first prices when none has started.
	return ds[0].prices, scheduled[1:], nil
}

// isDate reports whether s is a calendar date, YYYY-MM-DD: dates compare
// as strings then.
func isDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil && len(s) == len(time.DateOnly)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readPrices reads the four token prices of a model (absent ones as
// missing) and checks the other keys.
func readPrices(raw json.RawMessage, path string) (map[string]tiered, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, shapeErr(path, "prices are not an object")
	}
	out := map[string]tiered{}
	var reasoning bool
	var others []string
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch {
		case k == reasoningKey:
			reasoning = true
			continue
		case ignoredKeys[k]:
			others = append(others, k)
			continue
		case !isTokenKey(k):
			return nil, shapeErr(path, "unknown price key %q", k)
		}
		t, err := readTiered(v, path+"."+k)
		if err != nil {
			return nil, err
		}
		out[k] = t
	}
	if reasoning {
		return nil, notPriceable{"it prices reasoning tokens apart from output tokens, and llm.call carries no reasoning count (its output tokens include them)"}
	}
	_, in := out["input_mtok"]
	_, o := out["output_mtok"]
	if !in && !o && len(others) > 0 {
		// Priced by pages, audio hours or requests: the table cannot say
		// what such a call costs. (A model with no prices at all is free
		// by the list's arithmetic, and so it is here.)
		return nil, notPriceable{"it has no token prices (priced by " + strings.Join(others, ", ") + ")"}
	}
	return out, nil
}

func isTokenKey(k string) bool {
	for _, t := range tokenKeys {
		if k == t {
			return true
		}
	}
	return false
}

// readTiered reads a price: a number, or {base, tiers: [{start, price}]}.
func readTiered(v any, path string) (tiered, error) {
	switch v := v.(type) {
	case json.Number:
		p, err := usd(v, path)
		return tiered{base: p}, err
	case map[string]any:
		if len(v) != 2 || v["base"] == nil || v["tiers"] == nil {
			return tiered{}, shapeErr(path, "a tiered price is {base, tiers}")
		}
		n, ok := v["base"].(json.Number)
		if !ok {
			return tiered{}, shapeErr(path+".base", "not a number")
		}
		base, err := usd(n, path+".base")
		if err != nil {
			return tiered{}, err
		}
		t := tiered{base: base}
		list, ok := v["tiers"].([]any)
		if !ok || len(list) == 0 {
			return tiered{}, shapeErr(path+".tiers", "not a non-empty array")
		}
		for i, x := range list {
			tpath := fmt.Sprintf("%s.tiers[%d]", path, i)
			o, ok := x.(map[string]any)
			if !ok || len(o) != 2 {
				return tiered{}, shapeErr(tpath, "a tier is {start, price}")
			}
			sn, ok1 := o["start"].(json.Number)
			pn, ok2 := o["price"].(json.Number)
			if !ok1 || !ok2 {
				return tiered{}, shapeErr(tpath, "a tier is {start, price} of numbers")
			}
			start, err := sn.Int64()
			if err != nil || start < 0 {
				return tiered{}, shapeErr(tpath+".start", "%s is not a token count", sn)
			}
			if start == 0 || start >= 4*fleet.MaxTokensPerKind {
				return tiered{}, notPriceable{fmt.Sprintf("a tier starts at %d input tokens, outside what the table can hold", start)}
			}
			price, err := usd(pn, tpath+".price")
			if err != nil {
				return tiered{}, err
			}
			t.tiers = append(t.tiers, tier{start, price})
		}
		// The list sorts tiers by start; so do we.
		sort.SliceStable(t.tiers, func(i, j int) bool { return t.tiers[i].start < t.tiers[j].start })
		for i := 1; i < len(t.tiers); i++ {
			if t.tiers[i].start == t.tiers[i-1].start {
				return tiered{}, shapeErr(path+".tiers", "two tiers start at %d", t.tiers[i].start)
			}
		}
		return t, nil
	}
	return tiered{}, shapeErr(path, "a price is a number or a tiered price")
}

// usd converts a price in USD per million tokens, exactly: one finer than a
// micro-dollar per million or larger than fleet.MaxPricePerMillion makes
// the model unpriceable, never rounded.
func usd(n json.Number, path string) (fleet.Micros, error) {
	r, ok := new(big.Rat).SetString(string(n))
	if !ok {
		return 0, shapeErr(path, "%q is not a number", n)
	}
	if r.Sign() < 0 {
		return 0, shapeErr(path, "%s is negative", n)
	}
	r.Mul(r, big.NewRat(int64(fleet.MicrosPerUSD), 1))
	if !r.IsInt() {
		return 0, notPriceable{fmt.Sprintf("%s is %s USD per million tokens, finer than a micro-dollar per million", path[strings.LastIndex(path, ".")+1:], n)}
	}
	if !r.Num().IsInt64() || r.Num().Int64() > int64(fleet.MaxPricePerMillion) {
		return 0, notPriceable{fmt.Sprintf("%s is %s USD per million tokens, above %s", path[strings.LastIndex(path, ".")+1:], n, fleet.MaxPricePerMillion)}
	}
	return fleet.Micros(r.Num().Int64()), nil
}

// decimal formats micro-dollars as a plain decimal string: "3", "0.3",
// "3.4375".
func decimal(m fleet.Micros) string {
	s := fmt.Sprintf("%d.%06d", m/fleet.MicrosPerUSD, m%fleet.MicrosPerUSD)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
