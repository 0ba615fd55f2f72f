package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/baggage"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/telemetry"
	"github.com/sagewai/observatory/telemetry/otlptest"
)

func TestSetupReadsTheOTELVariables(t *testing.T) {
	for _, c := range []struct {
		name         string
		env          map[string]string
		traces, logs string
		err          string
	}{
		{name: "nothing set: nothing exported", env: nil},
		{name: "base endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			traces: "http://collector:4318/v1/traces", logs: "http://collector:4318/v1/logs"},
		{name: "base endpoint with a slash", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c.example/otlp/"},
			traces: "https://c.example/otlp/v1/traces", logs: "https://c.example/otlp/v1/logs"},
		{name: "per-signal endpoints are used as they are", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":      "http://collector:4318",
			"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://victorialogs:9428/insert/opentelemetry/v1/logs"},
			traces: "http://collector:4318/v1/traces", logs: "http://victorialogs:9428/insert/opentelemetry/v1/logs"},
		{name: "traces only", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/v1/traces"},
			traces: "http://tempo:4318/v1/traces"},
		{name: "traces exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
			logs: "http://c:4318/v1/logs"},
		{name: "logs exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_LOGS_EXPORTER": "none"},
			traces: "http://c:4318/v1/traces"},
		{name: "sdk disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}},
		{name: "otlp asked for without an endpoint: the default", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			traces: "http://localhost:4318/v1/traces"},
		{name: "http/protobuf", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
			traces: "http://c:4318/v1/traces", logs: "http://c:4318/v1/logs"},
		{name: "another exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: "http/protobuf"},
		{name: "not a URL", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, err: "endpoint"},
		{name: "bad headers", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, err: "OTEL_EXPORTER_OTLP_HEADERS"},
		{name: "bad queue size", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, err: "OTEL_BSP_MAX_QUEUE_SIZE"},
		{name: "bad timeout", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TIMEOUT": "-1"}, err: "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{name: "bad sampler", env: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, err: "OTEL_TRACES_SAMPLER"},
		{name: "bad resource attributes", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "a"}, err: "OTEL_RESOURCE_ATTRIBUTES"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tel, err := telemetry.Setup(context.Background(), envOf(c.env), telemetry.Options{LogOutput: &bytes.Buffer{}})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Setup error %v, want one about %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tel.Shutdown(context.Background())
			if diff := cmp.Diff([2]string{c.traces, c.logs}, [2]string{tel.TracesURL(), tel.LogsURL()}); diff != "" {
				t.Errorf("traces and logs URLs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServiceResource(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), envOf(map[string]string{
		"OTEL_SERVICE_NAME": "obs-eu", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=sre%20core"}),
		telemetry.Options{LogOutput: &bytes.Buffer{}, ServiceVersion: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	fams := scrapeHandler(t, tel.MetricsHandler())
	got := labels(fams["target_info"].GetMetric()[0])
	for k, want := range map[string]string{"service_name": "obs-eu", "service_version": "1.2.3",
		"deployment_environment": "prod", "team": "sre core", "telemetry_sdk_language": "go"} {
		if got[k] != want {
			t.Errorf("target_info %s = %q, want %q", k, got[k], want)
		}
	}
}

// TestExportNeverBlocks: a receiver that never answers stalls nothing but
// its own export. Ending spans never waits for it: what does not fit in
// the queue is dropped and counted. Shutdown returns when its context
// ends, having cut the stuck export. The exports' own timeouts are ten
// minutes, so anything that waited for the receiver would hang, and the
// hang bounds fail the test.
func TestExportNeverBlocks(t *testing.T) {
	const hangBound = time.Minute
	release := make(chan struct{})
	arrived := make(chan struct{}, 1) // a span export reached the receiver
	cut := make(chan struct{}, 1)     // the client gave a span export up
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the request first: only then does the server notice the
		// client going away, which cancels r's context.
		_, _ = io.Copy(io.Discard, r.Body)
		spans := r.URL.Path == "/v1/traces"
		if spans {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
			if spans {
				select {
				case cut <- struct{}{}:
				default:
				}
			}
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	tel, err := telemetry.Setup(context.Background(), envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": hang.URL, "OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
		"OTEL_BSP_SCHEDULE_DELAY": "10", "OTEL_EXPORTER_OTLP_TIMEOUT": "600000", "OTEL_BSP_EXPORT_TIMEOUT": "600000"}),
		telemetry.Options{LogOutput: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	const spans = 5000
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		tracer := tel.TracerProvider().Tracer("test")
		for range spans {
			_, s := tracer.Start(context.Background(), "work")
			s.End()
		}
		tel.Logger().Info("still going", "event", "test.done")
	}()
	for what, ch := range map[string]chan struct{}{"ending 5000 spans and logging a line": ended, "the first span export to reach the receiver": arrived} {
		select {
		case <-ch:
		case <-time.After(hangBound):
			t.Fatalf("%s with a stuck receiver did not happen within %s", what, hangBound)
		}
	}
	// Every span is queued (100 at most), in the stuck export (one batch,
	// 10 at most) or dropped and counted: none was waited for, and the
	// receiver got nothing but that one export.
	fams := scrapeHandler(t, tel.MetricsHandler())
	dropped := sum(fams, "sagewai_otel_spans_dropped_total", map[string]string{"reason": "queue_full"})
	queued := sum(fams, "sagewai_otel_spans_queued", nil)
	if inExport := spans - dropped - queued; dropped < spans-100-10 || queued > 100 || inExport < 1 || inExport > 10 {
		t.Errorf("spans dropped for a full queue %v, queued %v, so %v in the stuck export: want at least %d dropped, at most 100 queued and 1 to 10 in the export",
			dropped, queued, inExport, spans-100-10)
	}
	for _, name := range []string{"sagewai_otel_spans_exported_total", "sagewai_otel_export_failures_total"} {
		if got := sum(fams, name, nil); got != 0 {
			t.Errorf("%s = %v while the only export is still stuck, want 0", name, got)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- tel.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown with a stuck receiver: %v, want its context's deadline", err)
		}
	case <-time.After(hangBound):
		t.Fatalf("Shutdown did not return within %s; its context ended after 300ms", hangBound)
	}
	select {
	case <-cut:
	case <-time.After(hangBound):
		t.Fatalf("the stuck span export was not cut within %s of Shutdown", hangBound)
	}
}

// TestExportFailuresAreCounted: every failed export is counted, by
// signal, with the items it dropped; the log says so once per signal and
// 30 s (on the injected clock), never over OTLP.
func TestExportFailuresAreCounted(t *testing.T) {
	recv := otlptest.NewReceiver(t)
	recv.Fail(http.StatusBadRequest)
	logs := &syncBuffer{}
	clock := fleettest.NewClock()
	// Only ForceFlush exports, so that each round makes one export call
	// per signal.
	tel, err := telemetry.Setup(context.Background(), envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL, "OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BLRP_SCHEDULE_DELAY": "600000"}),
		telemetry.Options{LogOutput: logs, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	failLines := func() int { return strings.Count(logs.String(), `"event":"otel.export.failed"`) }
	round := func() {
		t.Helper()
		_, s := tel.TracerProvider().Tracer("test").Start(context.Background(), "work")
		s.End()
		tel.Logger().Info("a record", "event", "test.record")
		if err := tel.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Three failures per signal: two within 30 s, a third 30 s later.
	round()
	clock.Advance(29 * time.Second)
	round()
	if n := failLines(); n != 2 {
		t.Errorf("%d export failure lines after two failures per signal 29 s apart, want 2 (one per signal):\n%s", n, logs.String())
	}
	clock.Advance(time.Second)
	round()
	if n := failLines(); n != 4 {
		t.Errorf("%d export failure lines after a third failure per signal 30 s after the first, want 4:\n%s", n, logs.String())
	}
	fams := scrapeHandler(t, tel.MetricsHandler())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sagewai_otel_spans_dropped_total", map[string]string{"reason": "export_failed"}, 3},
		{"sagewai_otel_spans_exported_total", nil, 0},
		{"sagewai_otel_log_records_dropped_total", map[string]string{"reason": "export_failed"}, 3},
		{"sagewai_otel_export_failures_total", map[string]string{"signal": "traces"}, 3},
		{"sagewai_otel_export_failures_total", map[string]string{"signal": "logs"}, 3},
	} {
		if got := sum(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	recv.Fail(0)
	tel.Logger().Info("recovered", "event", "test.recovered")
	if err := tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range recv.Logs() {
		if r.EventName == "otel.export.failed" {
			t.Error("an export failure was itself exported")
		}
	}
	if got := sum(scrapeHandler(t, tel.MetricsHandler()), "sagewai_otel_log_records_exported_total", nil); got != 1 {
		t.Errorf("log records exported after recovery: %v, want 1", got)
	}
}

func TestLogHandler(t *testing.T) {
	recv := otlptest.NewReceiver(t)
	out := &syncBuffer{}
	tel, err := telemetry.Setup(context.Background(), envOf(map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": recv.URL + "/v1/logs"}),
		telemetry.Options{LogOutput: out})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	log := tel.Logger()
	ctx, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "op")
	sc := span.SpanContext()
	span.End()
	member, _ := baggage.NewMemberRaw(telemetry.ProjectKey, "initech")
	bag, _ := baggage.New(member)

	log.InfoContext(ctx, "in a span", "event", "t.span")
	log.InfoContext(telemetry.ContextWithProject(context.Background(), "acme"), "for acme", "event", "t.ctx")
	log.InfoContext(baggage.ContextWithBaggage(context.Background(), bag), "for initech", "event", "t.baggage")
	log.Info("explicit", "event", "t.explicit", "sagewai.project_id", "globex", "trace_id", "given")
	log.With("sagewai.project_id", "umbrella").Info("with", "event", "t.with")
	log.WithGroup("req").Info("grouped", "event", "t.group", "n", 3)
	log.Debug("hidden", "event", "t.debug")
	log.Warn("plain", "event", "t.plain", "took", 1500*time.Millisecond)
	if err := tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}

	type line struct{ Event, Level, Project, TraceID, SpanID string }
	var got []line
	for _, raw := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		for _, k := range []string{`"sagewai.project_id"`, `"trace_id"`} {
			if n := strings.Count(raw, k); n > 1 {
				t.Errorf("%s appears %d times in %s", k, n, raw)
			}
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("line %q: %v", raw, err)
		}
		s := func(k string) string { v, _ := m[k].(string); return v }
		got = append(got, line{s("event"), s("level"), s("sagewai.project_id"), s("trace_id"), s("span_id")})
	}
	want := []line{
		{"t.span", "INFO", "global", sc.TraceID().String(), sc.SpanID().String()},
		{"t.ctx", "INFO", "acme", "", ""},
		{"t.baggage", "INFO", "initech", "", ""},
		{"t.explicit", "INFO", "globex", "given", ""},
		{"t.with", "INFO", "umbrella", "", ""},
		{"", "INFO", "", "", ""}, // after WithGroup, every attribute is in the group
		{"t.plain", "WARN", "global", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON lines (-want +got):\n%s", diff)
	}
	if !strings.Contains(out.String(), `"req":{"event":"t.group","n":3,"sagewai.project_id":"global"}`) {
		t.Errorf("group not kept: %s", out.String())
	}

	type record struct{ Event, Severity, Project, TraceID string }
	var recs []record
	attrs := map[string]map[string]any{}
	for _, r := range recv.Logs() {
		p, _ := r.Attrs["sagewai.project_id"].(string)
		recs = append(recs, record{r.EventName, r.Severity, p, r.TraceID})
		attrs[r.Body] = r.Attrs
	}
	wantRecs := []record{
		{"t.span", "INFO", "global", sc.TraceID().String()},
		{"t.ctx", "INFO", "acme", ""},
		{"t.baggage", "INFO", "initech", ""},
		{"t.explicit", "INFO", "globex", ""},
		{"t.with", "INFO", "umbrella", ""},
		{"", "INFO", "", ""},
		{"t.plain", "WARN", "global", ""},
	}
	if diff := cmp.Diff(wantRecs, recs); diff != "" {
		t.Errorf("OTLP records (-want +got):\n%s", diff)
	}
	if attrs["grouped"]["req.n"] != int64(3) || attrs["grouped"]["req.event"] != "t.group" || attrs["plain"]["took"] != 1.5 {
		t.Errorf("attributes not converted: %v %v", attrs["grouped"], attrs["plain"])
	}
}

// observe folds evs into st and hands each to the telemetry, as the hub does.
func observe(tel *telemetry.Telemetry, st *fleet.State, evs ...fleet.Event) {
	for _, ev := range evs {
		res := st.Apply(st.Seq()+1, time.Time{}, ev)
		tel.ObserveFleet(ev, res, st)
	}
}

func TestOpenRunsAreBounded(t *testing.T) {
	recv := otlptest.NewReceiver(t)
	tel, err := telemetry.Setup(context.Background(), envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": recv.URL + "/v1/traces"}),
		telemetry.Options{LogOutput: &bytes.Buffer{}, MaxOpenRuns: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	st := fleet.NewState(nil)
	t0 := fleettest.Epoch()
	for i := range 50 {
		observe(tel, st, fleettest.RunStarted("acme", "a1", runID(i), "", "claude-sonnet-4-5", t0.Add(time.Duration(i)*time.Second)))
	}
	if got := sum(scrapeHandler(t, tel.MetricsHandler()), "sagewai_trace_open_runs", nil); got != 10 {
		t.Errorf("open runs remembered: %v, want 10", got)
	}
	end := t0.Add(time.Minute)
	// Run 0 was forgotten: its span starts duration_ms (900) before its end.
	// Run 49 is remembered: its span starts when it started.
	observe(tel, st, fleettest.RunCompleted("acme", "a1", runID(0), end), fleettest.RunCompleted("acme", "a1", runID(49), end))
	if err := tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	for _, s := range recv.Spans() {
		got[s.Attrs["sagewai.run.id"].(string)] = s.Start
	}
	want := map[string]time.Time{runID(0): end.Add(-900 * time.Millisecond), runID(49): t0.Add(49 * time.Second)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("run span starts (-want +got):\n%s", diff)
	}
	if got := sum(scrapeHandler(t, tel.MetricsHandler()), "sagewai_trace_open_runs", nil); got != 9 {
		t.Errorf("open runs after one finished: %v, want 9", got)
	}
}

func runID(i int) string { return "r-" + string(rune('a'+i/26)) + string(rune('a'+i%26)) }

// TestReplayMakesNoSpans: while the hub replays the stream at start, the
// metrics count but no span is sent again, and the lag from an event's
// stored time to now (on the injected clock) is measured for live events
// only.
func TestReplayMakesNoSpans(t *testing.T) {
	recv := otlptest.NewReceiver(t)
	t0 := fleettest.Epoch()
	clock := fleettest.NewClockAt(t0.Add(5 * time.Second))
	tel, err := telemetry.Setup(context.Background(), envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL}),
		telemetry.Options{LogOutput: &bytes.Buffer{}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	live := false
	if err := tel.WatchFleet(telemetry.FleetSource{Live: func() bool { return live }}); err != nil {
		t.Fatal(err)
	}
	if err := tel.WatchFleet(telemetry.FleetSource{}); err == nil {
		t.Error("a second WatchFleet was accepted")
	}
	st := fleet.NewState(nil)
	observe(tel, st,
		fleettest.RunStarted("acme", "a1", "r1", "", "gpt-5-mini", t0),
		fleettest.LLMCall("acme", "a1", "r1", "gpt-5-mini", 1000, 200, 0, 0, t0.Add(time.Second)))
	live = true
	observe(tel, st,
		fleettest.LLMCall("acme", "a1", "r1", "gpt-5-mini", 10, 20, 0, 0, t0.Add(2*time.Second)),
		fleettest.RunCompleted("acme", "a1", "r1", t0.Add(3*time.Second)))
	if err := tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range recv.Spans() {
		names = append(names, s.Name)
		if s.Name == "invoke_agent a1" {
			// The run remembered its start and both calls, replayed or not.
			if s.Start != t0 || s.Attrs["sagewai.run.calls"] != int64(2) || s.Attrs["sagewai.run.tokens"] != int64(1230) {
				t.Errorf("run span: start %s, attrs %v", s.Start, s.Attrs)
			}
		}
	}
	if diff := cmp.Diff([]string{"chat gpt-5-mini", "invoke_agent a1"}, names); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	fams := scrapeHandler(t, tel.MetricsHandler())
	if got := sum(fams, "sagewai_llm_calls_total", map[string]string{"sagewai_project_id": "acme"}); got != 2 {
		t.Errorf("llm calls counted: %v, want 2 (replayed ones too)", got)
	}
	// The live events were stored (here: their own times) at t0+2s and
	// t0+3s, and folded at t0+5s: lags of 3 s and 2 s.
	var lag [2]float64
	for _, m := range fams["sagewai_hub_event_lag_seconds"].GetMetric() {
		lag[0] += float64(m.GetHistogram().GetSampleCount())
		lag[1] += m.GetHistogram().GetSampleSum()
	}
	if diff := cmp.Diff([2]float64{2, 5}, lag); diff != "" {
		t.Errorf("lag samples and their sum in seconds (-want +got), live events only:\n%s", diff)
	}
}

// TestCostIsExact: many calls whose costs are not binary fractions add up
// to the fold's spend to the micro-dollar (a float counter would drift).
func TestCostIsExact(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), envOf(nil), telemetry.Options{LogOutput: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	st := fleet.NewState(nil)
	t0 := fleettest.Epoch()
	for i := range 5000 {
		observe(tel, st, fleettest.LLMCall("acme", "a1", "", "claude-sonnet-4-5", int64(1+i%7), int64(3+i%11), int64(i%5), 0, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	var spend int64
	for _, m := range scrapeHandler(t, tel.MetricsHandler())["sagewai_llm_cost_usd_total"].GetMetric() {
		spend += micros(m.GetCounter().GetValue())
	}
	if want := int64(st.View("acme").Projects["acme"].SpendTotal); spend != want || want == 0 {
		t.Errorf("cost counter %d µ$, fold %d µ$", spend, want)
	}
}
