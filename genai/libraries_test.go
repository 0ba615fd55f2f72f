package genai_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/genai"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestMapCapturedLibraryExports maps exports captured from the real
// instrumentation libraries (genai/testdata/otlp, written by the nodetest
// package's test with -capture): each agent asked the fake OpenAI server
// twice, the first answer a tool call after a prompt mostly read from the
// cache (1873 prompt tokens of which 1536 cached, 419 completion tokens of
// which 256 reasoning), the second the final answer (2107 and 93), and
// ran get_weather in between. Whatever attribute names each library
// chose, the mapper must find those two calls, normalised, the tool, and
// the agent by the name the script gave it.
func TestMapCapturedLibraryExports(t *testing.T) {
	const model = "gpt-5-mini-2025-08-07"
	cached := fleet.LLMCall{Provider: "openai", Model: model, InputTokens: 1873 - 1536, OutputTokens: 419, CacheReadTokens: 1536, Status: "ok"}
	final := fleet.LLMCall{Provider: "openai", Model: model, InputTokens: 2107, OutputTokens: 93, Status: "ok"}
	for _, tc := range []struct {
		fixture string
		agent   string
		calls   []fleet.LLMCall
		runs    int
	}{
		// The AI SDK's current integration (@ai-sdk/otel): OTel GenAI
		// chat, execute_tool and invoke_agent spans, the agent named by
		// gen_ai.agent.name.
		{fixture: "vercel", agent: "weather-vercel", calls: []fleet.LLMCall{cached, final}, runs: 1},
		// Its legacy ai.* spans: no agent span, the agent named only by
		// ai.telemetry.functionId on each call and tool span.
		{fixture: "vercel-legacy", agent: "weather-vercel-legacy", calls: []fleet.LLMCall{cached, final}},
		// Its streamed calls report the same usage.
		{fixture: "vercel-stream", agent: "weather-vercel-stream", calls: []fleet.LLMCall{cached, final}, runs: 1},
		// OpenInference: llm.token_count.*, tool.name, agent.name.
		{fixture: "openinference", agent: "weather-openinference", calls: []fleet.LLMCall{cached, final}, runs: 1},
		// OpenInference 4.2.7 reports no usage, and only the requested
		// model, for a streamed completion: the calls count, with no
		// tokens.
		{fixture: "openinference-stream", agent: "weather-openinference-stream", runs: 1, calls: []fleet.LLMCall{
			{Provider: "openai", Model: "gpt-5-mini", Status: "ok"}, {Provider: "openai", Model: "gpt-5-mini", Status: "ok"},
		}},
		// OpenLLMetry 0.27 reports no cached tokens for OpenAI: the cached
		// part of the prompt is input, as far as its spans tell.
		{fixture: "openllmetry", agent: "weather-openllmetry", runs: 1, calls: []fleet.LLMCall{
			{Provider: "openai", Model: model, InputTokens: 1873, OutputTokens: 419, Status: "ok"}, final,
		}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "otlp", tc.fixture+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var req coltracepb.ExportTraceServiceRequest
			if err := protojson.Unmarshal(b, &req); err != nil {
				t.Fatal(err)
			}
			r := genai.Map("acme", req.ResourceSpans, genai.Options{})
			if len(r.Refused) != 0 {
				t.Fatalf("refused %+v", r.Refused)
			}
			var calls []fleet.LLMCall
			var tools []string
			runs, created := 0, 0
			for _, ev := range r.Events {
				if ev.AgentID != tc.agent {
					t.Errorf("%s %s: agent %q, want %q", ev.Type, ev.ID, ev.AgentID, tc.agent)
				}
				switch ev.Type {
				case fleet.TypeLLMCall:
					var c fleet.LLMCall
					if err := json.Unmarshal(ev.Data, &c); err != nil {
						t.Fatal(err)
					}
					c.LatencyMS = 0
					calls = append(calls, c)
				case fleet.TypeToolCall:
					var c fleet.ToolCall
					if err := json.Unmarshal(ev.Data, &c); err != nil {
						t.Fatal(err)
					}
					tools = append(tools, c.Tool+" "+c.Status)
				case fleet.TypeRunCompleted:
					runs++
				case fleet.TypeAgentCreated:
					created++
					var a fleet.AgentCreated
					if err := json.Unmarshal(ev.Data, &a); err != nil {
						t.Fatal(err)
					}
					if a.Name != tc.agent || ev.ID != genai.AgentEventID("acme", tc.agent) {
						t.Errorf("agent.created %s %+v, want %s", ev.ID, a, tc.agent)
					}
				}
			}
			// Exporters send spans as they end, so the order of the calls
			// in an export is the library's; the counts tell them apart.
			if len(calls) == 2 && calls[0].InputTokens > calls[1].InputTokens {
				calls[0], calls[1] = calls[1], calls[0]
			}
			if diff := cmp.Diff(tc.calls, calls); diff != "" {
				t.Errorf("llm.call payloads (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"get_weather ok"}, tools); diff != "" {
				t.Errorf("tool.call (-want +got):\n%s", diff)
			}
			if runs != tc.runs || created != 1 {
				t.Errorf("%d completed runs and %d agent.created, want %d and 1", runs, created, tc.runs)
			}
		})
	}
}
