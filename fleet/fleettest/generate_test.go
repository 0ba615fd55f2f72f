package fleettest_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

func TestGenerateValidAgreesWithDecodeEvent(t *testing.T) {
	for seed := range uint64(8) {
		msgs := fleettest.Generate(rand.New(rand.NewPCG(seed, 1)), 2000, fleettest.Options{})
		if len(msgs) != 2000 {
			t.Fatalf("seed %d: %d messages, want 2000", seed, len(msgs))
		}
		for i, m := range msgs {
			_, err := fleet.DecodeEvent(m.Subject, m.Body)
			if (err == nil) != m.Valid {
				t.Fatalf("seed %d message %d (%s): Valid=%v but DecodeEvent says %v\n%.300s", seed, i, m.Subject, m.Valid, err, m.Body)
			}
		}
	}
}

// TestGenerateCoversTheFaults checks that a stream of a realistic length
// carries every kind of event and fault the fold must survive, so tests fed
// with it exercise them.
func TestGenerateCoversTheFaults(t *testing.T) {
	type tally struct {
		types      map[string]int
		reasons    map[fleet.Reason]int
		duplicates int
		late       int
		future     int
		midnight   bool
		span       time.Duration
	}
	count := func(msgs []fleettest.Msg) tally {
		tl := tally{types: map[string]int{}, reasons: map[fleet.Reason]int{}}
		seen := map[string]bool{}
		var newest time.Time
		for i, m := range msgs {
			if i > 0 && m.At.Before(msgs[i-1].At) {
				t.Fatalf("At goes back at message %d: %v after %v", i, m.At, msgs[i-1].At)
			}
			ev, err := fleet.DecodeEvent(m.Subject, m.Body)
			if err != nil {
				tl.reasons[fleet.RejectReason(err)]++
				continue
			}
			if seen[ev.ID] {
				tl.duplicates++
				continue
			}
			seen[ev.ID] = true
			tl.types[ev.Type]++
			if ev.Time.Before(newest.Add(-time.Minute)) {
				tl.late++
			}
			if ev.Time.After(m.At) {
				tl.future++
			}
			if ev.Time.After(newest) {
				newest = ev.Time
			}
		}
		first, last := msgs[0].At.UTC(), msgs[len(msgs)-1].At.UTC()
		tl.span = last.Sub(first)
		tl.midnight = first.YearDay() != last.YearDay()
		return tl
	}
	crossed, long := 0, 0
	all := tally{types: map[string]int{}, reasons: map[fleet.Reason]int{}}
	for seed := range uint64(10) {
		tl := count(fleettest.Generate(rand.New(rand.NewPCG(seed, 2)), 3000, fleettest.Options{}))
		if tl.midnight {
			crossed++
		}
		if tl.span > time.Hour {
			long++
		}
		for k, v := range tl.types {
			all.types[k] += v
		}
		for k, v := range tl.reasons {
			all.reasons[k] += v
		}
		all.duplicates += tl.duplicates
		all.late += tl.late
		all.future += tl.future
	}
	for _, typ := range []string{
		fleet.TypeWorkerJoined, fleet.TypeWorkerHeartbeat, fleet.TypeWorkerLeft, fleet.TypeAgentCreated, fleet.TypeAgentState,
		fleet.TypeMissionQueued, fleet.TypeMissionClaimed, fleet.TypeMissionProgress, fleet.TypeMissionCompleted,
		fleet.TypeMissionFailed, fleet.TypeMissionRetrying, fleet.TypeRunStarted, fleet.TypeRunCompleted, fleet.TypeRunFailed,
		fleet.TypeLLMCall, fleet.TypeToolCall, fleet.TypeBudgetWarning, fleet.TypeBudgetExceeded, fleettest.UnknownType,
	} {
		if all.types[typ] == 0 {
			t.Errorf("no %s event in 10 streams", typ)
		}
	}
	for _, r := range fleet.Reasons {
		if r == fleet.ReasonBadField {
			continue // counted below with the negative tokens
		}
		if all.reasons[r] == 0 {
			t.Errorf("no message rejected for %s in 10 streams", r)
		}
	}
	if all.reasons[fleet.ReasonBadField] == 0 {
		t.Errorf("no negative-token message in 10 streams")
	}
	if all.duplicates == 0 || all.late == 0 || all.future == 0 {
		t.Errorf("duplicates %d, late events %d, future events %d: want some of each", all.duplicates, all.late, all.future)
	}
	if crossed == 0 || crossed == 10 {
		t.Errorf("%d of 10 streams cross a UTC midnight: want some, not all", crossed)
	}
	if long < 8 {
		t.Errorf("%d of 10 streams of 3000 messages span over an hour: want most", long)
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	opts := fleettest.Options{Projects: []string{"p1", "p2"}, Start: fleettest.Epoch().AddDate(0, -1, -25)}
	a := fleettest.Generate(rand.New(rand.NewPCG(7, 7)), 500, opts)
	b := fleettest.Generate(rand.New(rand.NewPCG(7, 7)), 500, opts)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("same seed, different streams (-first +second):\n%s", diff)
	}
	if a[0].At.Before(opts.Start) || a[0].At.After(opts.Start.Add(time.Hour)) {
		t.Errorf("first message at %v, before Start %v", a[0].At, opts.Start)
	}
	for _, m := range a {
		if p, _, ok := fleet.SplitSubject(m.Subject); m.Valid && ok && p != "p1" && p != "p2" {
			t.Fatalf("valid message on subject %s, outside the projects asked for", m.Subject)
		}
	}
}

func TestConstructorsBuildWhatAWorkerSends(t *testing.T) {
	at := fleettest.Epoch()
	ev := fleettest.LLMCall("acme", "acme-a1", "r1", "gpt-5-mini", 100, 20, 3, 4, at)
	want := fleet.Event{Type: fleet.TypeLLMCall, Time: at, ProjectID: "acme", AgentID: "acme-a1", RunID: "r1"}
	if diff := cmp.Diff(want, ev, cmpopts.IgnoreUnexported(fleet.Event{}), cmpopts.IgnoreFields(fleet.Event{}, "ID", "Data")); diff != "" {
		t.Fatalf("LLMCall envelope (-want +got):\n%s", diff)
	}
	var call fleet.LLMCall
	if err := json.Unmarshal(ev.Data, &call); err != nil {
		t.Fatal(err)
	}
	wantCall := fleet.LLMCall{Provider: "test", Model: "gpt-5-mini", InputTokens: 100, OutputTokens: 20, CacheReadTokens: 3, CacheWriteTokens: 4, LatencyMS: 420, Status: "ok"}
	if diff := cmp.Diff(wantCall, call); diff != "" {
		t.Fatalf("LLMCall data (-want +got):\n%s", diff)
	}
	if other := fleettest.LLMCall("acme", "acme-a1", "r1", "gpt-5-mini", 1, 1, 1, 1, at); other.ID == ev.ID || ev.ID == "" {
		t.Fatalf("two constructed events share the id %q", ev.ID)
	}
	m := fleettest.MsgOf(ev, time.Time{})
	if !m.Valid || m.Subject != "fleet.acme.llm.call" || !m.At.Equal(at) {
		t.Fatalf("MsgOf = subject %q at %v valid %v", m.Subject, m.At, m.Valid)
	}
	s := fleettest.Fold([]fleettest.Msg{m, m})
	if got := s.Counts(); got.Applied != 1 || got.Duplicates != 1 {
		t.Fatalf("folding a message twice: counts %+v, want 1 applied and 1 duplicate", got)
	}
	bad := fleettest.E{Type: fleet.TypeLLMCall, ProjectID: "acme", Time: at, Data: map[string]any{"input_tokens": -1}}.Msg(at)
	if bad.Valid {
		t.Fatalf("an llm.call with negative tokens is marked valid")
	}
}

// TestGenerateOptions checks what the opt-in shapes of a stream add: clock
// ticks only in quiet time, ids that tenants share, and late events at
// the edges of the windows; and that without them a stream is unchanged.
func TestGenerateOptions(t *testing.T) {
	plain := fleettest.Generate(rand.New(rand.NewPCG(3, 3)), 500, fleettest.Options{})
	off := fleettest.Generate(rand.New(rand.NewPCG(3, 3)), 500, fleettest.Options{ClockTicks: false})
	if diff := cmp.Diff(plain, off); diff != "" {
		t.Fatalf("the zero options changed the stream:\n%s", diff)
	}
	msgs := fleettest.Generate(rand.New(rand.NewPCG(3, 3)), 2000, fleettest.Options{ClockTicks: true, SharedIDs: true, EdgeTimes: true})
	ticks, hourLate, dayLate := 0, 0, 0
	owners := map[string]map[string]bool{} // agent id → projects that use it
	for i, m := range msgs {
		if i > 0 && m.At.Before(msgs[i-1].At) {
			t.Fatalf("At goes back at message %d", i)
		}
		if m.Subject == fleet.ClockSubject {
			ticks++
			if m.Valid || m.At.Truncate(fleet.ClockEvery) != m.At {
				t.Fatalf("tick %d at %v, valid %v: want one on a %v boundary, not an event", i, m.At, m.Valid, fleet.ClockEvery)
			}
			if i+1 < len(msgs) && !msgs[i+1].At.After(m.At) {
				t.Fatalf("tick %d at %v is not before the next message (%v)", i, m.At, msgs[i+1].At)
			}
			continue
		}
		ev, err := fleet.DecodeEvent(m.Subject, m.Body)
		if err != nil {
			continue
		}
		if ev.AgentID != "" {
			if owners[ev.AgentID] == nil {
				owners[ev.AgentID] = map[string]bool{}
			}
			owners[ev.AgentID][ev.ProjectID] = true
		}
		switch late := m.At.Sub(ev.Time); {
		case late > 59*time.Minute && late < 61*time.Minute:
			hourLate++
		case late > 24*time.Hour-time.Minute && late < 24*time.Hour+time.Minute:
			dayLate++
		}
	}
	shared := 0
	for _, ps := range owners {
		if len(ps) > 1 {
			shared++
		}
	}
	if ticks < 20 || shared == 0 || hourLate < 10 || dayLate < 5 {
		t.Errorf("%d ticks, %d agent ids used by several tenants, %d events an hour late, %d a day late: want some of each", ticks, shared, hourLate, dayLate)
	}
}
