package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
)

// Defaults of DESIGN §9.
const (
	DefaultHeartbeat = 10 * time.Second
	DefaultLease     = 60 * time.Second
	// MaxDeliver is how many times a mission is delivered before JetStream
	// gives up on it and the Dispatcher fails it.
	MaxDeliver = 3
	// ConsumerPrefix prefixes the durable consumer of a project's missions:
	// workers-<project>.
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
// When ctx is cancelled the worker is stopping abruptly and the result is
// ignored.
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
	// Projects are the projects whose missions the worker claims (at least one).
	Projects []string
	// Pools are reported in worker.joined; matching on them is not done yet.
	Pools []string
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
	// Now stamps events (default time.Now).
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
}

type counters struct {
	claimed, completed, failed, leaks, invalid atomic.Int64
}

// Worker claims and runs missions. Create it with New and run it with Run.
type Worker struct {
	js  jetstream.JetStream
	pub *stream.Publisher
	cfg Config
	log *slog.Logger

	slots    chan struct{} // one token per running mission
	stop     chan struct{} // closed by Stop
	stopOnce sync.Once
	draining atomic.Bool
	stats    counters

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
// events with pub.
func New(js jetstream.JetStream, pub *stream.Publisher, cfg Config) *Worker {
	cfg.defaults()
	return &Worker{
		js: js, pub: pub, cfg: cfg,
		log:    cfg.Logger.With("worker_id", cfg.ID),
		slots:  make(chan struct{}, cfg.Capacity),
		stop:   make(chan struct{}),
		leases: map[*lease]struct{}{},
	}
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	return Stats{
		Claimed: w.stats.claimed.Load(), Completed: w.stats.completed.Load(), Failed: w.stats.failed.Load(),
		Leaks: w.stats.leaks.Load(), Invalid: w.stats.invalid.Load(),
	}
}

// Stop asks Run to stop cleanly: claim nothing new, let the running
// missions end, publish worker.left and return nil. It does not wait.
func (w *Worker) Stop() { w.stopOnce.Do(func() { close(w.stop) }) }

// ConsumerName returns the durable consumer of project's missions.
func ConsumerName(project string) string { return ConsumerPrefix + project }

// Run joins the fleet and claims missions until Stop (a clean stop) or
// until ctx ends (an abrupt stop, as a crash: nothing acknowledged, no
// worker.left). It returns nil after Stop, ctx's error after a
// cancellation, or the error that kept it from starting.
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.ID == "" || len(w.cfg.Projects) == 0 {
		return errors.New("worker: an id and at least one project are required")
	}
	for _, p := range w.cfg.Projects {
		if !fleet.ValidProjectID(p) {
			return fmt.Errorf("worker %s: bad project id %q", w.cfg.ID, p)
		}
	}
	st, err := w.js.Stream(ctx, stream.MissionsStream)
	if err != nil {
		return fmt.Errorf("worker %s: stream %s: %w", w.cfg.ID, stream.MissionsStream, err)
	}
	consumers := make(map[string]jetstream.Consumer, len(w.cfg.Projects))
	for _, p := range w.cfg.Projects {
		c, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       ConsumerName(p),
			Description:   "workers claiming the missions of project " + p,
			FilterSubject: stream.MissionSubject(p),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       w.cfg.Lease,
			MaxDeliver:    MaxDeliver,
			MaxWaiting:    4096,
		})
		if err != nil {
			return fmt.Errorf("worker %s: consumer for %s: %w", w.cfg.ID, p, err)
		}
		consumers[p] = c
	}
	for _, p := range w.cfg.Projects {
		if err := w.publish(ctx, fleet.Event{Type: fleet.TypeWorkerJoined, ProjectID: p},
			fleet.WorkerJoined{Host: w.cfg.Host, Version: w.cfg.Version, Capacity: w.cfg.Capacity, Pools: w.cfg.Pools}); err != nil {
			return err
		}
	}

	hbCtx, hbCancel := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeat(hbCtx)
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
	for _, p := range w.cfg.Projects {
		for range w.cfg.Capacity {
			// One message at a time, run in the handler: the client pulls
			// the next one only after the handler returns.
			cc, err := consumers[p].Consume(func(msg jetstream.Msg) { w.handle(ctx, p, msg) },
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
				return fmt.Errorf("worker %s: consume %s: %w", w.cfg.ID, p, err)
			}
			ccs = append(ccs, cc)
		}
	}
	w.log.Info("worker joined", "event", "worker.joined", "projects", w.cfg.Projects, "capacity", w.cfg.Capacity)

	select {
	case <-ctx.Done():
		stopConsuming()
		hbCancel()
		<-hbDone
		w.log.Warn("worker stopped abruptly", "event", "worker.killed")
		return ctx.Err()
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
			return err
		}
	}
	w.log.Info("worker left", "event", "worker.left")
	return nil
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

// handle runs one delivery of project's consumer.
func (w *Worker) handle(ctx context.Context, project string, msg jetstream.Msg) {
	w.handlersMu.Lock()
	if w.handlersClosed {
		// Stopping: the delivery goes back to the queue when its lease ends.
		w.handlersMu.Unlock()
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
	ev, q, err := decodeMission(msg.Data())
	if err != nil {
		w.stats.invalid.Add(1)
		w.log.Error("invalid mission terminated", "event", "worker.invalid_mission", "subject", msg.Subject(),
			"stream_seq", meta.Sequence.Stream, "error", err.Error())
		_ = msg.Term()
		return
	}
	subjectProject := strings.TrimPrefix(msg.Subject(), "missions.")
	if ev.ProjectID != subjectProject || subjectProject != project {
		w.stats.leaks.Add(1)
		w.log.Error("cross-tenant mission terminated", "event", "worker.cross_tenant_mission",
			"subject", msg.Subject(), "consumer_project", project, "sagewai.project_id", ev.ProjectID, "mission_id", ev.MissionID)
		_ = msg.Term()
		return
	}

	l := w.hold(msg)
	defer w.release(l)
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-w.slots }()
	w.setRunning(1)
	defer w.setRunning(-1)
	w.stats.claimed.Add(1)
	w.runMission(ctx, msg, int(meta.NumDelivered), ev, q)
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

func (w *Worker) runMission(ctx context.Context, msg jetstream.Msg, attempt int, queued fleet.Event, q fleet.MissionQueued) {
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
			return
		}
	}
	if err := pub(fleet.TypeMissionClaimed, Claimed{Attempt: attempt, WaitMS: msSince(m.QueuedAt, now),
		LeaseMS: float64(w.cfg.Lease.Milliseconds())}); err != nil {
		log.Warn("publishing mission.claimed failed", "event", "worker.publish_failed", "error", err.Error())
		return
	}
	base.RunID = m.RunID
	started := w.cfg.Now()
	if err := pub(fleet.TypeRunStarted, fleet.RunStarted{Model: m.Model}); err != nil {
		log.Warn("publishing agent.run.started failed", "event", "worker.publish_failed", "error", err.Error())
		return
	}
	emit := func(e fleet.Event) error {
		switch e.Type {
		case fleet.TypeLLMCall, fleet.TypeToolCall, fleet.TypeMissionProgress, fleet.TypeAgentState:
		default:
			return fmt.Errorf("emit %q: %w", e.Type, ErrEventType)
		}
		return w.publishEvent(ctx, fill(e, base))
	}
	agentErr := w.cfg.Agent(ctx, m, emit)
	if ctx.Err() != nil {
		// An abrupt stop: nothing is acknowledged; the lease will expire.
		return
	}
	end := w.cfg.Now().UTC()
	runType, endType, errText := fleet.TypeRunCompleted, fleet.TypeMissionCompleted, ""
	if agentErr != nil {
		runType, endType, errText = fleet.TypeRunFailed, fleet.TypeMissionFailed, agentErr.Error()
	}
	if err := pub(runType, fleet.Outcome{DurationMS: msSince(started, end), Error: errText}); err != nil {
		log.Warn("publishing the run's end failed", "event", "worker.publish_failed", "error", err.Error())
		return
	}
	e := base
	e.Type, e.ID, e.Time = endType, EndEventID(m.ID, m.QueuedAt), end
	if err := w.publish(ctx, e, fleet.Outcome{DurationMS: msSince(m.QueuedAt, end), Error: errText}); err != nil {
		log.Warn("publishing the mission's end failed", "event", "worker.publish_failed", "error", err.Error())
		return
	}
	if agentErr != nil {
		w.stats.failed.Add(1)
		log.Info("mission failed", "event", "worker.mission_failed", "error", errText)
		_ = msg.Term()
		return
	}
	w.stats.completed.Add(1)
	if err := msg.Ack(); err != nil {
		log.Warn("acknowledging the mission failed", "event", "worker.ack_failed", "error", err.Error())
	}
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
