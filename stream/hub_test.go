package stream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// client is a subscriber with a bounded queue, like a connection's, and a
// pump that applies what it receives to a Mirror unless it is stalled.
type client struct {
	name string

	mu      sync.Mutex
	cap     int
	q       [][]byte
	maxQ    int
	resets  int
	closed  string
	stalled bool
	mirror  protocol.Mirror
	ops     []string
	err     error
	wake    chan struct{}
}

func newClient(name string, capacity int) *client {
	return &client{name: name, cap: capacity, wake: make(chan struct{}, 1)}
}

func (c *client) Send(f []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.q) >= c.cap {
		return false
	}
	c.q = append(c.q, f)
	c.maxQ = max(c.maxQ, len(c.q))
	c.signal()
	return true
}

func (c *client) Reset(f []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.q = append(c.q[:0], f)
	c.resets++
	c.signal()
}

func (c *client) Close(code, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = code
	c.signal()
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// pump applies queued frames until ctx ends. A stalled client applies nothing.
func (c *client) pump(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		if !c.stalled {
			for _, f := range c.q {
				op, err := c.mirror.Apply(f)
				c.ops = append(c.ops, op)
				if err != nil && c.err == nil {
					c.err = err
				}
			}
			c.q = c.q[:0]
		}
		c.mu.Unlock()
	}
}

func (c *client) state() (seq uint64, js []byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mirror.Seq, c.mirror.JSON(), c.err
}

func startClient(t *testing.T, ctx context.Context, h *stream.Hub, c *client, scope string, resume *protocol.Resume) {
	t.Helper()
	go c.pump(ctx)
	if err := h.Subscribe(ctx, c, protocol.Subscribe{Op: protocol.OpSubscribe, Scope: scope, Resume: resume}); err != nil {
		t.Fatalf("subscribe %s: %v", c.name, err)
	}
}

// canonical re-encodes v through generic JSON, so maps compare by content.
func canonical(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitMirror waits until c's mirror stands where the hub's scope does, then
// checks that it equals the hub's view.
func waitMirror(t *testing.T, h *stream.Hub, c *client, scope string) {
	t.Helper()
	ctx := context.Background()
	// The view and the mirror are compared as they stood when their seqs
	// matched: the hub may still be folding, and the mirror may take the
	// next frame before a second look.
	var view fleet.View
	var js []byte
	streamtest.Eventually(t, 10*time.Second, func() bool {
		v, seq, err := h.View(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		got, mjs, cerr := c.state()
		if cerr != nil {
			t.Fatalf("%s: %v", c.name, cerr)
		}
		view, js = v, mjs
		return got == seq
	}, c.name+" did not catch up with the hub")
	var got any
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(canonical(t, view), got); d != "" {
		t.Fatalf("%s: mirror differs from the hub's view (-hub +mirror):\n%s", c.name, d)
	}
}

// publishAll publishes msgs as a broken or healthy worker would and returns
// those the stream stored, with their stored times.
func publishAll(t *testing.T, env *streamtest.Env, msgs []fleettest.Msg) []fleettest.Msg {
	t.Helper()
	ctx := context.Background()
	s, err := env.JS.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	var stored []fleettest.Msg
	for _, m := range msgs {
		seq, err := env.Publisher.PublishRaw(ctx, m.Subject, m.Body, "")
		if err != nil {
			continue // a subject NATS itself refuses never reaches the fold
		}
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		m.At = raw.Time
		stored = append(stored, m)
	}
	return stored
}

// allStored returns every message of FLEET with its stored time, for the
// reference fold.
func allStored(t *testing.T, env *streamtest.Env) []fleettest.Msg {
	t.Helper()
	ctx := context.Background()
	s, err := env.JS.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []fleettest.Msg
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fleettest.Msg{Subject: raw.Subject, Body: raw.Data, At: raw.Time})
	}
	return out
}

func scopesOf(projects []string) []string { return append([]string{fleet.ScopeAll}, projects...) }

// TestHubMirrorsTheFold: for random streams with duplicates, out-of-order
// times, unknown types and invalid events, every subscriber that applies its
// snapshot and diffs ends with exactly the hub's state, which is exactly a
// fresh fold of the stored stream; every diff follows the previous frame.
func TestHubMirrorsTheFold(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run("seed"+string(rune('0'+seed)), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			env := streamtest.Start(t, stream.HubConfig{Tick: 15 * time.Millisecond})
			rng := rand.New(rand.NewPCG(seed, 99))
			projects := []string{"acme", "globex", "initech"}
			msgs := fleettest.Generate(rng, 600, fleettest.Options{Projects: projects, Start: time.Now().Add(-time.Hour)})

			clients := map[string]*client{}
			for _, sc := range scopesOf(projects) {
				c := newClient("early "+sc, 1024)
				startClient(t, ctx, env.Hub, c, sc, nil)
				clients[sc] = c
			}
			publishAll(t, env, msgs[:len(msgs)/2])
			late := newClient("late *", 1024)
			startClient(t, ctx, env.Hub, late, fleet.ScopeAll, nil)
			publishAll(t, env, msgs[len(msgs)/2:])

			stored := allStored(t, env)
			streamtest.WaitSeq(t, env.Hub, uint64(len(stored)))
			ref := fleettest.Fold(stored)
			for _, sc := range scopesOf(projects) {
				waitMirror(t, env.Hub, clients[sc], sc)
				got, _, err := env.Hub.View(ctx, sc)
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(canonical(t, ref.View(sc)), canonical(t, got)); d != "" {
					t.Fatalf("scope %s: hub differs from a fresh fold (-fold +hub):\n%s", sc, d)
				}
			}
			waitMirror(t, env.Hub, late, fleet.ScopeAll)
			if n := clients[fleet.ScopeAll].mirror.Snapshots; n != 1 {
				t.Errorf("an early subscriber got %d snapshots, want 1 (then diffs only)", n)
			}
			if clients[fleet.ScopeAll].mirror.Diffs < 2 {
				t.Errorf("the * subscriber got %d diffs; the stream should have taken several ticks", clients[fleet.ScopeAll].mirror.Diffs)
			}
		})
	}
}

// TestHubResume: a client that reconnects with {epoch, seq} gets the diffs it
// missed and ends like a client that never left; when the ring no longer
// holds them it gets a snapshot.
func TestHubResume(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ring     int
		wantOp   string
		wantResu int64
	}{
		{"diffs from the ring", 600, protocol.OpDiff, 1},
		{"snapshot when the ring moved on", 2, protocol.OpSnapshot, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			env := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond, RingSize: tc.ring})
			watcher := newClient("watcher", 1024)
			startClient(t, ctx, env.Hub, watcher, "acme", nil)
			leaver := newClient("leaver", 1024)
			startClient(t, ctx, env.Hub, leaver, "acme", nil)

			now := time.Now()
			publishStep := func(ev fleet.Event) {
				seq, err := env.Publisher.Publish(ctx, ev)
				if err != nil {
					t.Fatal(err)
				}
				streamtest.Eventually(t, 10*time.Second, func() bool { s, _, _ := watcher.state(); return s >= seq }, "watcher missed a frame")
			}
			publishStep(fleettest.AgentCreated("acme", "a1", "claude-sonnet-4-5", now))
			publishStep(fleettest.RunStarted("acme", "a1", "r1", "", "claude-sonnet-4-5", now))
			waitMirror(t, env.Hub, leaver, "acme")
			env.Hub.Unsubscribe(leaver)
			leaver.mu.Lock()
			resume := &protocol.Resume{Epoch: leaver.mirror.Epoch, Seq: leaver.mirror.Seq}
			back := newClient("back", 1024)
			back.mirror = leaver.mirror
			back.mirror.Snapshots, back.mirror.Diffs = 0, 0
			leaver.mu.Unlock()

			for i := range 5 { // five frames while away
				publishStep(fleettest.LLMCall("acme", "a1", "r1", "claude-sonnet-4-5", int64(100*(i+1)), 50, 0, 0, now))
			}
			before := env.Hub.Stats().Resumes
			startClient(t, ctx, env.Hub, back, "acme", resume)
			waitMirror(t, env.Hub, back, "acme")
			back.mu.Lock()
			first := back.ops[0]
			back.mu.Unlock()
			if first != tc.wantOp {
				t.Errorf("first frame after resume: %s, want %s", first, tc.wantOp)
			}
			if got := env.Hub.Stats().Resumes - before; got != tc.wantResu {
				t.Errorf("resumes counted: %d, want %d", got, tc.wantResu)
			}
			_, want, _ := watcher.state()
			_, got, _ := back.state()
			if !bytes.Equal(want, got) {
				t.Errorf("the resumed client differs from one that never left")
			}
		})
	}
}

// TestHubSlowSubscriber: a subscriber that stops reading never delays the
// others, its queue stays bounded, it gets a fresh snapshot, and when it
// stays slow it is closed with "slow" (4408).
func TestHubSlowSubscriber(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The hub's clock stands still: every resync falls in one ResyncWindow
	// however slowly the test runs.
	env := streamtest.Start(t, stream.HubConfig{Tick: 5 * time.Millisecond, MaxResyncs: 2, ResyncWindow: time.Minute, Now: fleettest.NewClock().Now})
	fast := newClient("fast", 64)
	startClient(t, ctx, env.Hub, fast, fleet.ScopeAll, nil)
	slow := newClient("slow", 3)
	slow.stalled = true
	startClient(t, ctx, env.Hub, slow, fleet.ScopeAll, nil)

	now := time.Now()
	for i := range 40 {
		seq, err := env.Publisher.Publish(ctx, fleettest.AgentCreated("acme", "agent-"+string(rune('a'+i%26))+string(rune('a'+i/26)), "gpt-5", now))
		if err != nil {
			t.Fatal(err)
		}
		// The fast client sees every frame while the slow one sits on its queue.
		streamtest.Eventually(t, 5*time.Second, func() bool { s, _, _ := fast.state(); return s >= seq }, "the fast client was held up")
	}
	waitMirror(t, env.Hub, fast, fleet.ScopeAll)
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if slow.closed != protocol.CodeSlow {
		t.Errorf("slow client closed with %q, want %q", slow.closed, protocol.CodeSlow)
	}
	// The first Reset is its subscription's snapshot; then two resyncs.
	if slow.resets != 1+2 {
		t.Errorf("slow client got %d fresh snapshots after the first, want 2 before being closed", slow.resets-1)
	}
	if slow.maxQ > slow.cap {
		t.Errorf("slow client's queue reached %d frames, cap %d", slow.maxQ, slow.cap)
	}
	st := env.Hub.Stats()
	if st.SlowClosed != 1 || st.Resyncs != 2 || st.Subscribers != 1 {
		t.Errorf("stats: slow closed %d, resyncs %d, subscribers %d; want 1, 2, 1", st.SlowClosed, st.Resyncs, st.Subscribers)
	}
}

// TestHubRejectsBadInput: each kind of bad message is counted under its
// reason with exactly one structured log line, and the fold goes on.
func TestHubRejectsBadInput(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	env := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond, Logger: log})
	ctx := context.Background()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	bad := []struct {
		subject, body string
		reason        fleet.Reason
	}{
		{"fleet.acme.agent.created", `{"id":"x1","type":"agent.created",`, fleet.ReasonBadJSON},
		{"fleet.acme.agent.created", `{"id":"x2","type":"agent.created","time":"` + now + `","project_id":"acme","data":{"description":"` + strings.Repeat("x", 70<<10) + `"}}`, fleet.ReasonOversize},
		{"fleet.globex.agent.created", `{"id":"x3","type":"agent.created","time":"` + now + `","project_id":"acme","agent_id":"a"}`, fleet.ReasonSubjectMismatch},
		{"fleet.acme.agent.created", `{"id":"x4","type":"agent.created","project_id":"acme"}`, fleet.ReasonMissingField},
		{"fleet.acme.llm.call", `{"id":"x5","type":"llm.call","time":"` + now + `","project_id":"acme","data":{"input_tokens":-5}}`, fleet.ReasonBadField},
	}
	for _, b := range bad {
		if _, err := env.Publisher.PublishRaw(ctx, b.subject, []byte(b.body), ""); err != nil {
			t.Fatal(err)
		}
	}
	seq, err := env.Publisher.Publish(ctx, fleettest.AgentCreated("acme", "survivor", "gpt-5", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	streamtest.WaitSeq(t, env.Hub, seq)
	st := env.Hub.Stats()
	want := map[fleet.Reason]int64{}
	for _, b := range bad {
		want[b.reason]++
	}
	if d := cmp.Diff(want, st.Rejected); d != "" {
		t.Errorf("rejections by reason (-want +got):\n%s", d)
	}
	lines := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"event":"event.rejected"`) {
			lines++
			var rec map[string]any
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Errorf("rejection log line is not JSON: %v", err)
			}
			if rec["reason"] == "" || rec["subject"] == "" || rec["level"] != "WARN" {
				t.Errorf("rejection log line lacks reason, subject or level: %s", l)
			}
		}
	}
	if lines != len(bad) {
		t.Errorf("%d rejection log lines, want %d", lines, len(bad))
	}
	v, _, err := env.Hub.View(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Agents["survivor"]; !ok || len(v.Agents) != 1 {
		t.Errorf("after the bad input the fold should hold exactly the one good agent, has %v", v.Agents)
	}
}

// TestHubRestart: a hub that stops (here: its last checkpoint is from the
// middle of the stream, as after a crash) and starts again on the same data
// folds only what came after the checkpoint, including events published
// while it was down, and ends exactly where a fresh fold of the stream ends.
func TestHubRestart(t *testing.T) {
	ctx := context.Background()
	cpDir := filepath.Join(t.TempDir(), "cp")
	cps := stream.NewCheckpoints(cpDir)
	env := streamtest.Start(t, stream.HubConfig{Tick: 5 * time.Millisecond, Checkpoints: cps, CheckpointEvery: time.Millisecond})
	rng := rand.New(rand.NewPCG(7, 7))
	msgs := fleettest.Generate(rng, 300, fleettest.Options{Start: time.Now().Add(-30 * time.Minute)})

	publishAll(t, env, msgs[:100])
	mid := allStored(t, env)
	streamtest.WaitSeq(t, env.Hub, uint64(len(mid)))
	path := filepath.Join(cpDir, "hub-checkpoint.json")
	var crashCopy []byte
	streamtest.Eventually(t, 10*time.Second, func() bool {
		st, err := cps.Load(env.Hub.Stats().Epoch, nil)
		if err != nil || st == nil || st.Seq() != uint64(len(mid)) {
			return false
		}
		crashCopy, err = os.ReadFile(path)
		return err == nil
	}, "no checkpoint at the middle of the stream")

	publishAll(t, env, msgs[100:200])
	streamtest.WaitSeq(t, env.Hub, uint64(len(allStored(t, env))))
	env.StopHub(t)
	publishAll(t, env, msgs[200:]) // while the hub is down
	if err := os.WriteFile(path, crashCopy, 0o600); err != nil {
		t.Fatal(err)
	}

	h2 := env.StartHub(t, stream.HubConfig{Tick: 5 * time.Millisecond, Checkpoints: cps})
	all := allStored(t, env)
	streamtest.WaitSeq(t, h2, uint64(len(all)))
	ref := fleettest.Fold(all)
	for _, sc := range scopesOf(ref.Projects()) {
		got, _, err := h2.View(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(canonical(t, ref.View(sc)), canonical(t, got)); d != "" {
			t.Fatalf("scope %s after restart (-fresh fold +restarted hub):\n%s", sc, d)
		}
	}
	st := h2.Stats()
	folded := st.Applied + st.Duplicates + st.Unknown
	for _, n := range st.Rejected {
		folded += n
	}
	if want := int64(len(all) - len(mid)); folded != want {
		t.Errorf("the restarted hub folded %d messages, want %d (only those after its checkpoint)", folded, want)
	}
	if st.Seq != uint64(len(all)) {
		t.Errorf("seq %d, want %d", st.Seq, len(all))
	}
}

// TestHubSubscribeAfterStop: calls after the hub stopped fail with ErrClosed
// rather than hang.
func TestHubSubscribeAfterStop(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	env.StopHub(t)
	_, err := env.Hub.Snapshot(context.Background(), fleet.ScopeAll)
	if !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("snapshot after stop: %v, want ErrClosed", err)
	}
	if env.Hub.Ready() == nil {
		t.Fatal("a stopped hub says it is ready")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
