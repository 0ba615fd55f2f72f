package genai_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sagewai/observatory/genai"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// chat is the attributes of a well-formed OTel chat span, followed by more.
func chat(more ...any) []any {
	return append([]any{"gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-5",
		"gen_ai.usage.input_tokens", 100, "gen_ai.usage.output_tokens", 10}, more...)
}

func TestMapRefuses(t *testing.T) {
	good := sp{tr: 20, s: 9, durMS: 5, attrs: chat()}
	cases := []struct {
		name    string
		project string
		batch   *tracepb.ResourceSpans
		reason  genai.Reason
	}{
		{"no model", "acme", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: []any{
			"gen_ai.operation.name", "chat", "gen_ai.usage.input_tokens", 100}}), genai.ReasonMissingModel},
		{"model of 300 bytes", "acme", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: chat("gen_ai.response.model", strings.Repeat("m", 300))}), genai.ReasonBadModel},
		{"negative input", "acme", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: []any{
			"gen_ai.operation.name", "chat", "gen_ai.request.model", "gpt-5", "gen_ai.usage.input_tokens", -1}}), genai.ReasonBadTokens},
		{"absurd output", "acme", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: []any{
			"gen_ai.operation.name", "chat", "gen_ai.request.model", "gpt-5", "gen_ai.usage.output_tokens", genai.DefaultMaxTokens + 1}}), genai.ReasonBadTokens},
		{"fractional cache read", "acme", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: chat("gen_ai.usage.cache_read.input_tokens", 2.5)}), genai.ReasonBadTokens},
		{"count that is not a number", "acme", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: []any{
			"openinference.span.kind", "LLM", "llm.model_name", "gpt-5", "llm.token_count.prompt", "many"}}), genai.ReasonBadTokens},
		{"total below output", "acme", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: []any{
			"openinference.span.kind", "LLM", "llm.model_name", "gpt-5", "llm.token_count.total", 10, "llm.token_count.completion", 20}}), genai.ReasonBadTokens},
		{"agent id with a newline", "acme", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: chat("gen_ai.agent.id", "a\nb")}), genai.ReasonBadIDs},
		{"service name too long for an agent id", "acme", res(strings.Repeat("s", 129), nil, sp{tr: 20, s: 1, durMS: 5, attrs: chat()}), genai.ReasonBadIDs},
		{"invalid project", "Not A Project", res("svc", nil, sp{tr: 20, s: 1, durMS: 5, attrs: chat()}), genai.ReasonBadIDs},
		{"other project on the resource", "acme", res("svc", []any{genai.ProjectAttr, "globex"}, sp{tr: 20, s: 1, durMS: 5, attrs: chat()}), genai.ReasonProjectMismatch},
		{"project attribute that is not a string", "acme", res("svc", []any{genai.ProjectAttr, 7}, sp{tr: 20, s: 1, durMS: 5, attrs: chat()}), genai.ReasonProjectMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := genai.Map(tc.project, []*tracepb.ResourceSpans{tc.batch}, genai.Options{})
			if len(r.Events) != 0 {
				t.Errorf("refused span made %d events: %+v", len(r.Events), r.Events)
			}
			if len(r.Refused) != 1 || r.Refused[0].Reason != tc.reason {
				t.Fatalf("refused = %+v, want one with reason %s", r.Refused, tc.reason)
			}
			if got := r.Refused[0]; got.TraceID != hexTrace(20) || got.SpanID != hexSpan(1) || got.Detail == "" {
				t.Errorf("refusal %+v does not name span %s/%s with a detail", got, hexTrace(20), hexSpan(1))
			}
			// A good span beside the refused one is still mapped: one bad
			// span never costs the rest of the export.
			if tc.reason == genai.ReasonProjectMismatch || tc.project != "acme" || strings.HasPrefix(tc.name, "service") {
				return
			}
			tc.batch.ScopeSpans[0].Spans = append(tc.batch.ScopeSpans[0].Spans, good.span())
			r = genai.Map(tc.project, []*tracepb.ResourceSpans{tc.batch}, genai.Options{})
			if len(r.Refused) != 1 || len(check(t, "acme", r)) == 0 || r.Events[len(r.Events)-1].ID != id(20, 9, "llm") {
				t.Errorf("with a good span beside it: refused %+v, events %+v", r.Refused, r.Events)
			}
		})
	}
}

// TestMapRefusesMismatchedResourceWhole checks that every span of a
// resource naming another project is refused, GenAI or not, while another
// resource of the same export is mapped.
func TestMapRefusesMismatchedResourceWhole(t *testing.T) {
	r := genai.Map("acme", []*tracepb.ResourceSpans{
		res("svc", []any{genai.ProjectAttr, "globex"},
			sp{tr: 21, s: 1, durMS: 5, attrs: chat()},
			sp{tr: 21, s: 2, durMS: 5, attrs: []any{"http.request.method", "GET"}}),
		res("svc", []any{genai.ProjectAttr, "acme"}, sp{tr: 21, s: 3, durMS: 5, attrs: chat()}),
	}, genai.Options{})
	var reasons []genai.Reason
	for _, f := range r.Refused {
		reasons = append(reasons, f.Reason)
	}
	if diff := cmp.Diff([]genai.Reason{genai.ReasonProjectMismatch, genai.ReasonProjectMismatch}, reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	evs := check(t, "acme", r)
	if len(evs) != 2 || evs[1].ID != id(21, 3, "llm") || r.Spans != 3 || r.Skipped != 0 {
		t.Errorf("events %+v, spans %d, skipped %d; want the acme resource's call only", evs, r.Spans, r.Skipped)
	}
}

func TestMapRefusesBadIDsAndTimes(t *testing.T) {
	mk := func(mut func(*tracepb.Span)) []*tracepb.ResourceSpans {
		s := sp{tr: 22, s: 1, durMS: 5, attrs: chat()}.span()
		mut(s)
		return []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{s}}}}}
	}
	cases := []struct {
		name   string
		mut    func(*tracepb.Span)
		reason genai.Reason
	}{
		{"short trace id", func(s *tracepb.Span) { s.TraceId = s.TraceId[:8] }, genai.ReasonBadIDs},
		{"zero span id", func(s *tracepb.Span) { s.SpanId = make([]byte, 8) }, genai.ReasonBadIDs},
		{"no span id", func(s *tracepb.Span) { s.SpanId = nil }, genai.ReasonBadIDs},
		{"no end", func(s *tracepb.Span) { s.EndTimeUnixNano = 0 }, genai.ReasonBadTime},
		{"ends before it starts", func(s *tracepb.Span) { s.EndTimeUnixNano = s.StartTimeUnixNano - 1 }, genai.ReasonBadTime},
		{"lasts eight days", func(s *tracepb.Span) { s.EndTimeUnixNano = s.StartTimeUnixNano + 8*24*3600*1e9 }, genai.ReasonBadTime},
		{"ends past int64", func(s *tracepb.Span) { s.EndTimeUnixNano = 1 << 63 }, genai.ReasonBadTime},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := genai.Map("acme", mk(tc.mut), genai.Options{})
			if len(r.Events) != 0 || len(r.Refused) != 1 || r.Refused[0].Reason != tc.reason {
				t.Errorf("events %d, refused %+v; want none and one %s", len(r.Events), r.Refused, tc.reason)
			}
		})
	}
}

// TestMapMaxTokensOption checks that the bound is the caller's when set.
func TestMapMaxTokensOption(t *testing.T) {
	batch := []*tracepb.ResourceSpans{res("svc", nil, sp{tr: 23, s: 1, durMS: 5, attrs: chat("gen_ai.usage.cache_read.input_tokens", 5000)})}
	if r := genai.Map("acme", batch, genai.Options{}); len(r.Refused) != 0 {
		t.Fatalf("default bound refused %+v", r.Refused)
	}
	if r := genai.Map("acme", batch, genai.Options{MaxTokens: 1000}); len(r.Refused) != 1 || r.Refused[0].Reason != genai.ReasonBadTokens {
		t.Fatalf("bound 1000 gave %+v, want bad_tokens", r.Refused)
	}
}

// TestMapSkipsEmptyAndForeign checks that spans of no convention, nil
// values and empty resources are skipped, never refused.
func TestMapSkipsEmptyAndForeign(t *testing.T) {
	batch := []*tracepb.ResourceSpans{
		nil,
		{},
		res("svc", nil, sp{tr: 24, s: 1, durMS: 5, attrs: []any{"db.system", "postgresql"}},
			sp{tr: 24, s: 2, durMS: 5, attrs: []any{"gen_ai.operation.name", "rerank", "gen_ai.request.model", "x"}}),
	}
	batch[2].ScopeSpans[0].Spans[0].Attributes = append(batch[2].ScopeSpans[0].Spans[0].Attributes, nil, &commonpb.KeyValue{Key: "k"})
	r := genai.Map("acme", batch, genai.Options{})
	if len(r.Events) != 0 || len(r.Refused) != 0 || r.Spans != 2 || r.Skipped != 2 {
		t.Errorf("events %d, refused %d, spans %d, skipped %d; want 0, 0, 2, 2", len(r.Events), len(r.Refused), r.Spans, r.Skipped)
	}
}

// TestMapFallback checks the last rule of recognition: a span with a GenAI
// model and usage but no operation name is a call, unless it names an
// agent, whose span sums the calls under it and would bill them twice.
func TestMapFallback(t *testing.T) {
	usage := []any{"gen_ai.system", "openai", "gen_ai.request.model", "gpt-5", "gen_ai.usage.input_tokens", 10, "gen_ai.usage.output_tokens", 1}
	r := genai.Map("acme", []*tracepb.ResourceSpans{res("svc", nil,
		sp{tr: 25, s: 1, durMS: 5, attrs: usage},
		sp{tr: 25, s: 2, durMS: 5, attrs: append([]any{"gen_ai.agent.name", "summing-agent"}, usage...)},
	)}, genai.Options{})
	evs := check(t, "acme", r)
	if len(evs) != 2 || evs[1].ID != id(25, 1, "llm") || r.Skipped != 1 {
		t.Errorf("events %+v, skipped %d; want the anonymous span's call only", evs, r.Skipped)
	}
}
