package browser_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/hud"
)

// TestScriptFormatsAsTheServer runs the page's own formatting functions on
// edge cases and random values and checks that they print exactly what
// hud's Go functions print, so that a figure never changes its text when
// the script takes over from the server-rendered page.
func TestScriptFormatsAsTheServer(t *testing.T) {
	r := newRig(t, nil)
	tb := newTab(t, 1280, 720)
	r.login(tb, "/hud")

	rng := rand.New(rand.NewPCG(9, 9))
	ints := []int64{0, 1, 999, 1000, 999_999, 1_000_000, 123_456_789_012, -1, -1000}
	micros := []fleet.Micros{0, 1, 4_999, 5_000, 5_001, 9_999, 10_000, 2_705_349, 999_995_000, 123_456_789_012_345}
	floats := []float64{0, 0.04, 0.05, 0.15, 0.25, 0.35, 1.45, 38.25, 99.95, 100, 419.5, 999.4, 999.5, 999.95, 1886.9, 61_000.05}
	for range 300 {
		ints = append(ints, rng.Int64N(1e12))
		micros = append(micros, fleet.Micros(rng.Int64N(1e13)))
		floats = append(floats, rng.Float64()*100_000, float64(rng.IntN(200_000))/100)
	}
	times := []time.Time{{}, time.Date(2026, 11, 27, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2026, 11, 27, 16, 54, 18, 983_359_697, time.FixedZone("X", -5*3600))}

	type batch struct {
		Ints   []int64   `json:"ints"`
		USD    []string  `json:"usd"` // as the wire carries money: six decimals
		Floats []float64 `json:"floats"`
		Times  []string  `json:"times"`
	}
	in := batch{Ints: ints, Floats: floats}
	for _, m := range micros {
		in.USD = append(in.USD, m.String())
	}
	for _, tm := range times {
		b, _ := json.Marshal(tm)
		in.Times = append(in.Times, strings.Trim(string(b), `"`))
	}
	arg, _ := json.Marshal(in)
	codes := []string{"acme", "globex", "initech", "tenant00", "tenant01", "team42", "x1", "123", "ab-2024", "a", "a_b-c9"}
	codesJSON, _ := json.Marshal(codes)
	type result struct {
		Ints, USD, Pct, Latency, Clock, Coord, Rate, Code []string
	}
	got := eval[result](tb, `(() => { const f = window.observatoryHUD.format; const b = `+string(arg)+`;
	  return { Ints: b.ints.map(f.fmtInt), USD: b.usd.map((s) => f.fmtUSD(JSON.parse(s))), Pct: b.floats.map(f.fmtPct),
	    Latency: b.floats.map(f.fmtLatency), Clock: b.times.map(f.fmtClock), Coord: b.floats.map(f.coord),
	    Rate: b.ints.map((n, i) => f.fmtRate(Math.abs(n) % 997, (i % 7) * 1000)), Code: `+string(codesJSON)+`.map(f.code) }; })()`)
	var want result
	for i, n := range ints {
		want.Ints = append(want.Ints, hud.FormatInt(n))
		part, whole := n%997, int64(i%7)*1000
		if part < 0 {
			part = -part
		}
		want.Rate = append(want.Rate, hud.FormatRate(part, whole))
	}
	for _, m := range micros {
		want.USD = append(want.USD, hud.FormatUSD(m))
	}
	for _, f := range floats {
		want.Pct = append(want.Pct, hud.FormatPct(f))
		want.Latency = append(want.Latency, hud.FormatLatency(f))
		want.Coord = append(want.Coord, hud.Coord(f))
	}
	for _, tm := range times {
		want.Clock = append(want.Clock, hud.FormatClock(tm))
	}
	for _, c := range codes {
		want.Code = append(want.Code, hud.Code(c))
	}
	check := func(name string, got, want []string, in func(int) any) {
		for i := range want {
			if i >= len(got) || got[i] != want[i] {
				g := "(missing)"
				if i < len(got) {
					g = got[i]
				}
				t.Errorf("%s(%v): script %q, server %q", name, in(i), g, want[i])
			}
		}
	}
	check("fmtInt", got.Ints, want.Ints, func(i int) any { return ints[i] })
	check("fmtUSD", got.USD, want.USD, func(i int) any { return in.USD[i] })
	check("fmtPct", got.Pct, want.Pct, func(i int) any { return floats[i] })
	check("fmtLatency", got.Latency, want.Latency, func(i int) any { return floats[i] })
	check("fmtClock", got.Clock, want.Clock, func(i int) any { return in.Times[i] })
	check("coord", got.Coord, want.Coord, func(i int) any { return floats[i] })
	check("fmtRate", got.Rate, want.Rate, func(i int) any { return ints[i] })
	check("code", got.Code, want.Code, func(i int) any { return codes[i] })
}
