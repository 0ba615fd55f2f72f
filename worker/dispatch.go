package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
)

// MaxDeliveriesAdvisory is the subject of JetStream's advisory for a
// mission delivered MaxDeliver times without being acknowledged.
const MaxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream.MissionsStream + ".>"

// Defaults of the dispatcher's sweep for missions no worker serves.
const (
	DefaultUnservedAfter = 10 * time.Minute
	DefaultSweepEvery    = time.Minute
)

// DispatcherConfig configures a Dispatcher. Zero values mean the defaults.
type DispatcherConfig struct {
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
	// UnservedAfter is how long a mission may wait on a subject no worker
	// has ever consumed (a pool or project without a consumer) before the
	// dispatcher fails it (default 10 min); SweepEvery is how often it
	// looks (default 1 min).
	UnservedAfter, SweepEvery time.Duration
}

// Dispatcher fails the missions nobody will run. Its sweep fails the
// missions queued on a subject no worker has ever consumed (UnservedAfter).
// As a backstop it also fails the missions JetStream gives up on: the
// runtime's consumers never bound deliveries (MaxDeliver -1: lost leases
// and passes are bounded by the workers themselves), but a consumer made
// by hand or by an older release may; on its MAX_DELIVERIES advisory the
// dispatcher publishes mission.failed with the mission's EndEventID and a
// reason, and removes the mission from the queue. Several replicas may
// run: they publish the same event id, which FLEET keeps once.
type Dispatcher struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	pub    *stream.Publisher
	now    func() time.Time
	log    *slog.Logger
	ready  chan struct{}
	failed atomic.Int64
	passes *KVPasses // opened by Run

	unservedAfter, sweepEvery time.Duration
}

// NewDispatcher returns a dispatcher listening on nc and reading MISSIONS
// through js.
func NewDispatcher(nc *nats.Conn, js jetstream.JetStream, pub *stream.Publisher, cfg DispatcherConfig) *Dispatcher {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.UnservedAfter <= 0 {
		cfg.UnservedAfter = DefaultUnservedAfter
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = DefaultSweepEvery
	}
	return &Dispatcher{nc: nc, js: js, pub: pub, now: cfg.Now, log: cfg.Logger, ready: make(chan struct{}),
		unservedAfter: cfg.UnservedAfter, sweepEvery: cfg.SweepEvery}
}

// Ready is closed once the dispatcher listens to the advisories.
func (d *Dispatcher) Ready() <-chan struct{} { return d.ready }

// Failed is how many missions this dispatcher failed (its publications,
// some of which FLEET may have deduplicated against another replica's).
func (d *Dispatcher) Failed() int64 { return d.failed.Load() }

// Run handles the advisories until ctx ends; it returns nil then.
func (d *Dispatcher) Run(ctx context.Context) error {
	kv, err := stream.MissionSkips(ctx, d.js)
	if err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	d.passes = NewKVPasses(kv)
	ch := make(chan *nats.Msg, 1024)
	sub, err := d.nc.ChanSubscribe(MaxDeliveriesAdvisory, ch)
	if err != nil {
		return fmt.Errorf("dispatcher: subscribe %s: %w", MaxDeliveriesAdvisory, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := d.nc.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("dispatcher: flush: %w", err)
	}
	close(d.ready)
	sweep := time.NewTicker(d.sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			d.handle(ctx, m.Data)
		case <-sweep.C:
			d.sweepUnserved(ctx)
		}
	}
}

// sweepUnserved fails the missions that waited longer than UnservedAfter
// on a MISSIONS subject that no consumer filters: a pool or a project no
// worker has ever claimed from, whose missions nobody would ever see.
// (A subject whose workers all left keeps its consumer, and its missions
// wait for them, as a queue does.)
func (d *Dispatcher) sweepUnserved(ctx context.Context) {
	st, err := d.js.Stream(ctx, stream.MissionsStream)
	if err != nil {
		return
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(stream.MissionsSubjects))
	if err != nil || len(info.State.Subjects) == 0 {
		return
	}
	served := map[string]bool{}
	for ci := range st.ListConsumers(ctx).Info() {
		served[ci.Config.FilterSubject] = true
		for _, f := range ci.Config.FilterSubjects {
			served[f] = true
		}
	}
	cutoff := d.now().Add(-d.unservedAfter)
	for subject := range info.State.Subjects {
		if served[subject] || served[stream.MissionsSubjects] {
			continue
		}
		for seq := info.State.FirstSeq; ctx.Err() == nil; {
			raw, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
			if err != nil || raw.Time.After(cutoff) {
				break
			}
			seq = raw.Sequence + 1
			queued, _, err := decodeMission(raw.Data)
			if err != nil {
				_ = st.DeleteMsg(ctx, raw.Sequence)
				continue
			}
			project, pool, _ := stream.ParsePoolSubject(subject)
			why := fmt.Sprintf("no worker serves pool %s of project %s: waited %s", cmp.Or(pool, stream.DefaultPool), project,
				d.now().Sub(raw.Time).Round(time.Second))
			if err := publishFailed(ctx, d.pub, queued, d.now().UTC(), why); err != nil {
				d.log.Error("publishing mission.failed failed", "event", "dispatch.publish_failed", "mission_id", queued.MissionID, "error", err.Error())
				return
			}
			d.failed.Add(1)
			d.log.Warn("unserved mission failed", "event", "dispatch.mission_unserved", "sagewai.project_id", queued.ProjectID,
				"mission_id", queued.MissionID, "subject", subject)
			_ = st.DeleteMsg(ctx, raw.Sequence)
		}
	}
}

// maxDeliveries is the part of the advisory the dispatcher reads.
type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

func (d *Dispatcher) handle(ctx context.Context, body []byte) {
	var a maxDeliveries
	if err := json.Unmarshal(body, &a); err != nil || a.Stream != stream.MissionsStream || a.StreamSeq == 0 {
		d.log.Warn("unreadable max-deliveries advisory", "event", "dispatch.bad_advisory", "bytes", len(body))
		return
	}
	log := d.log.With("stream_seq", a.StreamSeq, "consumer", a.Consumer, "deliveries", a.Deliveries)
	st, err := d.js.Stream(ctx, stream.MissionsStream)
	if err != nil {
		log.Error("reading the missions stream failed", "event", "dispatch.stream_failed", "error", err.Error())
		return
	}
	raw, err := st.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Another replica handled it, or a late ack removed it.
		return
	}
	if err != nil {
		log.Error("reading the mission failed", "event", "dispatch.get_failed", "error", err.Error())
		return
	}
	queued, q, err := decodeMission(raw.Data)
	if err != nil {
		log.Error("undecodable mission dropped", "event", "dispatch.invalid_mission", "error", err.Error())
		_ = st.DeleteMsg(ctx, a.StreamSeq)
		return
	}
	project, pool, _ := stream.ParsePoolSubject(raw.Subject)
	skipped, err := d.passes.Count(ctx, project, a.StreamSeq)
	if err != nil {
		log.Warn("reading the mission's passes failed", "event", "dispatch.skips_failed", "error", err.Error())
	}
	if err := publishFailed(ctx, d.pub, queued, d.now().UTC(), failReason(a.Deliveries, skipped, pool, q, d.now().Sub(queued.Time))); err != nil {
		log.Error("publishing mission.failed failed", "event", "dispatch.publish_failed", "mission_id", queued.MissionID, "error", err.Error())
		return
	}
	d.failed.Add(1)
	log.Warn("mission failed after its last lease", "event", "dispatch.mission_failed",
		"sagewai.project_id", queued.ProjectID, "mission_id", queued.MissionID)
	if err := st.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Warn("removing the failed mission from the queue failed", "event", "dispatch.delete_failed", "error", err.Error())
	}
	if skipped > 0 {
		_ = d.passes.Clear(ctx, project, a.StreamSeq)
	}
}

// failReason says why a mission delivered deliveries times, skipped of
// which were passed on by workers that do not match it, failed after
// waiting waited.
func failReason(deliveries, skipped uint64, pool string, q fleet.MissionQueued, waited time.Duration) string {
	lost := deliveries - min(skipped, deliveries)
	if lost == 0 {
		return unmatchedReason(pool, q, skipped, waited)
	}
	if skipped == 0 {
		return fmt.Sprintf("lease lost %d times: no worker finished the mission", lost)
	}
	return fmt.Sprintf("lease lost %d times and passed on %d times by workers that do not match it: no worker finished the mission", lost, skipped)
}
