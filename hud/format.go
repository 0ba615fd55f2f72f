package hud

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// The figures of the HUD are formatted here and, identically, by
// static/hud.js (fmtInt, fmtUSD, fmtPct, fmtLatency, fmtClock): the
// server-rendered first paint and the live page must print the same text for
// the same value, and the browser tests compare both with these functions.
// Rounding is spelled out (floor(x+0.5)) rather than left to strconv or
// Number.toFixed, which round halves differently.

// FormatInt prints n with a comma every three digits: 1,663,264.
func FormatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// FormatUSD prints money to the cent, rounding half up on the
// micro-dollars as fleet.Micros.Cents does: $1,234.57.
func FormatUSD(m fleet.Micros) string {
	v := int64(m)
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	c := (v + 5_000) / 10_000
	cents := strconv.FormatInt(c%100, 10)
	if len(cents) < 2 {
		cents = "0" + cents
	}
	return sign + "$" + FormatInt(c/100) + "." + cents
}

// FormatPct prints a percentage with one decimal: 38.2%.
func FormatPct(p float64) string {
	return tenths(p) + "%"
}

// tenths prints x with one decimal, rounding half up.
func tenths(x float64) string {
	t := int64(math.Floor(float64(x*10) + 0.5)) // the conversion forbids a fused multiply-add, which JS never does
	sign := ""
	if t < 0 {
		sign, t = "-", -t
	}
	return sign + FormatInt(t/10) + "." + strconv.FormatInt(t%10, 10)
}

// FormatLatency prints a latency in milliseconds: 420ms below a second,
// 1.9s above.
func FormatLatency(ms float64) string {
	if ms <= 0 {
		return "0ms"
	}
	if r := int64(math.Floor(ms + 0.5)); r < 1000 {
		return strconv.FormatInt(r, 10) + "ms"
	}
	return tenths(ms/1000) + "s"
}

// FormatClock prints the UTC time of day of t: 16:54:18. A zero time is "—".
func FormatClock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("15:04:05")
}

// FormatRate prints part/whole as a percentage with one decimal, "0.0%"
// when whole is zero.
func FormatRate(part, whole int64) string {
	if whole <= 0 {
		return "0.0%"
	}
	return FormatPct(float64(part) * 100 / float64(whole))
}

// Calls is the number of calls an agent made: LLM and tool calls.
func Calls(a fleet.Agent) int64 { return a.LLMCalls + a.ToolCalls }

// ErrorRate is the share of an agent's calls that failed, as shown in its
// dossier.
func ErrorRate(a fleet.Agent) string { return FormatRate(a.CallErrors, Calls(a)) }
