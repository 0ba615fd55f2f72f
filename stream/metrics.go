package stream

import (
	"context"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sagewai/observatory/fleet"
)

// metricsScope is the instrumentation scope of the hub's metrics.
const metricsScope = "github.com/sagewai/observatory/stream"

// streamInfoTimeout bounds the JetStream requests of one collection.
const streamInfoTimeout = 2 * time.Second

// RegisterMetrics registers the hub's pipeline metrics with mp: its
// counters (Stats), what the fold holds against its bounds, the events
// still to fold, the FLEET and AUDIT streams' sizes and the NATS
// connection's traffic. They are read at each
// collection (a /metrics scrape): the hub's hot path does no more than it
// did. Reading the streams' sizes costs two JetStream requests per
// collection; when they fail the stream series are left out of that
// collection.
func (h *Hub) RegisterMetrics(mp metric.MeterProvider) error {
	m := mp.Meter(metricsScope)
	var err error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		if err != nil {
			return nil
		}
		var g metric.Int64ObservableGauge
		g, err = m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return g
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		if err != nil {
			return nil
		}
		var c metric.Int64ObservableCounter
		c, err = m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	subscribers := gauge("sagewai.hub.subscribers", "{subscriber}", "Connections subscribed to the hub (/ws clients).")
	scopes := gauge("sagewai.hub.scopes", "{scope}", "Scopes the hub builds diffs for (with subscribers, or idle and kept for resumes).")
	ready := gauge("sagewai.hub.ready", "", "1 once the hub has folded the stream up to where it stood at start, else 0.")
	pending := gauge("sagewai.hub.pending_events", "{event}", "Messages stored in FLEET and not yet folded: the hub's lag in events.")
	streamMsgs := gauge("sagewai.nats.stream.messages", "{message}", "Messages held by a JetStream stream (FLEET, AUDIT).")
	streamBytes := gauge("sagewai.nats.stream.size", "By", "Bytes held by a JetStream stream (FLEET, AUDIT).")
	connected := gauge("sagewai.nats.connected", "", "1 while the NATS connection is up, else 0.")
	ingested := counter("sagewai.hub.events.ingested", "{event}", "Messages the hub consumed, by result: applied, duplicate, unknown (type), rejected.")
	rejected := counter("sagewai.hub.events.rejected", "{event}", "Messages not folded, by reason: invalid (rejected before the fold) or refused by a bound of the fold (limit_*).")
	entities := gauge("sagewai.hub.fold.entities", "{entity}", "What the fold holds, by kind (projects, agents, missions in flight, worker records, budgets, open runs, finished mission ids, event ids).")
	largest := gauge("sagewai.hub.fold.largest_project", "{entity}", "The most any one project holds of each kind bounded per project.")
	limit := gauge("sagewai.hub.fold.limit", "{entity}", "The fold's bounds by kind: projects (not announced), announced_projects, and per project the rest.")
	frames := counter("sagewai.hub.frames.sent", "{frame}", "Frames queued to subscribers (snapshots and diffs).")
	sent := counter("sagewai.hub.sent", "By", "Bytes of the frames queued to subscribers.")
	snapshots := counter("sagewai.hub.snapshots", "{frame}", "Snapshot frames encoded.")
	resyncs := counter("sagewai.hub.resyncs", "{event}", "Slow subscribers given a fresh snapshot instead of their backlog.")
	slow := counter("sagewai.hub.slow_closes", "{connection}", "Subscribers closed with 4408 for staying too slow.")
	resumes := counter("sagewai.hub.resumes", "{subscriber}", "Subscribers resumed from the diff ring instead of a snapshot.")
	checkpoints := counter("sagewai.hub.checkpoints", "{checkpoint}", "Checkpoints of the folded state, by result (ok, error).")
	natsMsgs := counter("sagewai.nats.messages", "{message}", "Messages through the hub's NATS connection, by direction (in, out).")
	natsBytes := counter("sagewai.nats.transferred", "By", "Bytes through the hub's NATS connection, by direction (in, out).")
	reconnects := counter("sagewai.nats.reconnects", "{reconnect}", "Reconnections of the hub's NATS connection.")
	if err != nil {
		return err
	}
	result := func(r string) metric.ObserveOption { return metric.WithAttributes(attribute.String("result", r)) }
	direction := func(d string) metric.ObserveOption { return metric.WithAttributes(attribute.String("direction", d)) }
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		st := h.Stats()
		o.ObserveInt64(subscribers, st.Subscribers)
		o.ObserveInt64(scopes, st.Scopes)
		o.ObserveInt64(ready, boolInt(st.Ready))
		kind := func(k string) metric.ObserveOption { return metric.WithAttributes(attribute.String("kind", k)) }
		z, l := st.Fold, st.Limits
		for k, v := range map[string]int{"projects": z.Projects, "announced_projects": z.AnnouncedProjects, "agents": z.Agents,
			"missions": z.Missions, "workers": z.Workers, "budgets": z.Budgets, "open_runs": z.OpenRuns,
			"finished_missions": z.FinishedMissions, "event_ids": z.EventIDs} {
			o.ObserveInt64(entities, int64(v), kind(k))
		}
		for k, v := range map[string][2]int{"agents": {z.Largest.Agents, l.Agents}, "missions": {z.Largest.Missions, l.Missions},
			"workers": {z.Largest.Workers, l.Workers}, "budgets": {z.Largest.Budgets, l.Budgets},
			"open_runs": {z.Largest.OpenRuns, l.OpenRuns}, "finished_missions": {z.Largest.FinishedMissions, l.FinishedMissions}} {
			o.ObserveInt64(largest, int64(v[0]), kind(k))
			o.ObserveInt64(limit, int64(v[1]), kind(k))
		}
		o.ObserveInt64(limit, int64(l.Projects), kind("projects"))
		o.ObserveInt64(limit, int64(l.AnnouncedProjects), kind("announced_projects"))
		var nRejected int64
		for _, r := range append(slices.Clone(fleet.Reasons), fleet.LimitReasons...) {
			nRejected += st.Rejected[r]
			o.ObserveInt64(rejected, st.Rejected[r], metric.WithAttributes(attribute.String("reason", string(r))))
		}
		o.ObserveInt64(ingested, st.Applied, result("applied"))
		o.ObserveInt64(ingested, st.Duplicates, result("duplicate"))
		o.ObserveInt64(ingested, st.Unknown, result("unknown"))
		o.ObserveInt64(ingested, nRejected, result("rejected"))
		o.ObserveInt64(frames, st.Frames)
		o.ObserveInt64(sent, st.Bytes)
		o.ObserveInt64(snapshots, st.Snapshots)
		o.ObserveInt64(resyncs, st.Resyncs)
		o.ObserveInt64(slow, st.SlowClosed)
		o.ObserveInt64(resumes, st.Resumes)
		o.ObserveInt64(checkpoints, st.Checkpoints, result("ok"))
		o.ObserveInt64(checkpoints, st.CheckpointErrors, result("error"))
		if nc := h.js.Conn(); nc != nil {
			ns := nc.Stats()
			o.ObserveInt64(connected, boolInt(nc.IsConnected()))
			o.ObserveInt64(natsMsgs, int64(ns.InMsgs), direction("in"))
			o.ObserveInt64(natsMsgs, int64(ns.OutMsgs), direction("out"))
			o.ObserveInt64(natsBytes, int64(ns.InBytes), direction("in"))
			o.ObserveInt64(natsBytes, int64(ns.OutBytes), direction("out"))
			o.ObserveInt64(reconnects, int64(ns.Reconnects))
		}
		ctx, cancel := context.WithTimeout(ctx, streamInfoTimeout)
		defer cancel()
		for _, name := range []string{FleetStream, AuditStream} {
			s, err := h.js.Stream(ctx, name)
			if err != nil {
				continue
			}
			info, err := s.Info(ctx)
			if err != nil {
				continue
			}
			sk := metric.WithAttributes(attribute.String("stream", name))
			o.ObserveInt64(streamMsgs, int64(info.State.Msgs), sk)
			o.ObserveInt64(streamBytes, int64(info.State.Bytes), sk)
			if name == FleetStream {
				var n int64
				if info.State.LastSeq > st.Seq {
					n = int64(info.State.LastSeq - st.Seq)
				}
				o.ObserveInt64(pending, n)
			}
		}
		return nil
	}, subscribers, scopes, ready, pending, streamMsgs, streamBytes, connected, ingested, rejected, frames, sent,
		snapshots, resyncs, slow, resumes, checkpoints, natsMsgs, natsBytes, reconnects, entities, largest, limit)
	return err
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
