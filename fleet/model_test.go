package fleet_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// TestFoldAgreesWithTheModel checks the fold against fleettest.Model, a
// second statement of its rules that recomputes everything from the whole
// list of messages folded so far (windows by scanning for the events in
// them, liveness from last-seen times, spend today from the calls of the
// clock's day). On random streams with duplicates, late and future event
// times (some right at the edges of the windows), invalid messages,
// unknown types, clock ticks and, in half of them, ids that collide
// across tenants (agents, missions, runs and workers), in some with limits
// small enough that every bound is hit, and with three liveness settings,
// every field the HUD shows (posture, projects, agents, workers, missions
// in flight, budgets, ticker) must be the same in every scope after every
// one of the first messages, at the end of every quiet spell, at random
// points, and at the very instants where a figure changes with time alone
// (a worker turning stale, an error leaving the hour, midnight, an agent
// forgotten) and a nanosecond before them: there the test moves the clock
// with ticks of its own.
func TestFoldAgreesWithTheModel(t *testing.T) {
	t.Parallel()
	for seed := range modelSeeds() {
		opts := fleettest.Options{ClockTicks: true, EdgeTimes: true, SharedIDs: seed%2 == 1}
		// The default liveness, the short one tests use, and one where
		// workers go offline only after the hour that forgets them.
		var model fleettest.Model
		switch seed % 4 {
		case 2:
			model.StaleAfter, model.OfflineAfter = 5*time.Second, 20*time.Second
		case 3:
			model.StaleAfter, model.OfflineAfter = 10*time.Minute, 2*time.Hour
		}
		// Some streams run into every bound: a third project that only an
		// announcement lets in, agents, missions, workers and budgets
		// refused, open runs dropped, agents forgotten after quiet spells.
		limited := seed%3 == 1
		if limited {
			model.Limits = fleet.Limits{Projects: 2, AnnouncedProjects: 1, Agents: 4, Missions: 5, Workers: 3, Budgets: 3,
				OpenRuns: 2, ForgetAgentsAfter: 20 * time.Minute}
		}
		t.Run(fmt.Sprintf("seed=%d/shared_ids=%v/stale=%v/limited=%v", seed, opts.SharedIDs, model.StaleAfter, limited), func(t *testing.T) {
			msgs := fleettest.Generate(newRand(seed+5000), modelStreamLen(), opts)
			rng := newRand(seed + 6000)
			s := fleet.NewState(nil)
			s.SetLiveness(model.StaleAfter, model.OfflineAfter)
			s.SetLimits(model.Limits)
			var recs []fleettest.Record
			feed := func(m fleettest.Msg) {
				seq := uint64(len(recs) + 1)
				fleettest.Feed(s, seq, m)
				recs = append(recs, fleettest.RecordOf(seq, m))
			}
			check := func(m fleettest.Msg) {
				t.Helper()
				if err := agree(s, model.Derive(recs)); err != nil {
					t.Fatalf("after message %d (%s, stored %s):\n%.400s\n%v", len(recs), m.Subject, m.At.Format(time.RFC3339Nano), m.Body, err)
				}
			}
			edges := 0
			for i, m := range msgs {
				// Before some messages, and at the end of every quiet
				// spell, visit the edges in the gap since the last one.
				quiet := m.At.Sub(s.Clock()) > time.Minute
				if i > 0 && (quiet || rng.IntN(modelSample()) == 0) {
					var in []time.Time
					for _, e := range model.Derive(recs).Edges() {
						if e.Before(m.At) {
							in = append(in, e)
						}
					}
					rng.Shuffle(len(in), func(a, b int) { in[a], in[b] = in[b], in[a] })
					in = in[:min(len(in), 1+3*btoi(quiet))]
					slices.SortFunc(in, time.Time.Compare)
					for _, e := range in {
						for _, at := range []time.Time{e.Add(-time.Nanosecond), e} {
							if at.After(s.Clock()) {
								tick := fleettest.Msg{Subject: fleet.ClockSubject, Body: []byte("{}"), At: at}
								feed(tick)
								check(tick)
								edges++
							}
						}
					}
				}
				feed(m)
				last := i == len(msgs)-1
				quietEnds := !last && m.Subject == fleet.ClockSubject && msgs[i+1].Subject != fleet.ClockSubject
				if i < modelDense() || last || quietEnds || rng.IntN(modelSample()) == 0 {
					check(m)
				}
			}
			if edges < 20 {
				t.Errorf("only %d checks at edges; the test proves little about boundaries", edges)
			}
			if refused := s.Counts().Limited; limited != (refused > 0) {
				t.Errorf("%d events refused by the limits %+v; want some exactly when the limits are small", refused, model.Limits)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// modelStreamLen is how long the streams of the model test are: long
// enough that windows expire, workers go offline and are forgotten, and
// the clock crosses a UTC midnight on some seeds. The race detector finds
// nothing in this one-goroutine test and slows it tenfold: it gets
// shorter streams.
func modelStreamLen() int {
	if testing.Short() || raceEnabled {
		return 1200
	}
	return 2000
}

// modelDense is how many messages at the start of a stream the model test
// checks after each.
func modelDense() int {
	if testing.Short() || raceEnabled {
		return 100
	}
	return 150
}

// modelSample is one in how many messages after those the model test
// checks at random, and before one in how many it visits the edges of the
// gap.
func modelSample() int {
	if testing.Short() || raceEnabled {
		return 40
	}
	return 20
}

// modelSeeds is how many streams the model test tries: fewer than the
// other property tests, as the model recomputes everything at each check.
func modelSeeds() uint64 {
	switch {
	case testing.Short():
		return 2
	case raceEnabled:
		return 4
	}
	return 8
}

// agree compares what a State shows with what the model derives, in
// every scope.
func agree(s *fleet.State, d *fleettest.Derived) error {
	if s.Seq() != d.Seq() || !s.Clock().Equal(d.Clock()) {
		return fmt.Errorf("fold at seq %d clock %v, model at seq %d clock %v", s.Seq(), s.Clock(), d.Seq(), d.Clock())
	}
	if diff := cmp.Diff(d.Counts(), s.Counts()); diff != "" {
		return fmt.Errorf("counts (-model +fold):\n%s", diff)
	}
	if diff := cmp.Diff(d.Projects(), s.Projects()); diff != "" {
		return fmt.Errorf("projects (-model +fold):\n%s", diff)
	}
	for _, scope := range append([]string{fleet.ScopeAll, "nobody"}, d.Projects()...) {
		want, got := d.View(scope), s.View(scope)
		if reflect.DeepEqual(want, got) {
			continue // the fast way; cmp decides when it is not sure
		}
		if diff := cmp.Diff(want, got); diff != "" {
			return fmt.Errorf("view of %s (-model +fold):\n%s", scope, diff)
		}
	}
	return nil
}
