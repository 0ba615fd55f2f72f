package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/ingest"
	"github.com/sagewai/observatory/ingest/ingesttest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// t0 is when the test agents start.
var t0 = time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)

// env is an Ingester publishing to a real FLEET folded by a running hub.
type env struct {
	nats   *streamtest.Env
	in     *ingest.Ingester
	reader *sdkmetric.ManualReader
	logs   *bytes.Buffer
}

func newEnv(t *testing.T, cfg ingest.Config) *env {
	t.Helper()
	n := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond, Pricing: fleet.DefaultPricing()})
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	logs := &bytes.Buffer{}
	cfg.Publisher, cfg.MeterProvider, cfg.Logger = n.Publisher, mp, slog.New(slog.NewJSONHandler(logs, nil))
	in, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{nats: n, in: in, reader: r, logs: logs}
}

// acme is a project token's caller.
var acme = ingest.Caller{Project: "acme", Subject: "api:acme"}

func (e *env) export(t *testing.T, c ingest.Caller, ct, enc string, body []byte) ([]byte, string, ingest.Result, error) {
	t.Helper()
	return e.in.Export(context.Background(), c, ct, enc, bytes.NewReader(body))
}

// fleetMsgs is how many messages FLEET holds.
func (e *env) fleetMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := e.nats.JS.Stream(context.Background(), "FLEET")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// view folds up to seq and returns the scope's view.
func (e *env) view(t *testing.T, scope string, seq uint64) fleet.View {
	t.Helper()
	streamtest.WaitSeq(t, e.nats.Hub, seq)
	v, _, err := e.nats.Hub.View(context.Background(), scope)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// counts returns the counter's values by label set ("k=v,k=v").
func (e *env) counts(t *testing.T, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				var kv []string
				for _, a := range p.Attributes.ToSlice() {
					kv = append(kv, string(a.Key)+"="+a.Value.Emit())
				}
				out[strings.Join(kv, ",")] = p.Value
			}
		}
	}
	return out
}

func agent(n uint64, service, name string, calls ...ingesttest.Usage) ingesttest.Trace {
	return ingesttest.Trace{N: n, Service: service, Agent: name, Model: "gpt-5-mini", Tool: "search", Calls: calls, Start: t0}
}

// TestExportFoldsSpendOnce sends one agent's trace in each encoding and
// checks the project is charged exactly the pricing of its token counts,
// the agent is on the roster, the tool call is in the ticker, and that
// sending the same export again changes nothing.
func TestExportFoldsSpendOnce(t *testing.T) {
	for _, tc := range []struct {
		name, ct, enc string
		encode        func(*coltracepb.ExportTraceServiceRequest) []byte
		decodeResp    func([]byte) (*coltracepb.ExportTraceServiceResponse, error)
	}{
		{"protobuf", "application/x-protobuf", "", ingesttest.Protobuf, protoResp},
		{"protobuf gzip", "application/x-protobuf", "gzip", func(r *coltracepb.ExportTraceServiceRequest) []byte { return ingesttest.Gzip(ingesttest.Protobuf(r)) }, protoResp},
		{"json", "application/json", "", ingesttest.JSON, jsonResp},
		{"json gzip charset", "application/json; charset=utf-8", "gzip", func(r *coltracepb.ExportTraceServiceRequest) []byte { return ingesttest.Gzip(ingesttest.JSON(r)) }, jsonResp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, ingest.Config{})
			tr := agent(1, "support-bot", "triage", ingesttest.Usage{Input: 12_000, Output: 900, CacheRead: 8_000}, ingesttest.Usage{Input: 14_500, Output: 1_250})
			body := tc.encode(ingesttest.Request(tr))
			resp, typ, res, err := e.export(t, acme, tc.ct, tc.enc, body)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.SplitN(tc.ct, ";", 2)[0]; typ != want {
				t.Errorf("response type %q, want %q", typ, want)
			}
			r, err := tc.decodeResp(resp)
			if err != nil {
				t.Fatalf("response %q: %v", resp, err)
			}
			if r.GetPartialSuccess().GetRejectedSpans() != 0 {
				t.Errorf("partial_success %v on a clean export", r.GetPartialSuccess())
			}
			if res.Spans != 4 || res.Accepted != 4 || res.Refused != 0 {
				t.Errorf("result %+v, want 4 spans accepted", res)
			}
			want := tr.Cost(fleet.DefaultPricing())
			if want == 0 {
				t.Fatal("gpt-5-mini is unpriced: the test would prove nothing")
			}
			v := e.view(t, "acme", res.Seq)
			if got := v.Projects["acme"].SpendTotal; got != want {
				t.Errorf("acme spend %d µ$, want %d µ$ (pricing of the token counts)", got, want)
			}
			a, ok := v.Agents["triage"]
			if !ok {
				t.Fatalf("agent triage not on the roster: %v", keys(v.Agents))
			}
			if a.Spend != want {
				t.Errorf("agent spend %d, want %d", a.Spend, want)
			}
			if !tickerHas(v, fleet.TypeToolCall, "search") {
				t.Errorf("no tool.call search in the ticker: %+v", v.Ticker)
			}
			msgs := e.fleetMsgs(t)

			// The exporter retries: the same body again.
			if _, _, res2, err := e.export(t, acme, tc.ct, tc.enc, body); err != nil || res2.Accepted != 4 {
				t.Fatalf("re-sent export: %+v, %v", res2, err)
			}
			if got := e.fleetMsgs(t); got != msgs {
				t.Errorf("FLEET holds %d messages after the re-sent export, %d before", got, msgs)
			}
			v2 := e.view(t, "acme", res.Seq)
			if got := v2.Projects["acme"].SpendTotal; got != want {
				t.Errorf("acme spend %d µ$ after the re-sent export, want %d", got, want)
			}
			if got := e.counts(t, "sagewai.otlp.spans")["result=accepted"]; got != 8 {
				t.Errorf("accepted spans counted %d, want 8 (two exports of 4)", got)
			}
		})
	}
}

// TestJSONAsTheSpecWritesIt reads an OTLP JSON body written by hand as
// the specification shows it: hex ids, string and integer numbers, and
// an integer span kind.
func TestJSONAsTheSpecWritesIt(t *testing.T) {
	e := newEnv(t, ingest.Config{})
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"py-agent"}}]},
"scopeSpans":[{"scope":{"name":"opentelemetry.instrumentation.openai"},"spans":[{
 "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat gpt-5-mini","kind":3,
 "startTimeUnixNano":"1764255845000000000","endTimeUnixNano":"1764255846500000000",
 "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
  {"key":"gen_ai.system","value":{"stringValue":"openai"}},
  {"key":"gen_ai.response.model","value":{"stringValue":"gpt-5-mini"}},
  {"key":"gen_ai.usage.input_tokens","value":{"intValue":"2000"}},
  {"key":"gen_ai.usage.output_tokens","value":{"intValue":300}}]}]}]}]}`
	_, _, res, err := e.export(t, acme, "application/json", "", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	price, _ := fleet.DefaultPricing().Lookup("gpt-5-mini")
	want := price.Cost(fleet.LLMCall{InputTokens: 2000, OutputTokens: 300})
	v := e.view(t, "acme", res.Seq)
	if got := v.Projects["acme"].SpendTotal; got != want || want == 0 {
		t.Errorf("spend %d µ$, want %d", got, want)
	}
	if _, ok := v.Agents["py-agent"]; !ok {
		t.Errorf("the agent named by service.name is not on the roster: %v", keys(v.Agents))
	}
}

// TestBadExportsAreRefusedWhole sends bodies that are not exports and
// checks each is refused with its reason, counted, logged, and that
// FLEET is untouched.
func TestBadExportsAreRefusedWhole(t *testing.T) {
	e := newEnv(t, ingest.Config{MaxBodyBytes: 64 << 10})
	good := ingesttest.Protobuf(ingesttest.Request(agent(1, "s", "a", ingesttest.Usage{Input: 10, Output: 10})))
	bomb := ingesttest.Gzip(bytes.Repeat([]byte{0}, 1<<20)) // 1 KiB that inflates to 1 MiB
	tests := []struct {
		name, ct, enc string
		body          []byte
		reason        ingest.RequestReason
	}{
		{"text body", "text/plain", "", []byte("hello"), ingest.BadContentType},
		{"no content type", "", "", good, ingest.BadContentType},
		{"brotli", "application/x-protobuf", "br", good, ingest.BadEncoding},
		{"gzip that is not", "application/x-protobuf", "gzip", good, ingest.BadEncoding},
		{"truncated gzip", "application/x-protobuf", "gzip", ingesttest.Gzip(good)[:40], ingest.BadEncoding},
		{"garbage protobuf", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff, 0x01, 0x02}, ingest.Malformed},
		{"protobuf sent as json", "application/json", "", good, ingest.Malformed},
		{"json of another shape", "application/json", "", []byte(`{"resourceSpans": 7}`), ingest.Malformed},
		{"json cut short", "application/json", "", []byte(`{"resourceSpans":[{"scopeSpans":[`), ingest.Malformed},
		{"too large", "application/x-protobuf", "", bytes.Repeat([]byte{0x0a, 0x00}, 40<<10), ingest.TooLarge},
		{"gzip bomb", "application/x-protobuf", "gzip", bomb, ingest.TooLarge},
	}
	before := e.fleetMsgs(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := e.export(t, acme, tt.ct, tt.enc, tt.body)
			var ie *ingest.Error
			if !errors.As(err, &ie) {
				t.Fatalf("err %v, want an *ingest.Error", err)
			}
			if ie.Reason != tt.reason {
				t.Errorf("reason %s, want %s (%v)", ie.Reason, tt.reason, err)
			}
			if ie.Msg == "" || strings.Contains(ie.Msg, "proto:") {
				t.Errorf("message %q is not for a user", ie.Msg)
			}
		})
	}
	want := map[string]int64{}
	for _, r := range ingest.RequestReasons {
		want["reason="+string(r)] = 0
	}
	for _, tt := range tests {
		want["reason="+string(tt.reason)]++
	}
	if diff := cmp.Diff(want, e.counts(t, "sagewai.otlp.rejected_requests")); diff != "" {
		t.Errorf("rejected_requests (-want +got):\n%s", diff)
	}
	if got := strings.Count(e.logs.String(), `"event":"otlp.export_refused"`); got != len(tests) {
		t.Errorf("%d refusals logged, want %d", got, len(tests))
	}
	if got := e.fleetMsgs(t); got != before {
		t.Errorf("FLEET went from %d to %d messages", before, got)
	}
}

// TestBadSpansAreRefusedAlone mixes good spans with bad ones in one
// export: the good are folded, each bad one is refused with its reason in
// partial_success and the counters, and makes no event.
func TestBadSpansAreRefusedAlone(t *testing.T) {
	e := newEnv(t, ingest.Config{})
	good := agent(1, "svc", "good", ingesttest.Usage{Input: 1000, Output: 100})
	neg := agent(2, "svc", "negative", ingesttest.Usage{Input: -5, Output: 100})
	absurd := agent(3, "svc", "absurd", ingesttest.Usage{Input: 1 << 40, Output: 100})
	noModel := agent(4, "svc", "nomodel", ingesttest.Usage{Input: 10, Output: 10})
	noModel.Model = ""
	other := agent(5, "svc", "spy", ingesttest.Usage{Input: 10, Output: 10})
	other.Project = "globex"
	req := ingesttest.Request(good, neg, absurd, noModel, other)
	resp, _, res, err := e.export(t, acme, "application/x-protobuf", "", ingesttest.Protobuf(req))
	if err != nil {
		t.Fatal(err)
	}
	r, err := protoResp(resp)
	if err != nil {
		t.Fatal(err)
	}
	// neg, absurd and noModel: one bad call span each; other: all three
	// of its spans (the agent's, a call's, a tool's).
	if got := r.GetPartialSuccess().GetRejectedSpans(); got != 6 {
		t.Errorf("rejected_spans %d, want 6", got)
	}
	msg := r.GetPartialSuccess().GetErrorMessage()
	for _, want := range []string{"2 bad_tokens", "1 missing_model", "3 project_mismatch"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error_message %q does not say %q", msg, want)
		}
	}
	if diff := cmp.Diff([]string{"globex"}, res.Denied); diff != "" {
		t.Errorf("denied (-want +got):\n%s", diff)
	}
	v := e.view(t, "acme", res.Seq)
	if got, want := v.Projects["acme"].SpendTotal, good.Cost(fleet.DefaultPricing()); got != want {
		t.Errorf("acme spend %d, want %d: only the good agent's call", got, want)
	}
	if _, ok := v.Agents["spy"]; ok {
		t.Error("a resource of another project put its agent on acme's roster")
	}
	gv := e.view(t, "globex", res.Seq)
	if len(gv.Agents) != 0 || gv.Projects["globex"].SpendTotal != 0 {
		t.Errorf("globex got events from acme's token: %+v", gv.Projects["globex"])
	}
	c := e.counts(t, "sagewai.otlp.spans")
	for k, want := range map[string]int64{"reason=bad_tokens,result=refused": 2, "reason=missing_model,result=refused": 1,
		"reason=project_mismatch,result=refused": 3} {
		if c[k] != want {
			t.Errorf("%s = %d, want %d", k, c[k], want)
		}
	}
	if !strings.Contains(e.logs.String(), `"event":"otlp.spans_refused"`) {
		t.Error("the refusals were not logged")
	}
}

// TestAdminTokensNameTheProject checks that an admin's export writes to
// the project each resource names, and refuses resources that name none
// or a project that does not exist.
func TestAdminTokensNameTheProject(t *testing.T) {
	e := newEnv(t, ingest.Config{})
	admin := ingest.Caller{Admin: true, Subject: "api:admin", Exists: func(_ context.Context, p string) (bool, error) {
		return p == "acme" || p == "globex", nil
	}}
	a := agent(1, "svc", "a", ingesttest.Usage{Input: 100, Output: 10})
	a.Project = "acme"
	g := agent(2, "svc", "g", ingesttest.Usage{Input: 200, Output: 20})
	g.Project = "globex"
	none := agent(3, "svc", "n", ingesttest.Usage{Input: 1, Output: 1})
	ghost := agent(4, "svc", "h", ingesttest.Usage{Input: 1, Output: 1})
	ghost.Project = "initech"
	_, _, res, err := e.export(t, admin, "application/x-protobuf", "", ingesttest.Protobuf(ingesttest.Request(a, g, none, ghost)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Refused != 6 || res.Reasons[ingest.ReasonMissingProject] != 3 || res.Reasons[ingest.ReasonUnknownProject] != 3 {
		t.Errorf("result %+v, want 3 missing_project and 3 unknown_project", res)
	}
	p := fleet.DefaultPricing()
	v := e.view(t, "*", res.Seq)
	got := map[string]fleet.Micros{}
	for id, pr := range v.Projects {
		got[id] = pr.SpendTotal
	}
	if diff := cmp.Diff(map[string]fleet.Micros{"acme": a.Cost(p), "globex": g.Cost(p)}, got); diff != "" {
		t.Errorf("spend by project (-want +got):\n%s", diff)
	}
}

// TestUnwritableFleetAsksForARetry stops NATS: the export is refused as
// unavailable (503 for the edge, which exporters retry) and counted.
func TestUnwritableFleetAsksForARetry(t *testing.T) {
	e := newEnv(t, ingest.Config{})
	e.nats.Server.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	body := ingesttest.Protobuf(ingesttest.Request(agent(1, "s", "a", ingesttest.Usage{Input: 10, Output: 1})))
	_, _, _, err := e.in.Export(ctx, acme, "application/x-protobuf", "", io.NopCloser(bytes.NewReader(body)))
	var ie *ingest.Error
	if !errors.As(err, &ie) || ie.Reason != ingest.Unavailable {
		t.Fatalf("err %v, want reason unavailable", err)
	}
	if got := e.counts(t, "sagewai.otlp.rejected_requests")["reason=unavailable"]; got != 1 {
		t.Errorf("unavailable counted %d times, want 1", got)
	}
}

func protoResp(b []byte) (*coltracepb.ExportTraceServiceResponse, error) {
	r := &coltracepb.ExportTraceServiceResponse{}
	return r, proto.Unmarshal(b, r)
}

// jsonResp reads a JSON response with the Collector's own decoder.
func jsonResp(b []byte) (*coltracepb.ExportTraceServiceResponse, error) {
	er := ptraceotlp.NewExportResponse()
	if err := er.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		return nil, errors.New("not a JSON object")
	}
	pb, err := er.MarshalProto()
	if err != nil {
		return nil, err
	}
	return protoResp(pb)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func tickerHas(v fleet.View, typ, text string) bool {
	for _, e := range v.Ticker {
		if e.Type == typ && strings.Contains(e.Text, text) {
			return true
		}
	}
	return false
}

// TestCallsWithoutUsageAreCounted sends an LLM span that carries a model
// and no token count, as OpenInference sends a streamed completion: the
// call is folded (it happened) at no cost, and counted and logged so that
// an operator sees the instrumentation loses usage.
func TestCallsWithoutUsageAreCounted(t *testing.T) {
	e := newEnv(t, ingest.Config{})
	tr := agent(1, "svc", "streamer")
	tr.Tool = ""
	rs := tr.Resource()
	rs.ScopeSpans[0].Spans = append(rs.ScopeSpans[0].Spans, &tracepb.Span{
		TraceId: tr.TraceID(), SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: "ChatCompletion",
		StartTimeUnixNano: uint64(t0.UnixNano()), EndTimeUnixNano: uint64(t0.Add(time.Second).UnixNano()),
		Attributes: ingesttest.KVs("openinference.span.kind", "LLM", "llm.model_name", "gpt-5-mini", "agent.name", "streamer"),
	})
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{rs}}
	_, _, res, err := e.export(t, acme, "application/x-protobuf", "", ingesttest.Protobuf(req))
	if err != nil {
		t.Fatal(err)
	}
	if res.NoUsage != 1 || res.Refused != 0 {
		t.Fatalf("result %+v, want one call without usage and no refusal", res)
	}
	v := e.view(t, "acme", res.Seq)
	if a := v.Agents["streamer"]; a.Spend != 0 || a.LLMCalls != 1 {
		t.Errorf("agent %+v: want its call counted at no cost", a)
	}
	if got := e.counts(t, "sagewai.otlp.calls_without_usage")[""]; got != 1 {
		t.Errorf("calls_without_usage = %d, want 1", got)
	}
	if !strings.Contains(e.logs.String(), `"event":"otlp.calls_without_usage"`) {
		t.Error("the call without usage was not logged")
	}
}
