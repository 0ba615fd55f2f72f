package genai_test

import (
	"testing"

	"github.com/sagewai/observatory/genai"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestCallsWithoutUsageAreCounted checks that an LLM span that reports no
// token count at all (a library that drops the usage of a streamed
// completion) still makes its llm.call, and is counted in NoUsage, while
// a span reporting any count, even zero, is not.
func TestCallsWithoutUsageAreCounted(t *testing.T) {
	r := genai.Map("acme", []*tracepb.ResourceSpans{res("svc", nil,
		sp{tr: 1, s: 1, name: "ChatCompletion", durMS: 20, attrs: []any{"openinference.span.kind", "LLM", "llm.model_name", "gpt-5-mini"}},
		sp{tr: 1, s: 2, name: "ChatCompletion", durMS: 20, attrs: []any{"openinference.span.kind", "LLM", "llm.model_name", "gpt-5-mini",
			"llm.token_count.prompt", 0, "llm.token_count.completion", 0}},
		sp{tr: 1, s: 3, name: "chat", durMS: 20, attrs: []any{"gen_ai.operation.name", "chat", "gen_ai.request.model", "gpt-5-mini",
			"gen_ai.usage.total_tokens", 12}},
	)}, genai.Options{})
	calls := 0
	for _, ev := range r.Events {
		if ev.Type == "llm.call" {
			calls++
		}
	}
	if calls != 3 || len(r.Refused) != 0 {
		t.Fatalf("%d llm.call events and refusals %v, want 3 and none", calls, r.Refused)
	}
	if r.NoUsage != 1 {
		t.Errorf("NoUsage = %d, want 1 (only the span with no count at all)", r.NoUsage)
	}
}
