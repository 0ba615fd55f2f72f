package stream_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// recordingSub is a subscriber that keeps every frame the hub gives it,
// as a connection that never falls behind would send it.
type recordingSub struct {
	mu     sync.Mutex
	frames [][]byte
	got    chan struct{} // a signal after each frame
}

func newRecordingSub() *recordingSub { return &recordingSub{got: make(chan struct{}, 1)} }

func (s *recordingSub) Send(f []byte) bool {
	s.mu.Lock()
	s.frames = append(s.frames, f)
	s.mu.Unlock()
	select {
	case s.got <- struct{}{}:
	default:
	}
	return true
}
func (s *recordingSub) Reset(f []byte)         { s.Send(f) }
func (s *recordingSub) Close(code, msg string) {}

// received returns a copy of the frames so far.
func (s *recordingSub) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.frames)
}

// waitSeq waits until s has received a frame at seq or later.
func (s *recordingSub) waitSeq(t *testing.T, seq uint64) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		for _, f := range s.received() {
			var h struct{ Seq uint64 }
			if json.Unmarshal(f, &h) == nil && h.Seq >= seq {
				return
			}
		}
		select {
		case <-s.got:
		case <-timeout:
			t.Fatalf("no frame at seq %d or later; %d frames received", seq, len(s.received()))
		}
	}
}

// hubMetrics collects the hub's metrics as name{labels} → value.
func hubMetrics(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	name := func(n string, s attribute.Set) string {
		if s.Len() == 0 {
			return n
		}
		kv := s.ToSlice()[0]
		return n + "{" + string(kv.Key) + "=" + kv.Value.Emit() + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[name(m.Name, p.Attributes)] = p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[name(m.Name, p.Attributes)] = p.Value
				}
			}
		}
	}
	return out
}

// TestHubMetrics checks the exported metrics against what the test itself
// did and saw, never against the hub's own counters: the events it
// published and what each must make (applied, duplicate, unknown type,
// rejected and why), and the frames and bytes its subscriber received.
func TestHubMetrics(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{Tick: 20 * time.Millisecond})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	if err := env.Hub.RegisterMetrics(mp); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sub := newRecordingSub()
	if err := env.Hub.Subscribe(ctx, sub, protocol.Subscribe{Op: protocol.OpSubscribe, Scope: "acme"}); err != nil {
		t.Fatal(err)
	}
	// The fold's clock is the stream's stored time (the NATS server's wall
	// clock): the events are of now, as a live worker's are.
	t0 := time.Now().UTC()
	ev := fleettest.WorkerJoined("acme", "w-1", t0)
	msgs := []struct {
		fleettest.Msg
		result string // what the hub must make of it: ingested{result} or rejected{reason}
	}{
		{fleettest.MsgOf(ev, time.Time{}), "applied"},
		{fleettest.MsgOf(ev, time.Time{}), "duplicate"},
		{fleettest.MsgOf(fleettest.AgentCreated("acme", "a-1", "gpt-5-mini", t0), time.Time{}), "applied"},
		{fleettest.E{Type: "custom.thing", Time: t0, ProjectID: "acme"}.Msg(t0), "unknown"},
		{fleettest.Msg{Subject: "fleet.acme.llm.call", Body: []byte(`{"id":`)}, "bad_json"},
		{fleettest.Msg{Subject: "fleet.globex.worker.joined", Body: fleettest.MsgOf(fleettest.WorkerJoined("acme", "w-2", t0), time.Time{}).Body}, "subject_mismatch"},
		// Last, an event that changes acme's view: its diff, once
		// received, means every frame before it was sent.
		{fleettest.MsgOf(fleettest.AgentCreated("acme", "a-2", "gpt-5", t0), time.Time{}), "applied"},
	}
	var last uint64
	for _, m := range msgs {
		seq, err := env.Publisher.PublishRaw(ctx, m.Subject, m.Body, "")
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	streamtest.WaitSeq(t, env.Hub, last)
	sub.waitSeq(t, last)
	// The hub counts a frame right after handing it over; a request it
	// answers after that flush orders the count before the collection.
	if _, _, err := env.Hub.View(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	got := hubMetrics(t, reader)

	frames := sub.received()
	var bytes, snapshots int64
	for _, f := range frames {
		var h struct{ Op, Scope string }
		if err := json.Unmarshal(f, &h); err != nil || h.Scope != "acme" {
			t.Fatalf("frame %s: %v; want a frame of scope acme", f, err)
		}
		bytes += int64(len(f))
		if h.Op == protocol.OpSnapshot {
			snapshots++
		}
	}
	if snapshots != 1 || len(frames) < 2 {
		t.Fatalf("%d frames, %d of them snapshots; want the subscription's snapshot and diffs", len(frames), snapshots)
	}
	want := map[string]int64{
		"sagewai.hub.subscribers":                       1,
		"sagewai.hub.scopes":                            1,
		"sagewai.hub.ready":                             1,
		"sagewai.hub.pending_events":                    0,
		"sagewai.hub.events.ingested{result=applied}":   0,
		"sagewai.hub.events.ingested{result=duplicate}": 0,
		"sagewai.hub.events.ingested{result=unknown}":   0,
		"sagewai.hub.events.ingested{result=rejected}":  0,
		"sagewai.hub.frames.sent":                       int64(len(frames)),
		"sagewai.hub.sent":                              bytes,
		"sagewai.hub.snapshots":                         snapshots,
		"sagewai.hub.resyncs":                           0,
		"sagewai.hub.slow_closes":                       0,
		"sagewai.hub.resumes":                           0,
		"sagewai.hub.checkpoints{result=ok}":            0,
		"sagewai.hub.checkpoints{result=error}":         0,
		"sagewai.nats.stream.messages{stream=FLEET}":    int64(len(msgs)),
		"sagewai.nats.stream.messages{stream=AUDIT}":    0,
		"sagewai.nats.connected":                        1,
		"sagewai.nats.reconnects":                       0,
	}
	for _, r := range slices.Concat(fleet.Reasons, fleet.LimitReasons) {
		want["sagewai.hub.events.rejected{reason="+string(r)+"}"] = 0
	}
	// What the fold holds: acme, its worker, its two agents, and the ids
	// of the four events folded (three applied, one of an unknown type);
	// and its bounds, the defaults.
	d := fleet.DefaultLimits
	for kind, n := range map[string]int64{"projects": 1, "announced_projects": 0, "agents": 2, "missions": 0, "workers": 1,
		"budgets": 0, "open_runs": 0, "finished_missions": 0, "event_ids": 4} {
		want["sagewai.hub.fold.entities{kind="+kind+"}"] = n
	}
	for kind, n := range map[string][2]int{"agents": {2, d.Agents}, "missions": {0, d.Missions}, "workers": {1, d.Workers},
		"budgets": {0, d.Budgets}, "open_runs": {0, d.OpenRuns}, "finished_missions": {0, d.FinishedMissions}} {
		want["sagewai.hub.fold.largest_project{kind="+kind+"}"] = int64(n[0])
		want["sagewai.hub.fold.limit{kind="+kind+"}"] = int64(n[1])
	}
	want["sagewai.hub.fold.limit{kind=projects}"] = int64(d.Projects)
	want["sagewai.hub.fold.limit{kind=announced_projects}"] = int64(d.AnnouncedProjects)
	for _, m := range msgs {
		switch m.result {
		case "applied", "duplicate", "unknown":
			want["sagewai.hub.events.ingested{result="+m.result+"}"]++
		default:
			want["sagewai.hub.events.ingested{result=rejected}"]++
			want["sagewai.hub.events.rejected{reason="+m.result+"}"]++
		}
	}
	for k := range got {
		switch k {
		case "sagewai.nats.stream.size{stream=FLEET}", "sagewai.nats.stream.size{stream=AUDIT}",
			"sagewai.nats.messages{direction=in}", "sagewai.nats.messages{direction=out}",
			"sagewai.nats.transferred{direction=in}", "sagewai.nats.transferred{direction=out}":
			if k != "sagewai.nats.stream.size{stream=AUDIT}" && got[k] <= 0 {
				t.Errorf("%s = %d, want > 0", k, got[k])
			}
			delete(got, k)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hub metrics (-want +got):\n%s", diff)
	}
}
