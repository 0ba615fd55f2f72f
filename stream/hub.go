package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/protocol"
)

// HubConfig configures a Hub. Zero values mean the defaults.
type HubConfig struct {
	// Tick is how often diffs are built and sent (default 100 ms).
	Tick time.Duration
	// RingSize is how many diff frames each scope keeps for resume (default 600).
	RingSize int
	// ScopeIdle is how long a scope without subscribers keeps its diffs for
	// clients that come back (default 2 min).
	ScopeIdle time.Duration
	// MaxResyncs is how many fresh snapshots a slow subscriber gets within
	// ResyncWindow before it is closed with 4408 (defaults 3 and 30 s).
	MaxResyncs   int
	ResyncWindow time.Duration
	// Checkpoints stores the folded state; nil folds the stream from the start
	// at every start.
	Checkpoints *Checkpoints
	// Extra, when set, is saved with each checkpoint and handed back when
	// one is loaded, before the hub folds anything: what Observe derived
	// from the events the checkpoint covers (telemetry's domain
	// counters), so that a restart continues it instead of starting again
	// from zero. Both calls run on the hub goroutine.
	Extra CheckpointExtra
	// CheckpointEvery is the time between checkpoints (default 5 s).
	CheckpointEvery time.Duration
	// Pricing prices llm.call events (default fleet.DefaultPricing()).
	Pricing *fleet.Pricing
	// StaleAfter and OfflineAfter are how long after its last event a
	// worker shows stale and offline (defaults fleet.StaleAfter, 30 s, and
	// fleet.OfflineAfter, 2 min; tests use short ones). Every replica must
	// use the same, or their folds differ.
	StaleAfter, OfflineAfter time.Duration
	// Limits bound what the fold keeps of the ids events choose (zero
	// fields: fleet.DefaultLimits). An event past a bound is rejected,
	// counted by reason (Stats.Rejected) and logged, at most one line per
	// reason every RejectLogEvery. Every replica must use the same.
	Limits fleet.Limits
	// Logger receives rejections and lifecycle lines (default slog.Default()).
	Logger *slog.Logger
	// Now is the hub's clock (default time.Now): when a scope without
	// subscribers has been idle for ScopeIdle, when a subscriber's resyncs
	// fall out of ResyncWindow, when the next checkpoint is due. The
	// fold's clock is not this one: it is the stream's stored time.
	Now func() time.Time
	// Observe, if set, is called by the hub goroutine with every event it
	// folds and what the fold made of it (telemetry hooks in here).
	Observe func(ev fleet.Event, res fleet.Result, st *fleet.State)
}

func (c *HubConfig) defaults() {
	c.Tick = cmpOr(c.Tick, 100*time.Millisecond)
	c.RingSize = cmpOr(c.RingSize, 600)
	c.ScopeIdle = cmpOr(c.ScopeIdle, 2*time.Minute)
	c.MaxResyncs = cmpOr(c.MaxResyncs, 3)
	c.ResyncWindow = cmpOr(c.ResyncWindow, 30*time.Second)
	c.CheckpointEvery = cmpOr(c.CheckpointEvery, 5*time.Second)
	if c.Pricing == nil {
		c.Pricing = fleet.DefaultPricing()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// RejectLogEvery is how often the hub logs rejected events of one reason:
// the first of each interval gets a line, the others are counted and their
// number ("suppressed") goes with the next line, so a flood of bad or
// refused events costs a line per reason every 10 s, not one per event.
const RejectLogEvery = 10 * time.Second

// rejectLog decides which rejections get a log line. It is owned by the
// hub goroutine.
type rejectLog struct {
	last       map[fleet.Reason]time.Time
	suppressed map[fleet.Reason]int64
}

// allow reports whether a rejection for reason at now gets a line, and how
// many were not logged since the last line.
func (l *rejectLog) allow(now time.Time, reason fleet.Reason) (suppressed int64, ok bool) {
	if l.last == nil {
		l.last, l.suppressed = map[fleet.Reason]time.Time{}, map[fleet.Reason]int64{}
	}
	if last, seen := l.last[reason]; seen && now.Sub(last) < RejectLogEvery && !now.Before(last) {
		l.suppressed[reason]++
		return 0, false
	}
	suppressed = l.suppressed[reason]
	l.last[reason], l.suppressed[reason] = now, 0
	return suppressed, true
}

// limitText says which bound a refusal hit.
func limitText(r fleet.Reason, l fleet.Limits) string {
	switch r {
	case fleet.ReasonLimitProjects:
		return fmt.Sprintf("the fold holds %d projects no project.created announced (or %d announced ones)", l.Projects, l.AnnouncedProjects)
	case fleet.ReasonLimitAgents:
		return fmt.Sprintf("the project has %d agents", l.Agents)
	case fleet.ReasonLimitMissions:
		return fmt.Sprintf("the project has %d missions in flight", l.Missions)
	case fleet.ReasonLimitWorkers:
		return fmt.Sprintf("the project's events name %d workers", l.Workers)
	case fleet.ReasonLimitBudgets:
		return fmt.Sprintf("the project has %d budgets", l.Budgets)
	}
	return "invalid"
}

func ptrTo[T any](v T) *T { return &v }

// Hub owns the fleet state: it consumes FLEET in order, folds every event,
// and every tick sends each scope's subscribers one shared diff frame.
type Hub struct {
	js   jetstream.JetStream
	cfg  HubConfig
	log  *slog.Logger
	reqs chan request
	done chan struct{} // closed when Run returns
	stat stats

	// Owned by the Run goroutine.
	epoch   string
	state   *fleet.State
	scopes  map[string]*scope
	subs    map[protocol.Subscriber]*subscriber
	dirty   bool      // folded events not yet turned into diffs
	waiting []request // requests that need a state at a frame boundary
	target  uint64    // the stream's last sequence at start; ready once folded
	lastCP  time.Time
	cpSeq   uint64   // the seq of the last checkpoint written
	cpWrite *cpWrite // the checkpoint being written, nil when none
	// rejectLog spaces the lines about rejected events.
	rejectLog rejectLog
}

type scope struct {
	name     string
	seq      uint64 // seq of the last frame built for this scope
	posture  fleet.Posture
	subs     map[protocol.Subscriber]*subscriber
	lanes    [numLanes]lane
	snap     []byte // cached snapshot frame at seq, nil when stale
	lastUsed time.Time
}

type ringFrame struct {
	prev, seq uint64
	frame     []byte
}

type subscriber struct {
	sub     protocol.Subscriber
	scope   *scope
	lane    int // laneV1 or laneV2
	resyncs []time.Time
}

type reqKind int

const (
	reqSubscribe reqKind = iota
	reqUnsubscribe
	reqSnapshot
	reqView
)

type request struct {
	kind  reqKind
	sub   protocol.Subscriber
	req   protocol.Subscribe
	reply chan reply
}

type reply struct {
	frame []byte
	view  fleet.View
	seq   uint64
	err   error
}

// NewHub returns a hub that folds the FLEET stream of js. Run starts it.
func NewHub(js jetstream.JetStream, cfg HubConfig) *Hub {
	cfg.defaults()
	return &Hub{
		js:     js,
		cfg:    cfg,
		log:    cfg.Logger,
		reqs:   make(chan request, 256),
		done:   make(chan struct{}),
		scopes: make(map[string]*scope),
		subs:   make(map[protocol.Subscriber]*subscriber),
	}
}

// Run consumes the stream until ctx ends. It returns nil on a clean stop.
func (h *Hub) Run(ctx context.Context) error {
	defer close(h.done)
	defer h.waitCheckpoint()
	if err := h.start(ctx); err != nil {
		h.stat.runErr.Store(err.Error())
		return err
	}
	cons, err := h.js.OrderedConsumer(ctx, FleetStream, h.consumerConfig())
	if err != nil {
		return fmt.Errorf("hub: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("hub: consume: %w", err)
	}
	in := make(chan jetstream.Msg, 1024)
	readErr := make(chan error, 1)
	go func() { readErr <- Pump(ctx, it, in) }()
	defer func() {
		it.Stop()
		<-readErr
	}()

	tick := time.NewTicker(h.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			h.flush()
			h.closeAll()
			h.checkpoint(true)
			return nil
		case err := <-readErr:
			readErr <- err // for the deferred wait
			if err != nil {
				return fmt.Errorf("hub: read stream: %w", err)
			}
			return nil
		case m := <-in:
			h.fold(m)
		case <-tick.C:
			h.flush()
		case r := <-h.reqs:
			h.handle(r)
		}
	}
}

// Pump moves messages from a consumer's iterator to in until ctx ends;
// it returns nil when ctx ends or the iterator is closed.
func Pump(ctx context.Context, it jetstream.MessagesContext, in chan<- jetstream.Msg) error {
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case in <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

func (h *Hub) start(ctx context.Context) error {
	epoch, err := Epoch(ctx, h.js)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.epoch = epoch
	s, err := h.js.Stream(ctx, FleetStream)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("hub: stream info: %w", err)
	}
	h.target = info.State.LastSeq
	h.state = fleet.NewState(h.cfg.Pricing)
	if h.cfg.Checkpoints != nil {
		st, extra, err := h.cfg.Checkpoints.LoadWith(epoch, h.cfg.Pricing)
		switch {
		case err != nil:
			h.log.Warn("checkpoint not used; folding the stream from the start", "event", "hub.checkpoint.skipped", "err", err.Error())
		case st == nil:
		case st.Seq() > info.State.LastSeq:
			h.log.Warn("checkpoint is ahead of the stream; folding from the start", "event", "hub.checkpoint.skipped",
				"checkpoint_seq", st.Seq(), "stream_last_seq", info.State.LastSeq)
		default:
			if h.cfg.Extra != nil && extra != nil {
				if err := h.cfg.Extra.LoadCheckpoint(extra); err != nil {
					h.log.Warn("checkpoint's extra part not used", "event", "hub.checkpoint.extra_skipped", "err", err.Error())
				}
			}
			h.state = st
			h.cpSeq = st.Seq()
			h.log.Info("resuming from checkpoint", "event", "hub.checkpoint.loaded", "seq", st.Seq(), "stream_last_seq", info.State.LastSeq)
		}
	}
	h.state.SetLiveness(h.cfg.StaleAfter, h.cfg.OfflineAfter)
	h.state.SetLimits(h.cfg.Limits)
	h.stat.limits.Store(ptrTo(h.state.Limits()))
	h.stat.size.Store(ptrTo(h.state.Size()))
	h.lastCP = h.cfg.Now()
	h.stat.epoch.Store(epoch)
	h.stat.seq.Store(h.state.Seq())
	h.checkReady()
	return nil
}

func (h *Hub) consumerConfig() jetstream.OrderedConsumerConfig {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{FleetSubjects}}
	if seq := h.state.Seq(); seq > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = seq + 1
	}
	return cfg
}

func (h *Hub) checkReady() {
	if !h.stat.ready.Load() && h.state.Seq() >= h.target {
		h.stat.ready.Store(true)
		h.log.Info("hub caught up with the stream", "event", "hub.ready", "seq", h.state.Seq(), "epoch", h.epoch)
	}
}

func (h *Hub) fold(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		h.log.Error("message without metadata", "event", "hub.bad_message", "err", err.Error())
		return
	}
	seq, at := meta.Sequence.Stream, meta.Timestamp
	if m.Subject() == fleet.ClockSubject {
		h.state.Tick(seq, at)
		h.stat.seq.Store(seq)
		h.stat.lastStored.Store(at.UnixNano())
		h.dirty = true
		h.checkReady()
		return
	}
	ev, err := fleet.DecodeEvent(m.Subject(), m.Data())
	if err != nil {
		h.state.Skip(seq, at)
		reason := fleet.RejectReason(err)
		h.stat.reject(reason)
		if n, ok := h.rejectLog.allow(h.cfg.Now(), reason); ok {
			h.log.Warn("event rejected", "event", "event.rejected", "reason", string(reason), "subject", m.Subject(),
				"seq", seq, "bytes", len(m.Data()), "err", err.Error(), "suppressed", n)
		}
	} else {
		res := h.state.Apply(seq, at, ev)
		h.stat.result(res)
		if res == fleet.Rejected {
			reason := h.state.Effect().Reason
			h.stat.reject(reason)
			if n, ok := h.rejectLog.allow(h.cfg.Now(), reason); ok {
				h.log.Warn("event refused: "+limitText(reason, h.state.Limits()), "event", "event.rejected",
					"reason", string(reason), "subject", m.Subject(), "sagewai.project_id", ev.ProjectID, "seq", seq, "suppressed", n)
			}
		}
		if h.cfg.Observe != nil {
			h.cfg.Observe(ev, res, h.state)
		}
	}
	h.stat.seq.Store(seq)
	h.stat.lastStored.Store(at.UnixNano())
	h.dirty = true
	h.checkReady()
}

// flush turns the folded events into at most one diff per scope, sends it,
// then answers the requests that waited for a frame boundary.
func (h *Hub) flush() {
	now := h.cfg.Now()
	if h.dirty {
		ch := h.state.TakeChanges()
		seq := h.state.Seq()
		for name, sc := range h.scopes {
			if len(sc.subs) == 0 && now.Sub(sc.lastUsed) > h.cfg.ScopeIdle {
				delete(h.scopes, name)
				continue
			}
			if ch.Empty() {
				continue
			}
			h.diffScope(sc, ch, seq)
		}
		h.dirty = false
		h.stat.scopes.Store(int64(len(h.scopes)))
		h.stat.size.Store(ptrTo(h.state.Size()))
	}
	waiting := h.waiting
	h.waiting = nil
	for _, r := range waiting {
		h.handle(r)
	}
	if now.Sub(h.lastCP) >= h.cfg.CheckpointEvery {
		h.checkpoint(false)
	}
}

// diffScope builds the scope's Delta once and, from it, one frame per
// protocol version that has subscribers (or had them within ScopeIdle),
// shared by all of that version's subscribers.
func (h *Hub) diffScope(sc *scope, ch *fleet.Changes, seq uint64) {
	d := h.state.Delta(sc.name, ch)
	if d.Posture != nil && *d.Posture == sc.posture {
		d.Posture = nil
	}
	if d.Empty() {
		return
	}
	if d.Posture != nil {
		sc.posture = *d.Posture
	}
	now := h.cfg.Now()
	var frames [numLanes][]byte
	for i := range sc.lanes {
		l := &sc.lanes[i]
		if !l.live(now, h.cfg.ScopeIdle) {
			l.close()
			continue
		}
		frame, err := h.encodeDiff(i, l, sc, seq, &d)
		if err != nil {
			// The lane cannot go on from here: its subscribers get a
			// snapshot with the next frame they miss.
			h.log.Error("encode diff", "event", "hub.encode_failed", "scope", sc.name, "protocol", laneNames[i], "err", err.Error())
			l.close()
			continue
		}
		l.push(ringFrame{prev: sc.seq, seq: seq, frame: frame}, h.cfg.RingSize)
		frames[i] = frame
	}
	sc.seq = seq
	sc.snap = nil
	for _, s := range sc.subs {
		if frame := frames[s.lane]; frame != nil {
			h.deliver(s, frame)
		} else {
			h.resync(s)
		}
	}
}

func (h *Hub) deliver(s *subscriber, frame []byte) {
	if s.sub.Send(frame) {
		h.stat.frames.Add(1)
		h.stat.bytes.Add(int64(len(frame)))
		return
	}
	h.resync(s)
}

// resync replaces a slow subscriber's queue with a fresh snapshot, or
// closes it when it stays slow.
func (h *Hub) resync(s *subscriber) {
	now := h.cfg.Now()
	kept := s.resyncs[:0]
	for _, t := range s.resyncs {
		if now.Sub(t) < h.cfg.ResyncWindow {
			kept = append(kept, t)
		}
	}
	s.resyncs = append(kept, now)
	if len(s.resyncs) > h.cfg.MaxResyncs {
		h.stat.slowClosed.Add(1)
		h.log.Warn("slow subscriber closed", "event", "hub.subscriber.slow", "scope", s.scope.name)
		h.remove(s.sub)
		s.sub.Close(protocol.CodeSlow, "the connection could not keep up with the stream")
		return
	}
	h.stat.resyncs.Add(1)
	frame := h.snapshot(s.scope)
	if l := &s.scope.lanes[s.lane]; !l.isOpen {
		l.open(s.scope, frame) // its diff failed to encode
	}
	s.sub.Reset(frame)
	h.stat.frames.Add(1)
	h.stat.bytes.Add(int64(len(frame)))
}

func (h *Hub) handle(r request) {
	if h.dirty && (r.kind == reqSubscribe || r.kind == reqSnapshot || r.kind == reqView) {
		h.waiting = append(h.waiting, r)
		return
	}
	switch r.kind {
	case reqSubscribe:
		r.reply <- reply{err: h.subscribe(r.sub, r.req)}
	case reqUnsubscribe:
		h.remove(r.sub)
	case reqSnapshot:
		if sc := h.scopes[r.req.Scope]; sc != nil {
			r.reply <- reply{frame: h.snapshot(sc)}
			return
		}
		sc := &scope{name: r.req.Scope, seq: h.state.Seq()}
		r.reply <- reply{frame: h.encodeSnapshot(sc)}
	case reqView:
		seq := h.state.Seq()
		if sc := h.scopes[r.req.Scope]; sc != nil {
			seq = sc.seq
		}
		r.reply <- reply{view: h.state.View(r.req.Scope), seq: seq}
	}
}

func (h *Hub) scope(name string) *scope {
	sc := h.scopes[name]
	if sc == nil {
		sc = &scope{name: name, seq: h.state.Seq(), posture: h.state.Posture(name), subs: make(map[protocol.Subscriber]*subscriber)}
		h.scopes[name] = sc
		h.stat.scopes.Store(int64(len(h.scopes)))
	}
	sc.lastUsed = h.cfg.Now()
	return sc
}

func (h *Hub) subscribe(sub protocol.Subscriber, req protocol.Subscribe) error {
	h.remove(sub) // a second subscribe on one connection switches scope
	sc := h.scope(req.Scope)
	s := &subscriber{sub: sub, scope: sc, lane: laneOf(req.Protocol)}
	sc.subs[sub] = s
	h.subs[sub] = s
	h.stat.subscribers.Store(int64(len(h.subs)))
	l := &sc.lanes[s.lane]
	l.subs++
	l.lastUsed = h.cfg.Now()
	if !l.isOpen {
		// The lane starts where the scope stands: no frames to resume
		// from, and a patcher that knows what a snapshot holds.
		l.open(sc, sc.snap)
	}
	for i, f := range h.resumeFrames(sc, l, req.Resume) {
		if i == 0 {
			// Reset, not Send: whatever the connection still holds of a
			// scope it left must not follow the new scope's first frame.
			sub.Reset(f)
		} else if !sub.Send(f) {
			h.resync(s)
			return nil
		}
		h.stat.frames.Add(1)
		h.stat.bytes.Add(int64(len(f)))
	}
	return nil
}

// resumeFrames returns what a subscriber needs first: the diffs since its
// resume point if the ring still holds them, else a snapshot.
func (h *Hub) resumeFrames(sc *scope, l *lane, r *protocol.Resume) [][]byte {
	if r != nil && r.Epoch == h.epoch {
		if r.Seq == sc.seq {
			h.stat.resumes.Add(1)
			noop, _ := json.Marshal(protocol.Diff{Op: protocol.OpDiff, Scope: sc.name, Epoch: h.epoch, Prev: sc.seq, Seq: sc.seq})
			return [][]byte{noop}
		}
		for i, f := range l.ring {
			if f.prev == r.Seq {
				h.stat.resumes.Add(1)
				out := make([][]byte, 0, len(l.ring)-i)
				for _, g := range l.ring[i:] {
					out = append(out, g.frame)
				}
				return out
			}
		}
	}
	return [][]byte{h.snapshot(sc)}
}

func (h *Hub) snapshot(sc *scope) []byte {
	if sc.snap == nil {
		sc.snap = h.encodeSnapshot(sc)
		sc.lanes[laneV2].seed(sc.snap)
	}
	return sc.snap
}

func (h *Hub) encodeSnapshot(sc *scope) []byte {
	h.stat.snapshots.Add(1)
	b, err := json.Marshal(protocol.Snapshot{Op: protocol.OpSnapshot, Scope: sc.name, Epoch: h.epoch, Seq: sc.seq, State: h.state.View(sc.name)})
	if err != nil {
		// A View is plain data; this cannot happen short of a bug.
		panic("hub: encode snapshot: " + err.Error())
	}
	return b
}

func (h *Hub) remove(sub protocol.Subscriber) {
	s := h.subs[sub]
	if s == nil {
		return
	}
	delete(h.subs, sub)
	delete(s.scope.subs, sub)
	s.scope.lastUsed = h.cfg.Now()
	l := &s.scope.lanes[s.lane]
	l.subs--
	l.lastUsed = s.scope.lastUsed
	h.stat.subscribers.Store(int64(len(h.subs)))
}

func (h *Hub) closeAll() {
	for sub := range h.subs {
		h.remove(sub)
		sub.Close(protocol.CodeGoingAway, "the server is shutting down")
	}
}

func (h *Hub) checkpoint(final bool) {
	if w := h.cpWrite; w != nil {
		if !final {
			select {
			case <-w.done:
			default:
				return // still writing: the next tick tries again
			}
		}
		h.waitCheckpoint()
	}
	h.lastCP = h.cfg.Now()
	if h.cfg.Checkpoints == nil || h.dirty || h.state.Seq() == h.cpSeq {
		return
	}
	b, err := h.state.MarshalCheckpoint()
	var extra []byte
	if err == nil && h.cfg.Extra != nil {
		extra, err = h.cfg.Extra.SaveCheckpoint()
	}
	if err != nil {
		h.checkpointFailed(err)
		return
	}
	// The state is encoded here, at a frame boundary; the file is written
	// and synced beside the fold (tens of milliseconds that would hold up
	// every tick), one at a time, so checkpoints land in seq order.
	w := &cpWrite{seq: h.state.Seq(), done: make(chan struct{})}
	h.cpWrite = w
	save := func() {
		defer close(w.done)
		if w.err = h.cfg.Checkpoints.SaveWith(h.epoch, b, extra); w.err != nil {
			h.checkpointFailed(w.err)
			return
		}
		h.stat.checkpoints.Add(1)
	}
	if final {
		save()
		h.waitCheckpoint()
		return
	}
	go save()
}

// cpWrite is a checkpoint being written by a goroutine of its own.
type cpWrite struct {
	seq  uint64
	done chan struct{} // closed when the write has ended; err is then set
	err  error
}

// waitCheckpoint waits for the checkpoint being written, if any. Run
// does not return before it.
func (h *Hub) waitCheckpoint() {
	w := h.cpWrite
	if w == nil {
		return
	}
	<-w.done
	h.cpWrite = nil
	if w.err == nil {
		h.cpSeq = w.seq
	}
}

// checkpointFailed counts and logs a checkpoint that was not written (any
// goroutine).
func (h *Hub) checkpointFailed(err error) {
	h.stat.checkpointErrors.Add(1)
	h.log.Error("checkpoint failed", "event", "hub.checkpoint.failed", "err", err.Error())
}

// CheckpointExtra is what the hub checkpoints beside its state
// (HubConfig.Extra).
type CheckpointExtra interface {
	SaveCheckpoint() ([]byte, error)
	LoadCheckpoint([]byte) error
}

// call sends r to the hub goroutine and waits for its reply.
func (h *Hub) call(ctx context.Context, r request) (reply, error) {
	r.reply = make(chan reply, 1)
	select {
	case h.reqs <- r:
	case <-ctx.Done():
		return reply{}, ctx.Err()
	case <-h.done:
		return reply{}, ErrClosed
	}
	select {
	case rep := <-r.reply:
		return rep, rep.err
	case <-ctx.Done():
		return reply{}, ctx.Err()
	case <-h.done:
		return reply{}, ErrClosed
	}
}

// Subscribe registers sub for req.Scope. The hub then sends it a snapshot,
// or the diffs since req.Resume, and every later diff of the scope. The
// caller has authorized the scope.
func (h *Hub) Subscribe(ctx context.Context, sub protocol.Subscriber, req protocol.Subscribe) error {
	_, err := h.call(ctx, request{kind: reqSubscribe, sub: sub, req: req})
	return err
}

// Unsubscribe removes sub. It does not wait for the hub.
func (h *Hub) Unsubscribe(sub protocol.Subscriber) {
	select {
	case h.reqs <- request{kind: reqUnsubscribe, sub: sub}:
	case <-h.done:
	}
}

// Snapshot returns an encoded snapshot frame of scope.
func (h *Hub) Snapshot(ctx context.Context, scope string) ([]byte, error) {
	rep, err := h.call(ctx, request{kind: reqSnapshot, req: protocol.Subscribe{Scope: scope}})
	return rep.frame, err
}

// View returns the state of scope and the seq it stands at.
func (h *Hub) View(ctx context.Context, scope string) (fleet.View, uint64, error) {
	rep, err := h.call(ctx, request{kind: reqView, req: protocol.Subscribe{Scope: scope}})
	return rep.view, rep.seq, err
}

// Ready returns nil once the hub has folded the stream up to where it
// stood when the hub started.
func (h *Hub) Ready() error {
	if h.stat.ready.Load() {
		select {
		case <-h.done:
			return ErrClosed
		default:
			return nil
		}
	}
	if e, _ := h.stat.runErr.Load().(string); e != "" {
		return errors.New(e)
	}
	return fmt.Errorf("catching up with the stream: at seq %d", h.stat.seq.Load())
}

// Done is closed when Run has returned.
func (h *Hub) Done() <-chan struct{} { return h.done }
