package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/worker"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is a NATS server with the streams, the MISSIONS queue, a running
// hub and a recorder of every FLEET event.
type fixture struct {
	env   *streamtest.Env
	queue *stream.MissionQueue
	rec   *recorder
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, stream.HubConfig{})
}

// newFixtureWith is newFixture with a hub configured by cfg.
func newFixtureWith(t *testing.T, cfg stream.HubConfig) *fixture {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	env := streamtest.Start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := stream.OpenMissionQueue(ctx, env.JS, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, queue: q, rec: record(t, env.JS)}
}

// enqueue queues a mission of project as the admin API does: on MISSIONS,
// then announced on FLEET.
func (f *fixture) enqueue(t *testing.T, project, id, model string) {
	t.Helper()
	now := time.Now().UTC()
	data, err := json.Marshal(fleet.MissionQueued{Title: "job " + id, Priority: "normal", Model: model, EstimateUSD: 20_000})
	if err != nil {
		t.Fatal(err)
	}
	ev := fleet.Event{ID: fleet.NewID(now), Type: fleet.TypeMissionQueued, Time: now, ProjectID: project,
		MissionID: id, TeamID: "team-a", Data: data}
	ctx := context.Background()
	if _, err := f.queue.Enqueue(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Publisher.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

// running is a worker running in a goroutine.
type running struct {
	w      *worker.Worker
	cfg    worker.Config
	cancel context.CancelFunc
	done   chan error
}

// start runs a worker until the test ends (or kill/stop).
func (f *fixture) start(t *testing.T, cfg worker.Config) *running {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: worker.New(f.env.JS, f.env.Publisher, cfg), cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	// Joined means its consumers exist and it is about to consume.
	streamtest.Eventually(t, 10*time.Second, func() bool {
		return f.rec.count(func(e fleet.Event) bool { return e.Type == fleet.TypeWorkerJoined && e.WorkerID == cfg.ID }) >= len(cfg.Projects)
	}, "worker "+cfg.ID+" did not join")
	return r
}

// kill stops the worker abruptly, as a crash would.
func (r *running) kill(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("killed worker %s: Run returned %v, want context.Canceled", r.cfg.ID, err)
	}
	r.done <- nil // for the cleanup
}

// stop stops the worker cleanly and checks Run returned nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.w.Stop()
	if err := <-r.done; err != nil {
		t.Fatalf("worker %s: Run returned %v after Stop", r.cfg.ID, err)
	}
	r.done <- nil
}

// recorder keeps every event of FLEET, read through an ordered consumer.
type recorder struct {
	mu     sync.Mutex
	events []fleet.Event
}

func record(t *testing.T, js jetstream.JetStream) *recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream.FleetStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{stream.FleetSubjects}})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	cc, err := c.Consume(func(m jetstream.Msg) {
		ev, err := fleet.DecodeEvent(m.Subject(), m.Data())
		if err != nil {
			t.Errorf("invalid event on FLEET: %v", err)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return r
}

func (r *recorder) all(keep func(fleet.Event) bool) []fleet.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []fleet.Event
	for _, e := range r.events {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) count(keep func(fleet.Event) bool) int { return len(r.all(keep)) }

func isEnd(e fleet.Event) bool {
	return e.Type == fleet.TypeMissionCompleted || e.Type == fleet.TypeMissionFailed
}

// ends returns the end events of each mission.
func (r *recorder) ends() map[string][]fleet.Event {
	out := map[string][]fleet.Event{}
	for _, e := range r.all(isEnd) {
		out[e.MissionID] = append(out[e.MissionID], e)
	}
	return out
}

func ofMission(id, typ string) func(fleet.Event) bool {
	return func(e fleet.Event) bool { return e.MissionID == id && e.Type == typ }
}

// waitEnded waits until every mission of ids has ended at least once.
func (r *recorder) waitEnded(t *testing.T, d time.Duration, ids []string) {
	t.Helper()
	// Polled within the hang bound d; on failure, say which missions never
	// ended and what the stream last said of each.
	for bound := time.Now().Add(d); ; {
		ends := r.ends()
		var open []string
		for _, id := range ids {
			if len(ends[id]) == 0 {
				open = append(open, id)
			}
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(bound) {
			var last []string
			for _, id := range open {
				evs := r.all(func(e fleet.Event) bool { return e.MissionID == id })
				if n := len(evs); n > 0 {
					last = append(last, fmt.Sprintf("%s: %d events, last %s by %q", id, n, evs[n-1].Type, evs[n-1].WorkerID))
				} else {
					last = append(last, id+": no event")
				}
			}
			t.Fatalf("after %s, %d of %d missions never ended:\n%s", d, len(open), len(ids), strings.Join(last, "\n"))
		}
		time.Sleep(10 * time.Millisecond) // polling the recorder: nothing to await it by
	}
}

// checkEndedOnce fails the test for a mission of ids that ended more than
// once, and for an end of a mission that was never queued.
func (r *recorder) checkEndedOnce(t *testing.T, ids []string) {
	t.Helper()
	ends := r.ends()
	for _, id := range ids {
		if n := len(ends[id]); n != 1 {
			t.Errorf("mission %s ended %d times, want once", id, n)
		}
		delete(ends, id)
	}
	for id := range ends {
		t.Errorf("mission %s ended but was never queued", id)
	}
}

// queueEmpty waits until MISSIONS holds nothing: every mission was
// acknowledged, terminated or removed.
func (f *fixture) queueEmpty(t *testing.T) {
	t.Helper()
	streamtest.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := f.env.JS.Stream(ctx, stream.MissionsStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	}, "MISSIONS still holds missions")
}

// fast is a synthetic agent a thousand times faster than real time.
func fast(failRate float64) worker.Agent {
	return worker.Synthetic(worker.SyntheticConfig{TimeScale: 0.001, FailRate: failRate, Seed: 7})
}

// blocking is an agent that signals its start and runs until its worker
// stops.
func blocking(started chan<- worker.Mission) worker.Agent {
	return func(ctx context.Context, m worker.Mission, emit func(fleet.Event) error) error {
		started <- m
		<-ctx.Done()
		return ctx.Err()
	}
}

var tenants = []string{"acme", "globex", "initech"}

var models = map[string]string{"acme": "claude-sonnet-4-5", "globex": "gpt-5-mini", "initech": "gemini-2.5-flash"}

// TestEveryMissionEndsOnce runs 3 tenants and 6 workers (one serving all
// three) with a synthetic agent that fails a fifth of its missions: every
// mission ends exactly once on FLEET, completed or failed, the queue
// drains, and a clean stop publishes worker.left for each project.
func TestEveryMissionEndsOnce(t *testing.T) {
	f := newFixture(t)
	cfgs := []worker.Config{
		{ID: "w-1", Projects: []string{"acme"}, Capacity: 2},
		{ID: "w-2", Projects: []string{"acme"}, Capacity: 2},
		{ID: "w-3", Projects: []string{"globex"}, Capacity: 2},
		{ID: "w-4", Projects: []string{"globex"}, Capacity: 2},
		{ID: "w-5", Projects: []string{"initech"}, Capacity: 2},
		{ID: "w-6", Projects: tenants, Capacity: 3},
	}
	var workers []*running
	for _, c := range cfgs {
		c.Agent, c.Heartbeat = fast(0.2), 200*time.Millisecond
		workers = append(workers, f.start(t, c))
	}
	var ids []string
	for i := range 30 {
		for _, p := range tenants {
			id := fmt.Sprintf("m-%s-%02d", p, i)
			ids = append(ids, id)
			f.enqueue(t, p, id, models[p])
		}
	}
	f.rec.waitEnded(t, 60*time.Second, ids)
	f.queueEmpty(t)
	f.rec.checkEndedOnce(t, ids)

	var completed, failed, claimed int64
	for _, r := range workers {
		s := r.w.Stats()
		completed, failed, claimed = completed+s.Completed, failed+s.Failed, claimed+s.Claimed
		if s.Leaks != 0 || s.Invalid != 0 {
			t.Errorf("worker %s: %+v, want no leak and no invalid mission", r.cfg.ID, s)
		}
	}
	if completed+failed != int64(len(ids)) || failed == 0 || completed == 0 {
		t.Errorf("workers completed %d and failed %d of %d missions; want both kinds, summing to all", completed, failed, len(ids))
	}
	if got := f.rec.count(func(e fleet.Event) bool { return e.Type == fleet.TypeMissionClaimed }); got != len(ids) {
		t.Errorf("%d mission.claimed, want %d (no lease was lost)", got, len(ids))
	}
	for _, id := range ids {
		if f.rec.count(ofMission(id, fleet.TypeRunStarted)) != 1 || f.rec.count(ofMission(id, fleet.TypeLLMCall)) == 0 {
			t.Errorf("mission %s: want one agent.run.started and at least one llm.call", id)
		}
	}

	for _, r := range workers {
		r.stop(t)
	}
	left := func(id, p string) int {
		return f.rec.count(func(e fleet.Event) bool {
			return e.Type == fleet.TypeWorkerLeft && e.WorkerID == id && e.ProjectID == p
		})
	}
	// The last worker's last worker.left is on FLEET: the recorder sees
	// all of them once it sees that one.
	streamtest.Eventually(t, 10*time.Second, func() bool { return left("w-6", "initech") > 0 }, "w-6 did not leave")
	for _, c := range cfgs {
		for _, p := range c.Projects {
			if n := left(c.ID, p); n != 1 {
				t.Errorf("worker %s: %d worker.left in %s, want 1", c.ID, n, p)
			}
		}
	}
}

// TestNoCrossTenantClaimUnderLoad runs 300 missions through 6 busy
// single-project workers: every claim and every event of a mission is
// made by a worker of the mission's project, and no worker saw a mission
// of another project.
func TestNoCrossTenantClaimUnderLoad(t *testing.T) {
	f := newFixture(t)
	serves := map[string]string{}
	var workers []*running
	for i := range 6 {
		p := tenants[i%len(tenants)]
		id := fmt.Sprintf("w-%s-%d", p, i)
		serves[id] = p
		workers = append(workers, f.start(t, worker.Config{ID: id, Projects: []string{p}, Capacity: 4,
			Agent: worker.Synthetic(worker.SyntheticConfig{TimeScale: 0.0002, FailRate: -1})}))
	}
	var ids []string
	project := map[string]string{}
	for i := range 100 {
		for _, p := range tenants {
			id := fmt.Sprintf("m-%s-%03d", p, i)
			ids, project[id] = append(ids, id), p
			f.enqueue(t, p, id, models[p])
		}
	}
	f.rec.waitEnded(t, 60*time.Second, ids)
	f.rec.checkEndedOnce(t, ids)
	for _, e := range f.rec.all(func(e fleet.Event) bool { return e.MissionID != "" && e.WorkerID != "" }) {
		if want := project[e.MissionID]; e.ProjectID != want || serves[e.WorkerID] != want {
			t.Errorf("%s of mission %s (project %s) by worker %s of %s in project %s",
				e.Type, e.MissionID, want, e.WorkerID, serves[e.WorkerID], e.ProjectID)
		}
	}
	for _, r := range workers {
		if s := r.w.Stats(); s.Leaks != 0 {
			t.Errorf("worker %s counted %d leaks", r.cfg.ID, s.Leaks)
		}
	}
}

// TestForgedMissionOfAnotherProjectIsTerminated puts on missions.acme a
// mission that says it belongs to globex: the acme worker refuses to run
// it, terminates it and counts a leak.
func TestForgedMissionOfAnotherProjectIsTerminated(t *testing.T) {
	f := newFixture(t)
	r := f.start(t, worker.Config{ID: "w-acme", Projects: []string{"acme"}, Agent: fast(-1)})
	now := time.Now().UTC()
	data, _ := json.Marshal(fleet.MissionQueued{Title: "forged", Priority: "high"})
	forged := fleet.Event{ID: fleet.NewID(now), Type: fleet.TypeMissionQueued, Time: now, ProjectID: "globex", MissionID: "m-forged", Data: data}
	body, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.JS.Publish(context.Background(), stream.MissionSubject("acme"), body); err != nil {
		t.Fatal(err)
	}
	f.enqueue(t, "acme", "m-real", "")
	f.rec.waitEnded(t, 20*time.Second, []string{"m-real"})
	streamtest.Eventually(t, 10*time.Second, func() bool { return r.w.Stats().Leaks == 1 }, "the forged mission was not counted as a leak")
	f.queueEmpty(t)
	if n := f.rec.count(func(e fleet.Event) bool { return e.MissionID == "m-forged" }); n != 0 {
		t.Errorf("%d events of the forged mission on FLEET, want none", n)
	}
}

// TestKilledWorkerLeaseExpires kills a worker in the middle of a mission
// (its context cancelled: no ack, no worker.left). The lease expires, the
// mission is retried and completed by another worker, and it ends once.
// In the fold, the killed worker's last_seen stops advancing while the
// survivor's goes on; the fold's clock is the newest stored message time,
// which the test cannot move 30 s ahead, so stale/offline are not checked.
func TestKilledWorkerLeaseExpires(t *testing.T) {
	f := newFixture(t)
	started := make(chan worker.Mission, 1)
	lease, hb := 2*time.Second, 500*time.Millisecond
	victim := f.start(t, worker.Config{ID: "w-victim", Projects: []string{"acme"}, Lease: lease, Heartbeat: hb, Agent: blocking(started)})
	f.enqueue(t, "acme", "m-1", "claude-haiku-4-5")
	m := <-started
	if m.ID != "m-1" || m.Attempt != 1 || m.Model != "claude-haiku-4-5" || m.EstimateUSD != 20_000 {
		t.Fatalf("victim got %+v", m)
	}
	// Let a heartbeat renew the lease past its first expiry: the mission
	// stays with the victim while it lives.
	streamtest.Eventually(t, 10*time.Second, func() bool {
		hbs := f.rec.all(func(e fleet.Event) bool { return e.Type == fleet.TypeWorkerHeartbeat && e.WorkerID == "w-victim" })
		return len(hbs) > 0 && time.Since(hbs[0].Time) > lease+hb
	}, "victim heartbeats")
	if n := f.rec.count(ofMission("m-1", fleet.TypeMissionClaimed)); n != 1 {
		t.Fatalf("mission claimed %d times while its worker lived, want 1", n)
	}

	f.start(t, worker.Config{ID: "w-survivor", Projects: []string{"acme"}, Lease: lease, Heartbeat: hb, Agent: fast(-1)})
	victim.kill(t)
	killedAt := time.Now()

	f.rec.waitEnded(t, 20*time.Second, []string{"m-1"})
	f.rec.checkEndedOnce(t, []string{"m-1"})
	f.queueEmpty(t)
	end := f.rec.all(ofMission("m-1", fleet.TypeMissionCompleted))
	if len(end) != 1 || end[0].WorkerID != "w-survivor" {
		t.Fatalf("mission end %+v, want completed by w-survivor", end)
	}
	retry := f.rec.all(ofMission("m-1", fleet.TypeMissionRetrying))
	if len(retry) != 1 || retry[0].WorkerID != "w-survivor" || !strings.Contains(string(retry[0].Data), `"attempt":2`) {
		t.Errorf("mission.retrying %+v, want one by w-survivor at attempt 2", retry)
	}
	claims := f.rec.all(ofMission("m-1", fleet.TypeMissionClaimed))
	if got := workerIDs(claims); !slices.Equal(got, []string{"w-victim", "w-survivor"}) {
		t.Errorf("claims by %v, want the victim then the survivor", got)
	}
	// The victim renewed its lease right before each heartbeat, so the
	// retry may come no sooner than a lease after its last heartbeat (less
	// the time between renewing and publishing, well under an interval).
	// Both times are stamped by the workers' clocks, not by this test's
	// scheduling.
	hbs := f.rec.all(func(e fleet.Event) bool { return e.Type == fleet.TypeWorkerHeartbeat && e.WorkerID == "w-victim" })
	if len(retry) == 1 && len(hbs) > 0 {
		if d := retry[0].Time.Sub(hbs[len(hbs)-1].Time); d < lease-hb {
			t.Errorf("retried %s after the victim's last heartbeat, before its lease of %s could expire", d, lease)
		}
	}
	if n := f.rec.count(func(e fleet.Event) bool { return e.Type == fleet.TypeWorkerLeft }); n != 0 {
		t.Errorf("%d worker.left, want none from a killed worker", n)
	}

	// The fold: the victim's last_seen is frozen, the survivor's moves on.
	ctx := context.Background()
	view := func() fleet.View {
		seq, err := f.env.Publisher.Publish(ctx, probe())
		if err != nil {
			t.Fatal(err)
		}
		streamtest.WaitSeq(t, f.env.Hub, seq)
		v, _, err := f.env.Hub.View(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := view().Workers["w-victim"]
	if before.ID == "" || before.LeftReason != "" {
		t.Fatalf("fold's victim %+v, want a worker that never left", before)
	}
	survivorSeen := view().Workers["w-survivor"].LastSeen
	streamtest.Eventually(t, 10*time.Second, func() bool {
		return view().Workers["w-survivor"].LastSeen.After(survivorSeen.Add(2 * hb))
	}, "the survivor's last_seen did not advance")
	after := view().Workers["w-victim"]
	if !after.LastSeen.Equal(before.LastSeen) || after.LastSeen.After(killedAt) {
		t.Errorf("victim last_seen %s then %s, want frozen at or before the kill (%s)", before.LastSeen, after.LastSeen, killedAt)
	}
}

// probe is an event of another project that moves the fold's sequence.
func probe() fleet.Event {
	now := time.Now().UTC()
	return fleet.Event{ID: fleet.NewID(now), Type: fleet.TypeProjectCreated, Time: now, ProjectID: "probe"}
}

func workerIDs(evs []fleet.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.WorkerID)
	}
	return out
}

// TestThirdLostLeaseFails kills the worker of a mission three times: the
// worker that gets the fourth delivery fails the mission without running
// it (one mission.failed, "lease lost 3 times"), and the mission leaves
// the queue. Two dispatcher replicas run alongside and must not end it a
// second time.
func TestThirdLostLeaseFails(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	var dispatchers []*worker.Dispatcher
	var wg sync.WaitGroup
	for range 2 {
		d := worker.NewDispatcher(f.env.Conn, f.env.JS, f.env.Publisher, worker.DispatcherConfig{Logger: quiet})
		dispatchers = append(dispatchers, d)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(ctx); err != nil {
				t.Errorf("dispatcher: %v", err)
			}
		}()
		<-d.Ready()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	lease, hb := 2*time.Second, 500*time.Millisecond
	f.enqueue(t, "acme", "m-doomed", "gpt-5")
	for attempt := 1; attempt <= worker.MaxAttempts; attempt++ {
		started := make(chan worker.Mission, 1)
		r := f.start(t, worker.Config{ID: fmt.Sprintf("w-%d", attempt), Projects: []string{"acme"}, Lease: lease, Heartbeat: hb, Agent: blocking(started)})
		if m := <-started; m.Attempt != attempt {
			t.Fatalf("attempt %d: the worker got delivery %d", attempt, m.Attempt)
		}
		r.kill(t)
	}
	last := f.start(t, worker.Config{ID: "w-last", Projects: []string{"acme"}, Lease: lease, Heartbeat: hb, Agent: fast(-1)})

	f.rec.waitEnded(t, 20*time.Second, []string{"m-doomed"})
	f.queueEmpty(t)
	f.rec.checkEndedOnce(t, []string{"m-doomed"})
	end := f.rec.all(isEnd)[0]
	var out fleet.Outcome
	if err := json.Unmarshal(end.Data, &out); err != nil {
		t.Fatal(err)
	}
	if end.Type != fleet.TypeMissionFailed || !strings.Contains(out.Error, "lease lost 3 times") || end.ProjectID != "acme" {
		t.Errorf("end %s %+v in %s, want mission.failed for a lost lease in acme", end.Type, out, end.ProjectID)
	}
	if got := workerIDs(f.rec.all(ofMission("m-doomed", fleet.TypeMissionClaimed))); !slices.Equal(got, []string{"w-1", "w-2", "w-3"}) {
		t.Errorf("claims by %v, want w-1, w-2, w-3 and no fourth", got)
	}
	if n := f.rec.count(ofMission("m-doomed", fleet.TypeMissionRetrying)); n != 2 {
		t.Errorf("%d mission.retrying, want 2", n)
	}
	if s := last.w.Stats(); s.Claimed != 0 || s.Expired != 1 {
		t.Errorf("the last worker claimed %d missions and expired %d, want none and one", s.Claimed, s.Expired)
	}
	for _, d := range dispatchers {
		if n := d.Failed(); n != 0 {
			t.Errorf("a dispatcher failed %d missions, want none: the lost leases are counted by the workers", n)
		}
	}
}

// TestEndEventIDIsDeterministic pins what makes the end exactly once: one
// id per mission, different across missions.
func TestEndEventIDIsDeterministic(t *testing.T) {
	at := time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)
	a, b := worker.EndEventID("m-1", at), worker.EndEventID("m-1", at)
	if a != b || len(a) != 26 {
		t.Errorf("EndEventID gave %q and %q, want one 26-character ULID", a, b)
	}
	if c := worker.EndEventID("m-2", at); c == a {
		t.Errorf("two missions share the end id %q", c)
	}
}

// TestAgentCannotEndTheMission gives the agent an emit that refuses the
// life-cycle events the runtime owns: an agent cannot end its mission
// itself, nor publish in another project.
func TestAgentCannotEndTheMission(t *testing.T) {
	f := newFixture(t)
	errs := make(chan error, 2)
	agent := func(ctx context.Context, m worker.Mission, emit func(fleet.Event) error) error {
		errs <- emit(fleet.Event{Type: fleet.TypeMissionCompleted, Data: json.RawMessage(`{"duration_ms":1}`)})
		errs <- emit(fleet.Event{Type: fleet.TypeToolCall, ProjectID: "globex", Data: json.RawMessage(`{"tool":"t","latency_ms":1,"status":"ok"}`)})
		return nil
	}
	f.start(t, worker.Config{ID: "w-1", Projects: []string{"acme"}, Agent: agent})
	f.enqueue(t, "acme", "m-1", "")
	if err := <-errs; !errors.Is(err, worker.ErrEventType) {
		t.Errorf("emit(mission.completed) = %v, want ErrEventType", err)
	}
	if err := <-errs; err != nil {
		t.Errorf("emit(tool.call) = %v", err)
	}
	f.rec.waitEnded(t, 10*time.Second, []string{"m-1"})
	f.rec.checkEndedOnce(t, []string{"m-1"})
	calls := f.rec.all(ofMission("m-1", fleet.TypeToolCall))
	if len(calls) != 1 || calls[0].ProjectID != "acme" || calls[0].WorkerID != "w-1" || calls[0].RunID == "" {
		t.Errorf("tool calls %+v, want one in acme by w-1 with a run id", calls)
	}
}
