package stream_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// counting wraps a client and counts the bytes of the diffs it is sent.
type counting struct {
	*client
	diffBytes int
}

func (c *counting) Send(f []byte) bool {
	if c.client.Send(f) {
		c.mu.Lock()
		c.diffBytes += len(f)
		c.mu.Unlock()
		return true
	}
	return false
}

func startVersion(t *testing.T, ctx context.Context, h *stream.Hub, name, scope, sp string, resume *protocol.Resume) *counting {
	t.Helper()
	c := &counting{client: newClient(name, 1024)}
	c.mirror.Protocol = sp
	go c.pump(ctx)
	if err := h.Subscribe(ctx, c, protocol.Subscribe{Op: protocol.OpSubscribe, Scope: scope, Resume: resume, Protocol: sp}); err != nil {
		t.Fatalf("subscribe %s: %v", name, err)
	}
	return c
}

// TestHubServesV1AndV2: v1 and v2 subscribers of every scope, early and
// late, and a v2 subscriber that resumes, all end with exactly the hub's
// view (which is a fresh fold of the stream); v1 subscribers get diffs
// with whole entities only; and v2 subscribers get fewer bytes for the
// same changes.
func TestHubServesV1AndV2(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A clock that stands still: the leaver's lane stays open however
	// slow the machine, so its resume gets diffs.
	env := streamtest.Start(t, stream.HubConfig{Tick: 15 * time.Millisecond, Now: fleettest.NewClock().Now})
	rng := rand.New(rand.NewPCG(5, 99))
	projects := []string{"acme", "globex", "initech"}
	msgs := fleettest.Generate(rng, 900, fleettest.Options{Projects: projects, Start: time.Now().Add(-time.Hour)})

	type pair struct{ v1, v2 *counting }
	early := map[string]pair{}
	for _, sc := range scopesOf(projects) {
		early[sc] = pair{
			startVersion(t, ctx, env.Hub, "early v1 "+sc, sc, protocol.Subprotocol, nil),
			startVersion(t, ctx, env.Hub, "early v2 "+sc, sc, protocol.SubprotocolV2, nil),
		}
	}
	leaver := startVersion(t, ctx, env.Hub, "leaver v2 *", fleet.ScopeAll, protocol.SubprotocolV2, nil)
	streamtest.WaitSeq(t, env.Hub, uint64(len(publishAll(t, env, msgs[:len(msgs)/3]))))
	waitMirror(t, env.Hub, leaver.client, fleet.ScopeAll)
	env.Hub.Unsubscribe(leaver)
	leaver.mu.Lock()
	resume := &protocol.Resume{Epoch: leaver.mirror.Epoch, Seq: leaver.mirror.Seq}
	leaver.mu.Unlock()

	publishAll(t, env, msgs[len(msgs)/3:2*len(msgs)/3])
	late := startVersion(t, ctx, env.Hub, "late v2 *", fleet.ScopeAll, protocol.SubprotocolV2, nil)
	back := &counting{client: newClient("back v2 *", 1024)}
	leaver.mu.Lock()
	back.mirror = leaver.mirror
	leaver.mu.Unlock()
	go back.pump(ctx)
	if err := env.Hub.Subscribe(ctx, back, protocol.Subscribe{Op: protocol.OpSubscribe, Scope: fleet.ScopeAll, Resume: resume, Protocol: protocol.SubprotocolV2}); err != nil {
		t.Fatal(err)
	}
	publishAll(t, env, msgs[2*len(msgs)/3:])

	stored := allStored(t, env)
	streamtest.WaitSeq(t, env.Hub, uint64(len(stored)))
	for _, sc := range scopesOf(projects) {
		waitMirror(t, env.Hub, early[sc].v1.client, sc)
		waitMirror(t, env.Hub, early[sc].v2.client, sc)
		_, js1, _ := early[sc].v1.state()
		_, js2, _ := early[sc].v2.state()
		if !bytes.Equal(js1, js2) {
			t.Errorf("scope %s: the v1 and v2 subscribers differ", sc)
		}
	}
	waitMirror(t, env.Hub, late.client, fleet.ScopeAll)
	waitMirror(t, env.Hub, back.client, fleet.ScopeAll)
	back.mu.Lock()
	first, snaps := back.ops[0], back.mirror.Snapshots
	back.mu.Unlock()
	if first != protocol.OpDiff || snaps != leaver.mirror.Snapshots {
		t.Errorf("the v2 subscriber that came back got %s first (%d snapshots), want the diffs it missed", first, snaps)
	}

	all := early[fleet.ScopeAll]
	all.v1.mu.Lock()
	all.v2.mu.Lock()
	b1, b2, d1, d2 := all.v1.diffBytes, all.v2.diffBytes, all.v1.mirror.Diffs, all.v2.mirror.Diffs
	all.v2.mu.Unlock()
	all.v1.mu.Unlock()
	if d1 != d2 || d1 < 2 {
		t.Errorf("the v1 subscriber applied %d diffs, the v2 one %d: want the same frames, several", d1, d2)
	}
	if b2 >= b1 {
		t.Errorf("v2 diffs weighed %d bytes, v1 diffs %d: v2 should be smaller", b2, b1)
	}
	t.Logf("scope *: %d diffs, v1 %d bytes, v2 %d bytes (%.0f %%)", d1, b1, b2, 100*float64(b2)/float64(b1))
}

// TestHubV2LaneClosesAndReopens: when a scope's last v2 subscriber has
// been gone longer than ScopeIdle while v1 subscribers keep the scope
// alive, the hub stops building v2 frames and forgets what v2 clients
// held; a v2 client that comes back then gets a snapshot (its diffs are
// gone), and from there patches again that follow the fold exactly.
func TestHubV2LaneClosesAndReopens(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The hub's clock moves only when the test says: the lane closes
	// because a minute passed on it, not because the machine was slow.
	clk := fleettest.NewClock()
	env := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond, ScopeIdle: time.Minute, Now: clk.Now})
	watcher := startVersion(t, ctx, env.Hub, "watcher v1", "acme", protocol.Subprotocol, nil)
	leaver := startVersion(t, ctx, env.Hub, "leaver v2", "acme", protocol.SubprotocolV2, nil)

	now := clk.Now()
	publish := func(evs ...fleet.Event) {
		t.Helper()
		var seq uint64
		for _, ev := range evs {
			var err error
			if seq, err = env.Publisher.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		// The hub has folded them before the watcher is compared with it.
		streamtest.WaitSeq(t, env.Hub, seq)
		waitMirror(t, env.Hub, watcher.client, "acme")
	}
	publish(fleettest.AgentCreated("acme", "a1", "claude-sonnet-4-5", now), fleettest.RunStarted("acme", "a1", "r1", "", "claude-sonnet-4-5", now))
	waitMirror(t, env.Hub, leaver.client, "acme")
	env.Hub.Unsubscribe(leaver)
	leaver.mu.Lock()
	resume := &protocol.Resume{Epoch: leaver.mirror.Epoch, Seq: leaver.mirror.Seq}
	held := leaver.mirror
	leaver.mu.Unlock()
	// The hub takes requests in order: once a view is answered, the
	// unsubscribe has been handled, at the clock's time before the jump.
	if _, _, err := env.Hub.View(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute + time.Second)

	// Frames of v1 only, past ScopeIdle: the v2 lane closes with the first.
	for i := range 3 {
		publish(fleettest.LLMCall("acme", "a1", "r1", "claude-sonnet-4-5", int64(100*(i+1)), 50, 0, 0, now))
	}
	back := &counting{client: newClient("back v2", 1024)}
	back.mirror = held
	back.mirror.Snapshots, back.mirror.Diffs = 0, 0
	go back.pump(ctx)
	if err := env.Hub.Subscribe(ctx, back, protocol.Subscribe{Op: protocol.OpSubscribe, Scope: "acme", Resume: resume, Protocol: protocol.SubprotocolV2}); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, env.Hub, back.client, "acme")
	back.mu.Lock()
	first := back.ops[0]
	back.mu.Unlock()
	if first != protocol.OpSnapshot {
		t.Errorf("a v2 client back after its lane closed got %s first, want a snapshot", first)
	}

	// From the snapshot on, v2 patches follow the fold.
	for i := range 3 {
		publish(fleettest.LLMCall("acme", "a1", "r1", "claude-sonnet-4-5", int64(1000*(i+1)), 50, 0, 0, now))
	}
	waitMirror(t, env.Hub, back.client, "acme")
	back.mu.Lock()
	diffs, bytes2 := back.mirror.Diffs, back.diffBytes
	back.mu.Unlock()
	if diffs < 1 {
		t.Fatalf("the v2 client applied %d diffs after its snapshot, want some", diffs)
	}
	_, want, _ := watcher.state()
	_, got, _ := back.state()
	if !bytes.Equal(want, got) {
		t.Errorf("the v2 client differs from the v1 watcher after the lane reopened")
	}
	t.Logf("v2 after reopening: %d diffs, %d bytes", diffs, bytes2)
}
