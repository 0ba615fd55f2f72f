package synth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/synth"
)

var t0 = time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)

// simulate drives a fleet for d of simulated time in steps of tick and
// returns every event it produced.
func simulate(t *testing.T, cfg synth.Config, d, tick time.Duration) []fleet.Event {
	t.Helper()
	f := synth.New(cfg, nil)
	var evs []fleet.Event
	for now := t0; !now.After(t0.Add(d)); now = now.Add(tick) {
		evs = append(evs, f.Step(now)...)
		if next := f.Next(); next.IsZero() || next.Before(now) {
			t.Fatalf("at %s the next event is due at %s", now, next)
		}
	}
	return evs
}

func seeded(seed uint64) synth.Config {
	return synth.Config{Rand: rand.New(rand.NewPCG(seed, seed+1))}
}

var (
	traceRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	spanRE  = regexp.MustCompile(`^[0-9a-f]{16}$`)
	ulidRE  = regexp.MustCompile(`^[0-7][0-9A-HJKMNP-TV-Z]{25}$`)
)

// TestEventsAreValid checks that every event passes the server's decoder on
// its own subject, has a unique id, the envelope fields set and the time
// order of a real stream.
func TestEventsAreValid(t *testing.T) {
	evs := simulate(t, seeded(1), 5*time.Minute, 250*time.Millisecond)
	if len(evs) < 500 {
		t.Fatalf("5 simulated minutes gave only %d events", len(evs))
	}
	seen := map[string]bool{}
	types := map[string]int{}
	var last time.Time
	for _, ev := range evs {
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fleet.DecodeEvent(fleet.Subject(ev), body)
		if err != nil {
			t.Fatalf("%s: %v\n%s", ev.Type, err, body)
		}
		if !fleet.Known(got.Type) {
			t.Errorf("unknown event type %q", got.Type)
		}
		if seen[ev.ID] {
			t.Errorf("duplicate event id %s", ev.ID)
		}
		seen[ev.ID] = true
		types[ev.Type]++
		if !ulidRE.MatchString(ev.ID) {
			t.Errorf("id %q is not a ULID", ev.ID)
		}
		if ev.TeamID == "" || ev.UserID == "" {
			t.Errorf("%s %s: team_id %q user_id %q", ev.Type, ev.ID, ev.TeamID, ev.UserID)
		}
		if !traceRE.MatchString(ev.TraceID) || !spanRE.MatchString(ev.SpanID) {
			t.Errorf("%s %s: trace_id %q span_id %q", ev.Type, ev.ID, ev.TraceID, ev.SpanID)
		}
		if ev.Time.Before(last) {
			t.Errorf("%s %s at %s comes after an event at %s", ev.Type, ev.ID, ev.Time, last)
		}
		last = ev.Time
		if ev.Time.After(t0.Add(5 * time.Minute)) {
			t.Errorf("%s at %s was returned before it was due", ev.Type, ev.Time)
		}
	}
	for _, typ := range []string{
		fleet.TypeWorkerJoined, fleet.TypeWorkerHeartbeat, fleet.TypeAgentCreated, fleet.TypeAgentState,
		fleet.TypeMissionQueued, fleet.TypeMissionClaimed, fleet.TypeMissionProgress, fleet.TypeMissionCompleted,
		fleet.TypeRunStarted, fleet.TypeRunCompleted, fleet.TypeLLMCall, fleet.TypeToolCall,
	} {
		if types[typ] == 0 {
			t.Errorf("no %s event in 5 simulated minutes", typ)
		}
	}
	// 6 workers, one heartbeat each every 10 s, the first 10 s after joining.
	if n := types[fleet.TypeWorkerHeartbeat]; n < 6*29 || n > 6*30 {
		t.Errorf("%d heartbeats in 5 minutes from 6 workers, want one per worker every 10 s", n)
	}
}

// TestFold folds simulated minutes into a fleet.State the way the hub does
// and checks what a HUD would show.
func TestFold(t *testing.T) {
	evs := simulate(t, seeded(2), 6*time.Minute, 100*time.Millisecond)
	st := fleet.NewState(nil)
	maxInFlight := 0
	for i, ev := range evs {
		body, _ := json.Marshal(ev)
		dec, err := fleet.DecodeEvent(fleet.Subject(ev), body)
		if err != nil {
			t.Fatal(err)
		}
		if res := st.Apply(uint64(i+1), ev.Time, dec); res != fleet.Applied {
			t.Fatalf("event %d (%s) folded as %v", i, ev.Type, res)
		}
		maxInFlight = max(maxInFlight, st.Posture(fleet.ScopeAll).MissionsInFlight)
	}
	v := st.View(fleet.ScopeAll)
	if got, want := slices.Sorted(maps.Keys(v.Projects)), []string{"acme", "globex", "initech"}; !slices.Equal(got, want) {
		t.Fatalf("projects %v, want %v", got, want)
	}
	for id, p := range v.Projects {
		if p.Agents != synth.DefaultAgents || p.ActiveAgents != synth.DefaultAgents {
			t.Errorf("%s: %d agents (%d active), want %d", id, p.Agents, p.ActiveAgents, synth.DefaultAgents)
		}
		if p.WorkersOnline != 2 {
			t.Errorf("%s: %d workers online, want 2", id, p.WorkersOnline)
		}
		if p.MissionsDone < 10 {
			t.Errorf("%s: %d missions completed in 6 minutes", id, p.MissionsDone)
		}
		if p.MissionsFailed*5 > p.MissionsDone {
			t.Errorf("%s: %d failed, %d completed: far more failures than ~5 %%", id, p.MissionsFailed, p.MissionsDone)
		}
		if p.SpendTotal <= 0 || p.Tokens24h <= 0 || p.Runs24h <= 0 {
			t.Errorf("%s: spend %s, tokens %d, runs %d", id, p.SpendTotal, p.Tokens24h, p.Runs24h)
		}
		if p.UnpricedCalls != 0 || p.UnknownEvents != 0 {
			t.Errorf("%s: %d unpriced calls, %d unknown events", id, p.UnpricedCalls, p.UnknownEvents)
		}
	}
	var failed int64
	for _, p := range v.Projects {
		failed += p.MissionsFailed
	}
	if failed == 0 {
		t.Error("no mission failed in 6 minutes; the fleet should fail about 5 %")
	}
	if maxInFlight < 4 {
		t.Errorf("at most %d missions in flight at once; want several overlapping", maxInFlight)
	}
	if len(v.Workers) != synth.DefaultWorkers {
		t.Errorf("%d workers, want %d", len(v.Workers), synth.DefaultWorkers)
	}
	models := map[string]bool{}
	for id, a := range v.Agents {
		models[a.Model] = true
		if a.LLMCalls == 0 {
			t.Errorf("agent %s made no LLM call in 6 minutes", id)
			continue
		}
		switch {
		case a.Model == "llama3.1" && a.Spend != 0:
			t.Errorf("agent %s on local llama3.1 spent %s, want 0", id, a.Spend)
		case a.Model != "llama3.1" && a.Spend <= 0:
			t.Errorf("agent %s on priced %s spent %s, want > 0", id, a.Model, a.Spend)
		}
		if len(a.Tools) == 0 || len(a.Skills) == 0 || a.Description == "" || a.Role == "" {
			t.Errorf("agent %s has no tools, skills, role or description: %+v", id, a)
		}
	}
	for _, m := range []string{"claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-5-mini", "gemini-2.5-flash", "llama3.1"} {
		if !models[m] {
			t.Errorf("no agent runs on %s", m)
		}
	}
	if _, ok := v.Agents["acme-support-triager"]; !ok {
		t.Errorf("no agent acme-support-triager among %v", slices.Sorted(maps.Keys(v.Agents)))
	}
}

// TestLifecycle checks every mission's events against the lifecycle a
// dispatcher guarantees.
func TestLifecycle(t *testing.T) {
	evs := simulate(t, seeded(3), 10*time.Minute, time.Second)
	if finished := checkLifecycle(t, evs); finished < 100 {
		t.Errorf("only %d missions finished in 10 simulated minutes", finished)
	}
}

// TestStop: a stopped fleet fails what is in flight and its workers leave,
// so that nothing stays in flight on a HUD; then it is silent.
func TestStop(t *testing.T) {
	f := synth.New(seeded(8), nil)
	var evs []fleet.Event
	now := t0
	for ; now.Before(t0.Add(2 * time.Minute)); now = now.Add(100 * time.Millisecond) {
		evs = append(evs, f.Step(now)...)
	}
	stop := f.Stop(now)
	evs = append(evs, stop...)
	checkLifecycle(t, evs)
	st := fleet.NewState(nil)
	for i, ev := range evs {
		body, _ := json.Marshal(ev)
		dec, err := fleet.DecodeEvent(fleet.Subject(ev), body)
		if err != nil {
			t.Fatal(err)
		}
		st.Apply(uint64(i+1), ev.Time, dec)
	}
	p := st.Posture(fleet.ScopeAll)
	if p.MissionsInFlight != 0 || p.WorkersOnline != 0 {
		t.Errorf("after Stop: %d missions in flight, %d workers online; want none", p.MissionsInFlight, p.WorkersOnline)
	}
	failed := 0
	for _, ev := range stop {
		if ev.Type == fleet.TypeMissionFailed {
			failed++
		}
	}
	if failed == 0 {
		t.Error("Stop failed no mission; some must have been in flight")
	}
	if evs := f.Step(now.Add(time.Hour)); len(evs) != 0 || !f.Next().IsZero() || len(f.Stop(now)) != 0 {
		t.Errorf("a stopped fleet still has events: %d", len(evs))
	}
}

// checkLifecycle checks each mission's events: queued, claimed, run
// started, calls, then one outcome, and nothing but agent states after
// it; one run at a time per agent. It returns how many missions finished.
func checkLifecycle(t *testing.T, evs []fleet.Event) int {
	t.Helper()
	type life struct {
		stage    int // 0 queued, 1 claimed, 2 running, 3 finished
		worker   string
		runEnded bool
	}
	missions := map[string]*life{}
	running := map[string]string{} // agent → mission of its run in progress
	finished := 0
	for _, ev := range evs {
		if ev.MissionID == "" {
			continue
		}
		l := missions[ev.MissionID]
		if l == nil {
			if ev.Type != fleet.TypeMissionQueued {
				t.Fatalf("mission %s starts with %s", ev.MissionID, ev.Type)
			}
			missions[ev.MissionID] = &life{}
			continue
		}
		if l.stage == 3 && ev.Type != fleet.TypeAgentState {
			t.Fatalf("mission %s: %s after it finished", ev.MissionID, ev.Type)
		}
		switch ev.Type {
		case fleet.TypeMissionClaimed:
			if l.stage != 0 || ev.WorkerID == "" {
				t.Fatalf("mission %s claimed at stage %d by %q", ev.MissionID, l.stage, ev.WorkerID)
			}
			l.stage, l.worker = 1, ev.WorkerID
		case fleet.TypeRunStarted:
			if l.stage != 1 || ev.RunID == "" {
				t.Fatalf("mission %s: run started at stage %d", ev.MissionID, l.stage)
			}
			if other := running[ev.AgentID]; other != "" {
				t.Fatalf("agent %s starts %s while running %s", ev.AgentID, ev.MissionID, other)
			}
			running[ev.AgentID] = ev.MissionID
			l.stage = 2
		case fleet.TypeLLMCall, fleet.TypeToolCall, fleet.TypeMissionProgress:
			if l.stage != 2 || l.runEnded {
				t.Fatalf("mission %s: %s outside its run", ev.MissionID, ev.Type)
			}
		case fleet.TypeRunCompleted, fleet.TypeRunFailed:
			if l.stage != 2 || l.runEnded {
				t.Fatalf("mission %s: %s at stage %d", ev.MissionID, ev.Type, l.stage)
			}
			l.runEnded = true
			delete(running, ev.AgentID)
		case fleet.TypeMissionCompleted, fleet.TypeMissionFailed:
			// Only a stopped fleet fails a mission whose run never started.
			if (l.stage == 2 && !l.runEnded) || (l.stage < 2 && ev.Type != fleet.TypeMissionFailed) {
				t.Fatalf("mission %s: %s at stage %d, run ended %v", ev.MissionID, ev.Type, l.stage, l.runEnded)
			}
			l.stage = 3
			finished++
		}
		if l.stage >= 1 && ev.WorkerID != l.worker {
			t.Fatalf("mission %s moved from worker %s to %s", ev.MissionID, l.worker, ev.WorkerID)
		}
	}
	return finished
}

// TestDeterministic: the same seed and the same step times give the same
// stream, ids included, so a failing seed can be replayed.
func TestDeterministic(t *testing.T) {
	a := simulate(t, seeded(4), time.Minute, 100*time.Millisecond)
	b := simulate(t, seeded(4), time.Minute, 100*time.Millisecond)
	if !bytes.Equal(encode(t, a), encode(t, b)) {
		t.Fatal("two fleets with the same seed produced different events")
	}
	// Coarser steps deliver the same events in bigger batches: up to
	// 56 s, the last step before a minute, both streams are the same.
	c := simulate(t, seeded(4), time.Minute, 7*time.Second)
	n := 0
	for n < len(a) && !a[n].Time.After(t0.Add(56*time.Second)) {
		n++
	}
	if len(c) != n || !bytes.Equal(encode(t, a[:n]), encode(t, c)) {
		t.Fatalf("the step size changed the events: %d events at 100 ms steps, %d at 7 s steps", n, len(c))
	}
}

// TestCustomMix runs a mix with fewer workers than projects, a team with
// no catalog of its own, more agents than the catalog has roles and an
// unpriced model.
func TestCustomMix(t *testing.T) {
	cfg := seeded(5)
	cfg.Workers, cfg.Agents = 2, 7
	cfg.MissionEvery = time.Second
	cfg.Projects = []synth.ProjectMix{
		{ID: "hooli", Team: "support", Models: []string{"claude-opus-4-5"}},
		{ID: "pied-piper", Team: "compression", Models: []string{"qwen2.5", "my-finetune-v3"}, Users: []string{"u-richard"}},
		{ID: "umbrella", Models: []string{"gpt-5-nano"}, Weight: 2},
	}
	evs := simulate(t, cfg, 5*time.Minute, 200*time.Millisecond)
	st := fleet.NewState(nil)
	for i, ev := range evs {
		body, _ := json.Marshal(ev)
		dec, err := fleet.DecodeEvent(fleet.Subject(ev), body)
		if err != nil {
			t.Fatal(err)
		}
		st.Apply(uint64(i+1), ev.Time, dec)
	}
	v := st.View(fleet.ScopeAll)
	for _, id := range []string{"hooli", "pied-piper", "umbrella"} {
		p := v.Projects[id]
		if p.Agents != 7 || p.MissionsDone == 0 || p.WorkersOnline == 0 {
			t.Errorf("%s: %d agents, %d missions completed, %d workers online", id, p.Agents, p.MissionsDone, p.WorkersOnline)
		}
	}
	if len(v.Workers) != 2 {
		t.Errorf("%d workers, want 2", len(v.Workers))
	}
	if v.Projects["pied-piper"].UnpricedCalls == 0 {
		t.Error("calls on an unpriced model were not counted as unpriced")
	}
	if _, ok := v.Agents["hooli-support-triager-2"]; !ok {
		t.Errorf("no second triager among %v", slices.Sorted(maps.Keys(v.Agents)))
	}
	for _, ev := range evs {
		if ev.ProjectID == "pied-piper" && ev.UserID != "u-richard" {
			t.Fatalf("pied-piper event from user %q", ev.UserID)
		}
	}
}

// TestRunNATS runs the fleet in real time against a real embedded NATS and
// hub, and checks the hub's view shows the three tenants and their agents,
// and, once Run has returned, nothing left in flight.
func TestRunNATS(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{Tick: 20 * time.Millisecond})
	cfg := seeded(6)
	cfg.MissionEvery = 100 * time.Millisecond
	f := synth.New(cfg, func(ctx context.Context, ev fleet.Event) error {
		_, err := env.Publisher.Publish(ctx, ev)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var v fleet.View
	streamtest.Eventually(t, 20*time.Second, func() bool {
		var err error
		v, _, err = env.Hub.View(context.Background(), fleet.ScopeAll)
		if err != nil {
			t.Fatal(err)
		}
		ok := len(v.Projects) == 3 && v.Posture.Runs24h > 0
		for _, id := range []string{"acme", "globex", "initech"} {
			ok = ok && v.Projects[id].Agents == synth.DefaultAgents
		}
		return ok
	}, "the hub does not show three projects with their agents and runs")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after its context ended, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if v.Posture.WorkersOnline != synth.DefaultWorkers {
		t.Errorf("%d workers online, want %d", v.Posture.WorkersOnline, synth.DefaultWorkers)
	}
	// Run published Stop's events on its way out.
	streamtest.Eventually(t, 10*time.Second, func() bool {
		v, _, _ = env.Hub.View(context.Background(), fleet.ScopeAll)
		return v.Posture.MissionsInFlight == 0 && v.Posture.WorkersOnline == 0
	}, "after Run returned, missions are still in flight or workers online")
}

// TestRunPublishError: a publish failure while the context is live ends Run
// with that error.
func TestRunPublishError(t *testing.T) {
	boom := errors.New("nats is down")
	f := synth.New(seeded(7), func(context.Context, fleet.Event) error { return boom })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Run(ctx); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
}

func encode(t *testing.T, evs []fleet.Event) []byte {
	t.Helper()
	b, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
