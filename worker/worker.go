package worker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
)

// Defaults of DESIGN §9.
const (
	DefaultHeartbeat = 10 * time.Second
	DefaultLease     = 60 * time.Second
	// MaxAttempts is how many claims of a mission may lose their lease:
	// the delivery after the last one fails the mission.
	MaxAttempts = 3
	// DefaultMatchWait is how long a mission waits for a worker that
	// matches its model and labels: a worker that does not match it and
	// receives it after that fails it instead of passing it on.
	DefaultMatchWait = 20 * time.Minute
	// DefaultSkipDelay is how long a passed-on mission waits before its
	// next delivery, doubling with every pass up to 30 times this.
	DefaultSkipDelay = time.Second
	// ConsumerPrefix prefixes the durable consumers of missions:
	// workers-<project> for a project's default pool, and
	// workers-<project>@<pool> for a named pool ("@" occurs in no project
	// or pool id, so no two pairs share a name).
	ConsumerPrefix = "workers-"
	// Version is what worker.joined reports when Config.Version is empty.
	Version = "observatory-worker/1"
)

// ErrEventType is returned by an agent's emit for an event type the agent
// may not publish: the runtime alone publishes the mission's and the run's
// life cycle.
var ErrEventType = errors.New("event type not allowed from an agent")

// Agent runs one mission. It publishes what it does (llm.call, tool.call,
// mission.progress, agent.state) with emit, which fills the envelope (id,
// time, project, worker, mission, run, agent, trace) where the event leaves
// it empty. A nil error completes the mission; an error fails it for good.
// When ctx is cancelled the worker is stopping abruptly (the result is
// ignored) or handing the mission back (HandBack: an error then returns
// the mission to the queue), and the agent should return soon.
type Agent func(ctx context.Context, m Mission, emit func(fleet.Event) error) error

// Mission is a claimed mission as an agent sees it.
type Mission struct {
	ID        string
	ProjectID string
	TeamID    string
	UserID    string
	AgentID   string
	RunID     string
	// Attempt is 1 on the first delivery, 2 after one lost lease, ...
	Attempt  int
	QueuedAt time.Time
	fleet.MissionQueued
}

// Config configures a Worker. Zero values mean the defaults.
type Config struct {
	// ID names the worker in every event it publishes (required).
	ID string
	// Projects are the projects whose missions the worker claims (at least
	// one, unless Enroll grants them).
	Projects []string
	// Pools are the pools whose missions the worker claims in each of its
	// projects (default: the default pool only). Pool ids are shaped like
	// project ids; "default" names the default pool.
	Pools []string
	// Models are the models the worker serves; a mission on another model
	// is passed on (never run). None means every model.
	Models []string
	// Labels are what the worker offers; a mission that requires a label
	// the worker lacks (or has with another value) is passed on.
	Labels map[string]string
	// Enroll, if set, is called by Run before it claims anything, with what
	// the worker asks for; the worker then claims only what the grant
	// allows (EnrollHTTP is the admin API's enrollment). An error stops Run.
	Enroll func(ctx context.Context, req EnrollRequest) (Grant, error)
	// NATSURL, for a worker made with Enrolled, is the NATS to dial
	// instead of the one the grant names (another route to the same
	// servers); NATSOptions are added to its connection's options (TLS:
	// nats.RootCAs, nats.ClientCert).
	NATSURL     string
	NATSOptions []nats.Option
	// SkipDelay is how long a mission the worker passes on waits before
	// its next delivery, doubling per pass up to MaxSkipDelay (defaults
	// 1 s and 30 times SkipDelay).
	SkipDelay, MaxSkipDelay time.Duration
	// MatchWait is how long after it was queued a mission the worker does
	// not match is still passed on; after it, the worker fails the mission
	// ("no worker matches ...") instead (default DefaultMatchWait). Passes
	// are bounded in time, never in count: a mission that only a busy
	// worker matches bounces among the others for as long as that worker's
	// backlog lasts, within MatchWait, and is never lost.
	MatchWait time.Duration
	// Capacity is how many missions the worker runs at once (default 1).
	Capacity int
	// Heartbeat is the interval of worker.heartbeat and of lease renewals
	// (default 10 s).
	Heartbeat time.Duration
	// Lease is how long a claim holds a mission without a renewal (the
	// consumer's AckWait, default 60 s). The consumer is shared by the
	// workers of a project: the last worker to start sets it.
	Lease time.Duration
	// Agent runs the missions (default Synthetic(SyntheticConfig{})).
	Agent Agent
	// Host and Version are reported in worker.joined (defaults: the host
	// name and Version).
	Host, Version string
	// Now stamps events and measures how long a mission has waited
	// (default time.Now).
	Now func() time.Time
	// Logger receives the worker's structured logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Capacity <= 0 {
		c.Capacity = 1
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.SkipDelay <= 0 {
		c.SkipDelay = DefaultSkipDelay
	}
	if c.MaxSkipDelay < c.SkipDelay {
		c.MaxSkipDelay = 30 * c.SkipDelay
	}
	if c.MatchWait <= 0 {
		c.MatchWait = DefaultMatchWait
	}
	if c.Agent == nil {
		c.Agent = Synthetic(SyntheticConfig{})
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.Version == "" {
		c.Version = Version
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Stats are a worker's counters.
type Stats struct {
	Claimed   int64 // deliveries it started running
	Completed int64 // missions it completed
	Failed    int64 // missions it failed (agent error)
	Leaks     int64 // deliveries of another project's mission, terminated
	Invalid   int64 // undecodable deliveries, terminated
	Skipped   int64 // deliveries of missions it does not match, passed on unrun
	Expired   int64 // missions it failed on delivery: MaxAttempts leases lost
	Unmatched int64 // missions it failed on delivery: no worker matched within MatchWait
	// HandedBack counts the missions it returned to the queue unfinished
	// while stopping: those it was running when HandBack was called, and
	// deliveries it received after Stop and never started.
	HandedBack int64
}

type counters struct {
	claimed, completed, failed, leaks, invalid, skipped, expired, unmatched, handedBack atomic.Int64
}

// Worker claims and runs missions. Create it with New and run it with Run.
type Worker struct {
	js  jetstream.JetStream
	pub *stream.Publisher
	cfg Config
	log *slog.Logger

	// enrolled says the worker connects with the credentials of its
	// enrollment (Enrolled): js, pub and passes are set by Run then.
	enrolled bool
	passes   Passes        // set by Run
	lost     chan struct{} // closed when enrolled credentials expired under the worker
	lostOnce sync.Once
	slots    chan struct{} // one token per running mission
	stop     chan struct{} // closed by Stop
	stopOnce sync.Once
	// handBack is closed by HandBack: Run then cancels the agents of the
	// running missions and returns their messages to the queue.
	handBack     chan struct{}
	handBackOnce sync.Once
	draining     atomic.Bool
	stats        counters

	// leasesMu guards leases: the deliveries whose leases the heartbeat
	// renews (running missions and those waiting for a slot).
	leasesMu sync.Mutex
	leases   map[*lease]struct{}
	running  int

	// handlersMu guards handlersClosed; handlers counts the consume
	// handlers in progress, so Run can wait for them.
	handlersMu     sync.Mutex
	handlersClosed bool
	handlers       sync.WaitGroup
}

type lease struct{ msg jetstream.Msg }

// New returns a worker that claims missions through js and publishes its
// events with pub: a trusted worker, whose connection may manage MISSIONS'
// consumers and the pass counts' KV bucket (in process with the server,
// tests, embedders). It makes its own consumers and counts passes in KV
// (KVPasses). With Config.Enroll it enrolls first and claims what the
// grant allows, still on js.
func New(js jetstream.JetStream, pub *stream.Publisher, cfg Config) *Worker {
	cfg.defaults()
	return &Worker{
		js: js, pub: pub, cfg: cfg,
		log:      cfg.Logger.With("worker_id", cfg.ID),
		lost:     make(chan struct{}),
		slots:    make(chan struct{}, cfg.Capacity),
		stop:     make(chan struct{}),
		handBack: make(chan struct{}),
		leases:   map[*lease]struct{}{},
	}
}

// Enrolled returns a worker that enrolls with cfg.Enroll (required) and
// runs on what the grant gives it, as a worker on another machine does:
// it connects to the grant's NATS with the grant's credentials (which
// allow only its projects' events, their mission consumers and its
// inbox), binds to the consumers the server made, and counts its passes
// through the server (Grant.Passes). Run fails if the grant carries no
// credentials.
func Enrolled(cfg Config) *Worker {
	w := New(nil, nil, cfg)
	w.enrolled = true
	return w
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	return Stats{
		Claimed: w.stats.claimed.Load(), Completed: w.stats.completed.Load(), Failed: w.stats.failed.Load(),
		Leaks: w.stats.leaks.Load(), Invalid: w.stats.invalid.Load(),
		Skipped: w.stats.skipped.Load(), Expired: w.stats.expired.Load(), Unmatched: w.stats.unmatched.Load(),
		HandedBack: w.stats.handedBack.Load(),
	}
}

// Stop asks Run to stop cleanly: claim nothing new, let the running
// missions end, publish worker.left and return nil. It does not wait.
func (w *Worker) Stop() { w.stopOnce.Do(func() { close(w.stop) }) }

// HandBack stops the worker as Stop does and hands the missions it is
// still running back to the queue at once, for a stop that cannot wait
// for them to end (a grace period that ran out): their agents' contexts
// are cancelled, each run ends with agent.run.failed ("handed back"), and
// each message is NAKed, so that another worker claims the mission now
// rather than when its lease would have expired. The next claim is the
// mission's next attempt (mission.retrying), as after a lost lease, so a
// hand-back counts against MaxAttempts. Run then publishes worker.left and
// returns nil, as after Stop. It does not wait.
func (w *Worker) HandBack() {
	w.Stop()
	w.handBackOnce.Do(func() { close(w.handBack) })
}

// ConsumerName returns the durable consumer of project's missions in the
// default pool.
func ConsumerName(project string) string { return ConsumerPrefix + project }

// PoolConsumerName returns the durable consumer of project's missions in
// pool: ConsumerName(project) for the default pool, workers-<project>@<pool>
// for a named one.
func PoolConsumerName(project, pool string) string {
	if pool == "" || pool == stream.DefaultPool {
		return ConsumerName(project)
	}
	return ConsumerPrefix + project + "@" + pool
}

// queue is one (project, pool) the worker claims from.
type queue struct{ project, pool string }

// queues returns the (project, pool) pairs of the configuration.
func (c *Config) queues() []queue {
	pools := c.Pools
	if len(pools) == 0 {
		pools = []string{stream.DefaultPool}
	}
	var out []queue
	for _, p := range c.Projects {
		for _, pool := range pools {
			if pool == "" {
				pool = stream.DefaultPool
			}
			if !slices.Contains(out, queue{p, pool}) {
				out = append(out, queue{p, pool})
			}
		}
	}
	return out
}

// Run joins the fleet and claims missions until Stop (a clean stop) or
// until ctx ends (an abrupt stop, as a crash: nothing acknowledged, no
// worker.left). It returns nil after Stop, ctx's error after a
// cancellation, or the error that kept it from starting. A worker made
// with Enrolled also stops cleanly shortly before its NATS credentials
// expire, and then returns an error that wraps ErrCredentialsExpired; if
// they expire under it, it stops abruptly with that error.
func (w *Worker) Run(ctx context.Context) error {
	var g Grant
	if w.enrolled && w.cfg.Enroll == nil {
		return fmt.Errorf("worker %s: an enrolled worker needs Config.Enroll", w.cfg.ID)
	}
	if w.cfg.Enroll != nil {
		var err error
		if g, err = w.enroll(ctx); err != nil {
			return err
		}
	}
	if w.cfg.ID == "" || len(w.cfg.Projects) == 0 {
		return errors.New("worker: an id and at least one project are required")
	}
	for _, p := range w.cfg.Projects {
		if !fleet.ValidProjectID(p) {
			return fmt.Errorf("worker %s: bad project id %q", w.cfg.ID, p)
		}
	}
	for _, p := range w.cfg.Pools {
		if p != "" && !fleet.ValidProjectID(p) {
			return fmt.Errorf("worker %s: bad pool %q", w.cfg.ID, p)
		}
	}
	queues := w.cfg.queues()
	var consumers map[queue]jetstream.Consumer
	var expiring <-chan time.Time
	if w.enrolled {
		s, err := w.connect(ctx, g)
		if err != nil {
			return err
		}
		defer s.close()
		if consumers, err = bindConsumers(ctx, w.js, queues); err != nil {
			return fmt.Errorf("worker %s: %w", w.cfg.ID, err)
		}
		expiring = s.expiring
	} else {
		kv, err := stream.MissionSkips(ctx, w.js)
		if err != nil {
			return fmt.Errorf("worker %s: %w", w.cfg.ID, err)
		}
		w.passes = NewKVPasses(kv)
		consumers = make(map[queue]jetstream.Consumer, len(queues))
		for _, q := range queues {
			c, err := EnsureConsumer(ctx, w.js, q.project, q.pool, w.cfg.Lease)
			if err != nil {
				return fmt.Errorf("worker %s: %w", w.cfg.ID, err)
			}
			consumers[q] = c
		}
	}
	// An enrolled worker was announced (worker.joined) by the server that
	// granted it; one that was not announces itself.
	if w.cfg.Enroll == nil {
		for _, p := range w.cfg.Projects {
			if err := w.publish(ctx, fleet.Event{Type: fleet.TypeWorkerJoined, ProjectID: p}, w.joined()); err != nil {
				return err
			}
		}
	}

	hbCtx, hbCancel := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeat(hbCtx)
	}()
	// The agents run on work, which HandBack cancels; publishing and
	// acknowledging stay on ctx, so a handed-back mission can still say
	// so and return to the queue.
	work, cancelWork := context.WithCancel(ctx)
	workDone := make(chan struct{})
	go func() {
		defer close(workDone)
		select {
		case <-w.handBack:
			cancelWork()
		case <-work.Done():
		}
	}()
	defer func() {
		cancelWork()
		<-workDone
	}()

	var ccs []jetstream.ConsumeContext
	stopConsuming := func() {
		for _, cc := range ccs {
			cc.Stop()
		}
		w.handlersMu.Lock()
		w.handlersClosed = true
		w.handlersMu.Unlock()
		w.handlers.Wait()
	}
	for _, q := range queues {
		for range w.cfg.Capacity {
			// One message at a time, run in the handler: the client pulls
			// the next one only after the handler returns.
			cc, err := consumers[q].Consume(func(msg jetstream.Msg) { w.handle(ctx, work, q, msg) },
				jetstream.PullMaxMessages(1),
				jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
					if ctx.Err() == nil {
						w.log.Debug("consume", "event", "worker.consume_error", "error", err.Error())
					}
				}))
			if err != nil {
				stopConsuming()
				hbCancel()
				<-hbDone
				return fmt.Errorf("worker %s: consume %s pool %s: %w", w.cfg.ID, q.project, q.pool, err)
			}
			ccs = append(ccs, cc)
		}
	}
	w.log.Info("worker joined", "event", "worker.joined", "projects", w.cfg.Projects, "pools", w.cfg.Pools,
		"models", w.cfg.Models, "capacity", w.cfg.Capacity)

	var expired error
	select {
	case <-ctx.Done():
		stopConsuming()
		hbCancel()
		<-hbDone
		w.log.Warn("worker stopped abruptly", "event", "worker.killed")
		return ctx.Err()
	case <-w.lost:
		stopConsuming()
		hbCancel()
		<-hbDone
		w.log.Error("the worker's NATS credentials expired under it", "event", "worker.credentials_expired")
		return fmt.Errorf("worker %s: %w: enroll it again", w.cfg.ID, ErrCredentialsExpired)
	case <-expiring:
		expired = fmt.Errorf("worker %s: %w soon: it stopped; enroll it again", w.cfg.ID, ErrCredentialsExpired)
		w.log.Warn("the worker's NATS credentials expire soon: stopping", "event", "worker.credentials_expiring")
	case <-w.stop:
	}
	w.draining.Store(true)
	stopConsuming()
	hbCancel()
	<-hbDone
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, p := range w.cfg.Projects {
		if err := w.publish(ctx, fleet.Event{Type: fleet.TypeWorkerLeft, ProjectID: p}, fleet.WorkerLeft{Reason: "stopped"}); err != nil {
			return errors.Join(expired, err)
		}
	}
	w.log.Info("worker left", "event", "worker.left")
	return expired
}

// heartbeat publishes worker.heartbeat for every project and renews the
// leases on every tick until ctx ends.
func (w *Worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.leasesMu.Lock()
		held := make([]jetstream.Msg, 0, len(w.leases))
		for l := range w.leases {
			held = append(held, l.msg)
		}
		active := w.running
		w.leasesMu.Unlock()
		for _, m := range held {
			if err := m.InProgress(); err != nil && ctx.Err() == nil {
				w.log.Warn("renewing a lease failed", "event", "worker.lease_renew_failed", "error", err.Error())
			}
		}
		state := "idle"
		switch {
		case w.draining.Load():
			state = "draining"
		case active > 0:
			state = "busy"
		}
		hb := fleet.WorkerHeartbeat{State: state, ActiveMissions: active, Load: float64(active) / float64(w.cfg.Capacity)}
		for _, p := range w.cfg.Projects {
			if err := w.publish(ctx, fleet.Event{Type: fleet.TypeWorkerHeartbeat, ProjectID: p}, hb); err != nil && ctx.Err() == nil {
				w.log.Warn("heartbeat failed", "event", "worker.heartbeat_failed", "error", err.Error())
			}
		}
	}
}

func (w *Worker) hold(msg jetstream.Msg) *lease {
	l := &lease{msg: msg}
	w.leasesMu.Lock()
	w.leases[l] = struct{}{}
	w.leasesMu.Unlock()
	return l
}

func (w *Worker) release(l *lease) {
	w.leasesMu.Lock()
	delete(w.leases, l)
	w.leasesMu.Unlock()
}

func (w *Worker) setRunning(d int) {
	w.leasesMu.Lock()
	w.running += d
	w.leasesMu.Unlock()
}

// joined is the data of the worker's worker.joined.
func (w *Worker) joined() fleet.WorkerJoined {
	pools := w.cfg.Pools
	if len(pools) == 0 {
		pools = []string{stream.DefaultPool}
	}
	return fleet.WorkerJoined{Host: w.cfg.Host, Version: w.cfg.Version, Capacity: w.cfg.Capacity,
		Pools: pools, Models: w.cfg.Models, Labels: w.cfg.Labels}
}

// handle runs one delivery of the consumer of q; its agent runs on work.
func (w *Worker) handle(ctx, work context.Context, q queue, msg jetstream.Msg) {
	w.handlersMu.Lock()
	if w.handlersClosed {
		// Stopping: the consumer was stopped while this delivery was on
		// its way. Hand it back rather than hold it for a lease (best
		// effort: the connection may be closing; then the lease expires).
		w.handlersMu.Unlock()
		if ctx.Err() == nil {
			w.handBackUnstarted(ctx, msg)
		}
		return
	}
	w.handlers.Add(1)
	w.handlersMu.Unlock()
	defer w.handlers.Done()

	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("mission without metadata", "event", "worker.bad_message", "error", err.Error())
		return
	}
	ev, mq, err := decodeMission(msg.Data())
	if err != nil {
		w.stats.invalid.Add(1)
		w.log.Error("invalid mission terminated", "event", "worker.invalid_mission", "subject", msg.Subject(),
			"stream_seq", meta.Sequence.Stream, "error", err.Error())
		_ = msg.Term()
		return
	}
	subjectProject, subjectPool, ok := stream.ParsePoolSubject(msg.Subject())
	if !ok || ev.ProjectID != subjectProject || subjectProject != q.project || subjectPool != q.pool {
		w.stats.leaks.Add(1)
		w.log.Error("cross-tenant mission terminated", "event", "worker.cross_tenant_mission",
			"subject", msg.Subject(), "consumer_project", q.project, "consumer_pool", q.pool,
			"sagewai.project_id", ev.ProjectID, "mission_id", ev.MissionID)
		_ = msg.Term()
		return
	}
	if why := Mismatch(mq, w.cfg.Models, w.cfg.Labels); why != "" {
		if waited := w.cfg.Now().Sub(ev.Time); waited >= w.cfg.MatchWait {
			w.unmatched(ctx, msg, meta, ev, mq, q.pool, waited)
			return
		}
		w.pass(ctx, msg, meta, ev, why)
		return
	}
	attempt, skipped := 1, uint64(0)
	if meta.NumDelivered > 1 {
		// A redelivery: a lost lease or a pass by a worker that does not
		// match. Only lost leases are attempts.
		if skipped, err = w.passes.Count(ctx, q.project, meta.Sequence.Stream); err != nil {
			// Unknown: leave the mission for another delivery.
			w.log.Warn("reading a mission's passes failed", "event", "worker.skips_read_failed", "error", err.Error())
			_ = msg.NakWithDelay(w.cfg.SkipDelay)
			return
		}
		attempt = int(meta.NumDelivered - min(skipped, meta.NumDelivered-1))
	}
	if attempt > MaxAttempts {
		w.expire(ctx, msg, meta, ev, attempt-1, skipped)
		return
	}

	l := w.hold(msg)
	defer w.release(l)
	// A stopping worker starts nothing new: a delivery that arrives, or
	// still waits for a slot, after Stop goes back to the queue now.
	select {
	case <-w.stop:
		w.handBackUnstarted(ctx, msg)
		return
	default:
	}
	select {
	case w.slots <- struct{}{}:
	case <-w.stop:
		w.handBackUnstarted(ctx, msg)
		return
	case <-ctx.Done():
		return
	}
	defer func() { <-w.slots }()
	w.setRunning(1)
	defer w.setRunning(-1)
	w.stats.claimed.Add(1)
	if w.runMission(ctx, work, msg, attempt, ev, mq) && skipped > 0 {
		_ = w.passes.Clear(context.WithoutCancel(ctx), q.project, meta.Sequence.Stream)
	}
}

// handBackUnstarted returns a delivery the worker never started to the
// queue, as a pass: it counts the pass first, so that the next delivery
// is not taken for a lost lease (it costs the mission no attempt), then
// NAKs it with Config.SkipDelay. The delay lets the stopping worker's
// consumers unsubscribe before the mission is delivered again, so that
// it goes to another worker rather than back to this one.
func (w *Worker) handBackUnstarted(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	ev, _, err := decodeMission(msg.Data())
	if err == nil {
		if _, err := w.passes.Add(ctx, ev.ProjectID, meta.Sequence.Stream); err != nil {
			// Not counted: the next delivery will look like a lost lease.
			w.log.Warn("counting a handed-back mission failed", "event", "worker.skip_count_failed",
				"mission_id", ev.MissionID, "error", err.Error())
		}
	}
	if err := msg.NakWithDelay(w.cfg.SkipDelay); err != nil {
		w.log.Warn("handing a mission back failed", "event", "worker.nak_failed", "error", err.Error())
		return
	}
	w.stats.handedBack.Add(1)
	w.log.Info("unstarted mission handed back", "event", "worker.mission_handed_back",
		"sagewai.project_id", ev.ProjectID, "mission_id", ev.MissionID, "started", false)
}

// Mismatch says why a worker serving models (none: every model) and
// offering labels may not run a mission queued with q, or "" when it may.
func Mismatch(q fleet.MissionQueued, models []string, labels map[string]string) string {
	if q.Model != "" && len(models) > 0 && !slices.Contains(models, q.Model) {
		return "model " + q.Model + " not served"
	}
	for _, k := range slices.Sorted(maps.Keys(q.Labels)) {
		want := q.Labels[k]
		got, ok := labels[k]
		switch {
		case !ok:
			return "label " + k + " missing"
		case want != "" && got != want:
			return "label " + k + "=" + got + ", want " + want
		}
	}
	return ""
}

// pass hands a delivery the worker does not match back to the queue
// without running it: it counts the pass for the message first (so the
// next delivery is not taken for a lost lease), then naks it with a delay
// that doubles with every pass.
func (w *Worker) pass(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, ev fleet.Event, why string) {
	w.stats.skipped.Add(1)
	n, err := w.passes.Add(ctx, ev.ProjectID, meta.Sequence.Stream)
	if err != nil {
		// Not counted: this delivery will look like a lost lease. Better
		// that than running a mission the worker does not match.
		w.log.Warn("counting a passed-on mission failed", "event", "worker.skip_count_failed",
			"mission_id", ev.MissionID, "error", err.Error())
		n = 1
	}
	// Jitter: without it, missions passed on at the same capped delay
	// come back in lockstep, and JetStream's queue of waiting pulls can
	// hand each of them, round after round, to a worker that does not
	// match it while the one that does gets the other (seen: two
	// missions passed 300 times each, never reaching their workers).
	delay := min(w.cfg.SkipDelay<<min(n-1, 16), w.cfg.MaxSkipDelay)
	delay = delay/2 + rand.N(delay/2+1)
	w.log.Debug("mission passed on", "event", "worker.mission_passed", "sagewai.project_id", ev.ProjectID,
		"mission_id", ev.MissionID, "reason", why, "passes", n, "delay", delay)
	if err := msg.NakWithDelay(delay); err != nil && ctx.Err() == nil {
		w.log.Warn("handing a mission back failed", "event", "worker.nak_failed", "error", err.Error())
	}
}

// unmatched fails a mission that no worker matched within MatchWait: it
// publishes mission.failed with the mission's EndEventID and a reason that
// names what nobody offered, and terminates the message, without running
// it.
func (w *Worker) unmatched(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, queued fleet.Event, q fleet.MissionQueued, pool string, waited time.Duration) {
	skipped, err := w.passes.Count(ctx, queued.ProjectID, meta.Sequence.Stream)
	if err != nil {
		w.log.Warn("reading a mission's passes failed", "event", "worker.skips_read_failed", "error", err.Error())
	}
	if err := publishFailed(ctx, w.pub, queued, w.cfg.Now().UTC(), unmatchedReason(pool, q, skipped, waited)); err != nil {
		w.log.Warn("publishing mission.failed failed", "event", "worker.publish_failed", "mission_id", queued.MissionID, "error", err.Error())
		_ = msg.NakWithDelay(w.cfg.SkipDelay)
		return
	}
	w.stats.unmatched.Add(1)
	w.log.Warn("no worker matches the mission", "event", "worker.mission_unmatched",
		"sagewai.project_id", queued.ProjectID, "mission_id", queued.MissionID, "passes", skipped)
	_ = msg.Term()
	_ = w.passes.Clear(context.WithoutCancel(ctx), queued.ProjectID, meta.Sequence.Stream)
}

// unmatchedReason says what nobody offered a mission of pool queued with
// q, passed on skipped times over waited.
func unmatchedReason(pool string, q fleet.MissionQueued, skipped uint64, waited time.Duration) string {
	var need []string
	if q.Model != "" {
		need = append(need, "model "+q.Model)
	}
	for _, k := range slices.Sorted(maps.Keys(q.Labels)) {
		if v := q.Labels[k]; v != "" {
			need = append(need, "label "+k+"="+v)
		} else {
			need = append(need, "label "+k)
		}
	}
	what := "pool " + cmp.Or(pool, stream.DefaultPool)
	if len(need) > 0 {
		what += ", " + strings.Join(need, ", ")
	}
	return fmt.Sprintf("no worker matches the mission (%s): passed on %d times in %s", what, skipped, waited.Round(time.Millisecond))
}

// expire fails a mission delivered after MaxAttempts lost leases: it
// publishes mission.failed with the mission's EndEventID and terminates
// the message, without running it.
func (w *Worker) expire(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, queued fleet.Event, lost int, skipped uint64) {
	why := fmt.Sprintf("lease lost %d times: no worker finished the mission", lost)
	if skipped > 0 {
		why += fmt.Sprintf(" (passed on %d times by workers that do not match it)", skipped)
	}
	if err := publishFailed(ctx, w.pub, queued, w.cfg.Now().UTC(), why); err != nil {
		w.log.Warn("publishing mission.failed failed", "event", "worker.publish_failed", "mission_id", queued.MissionID, "error", err.Error())
		return
	}
	w.stats.expired.Add(1)
	w.log.Warn("mission failed after its last lease", "event", "worker.mission_expired",
		"sagewai.project_id", queued.ProjectID, "mission_id", queued.MissionID, "attempts", lost)
	_ = msg.Term()
	if skipped > 0 {
		_ = w.passes.Clear(context.WithoutCancel(ctx), queued.ProjectID, meta.Sequence.Stream)
	}
}

// publishFailed publishes the mission.failed that ends queued for why,
// with its deterministic end id.
func publishFailed(ctx context.Context, pub *stream.Publisher, queued fleet.Event, now time.Time, why string) error {
	outcome, err := json.Marshal(fleet.Outcome{DurationMS: msSince(queued.Time, now), Error: why})
	if err != nil {
		return err
	}
	ev := fleet.Event{
		ID: EndEventID(queued.MissionID, queued.Time), Type: fleet.TypeMissionFailed, Time: now,
		ProjectID: queued.ProjectID, TeamID: queued.TeamID, UserID: queued.UserID, AgentID: queued.AgentID,
		MissionID: queued.MissionID, TraceID: queued.TraceID, Data: outcome,
	}
	_, err = pub.Publish(ctx, ev)
	return err
}

// decodeMission decodes the mission.queued event a MISSIONS message carries.
func decodeMission(body []byte) (fleet.Event, fleet.MissionQueued, error) {
	var q fleet.MissionQueued
	ev, err := fleet.DecodeEvent("", body)
	if err != nil {
		return ev, q, err
	}
	if ev.Type != fleet.TypeMissionQueued || ev.MissionID == "" {
		return ev, q, fmt.Errorf("want a %s event with a mission id, got %q", fleet.TypeMissionQueued, ev.Type)
	}
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, &q); err != nil {
			return ev, q, fmt.Errorf("data of %s: %w", ev.Type, err)
		}
	}
	return ev, q, nil
}

// Retrying is the data of mission.retrying.
type Retrying struct {
	Attempt int `json:"attempt"`
}

// Claimed is the data of mission.claimed: the attempt and how long the
// mission waited since it was queued.
type Claimed struct {
	Attempt int     `json:"attempt"`
	WaitMS  float64 `json:"wait_ms"`
	LeaseMS float64 `json:"lease_ms"`
}

// runMission runs a claimed mission, its agent on work; it reports
// whether the mission ended.
func (w *Worker) runMission(ctx, work context.Context, msg jetstream.Msg, attempt int, queued fleet.Event, q fleet.MissionQueued) bool {
	now := w.cfg.Now().UTC()
	m := Mission{
		ID: queued.MissionID, ProjectID: queued.ProjectID, TeamID: queued.TeamID, UserID: queued.UserID,
		AgentID: queued.AgentID, RunID: "r-" + fleet.NewID(now), Attempt: attempt, QueuedAt: queued.Time,
		MissionQueued: q,
	}
	if m.AgentID == "" {
		m.AgentID = m.ProjectID + "-" + w.cfg.ID
	}
	base := fleet.Event{
		ProjectID: m.ProjectID, TeamID: m.TeamID, UserID: m.UserID, WorkerID: w.cfg.ID,
		AgentID: m.AgentID, MissionID: m.ID, TraceID: queued.TraceID,
	}
	if base.TraceID == "" {
		base.TraceID = TraceID(m.ID)
	}
	log := w.log.With("sagewai.project_id", m.ProjectID, "mission_id", m.ID, "attempt", attempt)
	pub := func(typ string, data any) error {
		e := base
		e.Type = typ
		return w.publish(ctx, e, data)
	}
	if attempt > 1 {
		if err := pub(fleet.TypeMissionRetrying, Retrying{Attempt: attempt}); err != nil {
			log.Warn("publishing mission.retrying failed", "event", "worker.publish_failed", "error", err.Error())
			return false
		}
	}
	if err := pub(fleet.TypeMissionClaimed, Claimed{Attempt: attempt, WaitMS: msSince(m.QueuedAt, now),
		LeaseMS: float64(w.cfg.Lease.Milliseconds())}); err != nil {
		log.Warn("publishing mission.claimed failed", "event", "worker.publish_failed", "error", err.Error())
		return false
	}
	base.RunID = m.RunID
	started := w.cfg.Now()
	if err := pub(fleet.TypeRunStarted, fleet.RunStarted{Model: m.Model}); err != nil {
		log.Warn("publishing agent.run.started failed", "event", "worker.publish_failed", "error", err.Error())
		return false
	}
	emit := func(e fleet.Event) error {
		switch e.Type {
		case fleet.TypeLLMCall, fleet.TypeToolCall, fleet.TypeMissionProgress, fleet.TypeAgentState:
		default:
			return fmt.Errorf("emit %q: %w", e.Type, ErrEventType)
		}
		return w.publishEvent(ctx, fill(e, base))
	}
	agentErr := w.cfg.Agent(work, m, emit)
	if ctx.Err() != nil {
		// An abrupt stop: nothing is acknowledged; the lease will expire.
		return false
	}
	if agentErr != nil && work.Err() != nil {
		// HandBack: the run ends here and the mission goes back to the
		// queue for another worker.
		w.handBackRun(ctx, msg, log, pub, started)
		return false
	}
	end := w.cfg.Now().UTC()
	runType, endType, errText := fleet.TypeRunCompleted, fleet.TypeMissionCompleted, ""
	if agentErr != nil {
		runType, endType, errText = fleet.TypeRunFailed, fleet.TypeMissionFailed, agentErr.Error()
	}
	if err := pub(runType, fleet.Outcome{DurationMS: msSince(started, end), Error: errText}); err != nil {
		log.Warn("publishing the run's end failed", "event", "worker.publish_failed", "error", err.Error())
		return false
	}
	e := base
	e.Type, e.ID, e.Time = endType, EndEventID(m.ID, m.QueuedAt), end
	if err := w.publish(ctx, e, fleet.Outcome{DurationMS: msSince(m.QueuedAt, end), Error: errText}); err != nil {
		log.Warn("publishing the mission's end failed", "event", "worker.publish_failed", "error", err.Error())
		return false
	}
	if agentErr != nil {
		w.stats.failed.Add(1)
		log.Info("mission failed", "event", "worker.mission_failed", "error", errText)
		_ = msg.Term()
		return true
	}
	w.stats.completed.Add(1)
	if err := msg.Ack(); err != nil {
		log.Warn("acknowledging the mission failed", "event", "worker.ack_failed", "error", err.Error())
	}
	return true
}

// handBackRun ends a run that HandBack interrupted with agent.run.failed
// (publishing with pub) and NAKs its message, so that the mission is
// claimed again at once.
func (w *Worker) handBackRun(ctx context.Context, msg jetstream.Msg, log *slog.Logger, pub func(string, any) error, started time.Time) {
	why := "handed back: worker " + w.cfg.ID + " stopped before the run ended"
	if err := pub(fleet.TypeRunFailed, fleet.Outcome{DurationMS: msSince(started, w.cfg.Now()), Error: why}); err != nil {
		log.Warn("publishing the handed-back run's end failed", "event", "worker.publish_failed", "error", err.Error())
	}
	if err := msg.Nak(); err != nil {
		log.Warn("handing a mission back failed", "event", "worker.nak_failed", "error", err.Error())
		return
	}
	w.stats.handedBack.Add(1)
	log.Info("mission handed back", "event", "worker.mission_handed_back", "started", true)
}

// publish publishes e with data as its payload, filling the id, the time
// and the worker id where e leaves them empty.
func (w *Worker) publish(ctx context.Context, e fleet.Event, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s: %w", e.Type, err)
	}
	e.Data = raw
	if e.WorkerID == "" {
		e.WorkerID = w.cfg.ID
	}
	return w.publishEvent(ctx, e)
}

func (w *Worker) publishEvent(ctx context.Context, e fleet.Event) error {
	if e.Time.IsZero() {
		e.Time = w.cfg.Now().UTC()
	}
	if e.ID == "" {
		e.ID = fleet.NewID(e.Time)
	}
	_, err := w.pub.Publish(ctx, e)
	return err
}

// fill copies base's envelope fields into e where e leaves them empty.
func fill(e, base fleet.Event) fleet.Event {
	for _, f := range [...]struct {
		dst *string
		src string
	}{
		{&e.ProjectID, base.ProjectID}, {&e.TeamID, base.TeamID}, {&e.UserID, base.UserID},
		{&e.WorkerID, base.WorkerID}, {&e.AgentID, base.AgentID}, {&e.MissionID, base.MissionID},
		{&e.RunID, base.RunID}, {&e.TraceID, base.TraceID},
	} {
		if *f.dst == "" {
			*f.dst = f.src
		}
	}
	// A mission's events stay in its project, whatever the agent says.
	e.ProjectID, e.MissionID = base.ProjectID, base.MissionID
	return e
}

// EndEventID is the id of the event that ends a mission (mission.completed
// or mission.failed): a ULID with the mission's queued time and entropy
// from a hash of its id, the same for every attempt, worker and dispatcher,
// so that FLEET's dedupe keeps only the first end.
func EndEventID(missionID string, queuedAt time.Time) string {
	h := sha256.Sum256([]byte("mission.end\x00" + missionID))
	var e [10]byte
	copy(e[:], h[:])
	return fleet.ULID(queuedAt, e)
}

// TraceID returns the trace id of a mission that came without one: 16
// bytes of a hash of its id, in hex.
func TraceID(missionID string) string {
	h := sha256.Sum256([]byte("mission.trace\x00" + missionID))
	return hex.EncodeToString(h[:16])
}

func msSince(from, to time.Time) float64 {
	if from.IsZero() || to.Before(from) {
		return 0
	}
	return float64(to.Sub(from).Milliseconds())
}
