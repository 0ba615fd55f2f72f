package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestClockMovesAQuietFleet checks the clock ticks: with nothing else
// published, a worker that stopped heartbeating turns stale, then offline,
// on the hub's view (what the HUD shows), and two servers ticking in the
// same interval store one tick.
func TestClockMovesAQuietFleet(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{StaleAfter: 600 * time.Millisecond, OfflineAfter: 1500 * time.Millisecond, Tick: 10 * time.Millisecond})
	ctx := context.Background()
	seq, err := env.Publisher.Publish(ctx, fleettest.E{Type: fleet.TypeWorkerJoined, Time: time.Now().UTC(), ProjectID: "acme", WorkerID: "w-1",
		Data: fleet.WorkerJoined{Host: "h", Version: "1", Capacity: 1}}.Event())
	if err != nil {
		t.Fatal(err)
	}
	streamtest.WaitSeq(t, env.Hub, seq)
	status := func() string {
		v, _, err := env.Hub.View(ctx, fleet.ScopeAll)
		if err != nil {
			t.Fatal(err)
		}
		return v.Workers["w-1"].Status
	}
	if s := status(); s != fleet.WorkerOnline {
		t.Fatalf("a joined worker is %q, want online", s)
	}

	// Without ticks the fold's clock stands still: the worker stays online.
	time.Sleep(800 * time.Millisecond) // longer than StaleAfter, on purpose: nothing may happen
	if s := status(); s != fleet.WorkerOnline {
		t.Fatalf("with no message at all the worker turned %q; the clock must move only with the stream", s)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clock := stream.NewClock(env.Publisher, 100*time.Millisecond, nil)
	done := make(chan error, 1)
	go func() { done <- clock.Run(cctx) }()
	var seen []string
	streamtest.Eventually(t, 10*time.Second, func() bool {
		if s := status(); len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		return seen[len(seen)-1] == fleet.WorkerOffline
	}, "the quiet worker never turned offline on the clock's ticks")
	if len(seen) < 2 || seen[len(seen)-2] != fleet.WorkerStale {
		t.Errorf("statuses seen %v; want online, stale, offline", seen)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("clock: %v", err)
	}

	// Two servers ticking in the same interval store one tick.
	slow := stream.NewClock(env.Publisher, time.Hour, nil)
	a, err := slow.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := stream.NewClock(env.Publisher, time.Hour, nil).Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("two ticks of one interval stored at %d and %d; want one", a, b)
	}
}
