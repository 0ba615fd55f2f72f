package worker_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/worker"
)

// longLease is longer than any bound of these tests: a mission that
// another worker claims within the bounds was handed back, not lost to an
// expired lease.
const longLease = 10 * time.Minute

// TestHandBackReturnsRunningMission: a worker that hands back a mission
// it is running ends its run as failed ("handed back"), returns the
// mission to the queue at once (another worker completes it long before
// the lease could have expired, as its second attempt), publishes
// worker.left, and Run returns nil. The mission ends exactly once.
func TestHandBackReturnsRunningMission(t *testing.T) {
	f := newFixture(t)
	started := make(chan worker.Mission, 1)
	victim := f.start(t, worker.Config{ID: "w-victim", Projects: []string{"acme"}, Lease: longLease, Agent: blocking(started)})
	f.enqueue(t, "acme", "m-1", "")
	if m := <-started; m.ID != "m-1" || m.Attempt != 1 {
		t.Fatalf("the victim started %s attempt %d, want m-1 attempt 1", m.ID, m.Attempt)
	}
	f.start(t, worker.Config{ID: "w-heir", Projects: []string{"acme"}, Lease: longLease, Agent: fast(-1)})

	victim.w.HandBack()
	victim.stop(t) // Run returns nil: a clean stop

	f.rec.waitEnded(t, time.Minute, []string{"m-1"})
	f.queueEmpty(t)
	f.rec.checkEndedOnce(t, []string{"m-1"})
	end := f.rec.all(isEnd)[0]
	if end.Type != fleet.TypeMissionCompleted || end.WorkerID != "w-heir" {
		t.Errorf("m-1 ended with %s by %s, want mission.completed by w-heir", end.Type, end.WorkerID)
	}
	if got := workerIDs(f.rec.all(ofMission("m-1", fleet.TypeMissionClaimed))); !slices.Equal(got, []string{"w-victim", "w-heir"}) {
		t.Errorf("m-1 claimed by %v, want w-victim then w-heir", got)
	}
	if n := f.rec.count(ofMission("m-1", fleet.TypeMissionRetrying)); n != 1 {
		t.Errorf("%d mission.retrying, want 1: the heir's claim is the second attempt", n)
	}
	runEnds := f.rec.all(func(e fleet.Event) bool { return e.MissionID == "m-1" && e.Type == fleet.TypeRunFailed })
	if len(runEnds) != 1 || runEnds[0].WorkerID != "w-victim" {
		t.Fatalf("failed runs of m-1: %+v, want one by w-victim", runEnds)
	}
	var out fleet.Outcome
	if err := json.Unmarshal(runEnds[0].Data, &out); err != nil || !strings.Contains(out.Error, "handed back") {
		t.Errorf("the victim's run ended with %+v (%v), want an error that says it was handed back", out, err)
	}
	if n := f.rec.count(func(e fleet.Event) bool { return e.Type == fleet.TypeWorkerLeft && e.WorkerID == "w-victim" }); n != 1 {
		t.Errorf("%d worker.left of the victim, want 1", n)
	}
	if s := victim.w.Stats(); s.HandedBack != 1 || s.Completed != 0 {
		t.Errorf("the victim's stats %+v, want one mission handed back and none completed", s)
	}
}

// TestStopHandsBackUnstarted: after Stop, a worker finishes the mission it
// runs but starts nothing new: a delivery waiting for a slot goes back to
// the queue at once, and costs the mission no attempt (the next worker's
// claim is attempt 1, with no mission.retrying).
func TestStopHandsBackUnstarted(t *testing.T) {
	f := newFixture(t)
	started := make(chan worker.Mission, 1)
	release := make(chan struct{})
	// One slot for two projects: a globex delivery waits while the acme
	// mission runs.
	agent := func(ctx context.Context, m worker.Mission, emit func(fleet.Event) error) error {
		started <- m
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w := f.start(t, worker.Config{ID: "w-1", Projects: []string{"acme", "globex"}, Capacity: 1, Lease: longLease, Agent: agent})
	f.enqueue(t, "acme", "m-run", "")
	if m := <-started; m.ID != "m-run" {
		t.Fatalf("started %s, want m-run", m.ID)
	}
	f.enqueue(t, "globex", "m-wait", "")
	// The globex delivery reached w-1 and waits for its slot.
	streamtest.Eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := f.env.JS.Consumer(ctx, stream.MissionsStream, worker.ConsumerName("globex"))
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == 1
	}, "the globex mission was not delivered to w-1")

	w.w.Stop()
	f.start(t, worker.Config{ID: "w-2", Projects: []string{"globex"}, Lease: longLease, Agent: fast(-1)})
	f.rec.waitEnded(t, time.Minute, []string{"m-wait"})
	close(release)
	w.stop(t)

	f.rec.waitEnded(t, time.Minute, []string{"m-run"})
	f.queueEmpty(t)
	f.rec.checkEndedOnce(t, []string{"m-run", "m-wait"})
	for id, want := range map[string]string{"m-run": "w-1", "m-wait": "w-2"} {
		ends := f.rec.ends()[id]
		if len(ends) != 1 || ends[0].Type != fleet.TypeMissionCompleted || ends[0].WorkerID != want {
			t.Errorf("%s ended %+v, want completed by %s", id, ends, want)
		}
	}
	claims := f.rec.all(ofMission("m-wait", fleet.TypeMissionClaimed))
	if len(claims) != 1 || claims[0].WorkerID != "w-2" {
		t.Fatalf("m-wait claimed %+v, want once, by w-2", claims)
	}
	var c worker.Claimed
	if err := json.Unmarshal(claims[0].Data, &c); err != nil || c.Attempt != 1 {
		t.Errorf("w-2's claim of m-wait: %+v (%v), want attempt 1: a hand-back before the start is no attempt", c, err)
	}
	if n := f.rec.count(ofMission("m-wait", fleet.TypeMissionRetrying)); n != 0 {
		t.Errorf("%d mission.retrying of m-wait, want none", n)
	}
	if s := w.w.Stats(); s.HandedBack != 1 || s.Completed != 1 {
		t.Errorf("w-1's stats %+v, want m-run completed and m-wait handed back", s)
	}
}
