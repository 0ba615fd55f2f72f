package vmstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/vmstack"
)

// collectorService is the service name of the observatory under
// TestPipelineCollector, so that its spans are told apart in Jaeger.
const collectorService = "observatory-collector-e2e"

// rawService is the service name of the raw OTLP client the test points at
// the Collector.
const rawService = "vmstack-raw-otlp"

// TestPipelineCollector runs the trace and log path of the compose stack
// for real, on loopback: `observatory demo` exports its spans and log
// records over OTLP/HTTP to an OpenTelemetry Collector built from
// dashboards/otel-collector/builder.yaml and running the shipped
// dashboards/otel-collector/config.yaml itself (its endpoints from the
// environment), which sends the log records to VictoriaLogs and the spans
// to Jaeger v2 (in-memory storage, the store the compose file runs).
//
// It checks that the demo's log records arrive in VictoriaLogs through the
// Collector, with their project; that a mission of the demo's workload is
// in Jaeger as one trace, fetched by its trace id through the query API
// (/api/v3/traces/{id}): the mission span, its runs (invoke_agent) under
// it, and chat and execute_tool spans under the runs, every span with
// sagewai.project_id and the GenAI attributes of its operation; and that
// health probes never reach either store: the server's own (it does not
// export them) and, from a raw OTLP client that does send them, probe
// spans and log records in every form the filter names, which the
// Collector's filter processor drops (its own counters say so) while the
// request's ordinary span and record pass.
func TestPipelineCollector(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real OpenTelemetry Collector, Jaeger, VictoriaLogs and observatory for about a minute")
	}
	began := time.Now()
	bin := observatorytest.Build(t)
	built := time.Since(began)

	vl := vmstack.StartLogs(t, vmstack.LogsConfig{})
	jaeger := vmstack.StartJaeger(t)
	col := vmstack.StartCollector(t, vmstack.CollectorConfig{LogsEndpoint: vl.OTLPLogsURL(), TracesEndpoint: jaeger.OTLPGRPC})
	obs := &observatory{observatorytest.Start(t, bin, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.OTLPURL,
		"OTEL_SERVICE_NAME=" + collectorService,
	}, "demo", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:-1", "--cross-tenant-every", "0")}
	up := time.Since(began)
	t.Logf("stack up %.1fs after the start (go build %.1fs): observatory %s, Collector %s, Jaeger %s, VictoriaLogs %s",
		up.Seconds(), built.Seconds(), obs.Base, col.OTLPURL, jaeger.URL, vl.URL)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("observatory stderr (tail):\n%s", observatorytest.Tail(obs.Stderr.String(), 20))
			t.Logf("Collector log (tail):\n%s", observatorytest.Tail(col.Log(), 30))
			t.Logf("Jaeger log (tail):\n%s", observatorytest.Tail(jaeger.Log(), 20))
		}
	})
	ctx := context.Background()

	// Health probes at the server, which exports neither a span nor a log
	// record of them.
	const probes = 20
	for range probes {
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, err := obs.status(ctx, p); err != nil || code != http.StatusOK {
				t.Fatalf("GET %s: %d %v", p, code, err)
			}
		}
	}
	// An admin login, a business event of project global, after them.
	obs.login(t, "admin", "admin")

	t.Run("logs arrive in VictoriaLogs through the Collector", func(t *testing.T) {
		var runs []map[string]string
		await(t, 2*time.Minute, "the demo's agent.run.completed records in VictoriaLogs", func() (bool, string) {
			es, err := vl.Query(ctx, `_time:10m event:="agent.run.completed"`, 5)
			runs = es
			return err == nil && len(es) > 0, fmt.Sprint(err)
		})
		for _, r := range runs {
			if r["sagewai.project_id"] == "" || r["mission_id"] == "" {
				t.Errorf("agent.run.completed record without its project or mission: %v", r)
			}
		}
		await(t, time.Minute, "the test's login (auth.login.succeeded) in VictoriaLogs", func() (bool, string) {
			es, err := vl.Query(ctx, `_time:10m event:="auth.login.succeeded" sagewai.project_id:="global"`, 1)
			return err == nil && len(es) > 0, fmt.Sprint(err)
		})
		probeQuery := `_time:10m (route:in("/healthz", "/readyz") or "/healthz" or "/readyz")`
		if lines, err := vl.Query(ctx, probeQuery, 10); err != nil || len(lines) != 0 {
			t.Errorf("health-probe lines in VictoriaLogs (the test sent %d probes to each of /healthz and /readyz): %v %v", probes, lines, err)
		}
		t.Logf("log records in VictoriaLogs after %.1fs; one: %v", time.Since(began).Seconds(), runs[0])
	})

	t.Run("a mission's trace is in Jaeger", func(t *testing.T) {
		var trace []vmstack.Span
		var searched int
		await(t, 3*time.Minute, "a mission trace with runs, chat and execute_tool spans in Jaeger", func() (bool, string) {
			missions, err := jaeger.FindTraces(ctx, collectorService, "mission", began.Add(-time.Minute), time.Now().Add(time.Minute), 50)
			if err != nil {
				return false, err.Error()
			}
			ids := map[string]bool{}
			for _, s := range missions {
				ids[s.TraceID] = true
			}
			searched = len(ids)
			var last string
			for _, id := range slices.Sorted(maps.Keys(ids)) {
				// Fetched by its trace id, as Grafana's trace view does.
				spans, err := jaeger.Trace(ctx, id)
				if err != nil {
					return false, err.Error()
				}
				ok, why := wholeMission(spans)
				if ok {
					trace = spans
					return true, ""
				}
				last = fmt.Sprintf("trace %s: %s", id, why)
			}
			return false, fmt.Sprintf("%d mission traces found; %s", len(ids), last)
		})
		checkMissionTrace(t, trace)
		t.Logf("mission trace %s fetched by id (%d spans, %s) after %.1fs; %d mission traces searched",
			trace[0].TraceID, len(trace), spanCounts(trace), time.Since(began).Seconds(), searched)
	})

	t.Run("probes are dropped at the source and at the Collector", func(t *testing.T) {
		// The server's own: it serves requests other than probes as
		// spans, and none of the probes.
		ops, err := jaeger.Operations(ctx, collectorService)
		if err != nil {
			t.Fatal(err)
		}
		served := 0
		for _, op := range ops {
			if strings.Contains(op, "/healthz") || strings.Contains(op, "/readyz") {
				t.Errorf("Jaeger has spans of the server's health probes: operation %q", op)
			}
			if strings.HasPrefix(op, "GET /api/") || strings.HasPrefix(op, "POST /api/") {
				served++
			}
		}
		if served == 0 {
			t.Errorf("Jaeger has no server span of observatory's API, so the absence of probes proves nothing: %v", ops)
		}

		// A raw OTLP client's, which the Collector alone can drop.
		marker := "vmstack-filter-" + strconv.FormatInt(time.Now().UnixNano(), 10)
		spans, records := rawProbes(marker)
		for path, body := range map[string]any{"/v1/traces": spans, "/v1/logs": records} {
			if err := postOTLP(ctx, col.OTLPURL+path, body); err != nil {
				t.Fatal(err)
			}
		}
		var gotOps []string
		await(t, time.Minute, "the raw client's ordinary span in Jaeger", func() (bool, string) {
			gotOps, err = jaeger.Operations(ctx, rawService)
			return err == nil && slices.Contains(gotOps, rawControl), fmt.Sprint(gotOps, err)
		})
		if !slices.Equal(gotOps, []string{rawControl}) {
			t.Errorf("Jaeger has the raw client's spans %q, want only %q: the Collector passed probe spans", gotOps, rawControl)
		}
		var lines []map[string]string
		await(t, time.Minute, "the raw client's ordinary log record in VictoriaLogs", func() (bool, string) {
			lines, err = vl.Query(ctx, fmt.Sprintf(`_time:10m %q`, marker), 20)
			for _, l := range lines {
				if l["route"] == "/api/v1/fleet" {
					return true, ""
				}
			}
			return false, fmt.Sprint(lines, err)
		})
		if len(lines) != 1 {
			t.Errorf("VictoriaLogs has %d of the raw client's records, want only the ordinary one: %v", len(lines), lines)
		}
		// The filter processor counted what it dropped (the raw client's
		// probes at least: the server sends none).
		for name, want := range map[string]int{"otelcol_processor_filter_spans_filtered": rawProbeSpans, "otelcol_processor_filter_logs_filtered": rawProbeRecords} {
			got, series, err := col.Metric(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if series == 0 || got < float64(want) {
				t.Errorf("the Collector's %s is %v (%d series), want at least the raw client's %d probes", name, got, series, want)
			}
			t.Logf("Collector: %s = %v", name, got)
		}
	})
	// Nothing went wrong on the way: no export the Collector gave up on,
	// no record it could not convert.
	for _, l := range strings.Split(col.Log(), "\n") {
		if strings.Contains(l, "\terror\t") || strings.Contains(l, "\twarn\t") {
			t.Errorf("the Collector logged: %s", l)
		}
	}
	t.Logf("total %.1fs: go build %.1fs, stack up at %.1fs", time.Since(began).Seconds(), built.Seconds(), up.Seconds())
}

// wholeMission says whether spans are a whole mission trace: one mission
// span, a run under it, and a chat and an execute_tool span under a run.
func wholeMission(spans []vmstack.Span) (bool, string) {
	n := map[string]int{}
	for _, s := range spans {
		n[spanOp(s)]++
	}
	ok := n["mission"] == 1 && n["invoke_agent"] > 0 && n["chat"] > 0 && n["execute_tool"] > 0
	return ok, fmt.Sprint(n)
}

// spanOp is a span's GenAI operation, or "mission" for the mission span.
func spanOp(s vmstack.Span) string {
	if op := s.Attrs["gen_ai.operation.name"]; op != "" {
		return op
	}
	return s.Name
}

func spanCounts(spans []vmstack.Span) string {
	n := map[string]int{}
	for _, s := range spans {
		n[spanOp(s)]++
	}
	var out []string
	for op, c := range n {
		out = append(out, fmt.Sprintf("%d %s", c, op))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// checkMissionTrace checks a mission trace: its shape (mission → run →
// chat and execute_tool) and every span's project and GenAI attributes.
func checkMissionTrace(t *testing.T, spans []vmstack.Span) {
	t.Helper()
	var mission vmstack.Span
	runs := map[string]vmstack.Span{}
	for _, s := range spans {
		switch spanOp(s) {
		case "mission":
			mission = s
		case "invoke_agent":
			runs[s.SpanID] = s
		}
	}
	project := mission.Attrs["sagewai.project_id"]
	if project == "" || project == "global" {
		t.Errorf("mission span %s: sagewai.project_id %q, want the mission's project", mission.SpanID, project)
	}
	if mission.ParentSpanID != "" || mission.Attrs["sagewai.mission.id"] == "" {
		t.Errorf("mission span: parent %q, sagewai.mission.id %q: want a root span naming its mission", mission.ParentSpanID, mission.Attrs["sagewai.mission.id"])
	}
	// The GenAI attributes each operation's spans carry (OpenTelemetry
	// GenAI semantic conventions), besides gen_ai.operation.name.
	want := map[string][]string{
		"mission":      {"sagewai.mission.id"},
		"invoke_agent": {"gen_ai.agent.id", "sagewai.run.id", "sagewai.mission.id"},
		"chat": {"gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
			"gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens", "sagewai.cost_usd", "sagewai.run.id"},
		"execute_tool": {"gen_ai.tool.name", "sagewai.run.id"},
	}
	for _, s := range spans {
		op := spanOp(s)
		if s.TraceID != mission.TraceID {
			t.Errorf("span %s (%s) of trace %s in the answer for trace %s", s.SpanID, s.Name, s.TraceID, mission.TraceID)
		}
		if got := s.Attrs["sagewai.project_id"]; got != project {
			t.Errorf("%s span %q: sagewai.project_id %q, want the mission's %q", op, s.Name, got, project)
		}
		if s.Resource["service.name"] != collectorService {
			t.Errorf("%s span %q: service.name %q, want %q", op, s.Name, s.Resource["service.name"], collectorService)
		}
		keys, known := want[op]
		if !known {
			t.Errorf("span %q of operation %q in a mission trace: want only mission, invoke_agent, chat and execute_tool spans", s.Name, op)
			continue
		}
		for _, k := range keys {
			if s.Attrs[k] == "" {
				t.Errorf("%s span %q lacks %s: %v", op, s.Name, k, s.Attrs)
			}
		}
		switch op {
		case "invoke_agent":
			if s.ParentSpanID != mission.SpanID || s.Attrs["sagewai.mission.id"] != mission.Attrs["sagewai.mission.id"] {
				t.Errorf("run span %q: parent %s, mission %q; want the mission span %s, mission %q", s.Name, s.ParentSpanID, s.Attrs["sagewai.mission.id"],
					mission.SpanID, mission.Attrs["sagewai.mission.id"])
			}
		case "chat", "execute_tool":
			r, ok := runs[s.ParentSpanID]
			if !ok {
				t.Errorf("%s span %q: parent %s is no run span of the trace", op, s.Name, s.ParentSpanID)
			} else if r.Attrs["sagewai.run.id"] != s.Attrs["sagewai.run.id"] {
				t.Errorf("%s span %q of run %s under the span of run %s", op, s.Name, s.Attrs["sagewai.run.id"], r.Attrs["sagewai.run.id"])
			}
			if op == "chat" && s.Kind != 3 {
				t.Errorf("chat span %q: kind %d, want client (3)", s.Name, s.Kind)
			}
		}
		if s.End.Before(s.Start) || s.Start.IsZero() {
			t.Errorf("%s span %q: from %s to %s", op, s.Name, s.Start, s.End)
		}
	}
}

// The raw client's spans and log records: probes in every form the
// Collector's filter names, and one ordinary request each.
const (
	rawControl      = "GET /api/v1/fleet"
	rawProbeSpans   = 4
	rawProbeRecords = 6
)

// rawProbes returns an OTLP/JSON traces request and logs request of
// rawService: rawProbeSpans probe spans and rawProbeRecords probe log
// records (each attribute the filter matches, with each probe path), and
// one ordinary span and record, all bodies and names carrying marker.
func rawProbes(marker string) (traces, logs map[string]any) {
	str := func(k, v string) map[string]any {
		return map[string]any{"key": k, "value": map[string]any{"stringValue": v}}
	}
	resource := map[string]any{"attributes": []any{str("service.name", rawService)}}
	now := time.Now()
	ts := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixNano(), 10) }
	var spans []any
	span := func(name string, attrs ...any) {
		spans = append(spans, map[string]any{"traceId": randomHex(16), "spanId": randomHex(8), "name": name, "kind": 2,
			"startTimeUnixNano": ts(-time.Millisecond), "endTimeUnixNano": ts(0), "attributes": append(attrs, str("marker", marker))})
	}
	span("GET /healthz (http.route)", str("http.route", "/healthz"))
	span("GET /readyz (http.route)", str("http.route", "/readyz"))
	span("GET /healthz (url.path)", str("url.path", "/healthz"))
	span("GET /readyz (url.path)", str("url.path", "/readyz"))
	span(rawControl, str("http.route", "/api/v1/fleet"), str("url.path", "/api/v1/fleet"))
	var records []any
	record := func(key, path string) {
		records = append(records, map[string]any{"timeUnixNano": ts(0), "severityNumber": 9, "severityText": "INFO",
			"body": map[string]any{"stringValue": fmt.Sprintf("%s %s=%s", marker, key, path)}, "attributes": []any{str(key, path)}})
	}
	for _, key := range []string{"route", "http.route", "url.path"} {
		record(key, "/healthz")
		record(key, "/readyz")
	}
	record("route", "/api/v1/fleet")
	scope := map[string]any{"name": "vmstack"}
	traces = map[string]any{"resourceSpans": []any{map[string]any{"resource": resource, "scopeSpans": []any{map[string]any{"scope": scope, "spans": spans}}}}}
	logs = map[string]any{"resourceLogs": []any{map[string]any{"resource": resource, "scopeLogs": []any{map[string]any{"scope": scope, "logRecords": records}}}}}
	return traces, logs
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// postOTLP sends an OTLP/JSON request, which must be accepted.
func postOTLP(ctx context.Context, u string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", u, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", u, resp.Status, answer)
	}
	return nil
}
