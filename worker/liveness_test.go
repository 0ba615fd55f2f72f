package worker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/worker"
)

// TestKilledWorkerGoesStaleThenOffline kills a worker in the middle of a
// mission while two others keep heartbeating, with a hub whose liveness
// thresholds are short (stale after 1 s, offline after 3 s; DESIGN's 30 s
// and 2 min by default). The fold's clock moves with the survivors'
// heartbeats, so the HUD's view of the killed worker goes online, stale,
// offline, in that order, and the workers online fall from 3 to 2; its
// mission goes back to the queue, another worker completes it, and it
// ends once.
func TestKilledWorkerGoesStaleThenOffline(t *testing.T) {
	const stale, offline = time.Second, 3 * time.Second
	f := newFixtureWith(t, stream.HubConfig{StaleAfter: stale, OfflineAfter: offline, Tick: 10 * time.Millisecond})
	lease, hb := 2*time.Second, 200*time.Millisecond
	started := make(chan worker.Mission, 1)
	victim := f.start(t, worker.Config{ID: "w-victim", Projects: []string{"acme"}, Lease: lease, Heartbeat: hb, Agent: blocking(started)})
	f.enqueue(t, "acme", "m-1", "claude-haiku-4-5")
	if m := <-started; m.ID != "m-1" {
		t.Fatalf("victim got %+v", m)
	}
	for i := range 2 {
		f.start(t, worker.Config{ID: fmt.Sprintf("w-survivor-%d", i), Projects: []string{"acme"}, Lease: lease, Heartbeat: hb, Agent: fast(-1)})
	}
	ctx := context.Background()
	hubView := func() fleet.View {
		v, _, err := f.env.Hub.View(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	streamtest.Eventually(t, 10*time.Second, func() bool {
		v := hubView()
		return v.Posture.WorkersOnline == 3 && v.Workers["w-victim"].Status == fleet.WorkerOnline
	}, "three workers online")

	victim.kill(t)
	// Watch the victim's status as the HUD sees it, recording each change.
	var seen []string
	var online []int
	streamtest.Eventually(t, 20*time.Second, func() bool {
		v := hubView()
		st := v.Workers["w-victim"].Status
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
			online = append(online, v.Posture.WorkersOnline)
		}
		return st == fleet.WorkerOffline
	}, "the killed worker never showed offline")
	if want := []string{fleet.WorkerOnline, fleet.WorkerStale, fleet.WorkerOffline}; !slices.Equal(seen, want) {
		t.Errorf("the killed worker showed %v, want %v", seen, want)
	}
	if want := []int{3, 2, 2}; !slices.Equal(online, want) {
		t.Errorf("workers online %v as it went %v, want %v", online, seen, want)
	}
	// When each status begins, to the instant, is the fold's rule on the
	// stream's clock, proven against an independent model of the fold
	// (fleet's TestFoldAgreesWithTheModel); here the order is what counts.
	v := hubView()
	for i := range 2 {
		if st := v.Workers[fmt.Sprintf("w-survivor-%d", i)].Status; st != fleet.WorkerOnline {
			t.Errorf("survivor %d is %s, want online", i, st)
		}
	}

	f.rec.waitEnded(t, 20*time.Second, []string{"m-1"})
	f.rec.checkEndedOnce(t, []string{"m-1"})
	f.queueEmpty(t)
	end := f.rec.all(ofMission("m-1", fleet.TypeMissionCompleted))
	if len(end) != 1 || end[0].WorkerID == "w-victim" {
		t.Errorf("mission end %+v, want completed by a survivor", end)
	}
	if got := f.claimers("m-1"); len(got) != 2 || got[0] != "w-victim" {
		t.Errorf("claims by %v, want the victim then a survivor", got)
	}
	if _, ok := view(t, f, "acme").Missions["m-1"]; ok {
		t.Error("the mission is still in flight in the fold")
	}
}
