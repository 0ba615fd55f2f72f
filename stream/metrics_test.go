package stream_test

import (
	"context"
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

// countingSub is a subscriber that takes every frame.
type countingSub struct{ frames chan []byte }

func (s *countingSub) Send(f []byte) bool {
	select {
	case s.frames <- f:
	default:
	}
	return true
}
func (s *countingSub) Reset(f []byte)         { s.Send(f) }
func (s *countingSub) Close(code, msg string) {}

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

func TestHubMetrics(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{Tick: 20 * time.Millisecond})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	if err := env.Hub.RegisterMetrics(mp); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sub := &countingSub{frames: make(chan []byte, 64)}
	if err := env.Hub.Subscribe(ctx, sub, protocol.Subscribe{Op: protocol.OpSubscribe, Scope: "acme"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC()
	ev := fleettest.WorkerJoined("acme", "w-1", t0)
	msgs := []fleettest.Msg{
		fleettest.MsgOf(ev, time.Time{}),
		fleettest.MsgOf(ev, time.Time{}), // a duplicate the fold drops
		fleettest.MsgOf(fleettest.AgentCreated("acme", "a-1", "gpt-5-mini", t0), time.Time{}),
		fleettest.E{Type: "custom.thing", Time: t0, ProjectID: "acme"}.Msg(t0),
		{Subject: "fleet.acme.llm.call", Body: []byte(`{"id":`)},
		{Subject: "fleet.globex.worker.joined", Body: fleettest.MsgOf(fleettest.WorkerJoined("acme", "w-2", t0), time.Time{}).Body},
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
	streamtest.Eventually(t, 5*time.Second, func() bool { return env.Hub.Stats().Frames >= 2 }, "no diff sent")

	// Frames may still be on their way: read the metrics between two equal
	// readings of the stats.
	var got map[string]int64
	var st stream.Stats
	for range 50 {
		before := env.Hub.Stats()
		got = hubMetrics(t, reader)
		st = env.Hub.Stats()
		if before.Frames == st.Frames && before.Bytes == st.Bytes && before.Snapshots == st.Snapshots {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := map[string]int64{
		"sagewai.hub.subscribers":                       1,
		"sagewai.hub.scopes":                            1,
		"sagewai.hub.ready":                             1,
		"sagewai.hub.pending_events":                    0,
		"sagewai.hub.events.ingested{result=applied}":   2,
		"sagewai.hub.events.ingested{result=duplicate}": 1,
		"sagewai.hub.events.ingested{result=unknown}":   1,
		"sagewai.hub.events.ingested{result=rejected}":  2,
		"sagewai.hub.frames.sent":                       st.Frames,
		"sagewai.hub.sent":                              st.Bytes,
		"sagewai.hub.snapshots":                         st.Snapshots,
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
	for _, r := range fleet.Reasons {
		want["sagewai.hub.events.rejected{reason="+string(r)+"}"] = 0
	}
	want["sagewai.hub.events.rejected{reason=bad_json}"] = 1
	want["sagewai.hub.events.rejected{reason=subject_mismatch}"] = 1
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
	if st.Frames == 0 || st.Bytes == 0 {
		t.Errorf("no frames counted: %+v", st)
	}
}
