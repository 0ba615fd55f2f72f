package worker

import (
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

// DispatcherConfig configures a Dispatcher. Zero values mean the defaults.
type DispatcherConfig struct {
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

// Dispatcher fails the missions that lost their lease MaxDeliver times: it
// listens to JetStream's MAX_DELIVERIES advisories on MISSIONS, publishes
// mission.failed with the mission's EndEventID and removes the mission
// from the queue. Several replicas may run: they publish the same event
// id, which FLEET keeps once.
type Dispatcher struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	pub    *stream.Publisher
	now    func() time.Time
	log    *slog.Logger
	ready  chan struct{}
	failed atomic.Int64
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
	return &Dispatcher{nc: nc, js: js, pub: pub, now: cfg.Now, log: cfg.Logger, ready: make(chan struct{})}
}

// Ready is closed once the dispatcher listens to the advisories.
func (d *Dispatcher) Ready() <-chan struct{} { return d.ready }

// Failed is how many missions this dispatcher failed (its publications,
// some of which FLEET may have deduplicated against another replica's).
func (d *Dispatcher) Failed() int64 { return d.failed.Load() }

// Run handles the advisories until ctx ends; it returns nil then.
func (d *Dispatcher) Run(ctx context.Context) error {
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
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			d.handle(ctx, m.Data)
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
	queued, _, err := decodeMission(raw.Data)
	if err != nil {
		log.Error("undecodable mission dropped", "event", "dispatch.invalid_mission", "error", err.Error())
		_ = st.DeleteMsg(ctx, a.StreamSeq)
		return
	}
	now := d.now().UTC()
	outcome, err := json.Marshal(fleet.Outcome{
		DurationMS: msSince(queued.Time, now),
		Error:      fmt.Sprintf("lease lost %d times: no worker finished the mission", a.Deliveries),
	})
	if err != nil {
		return
	}
	ev := fleet.Event{
		ID: EndEventID(queued.MissionID, queued.Time), Type: fleet.TypeMissionFailed, Time: now,
		ProjectID: queued.ProjectID, TeamID: queued.TeamID, UserID: queued.UserID, AgentID: queued.AgentID,
		MissionID: queued.MissionID, TraceID: queued.TraceID, Data: outcome,
	}
	if _, err := d.pub.Publish(ctx, ev); err != nil {
		log.Error("publishing mission.failed failed", "event", "dispatch.publish_failed", "mission_id", queued.MissionID, "error", err.Error())
		return
	}
	d.failed.Add(1)
	log.Warn("mission failed after its last lease", "event", "dispatch.mission_failed",
		"sagewai.project_id", queued.ProjectID, "mission_id", queued.MissionID)
	if err := st.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Warn("removing the failed mission from the queue failed", "event", "dispatch.delete_failed", "error", err.Error())
	}
}
