package genai_test

import (
	"testing"

	"github.com/sagewai/observatory/genai"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// benchBatch is an export of 100 GenAI spans as a busy agent service
// sends them: 25 agent invocations, each with two chat calls of mixed
// conventions and a tool call.
func benchBatch() []*tracepb.ResourceSpans {
	var spans []sp
	for i := range 25 {
		tr := byte(i)
		spans = append(spans,
			sp{tr: tr, s: 2, p: 1, startMS: 10, durMS: 500, attrs: []any{
				"gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-5",
				"gen_ai.response.model", "gpt-5-2025-08-07", "gen_ai.usage.input_tokens", 1200,
				"gen_ai.usage.cache_read.input_tokens", 200, "gen_ai.usage.output_tokens", 300,
				"gen_ai.usage.reasoning.output_tokens", 50, "gen_ai.response.id", "chatcmpl-1", "server.address", "api.openai.com",
			}},
			sp{tr: tr, s: 3, p: 1, startMS: 520, durMS: 400, attrs: []any{
				"openinference.span.kind", "LLM", "llm.provider", "anthropic", "llm.model_name", "claude-sonnet-4-5",
				"llm.token_count.prompt", 5000, "llm.token_count.prompt_details.cache_read", 3000,
				"llm.token_count.completion", 400, "llm.token_count.total", 5400, "input.mime_type", "application/json",
			}},
			sp{tr: tr, s: 4, p: 1, startMS: 930, durMS: 30, attrs: []any{"gen_ai.operation.name", "execute_tool", "gen_ai.tool.name", "search_kb"}},
			sp{tr: tr, s: 1, durMS: 1000, attrs: []any{
				"gen_ai.operation.name", "invoke_agent", "gen_ai.agent.id", "triager", "gen_ai.request.model", "gpt-5",
			}},
		)
	}
	return []*tracepb.ResourceSpans{res("support-bot", []any{genai.ProjectAttr, "acme"}, spans...)}
}

// BenchmarkMap reports spans/s for batches of 100 GenAI spans on one core.
func BenchmarkMap(b *testing.B) {
	batch := benchBatch()
	b.ReportAllocs()
	for b.Loop() {
		r := genai.Map("acme", batch, genai.Options{})
		if len(r.Events) != 126 {
			b.Fatalf("%d events, want 126", len(r.Events))
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "spans/s")
}
