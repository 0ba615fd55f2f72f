package genai_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/genai"
	"github.com/sagewai/observatory/ingest/ingesttest"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// t0 is when the test spans start: a fixed instant, so ids and times in
// the expectations are literal.
var t0 = time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)

// traceID and spanID make the ids of test spans: trace n, span n.
func traceID(n byte) []byte {
	return []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, n}
}

func spanID(n byte) []byte { return []byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, n} }

// hexTrace and hexSpan are those ids as the events carry them.
func hexTrace(n byte) string { return fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e47%02x", n) }
func hexSpan(n byte) string  { return fmt.Sprintf("00f067aa0ba902%02x", n) }

// kvs turns alternating keys and values into OTLP attributes, with the
// value kinds an exporter would send for each Go type.
var kvs = ingesttest.KVs

// sp is a test span: trace tr, span id s, parent p (0: a root), starting
// at t0+startMS and lasting durMS.
type sp struct {
	tr, s, p       byte
	name           string
	startMS, durMS int
	err            string // non-empty: status ERROR with this message
	attrs          []any
}

func (x sp) span() *tracepb.Span {
	s := &tracepb.Span{
		TraceId:           traceID(x.tr),
		SpanId:            spanID(x.s),
		Name:              x.name,
		Kind:              tracepb.Span_SPAN_KIND_CLIENT,
		StartTimeUnixNano: uint64(t0.Add(time.Duration(x.startMS) * time.Millisecond).UnixNano()),
		EndTimeUnixNano:   uint64(t0.Add(time.Duration(x.startMS+x.durMS) * time.Millisecond).UnixNano()),
		Attributes:        kvs(x.attrs...),
	}
	if x.p != 0 {
		s.ParentSpanId = spanID(x.p)
	}
	if x.err != "" {
		s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: x.err}
	}
	return s
}

// res is one resource of service with extra resource attributes, holding spans.
func res(service string, extra []any, spans ...sp) *tracepb.ResourceSpans {
	attrs := kvs(append([]any{"service.name", service, "telemetry.sdk.language", "python"}, extra...)...)
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "test"}}
	for _, s := range spans {
		ss.Spans = append(ss.Spans, s.span())
	}
	return &tracepb.ResourceSpans{Resource: &resourcepb.Resource{Attributes: attrs}, ScopeSpans: []*tracepb.ScopeSpans{ss}}
}

// got is an event as the tests compare it: the envelope fields the mapper
// fills and the payload as JSON.
type got struct {
	Type, ID, Agent, Run, Team, User, Trace, Span string
	Time                                          time.Time
	Data                                          string
}

// check validates every event as the fold's consumer would, from its
// encoded form on its own subject, and returns them in comparable form.
func check(t testing.TB, project string, r genai.Result) []got {
	t.Helper()
	var out []got
	for _, ev := range r.Events {
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal %s: %v", ev.ID, err)
		}
		dec, err := fleet.DecodeEvent(fleet.Subject(ev), body)
		if err != nil {
			t.Fatalf("event %s %s does not validate: %v\n%s", ev.Type, ev.ID, err, body)
		}
		if dec.ProjectID != project {
			t.Fatalf("event %s is of project %q, want %q", ev.ID, dec.ProjectID, project)
		}
		out = append(out, got{Type: ev.Type, ID: ev.ID, Agent: ev.AgentID, Run: ev.RunID, Team: ev.TeamID, User: ev.UserID,
			Trace: ev.TraceID, Span: ev.SpanID,
			Time: ev.Time, Data: string(ev.Data)})
	}
	return out
}

// js is v as compact JSON, for expected payloads.
func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// agentNew is the payload of an agent's first-sight announcement.
func agentNew(name, model string) string {
	return js(fleet.AgentCreated{Name: name, Model: model, Tools: []string{}, Skills: []string{}})
}

// id is the id of the event of kind that span s of trace tr makes.
func id(tr, s byte, kind string) string {
	return "otel-" + hexTrace(tr) + "-" + hexSpan(s) + "-" + kind
}

// run is the run id of the agent invocation span s of trace tr.
func run(tr, s byte) string { return hexTrace(tr) + "-" + hexSpan(s) }

// Expected events, one helper per kind.

func llm(tr, s byte, agent, runID string, endMS int, c fleet.LLMCall) got {
	return got{Type: fleet.TypeLLMCall, ID: id(tr, s, "llm"), Agent: agent, Run: runID, Trace: hexTrace(tr), Span: hexSpan(s),
		Time: at(endMS), Data: js(c)}
}

func tool(tr, s byte, agent, runID string, endMS int, c fleet.ToolCall) got {
	return got{Type: fleet.TypeToolCall, ID: id(tr, s, "tool"), Agent: agent, Run: runID, Trace: hexTrace(tr), Span: hexSpan(s),
		Time: at(endMS), Data: js(c)}
}

// first is the agent.created that announces agent before the first event
// of span s, at ms.
func first(tr, s byte, agent string, ms int, payload string) got {
	return got{Type: fleet.TypeAgentCreated, ID: genai.AgentEventID("acme", agent), Agent: agent, Trace: hexTrace(tr),
		Span: hexSpan(s), Time: at(ms), Data: payload}
}

func runStarted(tr, s byte, agent string, ms int, model string) got {
	return got{Type: fleet.TypeRunStarted, ID: id(tr, s, "run.started"), Agent: agent, Run: run(tr, s), Trace: hexTrace(tr),
		Span: hexSpan(s), Time: at(ms), Data: js(fleet.RunStarted{Model: model})}
}

func runEnded(tr, s byte, agent, typ string, ms int, out fleet.Outcome) got {
	return got{Type: typ, ID: id(tr, s, "run.ended"), Agent: agent, Run: run(tr, s), Trace: hexTrace(tr),
		Span: hexSpan(s), Time: at(ms), Data: js(out)}
}
