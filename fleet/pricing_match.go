package fleet

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Match is the rule by which a pricing entry prices model names, in the
// shape of the @pydantic/genai-prices list's rules: exactly one of its
// fields is set. String comparisons are case-insensitive; a regular
// expression (RE2 syntax) is matched against the lower-cased name.
type Match struct {
	Equals     string  `json:"equals,omitempty"`
	StartsWith string  `json:"starts_with,omitempty"`
	EndsWith   string  `json:"ends_with,omitempty"`
	Contains   string  `json:"contains,omitempty"`
	Regex      string  `json:"regex,omitempty"`
	Or         []Match `json:"or,omitempty"`
	And        []Match `json:"and,omitempty"`
	Not        *Match  `json:"not,omitempty"`

	re *regexp.Regexp
}

// maxMatchDepth bounds how deeply rules nest; the list nests two deep.
const maxMatchDepth = 8

// errNoAnchor is why a rule that could match without any equals,
// starts_with, ends_with, contains or regex condition is refused: Lookup
// finds entries through those conditions, so such a rule would be
// unreachable for some names it matches.
var errNoAnchor = errors.New("every way to match must include an equals, starts_with, ends_with, contains or regex condition outside a not")

// compile checks the rule, lower-cases its strings and compiles its
// regular expressions.
func (m *Match) compile(depth int) error {
	if depth > maxMatchDepth {
		return fmt.Errorf("rules nest deeper than %d", maxMatchDepth)
	}
	set := 0
	for _, s := range []string{m.Equals, m.StartsWith, m.EndsWith, m.Contains, m.Regex} {
		if s != "" {
			set++
		}
	}
	if m.Or != nil {
		set++
	}
	if m.And != nil {
		set++
	}
	if m.Not != nil {
		set++
	}
	if set != 1 {
		return fmt.Errorf("a rule has exactly one of equals, starts_with, ends_with, contains, regex, or, and, not; this one has %d", set)
	}
	m.Equals, m.StartsWith = strings.ToLower(m.Equals), strings.ToLower(m.StartsWith)
	m.EndsWith, m.Contains = strings.ToLower(m.EndsWith), strings.ToLower(m.Contains)
	switch {
	case m.Regex != "":
		re, err := regexp.Compile(m.Regex)
		if err != nil {
			return fmt.Errorf("regex: %w", err)
		}
		m.re = re
	case m.Or != nil || m.And != nil:
		subs := m.Or
		if m.And != nil {
			subs = m.And
		}
		if len(subs) == 0 {
			return fmt.Errorf("an empty or/and")
		}
		for i := range subs {
			if err := subs[i].compile(depth + 1); err != nil {
				return err
			}
		}
	case m.Not != nil:
		if err := m.Not.compile(depth + 1); err != nil {
			return err
		}
	}
	if depth == 0 && !m.anchored() {
		return errNoAnchor
	}
	return nil
}

// anchored reports whether every way m can match goes through a positive
// string or regex condition.
func (m *Match) anchored() bool {
	switch {
	case m.Or != nil:
		for i := range m.Or {
			if !m.Or[i].anchored() {
				return false
			}
		}
		return true
	case m.And != nil:
		for i := range m.And {
			if m.And[i].anchored() {
				return true
			}
		}
		return false
	case m.Not != nil:
		return false
	}
	return true
}

// matches reports whether the lower-cased name satisfies m.
func (m *Match) matches(name string) bool {
	switch {
	case m.Equals != "":
		return name == m.Equals
	case m.StartsWith != "":
		return strings.HasPrefix(name, m.StartsWith)
	case m.EndsWith != "":
		return strings.HasSuffix(name, m.EndsWith)
	case m.Contains != "":
		return strings.Contains(name, m.Contains)
	case m.re != nil:
		return m.re.MatchString(name)
	case m.Or != nil:
		for i := range m.Or {
			if m.Or[i].matches(name) {
				return true
			}
		}
		return false
	case m.And != nil:
		for i := range m.And {
			if !m.And[i].matches(name) {
				return false
			}
		}
		return true
	case m.Not != nil:
		return !m.Not.matches(name)
	}
	return false
}

// atomKind ranks the conditions by how specific a match through them is.
type atomKind int

const (
	atomEquals atomKind = iota
	atomPrefix
	atomSuffix
	atomContains
	atomRegex
)

// matchAtom is one positive condition of an entry's rule, indexed by
// Lookup.
type matchAtom struct {
	kind  atomKind
	value string
	re    *regexp.Regexp
	entry int
}

// atoms appends m's positive conditions (those outside a not) to dst.
func (m *Match) atoms(dst []matchAtom) []matchAtom {
	switch {
	case m.Equals != "":
		return append(dst, matchAtom{kind: atomEquals, value: m.Equals})
	case m.StartsWith != "":
		return append(dst, matchAtom{kind: atomPrefix, value: m.StartsWith})
	case m.EndsWith != "":
		return append(dst, matchAtom{kind: atomSuffix, value: m.EndsWith})
	case m.Contains != "":
		return append(dst, matchAtom{kind: atomContains, value: m.Contains})
	case m.re != nil:
		return append(dst, matchAtom{kind: atomRegex, value: m.Regex, re: m.re})
	}
	for i := range m.Or {
		dst = m.Or[i].atoms(dst)
	}
	for i := range m.And {
		dst = m.And[i].atoms(dst)
	}
	return dst
}

// hit reports whether the condition alone holds for the lower-cased name.
func (a matchAtom) hit(name string) bool {
	switch a.kind {
	case atomPrefix:
		return strings.HasPrefix(name, a.value)
	case atomSuffix:
		return strings.HasSuffix(name, a.value)
	case atomContains:
		return strings.Contains(name, a.value)
	case atomRegex:
		return a.re.MatchString(name)
	}
	return name == a.value
}

// before orders atoms most specific first: by kind, then the longer
// string, then the string, then the entry (entries are sorted by name).
func (a matchAtom) before(b matchAtom) bool {
	switch {
	case a.kind != b.kind:
		return a.kind < b.kind
	case len(a.value) != len(b.value):
		return len(a.value) > len(b.value)
	case a.value != b.value:
		return a.value < b.value
	}
	return a.entry < b.entry
}
