package genai_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/genai"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// conventionCases are realistic exports of each source convention, with
// the events they must become. The attribute sets follow what the
// instrumentations emit: OTel GenAI semconv before and after 1.37,
// OpenInference, OpenLLMetry (traceloop) and the Vercel AI SDK's
// experimental_telemetry.
var conventionCases = []struct {
	name    string
	batch   []*tracepb.ResourceSpans
	want    []got
	skipped int
}{
	{
		name: "otel genai latest: cache read and write leave input, reasoning stays in output, cost ignored",
		batch: []*tracepb.ResourceSpans{res("support-bot", nil, sp{tr: 1, s: 1, name: "chat gpt-5", durMS: 1500, attrs: []any{
			"gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai",
			"gen_ai.request.model", "gpt-5", "gen_ai.response.model", "gpt-5-2025-08-07",
			"gen_ai.usage.input_tokens", 1200, "gen_ai.usage.cache_read.input_tokens", 200,
			"gen_ai.usage.cache_creation.input_tokens", 100, "gen_ai.usage.output_tokens", 300,
			"gen_ai.usage.reasoning.output_tokens", 50, "gen_ai.usage.cost", 9.99, "gen_ai.cost.total_usd", 9.99,
		}})},
		want: []got{
			first(1, 1, "support-bot", 1500, agentNew("support-bot", "gpt-5-2025-08-07")),
			llm(1, 1, "support-bot", "", 1500, fleet.LLMCall{Provider: "openai", Model: "gpt-5-2025-08-07", InputTokens: 900,
				OutputTokens: 300, CacheReadTokens: 200, CacheWriteTokens: 100, LatencyMS: 1500, Status: "ok"}),
		},
	},
	{
		name: "otel genai up to 1.36: gen_ai.system, prompt/completion tokens, underscore cache names, agent name",
		batch: []*tracepb.ResourceSpans{res("svc", nil, sp{tr: 2, s: 1, name: "chat claude-sonnet-4-5", durMS: 2500, attrs: []any{
			"gen_ai.operation.name", "chat", "gen_ai.system", "anthropic", "gen_ai.request.model", "claude-sonnet-4-5",
			"gen_ai.usage.prompt_tokens", 4000, "gen_ai.usage.completion_tokens", 250,
			"gen_ai.usage.cache_read_input_tokens", 3000, "gen_ai.usage.cache_creation_input_tokens", 500,
			"gen_ai.agent.name", "writer",
		}})},
		want: []got{
			first(2, 1, "writer", 2500, agentNew("writer", "claude-sonnet-4-5")),
			llm(2, 1, "writer", "", 2500, fleet.LLMCall{Provider: "anthropic", Model: "claude-sonnet-4-5", InputTokens: 500,
				OutputTokens: 250, CacheReadTokens: 3000, CacheWriteTokens: 500, LatencyMS: 2500, Status: "ok"}),
		},
	},
	{
		name: "otel genai agent: children exported first belong to the invocation's agent and run",
		batch: []*tracepb.ResourceSpans{res("svc", nil,
			sp{tr: 3, s: 2, p: 1, name: "chat gpt-5", startMS: 100, durMS: 800, attrs: []any{
				"gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.response.model", "gpt-5",
				"gen_ai.usage.input_tokens", 100, "gen_ai.usage.output_tokens", 20,
			}},
			sp{tr: 3, s: 3, p: 1, name: "execute_tool search_kb", startMS: 1000, durMS: 200, attrs: []any{
				"gen_ai.operation.name", "execute_tool", "gen_ai.tool.name", "search_kb",
			}},
			sp{tr: 3, s: 4, p: 2, name: "POST", startMS: 150, durMS: 700, attrs: []any{"http.request.method", "POST"}},
			sp{tr: 3, s: 1, name: "invoke_agent triager", durMS: 2000, attrs: []any{
				"gen_ai.operation.name", "invoke_agent", "gen_ai.agent.id", "triager-7", "gen_ai.agent.name", "triager",
				"gen_ai.request.model", "gpt-5", "gen_ai.conversation.id", "conv-1",
			}},
		)},
		want: []got{
			first(3, 2, "triager-7", 900, agentNew("triager", "gpt-5")),
			llm(3, 2, "triager-7", run(3, 1), 900, fleet.LLMCall{Provider: "openai", Model: "gpt-5", InputTokens: 100,
				OutputTokens: 20, LatencyMS: 800, Status: "ok"}),
			tool(3, 3, "triager-7", run(3, 1), 1200, fleet.ToolCall{Tool: "search_kb", LatencyMS: 200, Status: "ok"}),
			runStarted(3, 1, "triager-7", 0, "gpt-5"),
			runEnded(3, 1, "triager-7", fleet.TypeRunCompleted, 2000, fleet.Outcome{DurationMS: 2000}),
		},
		skipped: 1,
	},
	{
		name: "otel genai agent whose span status is ERROR fails its run",
		batch: []*tracepb.ResourceSpans{res("svc", nil, sp{tr: 4, s: 1, name: "invoke_agent planner", durMS: 300,
			err: "rate limited", attrs: []any{
				"gen_ai.operation.name", "invoke_agent", "gen_ai.agent.name", "planner",
				"gen_ai.agent.description", "plans trips", "error.type", "429",
			}})},
		want: []got{
			first(4, 1, "planner", 0, js(fleet.AgentCreated{Name: "planner", Description: "plans trips", Tools: []string{}, Skills: []string{}})),
			runStarted(4, 1, "planner", 0, ""),
			runEnded(4, 1, "planner", fleet.TypeRunFailed, 300, fleet.Outcome{DurationMS: 300, Error: "rate limited"}),
		},
	},
	{
		name: "otel genai create_agent announces the agent with its description",
		batch: []*tracepb.ResourceSpans{res("svc", nil, sp{tr: 5, s: 1, name: "create_agent Researcher", durMS: 40, attrs: []any{
			"gen_ai.operation.name", "create_agent", "gen_ai.agent.id", "a-1", "gen_ai.agent.name", "Researcher",
			"gen_ai.agent.description", "finds things", "gen_ai.request.model", "claude-opus-4-5",
		}})},
		want: func() []got {
			p := js(fleet.AgentCreated{Name: "Researcher", Model: "claude-opus-4-5", Description: "finds things", Tools: []string{}, Skills: []string{}})
			return []got{first(5, 1, "a-1", 40, p), {Type: fleet.TypeAgentCreated, ID: id(5, 1, "agent"), Agent: "a-1",
				Trace: hexTrace(5), Span: hexSpan(1), Time: at(40), Data: p}}
		}(),
	},
	{
		name: "otel genai: a count below its own cache part is Anthropic style and stays",
		batch: []*tracepb.ResourceSpans{res("svc", nil, sp{tr: 6, s: 1, durMS: 10, attrs: []any{
			"gen_ai.operation.name", "chat", "gen_ai.provider.name", "anthropic", "gen_ai.request.model", "claude-haiku-4-5",
			"gen_ai.usage.input_tokens", 50, "gen_ai.usage.cache_read.input_tokens", 2000, "gen_ai.usage.output_tokens", 5,
		}})},
		want: []got{
			first(6, 1, "svc", 10, agentNew("svc", "claude-haiku-4-5")),
			llm(6, 1, "svc", "", 10, fleet.LLMCall{Provider: "anthropic", Model: "claude-haiku-4-5", InputTokens: 50,
				OutputTokens: 5, CacheReadTokens: 2000, LatencyMS: 10, Status: "ok"}),
		},
	},
	{
		name: "otel genai: reasoning above output is reported apart (Gemini thoughts) and added; string and double counts",
		batch: []*tracepb.ResourceSpans{res("svc", nil, sp{tr: 7, s: 1, durMS: 10, attrs: []any{
			"gen_ai.operation.name", "generate_content", "gen_ai.provider.name", "gcp.gemini", "gen_ai.request.model", "gemini-2.5-pro",
			"gen_ai.usage.input_tokens", "120", "gen_ai.usage.output_tokens", 100.0, "gen_ai.usage.reasoning.output_tokens", 400,
		}})},
		want: []got{
			first(7, 1, "svc", 10, agentNew("svc", "gemini-2.5-pro")),
			llm(7, 1, "svc", "", 10, fleet.LLMCall{Provider: "gcp.gemini", Model: "gemini-2.5-pro", InputTokens: 120,
				OutputTokens: 500, LatencyMS: 10, Status: "ok"}),
		},
	},
	{
		name: "otel genai embeddings, failed: input only, status error",
		batch: []*tracepb.ResourceSpans{res("svc", nil, sp{tr: 8, s: 1, durMS: 30, err: "boom", attrs: []any{
			"gen_ai.operation.name", "embeddings", "gen_ai.system", "openai", "gen_ai.request.model", "text-embedding-3-small",
			"gen_ai.usage.input_tokens", 512,
		}})},
		want: []got{
			first(8, 1, "svc", 30, agentNew("svc", "text-embedding-3-small")),
			llm(8, 1, "svc", "", 30, fleet.LLMCall{Provider: "openai", Model: "text-embedding-3-small", InputTokens: 512,
				LatencyMS: 30, Status: "error"}),
		},
	},
	{
		name: "openinference: prompt includes its cache details, completion includes reasoning; CHAIN skipped",
		batch: []*tracepb.ResourceSpans{res("oi-app", nil,
			sp{tr: 9, s: 2, p: 1, name: "ChatCompletion", startMS: 10, durMS: 700, attrs: []any{
				"openinference.span.kind", "LLM", "llm.provider", "openai", "llm.system", "openai", "llm.model_name", "gpt-5",
				"llm.token_count.prompt", 1000, "llm.token_count.prompt_details.cache_read", 400,
				"llm.token_count.completion", 200, "llm.token_count.completion_details.reasoning", 80, "llm.token_count.total", 1200,
			}},
			sp{tr: 9, s: 3, p: 1, name: "get_weather", startMS: 720, durMS: 50, attrs: []any{
				"openinference.span.kind", "TOOL", "tool.name", "get_weather",
			}},
			sp{tr: 9, s: 4, p: 1, name: "RunnableSequence", startMS: 5, durMS: 5, attrs: []any{"openinference.span.kind", "CHAIN"}},
			sp{tr: 9, s: 1, name: "concierge", durMS: 1000, attrs: []any{"openinference.span.kind", "AGENT", "agent.name", "concierge"}},
		)},
		want: []got{
			first(9, 2, "concierge", 710, agentNew("concierge", "gpt-5")),
			llm(9, 2, "concierge", run(9, 1), 710, fleet.LLMCall{Provider: "openai", Model: "gpt-5", InputTokens: 600,
				OutputTokens: 200, CacheReadTokens: 400, LatencyMS: 700, Status: "ok"}),
			tool(9, 3, "concierge", run(9, 1), 770, fleet.ToolCall{Tool: "get_weather", LatencyMS: 50, Status: "ok"}),
			runStarted(9, 1, "concierge", 0, ""),
			runEnded(9, 1, "concierge", fleet.TypeRunCompleted, 1000, fleet.Outcome{DurationMS: 1000}),
		},
		skipped: 1,
	},
	{
		name: "openinference: only a total and the completion: the rest is input",
		batch: []*tracepb.ResourceSpans{res("oi-app", nil, sp{tr: 10, s: 1, durMS: 20, attrs: []any{
			"openinference.span.kind", "LLM", "llm.provider", "anthropic", "llm.model_name", "claude-3-5-haiku",
			"llm.token_count.total", 900, "llm.token_count.completion", 100,
		}})},
		want: []got{
			first(10, 1, "oi-app", 20, agentNew("oi-app", "claude-3-5-haiku")),
			llm(10, 1, "oi-app", "", 20, fleet.LLMCall{Provider: "anthropic", Model: "claude-3-5-haiku", InputTokens: 800,
				OutputTokens: 100, LatencyMS: 20, Status: "ok"}),
		},
	},
	{
		name: "openllmetry: Anthropic prompt tokens sum the cache; traceloop agent and tool spans; workflow skipped",
		batch: []*tracepb.ResourceSpans{res("traceloop-app", nil,
			sp{tr: 11, s: 2, p: 1, name: "anthropic.chat", startMS: 10, durMS: 900, attrs: []any{
				"llm.request.type", "chat", "gen_ai.system", "Anthropic", "gen_ai.request.model", "claude-sonnet-4-5",
				"gen_ai.response.model", "claude-sonnet-4-5-20250929", "gen_ai.usage.prompt_tokens", 5000,
				"gen_ai.usage.completion_tokens", 400, "gen_ai.usage.cache_read_input_tokens", 3000,
				"gen_ai.usage.cache_creation_input_tokens", 1000, "llm.usage.total_tokens", 5400,
				"traceloop.workflow.name", "triage",
			}},
			sp{tr: 11, s: 3, p: 1, name: "lookup_order.tool", startMS: 920, durMS: 30, attrs: []any{
				"traceloop.span.kind", "tool", "traceloop.entity.name", "lookup_order",
			}},
			sp{tr: 11, s: 1, p: 4, name: "support_agent.agent", startMS: 5, durMS: 1000, attrs: []any{
				"traceloop.span.kind", "agent", "traceloop.entity.name", "support_agent",
			}},
			sp{tr: 11, s: 4, name: "triage.workflow", durMS: 1010, attrs: []any{
				"traceloop.span.kind", "workflow", "traceloop.entity.name", "triage",
			}},
		)},
		want: []got{
			first(11, 2, "support_agent", 910, agentNew("support_agent", "claude-sonnet-4-5-20250929")),
			llm(11, 2, "support_agent", run(11, 1), 910, fleet.LLMCall{Provider: "anthropic", Model: "claude-sonnet-4-5-20250929",
				InputTokens: 1000, OutputTokens: 400, CacheReadTokens: 3000, CacheWriteTokens: 1000, LatencyMS: 900, Status: "ok"}),
			tool(11, 3, "support_agent", run(11, 1), 950, fleet.ToolCall{Tool: "lookup_order", LatencyMS: 30, Status: "ok"}),
			runStarted(11, 1, "support_agent", 5, ""),
			runEnded(11, 1, "support_agent", fleet.TypeRunCompleted, 1005, fleet.Outcome{DurationMS: 1000}),
		},
		skipped: 1,
	},
	{
		name: "vercel ai sdk: only doGenerate spans are calls, the outer generateText is not counted again",
		batch: []*tracepb.ResourceSpans{res("next-app", nil,
			sp{tr: 12, s: 2, p: 1, name: "ai.generateText.doGenerate", startMS: 5, durMS: 600, attrs: []any{
				"ai.operationId", "ai.generateText.doGenerate", "operation.name", "ai.generateText.doGenerate",
				"ai.model.provider", "openai.chat", "ai.model.id", "gpt-5-mini",
				"gen_ai.system", "openai.chat", "gen_ai.request.model", "gpt-5-mini", "gen_ai.response.model", "gpt-5-mini-2025-08-07",
				"gen_ai.usage.input_tokens", 1500.0, "gen_ai.usage.output_tokens", 100.0,
				"ai.usage.promptTokens", 1500.0, "ai.usage.completionTokens", 100.0, "ai.usage.cachedInputTokens", 1000.0,
			}},
			sp{tr: 12, s: 3, p: 1, name: "ai.toolCall", startMS: 610, durMS: 20, attrs: []any{
				"ai.operationId", "ai.toolCall", "ai.toolCall.name", "weather", "ai.toolCall.id", "call_1",
			}},
			sp{tr: 12, s: 4, p: 1, name: "ai.generateText.doGenerate", startMS: 640, durMS: 300, attrs: []any{
				"ai.operationId", "ai.generateText.doGenerate", "ai.model.provider", "openai.chat", "ai.model.id", "gpt-5-mini",
				"gen_ai.system", "openai.chat", "gen_ai.request.model", "gpt-5-mini", "gen_ai.response.model", "gpt-5-mini-2025-08-07",
				"gen_ai.usage.input_tokens", 1700.0, "gen_ai.usage.output_tokens", 60.0,
			}},
			sp{tr: 12, s: 1, name: "ai.generateText", durMS: 1000, attrs: []any{
				"ai.operationId", "ai.generateText", "ai.model.provider", "openai.chat", "ai.model.id", "gpt-5-mini",
				"ai.usage.promptTokens", 3200.0, "ai.usage.completionTokens", 160.0, "gen_ai.usage.input_tokens", 3200.0,
			}},
		)},
		want: []got{
			first(12, 2, "next-app", 605, agentNew("next-app", "gpt-5-mini-2025-08-07")),
			llm(12, 2, "next-app", "", 605, fleet.LLMCall{Provider: "openai", Model: "gpt-5-mini-2025-08-07", InputTokens: 500,
				OutputTokens: 100, CacheReadTokens: 1000, LatencyMS: 600, Status: "ok"}),
			tool(12, 3, "next-app", "", 630, fleet.ToolCall{Tool: "weather", LatencyMS: 20, Status: "ok"}),
			llm(12, 4, "next-app", "", 940, fleet.LLMCall{Provider: "openai", Model: "gpt-5-mini-2025-08-07", InputTokens: 1700,
				OutputTokens: 60, LatencyMS: 300, Status: "ok"}),
		},
		skipped: 1,
	},
	{
		name: "vercel ai sdk 5 with anthropic: input already leaves the cache out",
		batch: []*tracepb.ResourceSpans{res("next-app", nil, sp{tr: 13, s: 1, name: "ai.streamText.doStream", durMS: 50, attrs: []any{
			"ai.operationId", "ai.streamText.doStream", "gen_ai.system", "anthropic.messages", "gen_ai.request.model", "claude-sonnet-4-5",
			"ai.usage.inputTokens", 3000.0, "ai.usage.outputTokens", 10.0, "ai.usage.cachedInputTokens", 2000.0,
		}})},
		want: []got{
			first(13, 1, "next-app", 50, agentNew("next-app", "claude-sonnet-4-5")),
			llm(13, 1, "next-app", "", 50, fleet.LLMCall{Provider: "anthropic", Model: "claude-sonnet-4-5", InputTokens: 3000,
				OutputTokens: 10, CacheReadTokens: 2000, LatencyMS: 50, Status: "ok"}),
		},
	},
	{
		name: "vercel ai sdk 6: the uncached input is reported and used as is",
		batch: []*tracepb.ResourceSpans{res("next-app", nil, sp{tr: 14, s: 1, name: "ai.generateText.doGenerate", durMS: 50, attrs: []any{
			"ai.operationId", "ai.generateText.doGenerate", "ai.model.provider", "anthropic.messages", "ai.model.id", "claude-sonnet-4-5",
			"ai.usage.inputTokens", 3000, "ai.usage.outputTokens", 10, "ai.usage.inputTokenDetails.noCacheTokens", 800,
			"ai.usage.inputTokenDetails.cacheReadTokens", 2000, "ai.usage.inputTokenDetails.cacheWriteTokens", 200,
		}})},
		want: []got{
			first(14, 1, "next-app", 50, agentNew("next-app", "claude-sonnet-4-5")),
			llm(14, 1, "next-app", "", 50, fleet.LLMCall{Provider: "anthropic", Model: "claude-sonnet-4-5", InputTokens: 800,
				OutputTokens: 10, CacheReadTokens: 2000, CacheWriteTokens: 200, LatencyMS: 50, Status: "ok"}),
		},
	},
}

func TestMapConventions(t *testing.T) {
	for _, tc := range conventionCases {
		t.Run(tc.name, func(t *testing.T) {
			r := genai.Map("acme", tc.batch, genai.Options{})
			if len(r.Refused) > 0 {
				t.Fatalf("refused: %+v", r.Refused)
			}
			if diff := cmp.Diff(tc.want, check(t, "acme", r)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			spans := 0
			for _, rs := range tc.batch {
				for _, ss := range rs.ScopeSpans {
					spans += len(ss.Spans)
				}
			}
			if r.Spans != spans || r.Skipped != tc.skipped {
				t.Errorf("Spans, Skipped = %d, %d; want %d, %d", r.Spans, r.Skipped, spans, tc.skipped)
			}
		})
	}
}
