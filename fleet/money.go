package fleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Micros is an amount of money in micro-dollars (1e-6 USD). Every sum of
// money in Observatory is a sum of Micros; dollars appear only at the edges.
// In JSON a Micros is written as a dollar number with six decimals, exactly.
type Micros int64

// MicrosPerUSD is the number of micro-dollars in a dollar.
const MicrosPerUSD = 1_000_000

// USD returns m in dollars, for display and metrics only.
func (m Micros) USD() float64 { return float64(m) / MicrosPerUSD }

// String formats m as dollars with six decimals, e.g. "1.250000".
func (m Micros) String() string {
	sign := ""
	v := int64(m)
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%06d", sign, v/MicrosPerUSD, v%MicrosPerUSD)
}

// Cents formats m as dollars rounded half away from zero to cents, e.g. "1.25".
func (m Micros) Cents() string {
	v := int64(m)
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	c := (v + 5_000) / 10_000
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// MarshalJSON writes m as an exact dollar number.
func (m Micros) MarshalJSON() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalJSON reads a dollar number (or a string holding one) exactly to
// the micro-dollar; finer digits are rounded half away from zero.
func (m *Micros) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(s)
	}
	v, err := ParseUSD(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseUSD parses a decimal dollar amount such as "12.5" or "0.000125" into
// micro-dollars without going through floating point.
func ParseUSD(s string) (Micros, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("parse usd: empty")
	}
	if strings.ContainsAny(s, "eE") {
		// Exponent form: accept it through float, which JSON encoders use
		// for very small or large numbers.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("parse usd %q: %w", s, err)
		}
		return MicrosFromFloat(f)
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" {
		return 0, fmt.Errorf("parse usd: no digits")
	}
	for _, part := range []string{whole, frac} {
		for _, r := range part {
			if r < '0' || r > '9' {
				return 0, fmt.Errorf("parse usd %q: not a decimal number", s)
			}
		}
	}
	if len(whole) > 12 {
		return 0, fmt.Errorf("parse usd %q: out of range", s)
	}
	var w int64
	if whole != "" {
		w, _ = strconv.ParseInt(whole, 10, 64)
	}
	roundUp := false
	if len(frac) > 6 {
		roundUp = frac[6] >= '5'
		frac = frac[:6]
	}
	frac += strings.Repeat("0", 6-len(frac))
	f, _ := strconv.ParseInt(frac, 10, 64)
	v := w*MicrosPerUSD + f
	if roundUp {
		v++
	}
	if v >= maxMicros {
		return 0, fmt.Errorf("parse usd %q: out of range", s)
	}
	if neg {
		v = -v
	}
	return Micros(v), nil
}

// maxMicros bounds amounts to under a trillion dollars, so that every
// amount read can be written back and read again.
const maxMicros = 1_000_000_000_000 * MicrosPerUSD

// MicrosFromFloat converts a dollar float, rounding half away from zero to
// the nearest micro-dollar.
func MicrosFromFloat(f float64) (Micros, error) {
	v := math.Round(f * MicrosPerUSD)
	if v != v || v >= maxMicros || v <= -maxMicros {
		return 0, fmt.Errorf("usd %v out of range", f)
	}
	return Micros(v), nil
}
