package telemetry_test

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/telemetry"
	"github.com/sagewai/observatory/telemetry/otlptest"
)

// replicaTel is one replica's telemetry folding the stream on its own
// state, as each serve replica does.
type replicaTel struct {
	tel *telemetry.Telemetry
	st  *fleet.State
}

func newReplicaTel(t *testing.T, recv *otlptest.Receiver, shared bool) *replicaTel {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL, "OTEL_BSP_SCHEDULE_DELAY": "20", "OTEL_BLRP_SCHEDULE_DELAY": "20"}),
		telemetry.Options{LogOutput: &syncBuffer{}, SharedExport: shared})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return &replicaTel{tel: tel, st: fleet.NewState(nil)}
}

// fold folds events seq from..to-1 of evs (seq = index+1) and observes them.
func (r *replicaTel) fold(evs []fleet.Event, from, to int) {
	for i := from; i < to; i++ {
		res := r.st.Apply(uint64(i+1), evs[i].Time, evs[i])
		r.tel.ObserveFleet(evs[i], res, r.st)
	}
}

func (r *replicaTel) flush(t *testing.T) {
	t.Helper()
	if err := r.tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// spanIDs and recordIDs are what a receiver got, as sorted keys (a
// duplicate appears twice).
func spanIDs(r *otlptest.Receiver) []string {
	var out []string
	for _, s := range r.Spans() {
		out = append(out, s.TraceID+"/"+s.SpanID)
	}
	sort.Strings(out)
	return out
}

func recordIDs(r *otlptest.Receiver) []string {
	var out []string
	for _, l := range r.Logs() {
		id, _ := l.Attrs["event_id"].(string)
		out = append(out, l.EventName+"/"+id)
	}
	sort.Strings(out)
	return out
}

func handoffEvents(t *testing.T) []fleet.Event {
	t.Helper()
	var evs []fleet.Event
	for _, m := range fleettest.Generate(rand.New(rand.NewPCG(11, 3)), 1200, fleettest.Options{}) {
		if ev, err := fleet.DecodeEvent(m.Subject, m.Body); err == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// TestHandoffExportsEverythingOnce: two replicas fold one stream with a
// shared export; A leads, B follows and hears A's marks; A stops and
// hands over; B folds on, holding what it makes, then leads from A's
// marks to the end. Their receiver gets
// exactly the spans and business log records one replica exporting alone
// sends: none twice, none missing. While B follows, its /metrics has no
// domain family (summed over both, a counter is the fleet's figure); when
// it leads, its cost counter is the whole stream's, like the lone
// replica's.
func TestHandoffExportsEverythingOnce(t *testing.T) {
	evs := handoffEvents(t)
	alone := otlptest.NewReceiver(t)
	ref := newReplicaTel(t, alone, false)
	ref.fold(evs, 0, len(evs))
	ref.flush(t)
	wantSpans, wantLogs := spanIDs(alone), recordIDs(alone)
	if len(wantSpans) < 100 || len(wantLogs) < 50 {
		t.Fatalf("the lone replica exported %d spans and %d records; the stream should make hundreds", len(wantSpans), len(wantLogs))
	}

	recv := otlptest.NewReceiver(t)
	a, b := newReplicaTel(t, recv, true), newReplicaTel(t, recv, true)
	if a.tel.Handoff().Leading() || b.tel.Handoff().Leading() {
		t.Fatal("a replica with a shared export leads before any lease says so")
	}
	a.tel.Handoff().Lead(telemetry.Marks{})
	b.tel.Handoff().Follow(telemetry.Marks{})

	half, most := len(evs)/2, 3*len(evs)/4
	a.fold(evs, 0, half)
	b.fold(evs, 0, half)
	a.flush(t)
	b.tel.Handoff().Follow(a.tel.Handoff().Marks())
	if tr, lg := b.tel.Handoff().Held(); tr != 0 || lg != 0 {
		t.Errorf("after the leader's marks covered everything folded, the follower still holds %d spans and %d records", tr, lg)
	}
	if fams := scrapeHandler(t, b.tel.MetricsHandler()); fams["sagewai_llm_cost_usd_total"] != nil || fams["sagewai_fleet_events_total"] != nil {
		t.Error("a following replica serves the domain metrics: summed over replicas they would count the fleet twice")
	}
	if fams := scrapeHandler(t, b.tel.MetricsHandler()); fams["sagewai_otel_spans_exported_total"] == nil {
		t.Error("a following replica lost its own pipeline metrics")
	}

	a.fold(evs, half, most)
	b.fold(evs, half, most)
	a.flush(t)
	last := a.tel.Handoff().Marks()
	b.tel.Handoff().Follow(last)
	// A stops. B folds on, holding what it makes, until it takes over
	// from the last marks it heard: then it sends what it holds.
	if err := a.tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	gap := (most + len(evs)) / 2
	b.fold(evs, most, gap)
	if tr, lg := b.tel.Handoff().Held(); tr == 0 || lg == 0 {
		t.Fatalf("while nobody exports, the follower holds %d spans and %d records; want what it folded", tr, lg)
	}
	b.tel.Handoff().Lead(last)
	b.fold(evs, gap, len(evs))
	b.flush(t)

	if got := spanIDs(recv); !equalStrings(got, wantSpans) {
		t.Errorf("across the handover the receiver got %d spans (%d distinct); one replica alone sends %d", len(got), distinct(got), len(wantSpans))
	}
	if got := recordIDs(recv); !equalStrings(got, wantLogs) {
		t.Errorf("across the handover the receiver got %d business records (%d distinct); one replica alone sends %d", len(got), distinct(got), len(wantLogs))
	}
	refCost := sum(scrapeHandler(t, ref.tel.MetricsHandler()), "sagewai_llm_cost_usd_total", nil)
	if got := sum(scrapeHandler(t, b.tel.MetricsHandler()), "sagewai_llm_cost_usd_total", nil); micros(got) != micros(refCost) || refCost == 0 {
		t.Errorf("the new exporter's cost counter is $%.6f; the fleet's spend is $%.6f", got, refCost)
	}
}

// TestHandoffFollowerDropsWhatTheLeaderExported: a follower that lags
// the leader drops the items of events the leader's marks already cover
// as it folds them, and sends none of them when it takes over at those
// marks.
func TestHandoffFollowerDropsWhatTheLeaderExported(t *testing.T) {
	evs := handoffEvents(t)
	recv := otlptest.NewReceiver(t)
	b := newReplicaTel(t, recv, true)
	b.tel.Handoff().Follow(telemetry.Marks{Traces: uint64(len(evs)), Logs: uint64(len(evs))})
	b.fold(evs, 0, len(evs))
	if tr, lg := b.tel.Handoff().Held(); tr != 0 || lg != 0 {
		t.Errorf("a follower behind the leader's marks holds %d spans and %d records", tr, lg)
	}
	b.tel.Handoff().Lead(telemetry.Marks{Traces: uint64(len(evs)), Logs: uint64(len(evs))})
	b.flush(t)
	if n, m := len(recv.Spans()), len(recv.Logs()); n != 0 || m != 0 {
		t.Errorf("taking over at marks past every event sent %d spans and %d records again", n, m)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func distinct(s []string) int {
	n := 0
	for i := range s {
		if i == 0 || s[i] != s[i-1] {
			n++
		}
	}
	return n
}

// TestCountersContinueFromACheckpoint: a replica restarted from a
// checkpoint continues the domain counters from the checkpoint's figures,
// so when it comes to export it reports the fleet's whole figures, equal
// to those of a replica that folded the whole stream.
func TestCountersContinueFromACheckpoint(t *testing.T) {
	evs := handoffEvents(t)
	recv := otlptest.NewReceiver(t)
	whole := newReplicaTel(t, recv, false)
	whole.fold(evs, 0, len(evs))

	before := newReplicaTel(t, recv, false)
	half := len(evs) / 2
	before.fold(evs, 0, half)
	cp, err := before.tel.SaveCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	after := newReplicaTel(t, recv, false)
	after.st = before.st // the fold's own checkpoint, restored
	if err := after.tel.LoadCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	after.fold(evs, half, len(evs))

	want, got := scrapeHandler(t, whole.tel.MetricsHandler()), scrapeHandler(t, after.tel.MetricsHandler())
	for _, name := range []string{"sagewai_llm_cost_usd_total", "sagewai_fleet_events_total", "sagewai_llm_tokens_total",
		"sagewai_llm_calls_total", "sagewai_agent_runs_total", "sagewai_missions_total", "sagewai_tool_calls_total"} {
		w, g := sum(want, name, nil), sum(got, name, nil)
		if w == 0 {
			t.Errorf("%s is 0 for the whole stream: the check proves nothing", name)
		}
		if micros(w) != micros(g) {
			t.Errorf("%s after a restart from a checkpoint: %v, a replica that folded everything says %v", name, g, w)
		}
	}
	if err := after.tel.LoadCheckpoint([]byte("{not json")); err == nil {
		t.Error("a torn checkpoint part was loaded without an error")
	}
}
