package stream_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestClockMovesAQuietFleet checks the clock ticks: with nothing else
// published, a worker that stopped heartbeating stays online however far
// the hub's own clock and the wall clock move, then turns stale and
// offline on the hub's view (what the HUD shows) as ticks are stored; and
// two servers ticking in the same interval store one tick.
func TestClockMovesAQuietFleet(t *testing.T) {
	const staleAfter = 600 * time.Millisecond
	// The hub's clock, counting its reads: a read after a move of the
	// clock proves the hub has flushed since.
	hubClock := fleettest.NewClock()
	var reads atomic.Int64
	env := streamtest.Start(t, stream.HubConfig{StaleAfter: staleAfter, OfflineAfter: 1500 * time.Millisecond, Tick: 10 * time.Millisecond,
		Now: func() time.Time { reads.Add(1); return hubClock.Now() }})
	ctx := context.Background()
	// The worker's event time is the wall clock's: the fold takes its time
	// from the stream's stored times, which the NATS server stamps with
	// the wall clock.
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
	joinedAt := env.Hub.Stats().LastStored

	// Without ticks the fold's clock stands still: the worker stays online
	// when the hub's clock jumps to a day after the join and the wall
	// clock passes StaleAfter, once the hub has flushed after both.
	hubClock.Set(joinedAt.Add(24 * time.Hour))
	streamtest.Eventually(t, 10*time.Second, func() bool { return time.Since(joinedAt) > staleAfter },
		"the wall clock never passed StaleAfter after the worker joined")
	before := reads.Load()
	streamtest.Eventually(t, 10*time.Second, func() bool { return reads.Load() >= before+2 },
		"the hub never flushed after its clock moved: nothing was tested")
	if s := status(); s != fleet.WorkerOnline {
		t.Fatalf("with no message at all the worker turned %q; the clock must move only with the stream", s)
	}
	if st := env.Hub.Stats(); st.Seq != seq {
		t.Fatalf("the stream moved on its own to seq %d (want %d): the case above proved nothing", st.Seq, seq)
	}

	// Ticks are stored at the wall clock's time, and each must stand for
	// a new interval: this Clock names intervals on the wall clock too.
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
		t.Errorf("statuses seen %v; want stale, then offline", seen)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("clock: %v", err)
	}

	// Two servers ticking in the same interval store one tick; the next
	// interval's tick is another.
	clk := fleettest.NewClock()
	a, err := stream.NewClockWith(env.Publisher, stream.ClockConfig{Every: time.Hour, Now: clk.Now}).Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := stream.NewClockWith(env.Publisher, stream.ClockConfig{Every: time.Hour, Now: clk.Now})
	b, err := other.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("two ticks of one interval stored at %d and %d; want one", a, b)
	}
	clk.Advance(time.Hour)
	if c, err := other.Tick(ctx); err != nil || c <= a {
		t.Errorf("the next interval's tick: seq %d, %v; want a new tick after %d", c, err, a)
	}
}
