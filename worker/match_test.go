package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/worker"
)

// enqueueQ queues a mission of project with the data q, as the admin API
// does: on its pool's subject, then announced on FLEET.
func (f *fixture) enqueueQ(t *testing.T, project, id string, q fleet.MissionQueued) {
	t.Helper()
	f.enqueueAt(t, project, id, q, time.Now())
}

// enqueueAt is enqueueQ with the mission queued at now (its event's time,
// from which workers measure how long it waited).
func (f *fixture) enqueueAt(t *testing.T, project, id string, q fleet.MissionQueued, now time.Time) {
	t.Helper()
	now = now.UTC()
	if q.Title == "" {
		q.Title = "job " + id
	}
	data, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	ev := fleet.Event{ID: fleet.NewID(now), Type: fleet.TypeMissionQueued, Time: now, ProjectID: project, MissionID: id, Data: data}
	ctx := context.Background()
	if _, err := f.queue.Enqueue(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Publisher.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

// runDispatcher runs a dispatcher until the test ends.
func (f *fixture) runDispatcher(t *testing.T) *worker.Dispatcher {
	t.Helper()
	return f.runDispatcherWith(t, worker.DispatcherConfig{})
}

func (f *fixture) runDispatcherWith(t *testing.T, cfg worker.DispatcherConfig) *worker.Dispatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Logger = quiet
	d := worker.NewDispatcher(f.env.Conn, f.env.JS, f.env.Publisher, cfg)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.Run(ctx); err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	<-d.Ready()
	return d
}

// claimer returns who claimed mission id.
func (f *fixture) claimers(id string) []string {
	return workerIDs(f.rec.all(ofMission(id, fleet.TypeMissionClaimed)))
}

// TestPoolsRouteMissions queues missions in acme's default pool and in
// its gpu pool: a gpu worker runs only gpu missions, a default worker only
// default ones, and a worker of both pools may run either. The gpu
// missions travel on missions.acme.gpu, claimed through the consumer
// workers-acme@gpu.
func TestPoolsRouteMissions(t *testing.T) {
	f := newFixture(t)
	pools := map[string][]string{"w-gpu": {"gpu"}, "w-default": nil, "w-both": {"default", "gpu"}}
	for id, p := range pools {
		f.start(t, worker.Config{ID: id, Projects: []string{"acme"}, Pools: p, Capacity: 2, Agent: fast(-1)})
	}
	var ids []string
	pool := map[string]string{}
	for i := range 20 {
		for _, p := range []string{"", "gpu"} {
			id := fmt.Sprintf("m-%s-%02d", cmpOr(p, "default"), i)
			ids, pool[id] = append(ids, id), cmpOr(p, "default")
			f.enqueueQ(t, "acme", id, fleet.MissionQueued{Priority: "normal", Pool: p})
		}
	}
	f.rec.waitEnded(t, 30*time.Second, ids)
	f.rec.checkEndedOnce(t, ids)
	f.queueEmpty(t)
	for _, id := range ids {
		for _, w := range f.claimers(id) {
			if !serves(pools[w], pool[id]) {
				t.Errorf("mission %s of pool %s claimed by %s, which serves %v", id, pool[id], w, pools[w])
			}
		}
	}
	ctx := context.Background()
	c, err := f.env.JS.Consumer(ctx, stream.MissionsStream, "workers-acme@gpu")
	if err != nil {
		t.Fatalf("the gpu pool's consumer: %v", err)
	}
	if got := c.CachedInfo().Config.FilterSubject; got != "missions.acme.gpu" {
		t.Errorf("gpu consumer filters %q, want missions.acme.gpu", got)
	}
	// The fold shows the pools on workers and missions.
	v := view(t, f, "acme")
	if got := v.Workers["w-both"].Pools; strings.Join(got, ",") != "default,gpu" {
		t.Errorf("w-both shows pools %v", got)
	}
}

func serves(pools []string, pool string) bool {
	if len(pools) == 0 {
		pools = []string{"default"}
	}
	for _, p := range pools {
		if p == pool {
			return true
		}
	}
	return false
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// view returns the hub's view of scope once it has folded everything
// published so far.
func view(t *testing.T, f *fixture, scope string) fleet.View {
	t.Helper()
	ctx := context.Background()
	seq, err := f.env.Publisher.Publish(ctx, probe())
	if err != nil {
		t.Fatal(err)
	}
	streamtest.WaitSeq(t, f.env.Hub, seq)
	v, _, err := f.env.Hub.View(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestModelAndLabelsMatch runs missions that name a model and require
// labels on workers that serve some models and offer some labels: every
// mission runs on a worker that matches it, and nowhere else.
func TestModelAndLabelsMatch(t *testing.T) {
	f := newFixture(t)
	type shape struct {
		models []string
		labels map[string]string
	}
	shapes := map[string]shape{
		"w-claude-eu": {[]string{"claude-sonnet-4-5"}, map[string]string{"region": "eu", "gpu": "a100"}},
		"w-gpt-us":    {[]string{"gpt-5"}, map[string]string{"region": "us"}},
		"w-any-eu":    {nil, map[string]string{"region": "eu"}},
	}
	// A short lease: a delivery lost to a hiccup comes back within
	// seconds, well inside the hang bound below, not after the default
	// minute (a lost lease is an attempt; these missions take
	// milliseconds, so none is lost to slowness).
	// The workers' debug log is kept and shown if the test fails: it has
	// failed rarely, with missions no worker ever claimed (see
	// waitEnded's report), and the log is what tells why.
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(logs.String(), "\n")
			t.Logf("the workers' log, last %d of %d lines:\n%s", min(200, len(lines)), len(lines), strings.Join(lines[max(0, len(lines)-200):], "\n"))
		}
	})
	debug := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for id, s := range shapes {
		f.start(t, worker.Config{ID: id, Projects: []string{"acme"}, Models: s.models, Labels: s.labels,
			Capacity: 2, SkipDelay: 5 * time.Millisecond, Agent: fast(-1), Lease: 5 * time.Second, Heartbeat: time.Second,
			Logger: debug.With("worker", id)})
	}
	missions := []fleet.MissionQueued{
		{Model: "claude-sonnet-4-5", Labels: map[string]string{"gpu": ""}},   // w-claude-eu only
		{Model: "gpt-5", Labels: map[string]string{"region": "us"}},          // w-gpt-us only
		{Model: "gemini-2.5-flash", Labels: map[string]string{"region": ""}}, // w-any-eu only
		{Model: "claude-sonnet-4-5", Labels: map[string]string{"region": "eu"}},
		{Model: "gpt-5"},
	}
	var ids []string
	want := map[string]fleet.MissionQueued{}
	for i := range 8 {
		for j, q := range missions {
			id := fmt.Sprintf("m-%d-%d", j, i)
			ids, want[id] = append(ids, id), q
			f.enqueueQ(t, "acme", id, q)
		}
	}
	f.rec.waitEnded(t, 60*time.Second, ids)
	f.rec.checkEndedOnce(t, ids)
	f.queueEmpty(t)
	for _, id := range ids {
		for _, w := range f.claimers(id) {
			s := shapes[w]
			if why := worker.Mismatch(want[id], s.models, s.labels); why != "" {
				t.Errorf("mission %s (%+v) claimed by %s: %s", id, want[id], w, why)
			}
		}
	}
}

// TestPassesDoNotBurnAttempts queues a mission only a worker that is not
// there yet matches: the workers that are there pass it on more times
// than a mission has attempts, and when the matching worker joins it
// claims the mission at attempt 1 and completes it.
func TestPassesDoNotBurnAttempts(t *testing.T) {
	f := newFixture(t)
	var others []*running
	for i := range 2 {
		others = append(others, f.start(t, worker.Config{ID: fmt.Sprintf("w-haiku-%d", i), Projects: []string{"acme"},
			Models: []string{"claude-haiku-4-5"}, SkipDelay: 5 * time.Millisecond, Agent: fast(-1)}))
	}
	f.enqueueQ(t, "acme", "m-opus", fleet.MissionQueued{Model: "claude-opus-4-1"})
	passes := func() (n int64) {
		for _, r := range others {
			n += r.w.Stats().Skipped
		}
		return n
	}
	streamtest.Eventually(t, 20*time.Second, func() bool { return passes() > worker.MaxAttempts }, "the mission was not passed on")
	f.start(t, worker.Config{ID: "w-opus", Projects: []string{"acme"}, Models: []string{"claude-opus-4-1"}, Agent: fast(-1)})
	f.rec.waitEnded(t, 30*time.Second, []string{"m-opus"})
	f.rec.checkEndedOnce(t, []string{"m-opus"})
	end := f.rec.all(isEnd)[0]
	if end.Type != fleet.TypeMissionCompleted || end.WorkerID != "w-opus" {
		t.Errorf("end %s by %q, want completed by w-opus", end.Type, end.WorkerID)
	}
	claims := f.rec.all(ofMission("m-opus", fleet.TypeMissionClaimed))
	if len(claims) != 1 || !strings.Contains(string(claims[0].Data), `"attempt":1,`) {
		t.Errorf("claims %+v, want one, at attempt 1, after %d passes", claims, passes())
	}
	if n := f.rec.count(ofMission("m-opus", fleet.TypeMissionRetrying)); n != 0 {
		t.Errorf("%d mission.retrying, want none: a pass is not a lost lease", n)
	}
	for _, r := range others {
		if s := r.w.Stats(); s.Claimed != 0 {
			t.Errorf("%s claimed %d missions of a model it does not serve", r.cfg.ID, s.Claimed)
		}
	}
}

// TestUnmatchedMissionFails queues a mission no worker matches. Passes
// are bounded in time, not in count: it is passed on far more times than
// JetStream's old delivery bound (43) without ending, and once it has
// waited MatchWait (by the workers' clock, moved by the test) the worker
// that receives it fails it with a reason that names what nobody offered;
// the queue empties and nobody ran it.
func TestUnmatchedMissionFails(t *testing.T) {
	f := newFixture(t)
	clk := fleettest.NewClock()
	const wait = time.Hour
	var ws []*running
	for i := range 2 {
		ws = append(ws, f.start(t, worker.Config{ID: fmt.Sprintf("w-%d", i), Projects: []string{"acme"}, Pools: []string{"gpu"},
			Models: []string{"gpt-5"}, Labels: map[string]string{"region": "us"}, SkipDelay: 2 * time.Millisecond,
			MaxSkipDelay: 20 * time.Millisecond, MatchWait: wait, Now: clk.Now, Agent: fast(-1)}))
	}
	passes := func() (n int64) {
		for _, r := range ws {
			n += r.w.Stats().Skipped
		}
		return n
	}
	f.enqueueAt(t, "acme", "m-lonely", fleet.MissionQueued{Model: "gpt-5", Pool: "gpu", Labels: map[string]string{"region": "eu"}}, clk.Now())
	f.enqueueAt(t, "acme", "m-fine", fleet.MissionQueued{Model: "gpt-5", Pool: "gpu", Labels: map[string]string{"region": "us"}}, clk.Now())
	f.rec.waitEnded(t, 30*time.Second, []string{"m-fine"})
	streamtest.Eventually(t, 60*time.Second, func() bool { return passes() > 60 }, "the unmatched mission was not passed on 60 times")
	if n := len(f.rec.ends()["m-lonely"]); n != 0 {
		t.Fatalf("m-lonely ended after %d passes, before it waited %s", passes(), wait)
	}

	clk.Advance(wait)
	f.rec.waitEnded(t, 30*time.Second, []string{"m-lonely"})
	f.queueEmpty(t)
	f.rec.checkEndedOnce(t, []string{"m-lonely", "m-fine"})
	end := f.rec.all(ofMission("m-lonely", fleet.TypeMissionFailed))
	if len(end) != 1 {
		t.Fatalf("m-lonely ended %+v, want failed", f.rec.all(isEnd))
	}
	var out fleet.Outcome
	if err := json.Unmarshal(end[0].Data, &out); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("no worker matches the mission (pool gpu, model gpt-5, label region=eu): passed on %d times in 1h0m0s", passes())
	if out.Error != want {
		t.Errorf("reason %q, want %q", out.Error, want)
	}
	if n := f.rec.count(ofMission("m-lonely", fleet.TypeMissionClaimed)); n != 0 {
		t.Errorf("the unmatched mission was claimed %d times", n)
	}
	var unmatched int64
	for _, r := range ws {
		unmatched += r.w.Stats().Unmatched
	}
	if unmatched != 1 {
		t.Errorf("the workers failed %d unmatched missions, want 1", unmatched)
	}
}

// TestBusyMatchingWorkerLosesNothing queues a backlog that one worker
// alone matches while it runs a mission that does not end until the test
// says so: the others pass the backlog on many more times than JetStream's
// old delivery bound, and when the busy worker is free it runs every
// mission of it. (A bound on deliveries would have stranded them: that is
// how TestModelAndLabelsMatch failed under load.)
func TestBusyMatchingWorkerLosesNothing(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	started := make(chan string, 16)
	var busyOnce sync.Once
	agent := func(ctx context.Context, m worker.Mission, emit func(fleet.Event) error) error {
		started <- m.ID
		if m.ID == "m-long" {
			busyOnce.Do(func() {
				select {
				case <-release:
				case <-ctx.Done():
				}
			})
		}
		return fast(-1)(ctx, m, emit)
	}
	f.start(t, worker.Config{ID: "w-opus", Projects: []string{"acme"}, Models: []string{"claude-opus-4-1"}, Capacity: 1, Agent: agent})
	var others []*running
	for i := range 2 {
		others = append(others, f.start(t, worker.Config{ID: fmt.Sprintf("w-haiku-%d", i), Projects: []string{"acme"},
			Models: []string{"claude-haiku-4-5"}, SkipDelay: time.Millisecond, MaxSkipDelay: 5 * time.Millisecond, Agent: fast(-1)}))
	}
	f.enqueueQ(t, "acme", "m-long", fleet.MissionQueued{Model: "claude-opus-4-1"})
	if id := <-started; id != "m-long" {
		t.Fatalf("the opus worker started %s, want m-long", id)
	}
	ids := []string{"m-long"}
	for i := range 4 {
		id := fmt.Sprintf("m-backlog-%d", i)
		ids = append(ids, id)
		f.enqueueQ(t, "acme", id, fleet.MissionQueued{Model: "claude-opus-4-1"})
	}
	streamtest.Eventually(t, 60*time.Second, func() bool {
		var n int64
		for _, r := range others {
			n += r.w.Stats().Skipped
		}
		return n > 4*50
	}, "the backlog was not passed on 200 times")
	close(release)
	f.rec.waitEnded(t, 60*time.Second, ids)
	f.rec.checkEndedOnce(t, ids)
	f.queueEmpty(t)
	for _, id := range ids {
		if n := f.rec.count(ofMission(id, fleet.TypeMissionCompleted)); n != 1 {
			t.Errorf("%s completed %d times, want 1 (ends: %+v)", id, n, f.rec.ends()[id])
		}
		if got := f.claimers(id); len(got) != 1 || got[0] != "w-opus" {
			t.Errorf("%s claimed by %v, want w-opus once", id, got)
		}
	}
}

// TestDispatcherFailsWhatJetStreamGaveUpOn: a consumer that bounds
// deliveries (made by hand, or by an older release) gives up on a mission
// it delivered MaxDeliver times; the dispatcher fails that mission on
// JetStream's advisory, saying its leases were lost, and removes it from
// the queue.
func TestDispatcherFailsWhatJetStreamGaveUpOn(t *testing.T) {
	f := newFixture(t)
	d := f.runDispatcher(t)
	ctx := context.Background()
	st, err := f.env.JS.Stream(ctx, stream.MissionsStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "by-hand", FilterSubject: stream.PoolSubject("acme", "legacy"),
		AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 2})
	if err != nil {
		t.Fatal(err)
	}
	f.enqueueQ(t, "acme", "m-legacy", fleet.MissionQueued{Pool: "legacy"})
	for i := range 2 {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got int
		for m := range batch.Messages() {
			got++
			if err := m.Nak(); err != nil {
				t.Fatal(err)
			}
		}
		if got != 1 {
			t.Fatalf("delivery %d: got %d messages, want 1 (%v)", i+1, got, batch.Error())
		}
	}
	// JetStream gives up (and tells) when it would deliver a third time.
	if _, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	f.rec.waitEnded(t, 30*time.Second, []string{"m-legacy"})
	end := f.rec.all(ofMission("m-legacy", fleet.TypeMissionFailed))
	if len(end) != 1 {
		t.Fatalf("m-legacy ended %+v, want failed", f.rec.all(isEnd))
	}
	var out fleet.Outcome
	if err := json.Unmarshal(end[0].Data, &out); err != nil {
		t.Fatal(err)
	}
	if want := "lease lost 2 times: no worker finished the mission"; out.Error != want {
		t.Errorf("reason %q, want %q", out.Error, want)
	}
	if d.Failed() != 1 {
		t.Errorf("the dispatcher failed %d missions, want 1", d.Failed())
	}
	f.queueEmpty(t)
}

// TestMismatch pins the matching rules.
func TestMismatch(t *testing.T) {
	labels := map[string]string{"region": "eu", "gpu": "a100"}
	for _, tc := range []struct {
		q      fleet.MissionQueued
		models []string
		want   string
	}{
		{fleet.MissionQueued{}, nil, ""},
		{fleet.MissionQueued{Model: "gpt-5"}, nil, ""},
		{fleet.MissionQueued{Model: "gpt-5"}, []string{"gpt-5", "o3"}, ""},
		{fleet.MissionQueued{Model: "gpt-5"}, []string{"o3"}, "model gpt-5 not served"},
		{fleet.MissionQueued{Labels: map[string]string{"gpu": ""}}, nil, ""},
		{fleet.MissionQueued{Labels: map[string]string{"gpu": "a100", "region": "eu"}}, nil, ""},
		{fleet.MissionQueued{Labels: map[string]string{"gpu": "h100"}}, nil, "label gpu=a100, want h100"},
		{fleet.MissionQueued{Labels: map[string]string{"zone": ""}}, nil, "label zone missing"},
	} {
		if got := worker.Mismatch(tc.q, tc.models, labels); got != tc.want {
			t.Errorf("Mismatch(%+v, %v) = %q, want %q", tc.q, tc.models, got, tc.want)
		}
	}
}

// TestUnservedPoolFails queues missions in a pool no worker has ever
// served: the dispatcher fails them once they have waited UnservedAfter,
// saying so, while the default pool's missions run, and a pool whose
// worker left (its consumer remains) keeps its mission waiting.
func TestUnservedPoolFails(t *testing.T) {
	f := newFixture(t)
	gone := f.start(t, worker.Config{ID: "w-gpu", Projects: []string{"acme"}, Pools: []string{"gpu"}, Agent: fast(-1)})
	gone.stop(t)
	f.start(t, worker.Config{ID: "w-default", Projects: []string{"acme"}, Agent: fast(-1)})
	// The dispatcher's clock stands still until the test moves it, so
	// "not before UnservedAfter" is decided by the test, not by timing.
	// It starts at the wall clock: the sweep compares it with MISSIONS'
	// stored times, which NATS stamps with the wall clock.
	const after = time.Hour
	clk := fleettest.NewClockAt(time.Now())
	var reads atomic.Int64
	now := func() time.Time { reads.Add(1); return clk.Now() }
	d := f.runDispatcherWith(t, worker.DispatcherConfig{UnservedAfter: after, SweepEvery: 20 * time.Millisecond, Now: now})
	f.enqueueQ(t, "acme", "m-nobody", fleet.MissionQueued{Pool: "nobody"})
	f.enqueueQ(t, "globex", "m-no-project", fleet.MissionQueued{})
	f.enqueueQ(t, "acme", "m-gpu", fleet.MissionQueued{Pool: "gpu"})
	f.enqueueQ(t, "acme", "m-default", fleet.MissionQueued{})
	f.rec.waitEnded(t, 20*time.Second, []string{"m-default"})
	// Several sweeps (each reads the clock) see the unserved missions
	// before they waited UnservedAfter: none may fail them.
	seen := reads.Load()
	streamtest.Eventually(t, 20*time.Second, func() bool { return reads.Load() >= seen+3 }, "the dispatcher does not sweep")
	for _, id := range []string{"m-nobody", "m-no-project"} {
		if n := len(f.rec.ends()[id]); n != 0 {
			t.Fatalf("%s ended before it waited %s", id, after)
		}
	}
	// Every mission was stored before now: UnservedAfter later, each has
	// waited that long.
	clk.Set(time.Now().Add(after))
	f.rec.waitEnded(t, 20*time.Second, []string{"m-nobody", "m-no-project"})
	for id, want := range map[string]string{
		"m-nobody":     "no worker serves pool nobody of project acme: waited ",
		"m-no-project": "no worker serves pool default of project globex: waited ",
	} {
		end := f.rec.all(ofMission(id, fleet.TypeMissionFailed))
		if len(end) != 1 {
			t.Fatalf("%s ended %+v, want failed", id, f.rec.all(isEnd))
		}
		var out fleet.Outcome
		if err := json.Unmarshal(end[0].Data, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.Error, want) {
			t.Errorf("%s failed with %q, want %q...", id, out.Error, want)
		}
	}
	if n := f.rec.count(ofMission("m-default", fleet.TypeMissionCompleted)); n != 1 {
		t.Errorf("the default pool's mission completed %d times", n)
	}
	if n := f.rec.count(ofMission("m-gpu", fleet.TypeMissionFailed)); n != 0 || d.Failed() != 2 {
		t.Errorf("the gpu mission, whose pool has a consumer, failed (%d); the dispatcher failed %d, want 2", n, d.Failed())
	}
	f.rec.checkEndedOnce(t, []string{"m-nobody", "m-no-project", "m-default"})
}

// lockedBuffer collects log lines from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
