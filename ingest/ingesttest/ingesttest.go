// Package ingesttest builds OTLP trace exports of GenAI spans, as an
// instrumented agent sends them, for tests of POST /v1/traces and of
// package ingest, and works out what they must cost.
package ingesttest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sagewai/observatory/fleet"
)

// Usage is what one LLM call's span reports, in the OTel GenAI
// convention: Input counts every input token, cache reads included.
type Usage struct {
	Input, Output, CacheRead int64
}

// Trace is one agent invocation as the OTel GenAI convention (semconv
// 1.36 names) records it: an invoke_agent span, a chat span per call and
// an execute_tool span after the first call.
type Trace struct {
	// N tells traces apart: it makes the trace id.
	N       uint64
	Service string
	// Project, when set, is the resource's sagewai.project_id.
	Project string
	Agent   string
	Model   string
	Tool    string
	Calls   []Usage
	Start   time.Time
}

// TraceID is the trace's id, hex, as events carry it.
func (t Trace) TraceID() []byte {
	id := make([]byte, 16)
	binary.BigEndian.PutUint64(id[:8], 0x5a6e_7761_6900_0000)
	binary.BigEndian.PutUint64(id[8:], t.N+1)
	return id
}

func spanID(n int) []byte {
	id := make([]byte, 8)
	binary.BigEndian.PutUint64(id, 0x0bad_cafe_0000_0000|uint64(n+1))
	return id
}

// Spans returns the trace's spans, the agent's invocation first.
func (t Trace) Spans() []*tracepb.Span {
	tr := t.TraceID()
	at := func(ms int) uint64 { return uint64(t.Start.Add(time.Duration(ms) * time.Millisecond).UnixNano()) }
	end := 100 * (len(t.Calls) + 2)
	spans := []*tracepb.Span{{
		TraceId: tr, SpanId: spanID(0), Name: "invoke_agent " + t.Agent, Kind: tracepb.Span_SPAN_KIND_INTERNAL,
		StartTimeUnixNano: at(0), EndTimeUnixNano: at(end),
		Attributes: KVs("gen_ai.operation.name", "invoke_agent", "gen_ai.agent.name", t.Agent, "gen_ai.system", "openai",
			"gen_ai.request.model", t.Model),
	}}
	for i, c := range t.Calls {
		spans = append(spans, &tracepb.Span{
			TraceId: tr, SpanId: spanID(1 + 2*i), ParentSpanId: spanID(0), Name: "chat " + t.Model, Kind: tracepb.Span_SPAN_KIND_CLIENT,
			StartTimeUnixNano: at(100*i + 10), EndTimeUnixNano: at(100*i + 60),
			Attributes: KVs("gen_ai.operation.name", "chat", "gen_ai.system", "openai", "gen_ai.request.model", t.Model,
				"gen_ai.response.model", t.Model, "gen_ai.usage.input_tokens", c.Input, "gen_ai.usage.output_tokens", c.Output,
				"gen_ai.usage.cache_read.input_tokens", c.CacheRead),
		})
		if i == 0 && t.Tool != "" {
			spans = append(spans, &tracepb.Span{
				TraceId: tr, SpanId: spanID(2), ParentSpanId: spanID(0), Name: "execute_tool " + t.Tool, Kind: tracepb.Span_SPAN_KIND_INTERNAL,
				StartTimeUnixNano: at(70), EndTimeUnixNano: at(90),
				Attributes: KVs("gen_ai.operation.name", "execute_tool", "gen_ai.tool.name", t.Tool),
			})
		}
	}
	return spans
}

// Resource returns the trace's spans on their resource.
func (t Trace) Resource() *tracepb.ResourceSpans {
	attrs := []any{"service.name", t.Service}
	if t.Project != "" {
		attrs = append(attrs, "sagewai.project_id", t.Project)
	}
	return &tracepb.ResourceSpans{
		Resource: &resourcepb.Resource{Attributes: KVs(attrs...)},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "ingesttest"},
			Spans: t.Spans(),
		}},
	}
}

// Request returns an export of the traces, a resource each.
func Request(traces ...Trace) *coltracepb.ExportTraceServiceRequest {
	req := &coltracepb.ExportTraceServiceRequest{}
	for _, t := range traces {
		req.ResourceSpans = append(req.ResourceSpans, t.Resource())
	}
	return req
}

// Cost is what the trace's calls cost at pricing, worked out from the
// convention's definition, not by the mapper: input tokens include the
// cache reads, which Observatory's input count leaves out. An unpriced
// model costs nothing.
func (t Trace) Cost(p *fleet.Pricing) fleet.Micros {
	price, ok := p.Lookup(t.Model)
	if !ok {
		return 0
	}
	var sum fleet.Micros
	for _, c := range t.Calls {
		sum += price.Cost(fleet.LLMCall{Model: t.Model, InputTokens: c.Input - c.CacheRead, OutputTokens: c.Output, CacheReadTokens: c.CacheRead})
	}
	return sum
}

// Protobuf encodes req as OTLP/HTTP's protobuf body.
func Protobuf(req *coltracepb.ExportTraceServiceRequest) []byte {
	b, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return b
}

// JSON encodes req as OTLP/HTTP's JSON body (hex ids), with the
// OpenTelemetry Collector's encoder.
func JSON(req *coltracepb.ExportTraceServiceRequest) []byte {
	er := ptraceotlp.NewExportRequest()
	if err := er.UnmarshalProto(Protobuf(req)); err != nil {
		panic(err)
	}
	b, err := er.MarshalJSON()
	if err != nil {
		panic(err)
	}
	return b
}

// Gzip compresses b.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		panic(err)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// KVs turns alternating keys and values (string, int, int64, float64,
// bool, or an *commonpb.AnyValue as it is) into OTLP attributes, with the
// value kinds an exporter would send for each Go type.
func KVs(pairs ...any) []*commonpb.KeyValue {
	var out []*commonpb.KeyValue
	for i := 0; i+1 < len(pairs); i += 2 {
		var v *commonpb.AnyValue
		switch x := pairs[i+1].(type) {
		case string:
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: x}}
		case int:
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(x)}}
		case int64:
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: x}}
		case float64:
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: x}}
		case bool:
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: x}}
		case *commonpb.AnyValue:
			v = x
		default:
			panic(fmt.Sprintf("ingesttest: KVs: unsupported value type %T", x))
		}
		out = append(out, &commonpb.KeyValue{Key: pairs[i].(string), Value: v})
	}
	return out
}
