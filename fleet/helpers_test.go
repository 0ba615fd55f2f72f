package fleet_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// t0 is 15:00:30 UTC on the day of fleettest.Epoch() (a Friday by
// default; OBSERVATORY_TEST_CLOCK moves the day, never the hour): the fold
// tests start their clocks here, hours away from a UTC midnight.
var t0 = func() time.Time {
	e := fleettest.Epoch()
	return time.Date(e.Year(), e.Month(), e.Day(), 15, 0, 30, 0, time.UTC)
}()

// feed applies events at the stored time at, each at the next stream sequence.
func feed(t *testing.T, s *fleet.State, at time.Time, evs ...fleet.Event) {
	t.Helper()
	for _, ev := range evs {
		if res := s.Apply(s.Seq()+1, at, ev); res == fleet.Rejected {
			t.Fatalf("Apply(%s %s) = rejected", ev.Type, ev.ID)
		}
	}
}

// tick moves the fold's clock to at, the way any message does (here one the
// consumer rejected, which changes nothing but the clock and the sequence).
func tick(s *fleet.State, at time.Time) { s.Skip(s.Seq()+1, at) }

// jsonOf is v as generic JSON values, the way a browser sees it.
func jsonOf(t testing.TB, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal %T: %v", v, err)
	}
	return m
}

// scopesOf is the admin scope and every project scope of s.
func scopesOf(s *fleet.State, extra ...string) []string {
	scopes := append([]string{fleet.ScopeAll}, s.Projects()...)
	for _, p := range extra {
		found := false
		for _, q := range scopes {
			found = found || q == p
		}
		if !found {
			scopes = append(scopes, p)
		}
	}
	return scopes
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x0b5e7a70)) }

// generated returns a stream of n messages for seed.
func generated(seed uint64, n int) []fleettest.Msg {
	return fleettest.Generate(newRand(seed), n, fleettest.Options{})
}

// seeds is how many random streams the property tests try.
func seeds() uint64 {
	switch {
	case testing.Short():
		return 4
	case raceEnabled:
		return 8
	}
	return 20
}
