package nodetest_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/genai"
	"github.com/sagewai/observatory/genai/nodetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// capture rewrites the span fixtures of the genai package's tests
// (genai/testdata/otlp) from what the libraries export now.
var capture = flag.Bool("capture", false, "write the exports to genai/testdata/otlp")

// hangBound stops a script that hangs; a run takes one to two seconds.
const hangBound = 2 * time.Minute

// library is one instrumentation library driven through its script.
type library struct {
	name   string
	script string
	env    map[string]string // on top of nodetest.Env
	// run is whether the library makes an agent invocation span (and so
	// the fold sees a run).
	run bool
	// requestModel is whether the library names only the requested
	// model (it has no response to read the answered one from).
	requestModel bool
}

var libraries = []library{
	{name: "vercel", script: nodetest.Vercel, run: true},
	// The AI SDK's legacy ai.* spans have no agent span: the outer
	// ai.generateText span sums its calls and the mapper skips it.
	{name: "vercel-legacy", script: nodetest.Vercel, env: map[string]string{"AI_SDK_TELEMETRY": "legacy"}},
	{name: "vercel-stream", script: nodetest.Vercel, env: map[string]string{"STREAM": "1"}, run: true},
	{name: "openinference", script: nodetest.OpenInference, run: true},
	// OpenInference reports no usage for a streamed completion: the calls
	// are counted, with no tokens (nodetest.Reported).
	{name: "openinference-stream", script: nodetest.OpenInference, env: map[string]string{"STREAM": "1"}, run: true, requestModel: true},
	{name: "openllmetry", script: nodetest.OpenLLMetry, run: true},
}

// TestLibrariesMapToFleetEvents runs each library's agent against the fake
// OpenAI server, receives its export in-process and maps it as the OTLP
// endpoint would: the calls the mapper finds are the ones the fake
// answered, with the usage the library reports; the tool span is a
// tool.call; the agent is announced once under its name and owns every
// event; folded, the project's spend is the pricing table applied to those
// usages, to the micro-dollar; and the same export mapped again gives the
// same events, which the fold takes as duplicates.
func TestLibrariesMapToFleetEvents(t *testing.T) {
	for _, lib := range libraries {
		t.Run(lib.name, func(t *testing.T) {
			const project, token = "acme", "obs_test_token"
			agent := "weather-" + lib.name
			fake := nodetest.NewFakeOpenAI(t)
			col := nodetest.NewCollector(t)
			env := nodetest.Env(lib.script, nodetest.Target{OpenAIURL: fake.URL, TracesURL: col.URL, Token: token, Agent: agent})
			for k, v := range lib.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), hangBound)
			defer cancel()
			if err := nodetest.Run(ctx, t, lib.script, env); err != nil {
				t.Fatal(err)
			}

			calls := fake.Calls()
			if len(calls) != 2 || !calls[0].ToolCall || calls[1].ToolCall {
				t.Fatalf("the agent made %d completions (%+v); want a tool call, then the final answer", len(calls), calls)
			}
			exports := col.Exports()
			if len(exports) == 0 {
				t.Fatal("the script exported no spans before it exited")
			}
			for _, e := range exports {
				if e.Authorization != "Bearer "+token {
					t.Errorf("export sent Authorization %q, want the bearer token", e.Authorization)
				}
			}

			rs := col.ResourceSpans()
			if *capture {
				writeFixture(t, lib.name, exports)
			}
			res := genai.Map(project, rs, genai.Options{})
			if len(res.Refused) != 0 {
				t.Fatalf("refused %+v", res.Refused)
			}
			byType := map[string][]fleet.Event{}
			for _, ev := range res.Events {
				byType[ev.Type] = append(byType[ev.Type], ev)
				if ev.AgentID != agent {
					t.Errorf("%s %s belongs to agent %q, want %q", ev.Type, ev.ID, ev.AgentID, agent)
				}
			}

			// The calls: one llm.call per completion, in the order made.
			var want, got []fleet.LLMCall
			for _, c := range calls {
				w := nodetest.Reported(lib.script, c)
				w.Model, w.Provider, w.Status = c.ResponseModel, "openai", "ok"
				if lib.requestModel {
					w.Model = c.Model
				}
				want = append(want, w)
			}
			for _, ev := range byType[fleet.TypeLLMCall] {
				var c fleet.LLMCall
				if err := json.Unmarshal(ev.Data, &c); err != nil {
					t.Fatal(err)
				}
				if c.LatencyMS <= 0 {
					t.Errorf("llm.call %s has latency %v ms", ev.ID, c.LatencyMS)
				}
				got = append(got, c)
			}
			sortCalls := cmpopts.SortSlices(func(a, b fleet.LLMCall) bool { return a.InputTokens < b.InputTokens })
			if diff := cmp.Diff(want, got, sortCalls, cmpopts.IgnoreFields(fleet.LLMCall{}, "LatencyMS")); diff != "" {
				t.Errorf("llm.call payloads (-want +got):\n%s", diff)
			}

			// The tool.
			if tools := byType[fleet.TypeToolCall]; len(tools) != 1 {
				t.Errorf("%d tool.call events, want 1", len(tools))
			} else {
				var tc fleet.ToolCall
				if err := json.Unmarshal(tools[0].Data, &tc); err != nil {
					t.Fatal(err)
				}
				if tc.Tool != nodetest.ToolName || tc.Status != "ok" {
					t.Errorf("tool.call %+v, want %s ok", tc, nodetest.ToolName)
				}
			}

			// The agent, announced once, under its name.
			if created := byType[fleet.TypeAgentCreated]; len(created) != 1 {
				t.Errorf("%d agent.created events, want 1", len(created))
			} else {
				var ac fleet.AgentCreated
				if err := json.Unmarshal(created[0].Data, &ac); err != nil {
					t.Fatal(err)
				}
				if created[0].ID != genai.AgentEventID(project, agent) || ac.Name != agent {
					t.Errorf("agent.created %s %+v, want id %s named %s", created[0].ID, ac, genai.AgentEventID(project, agent), agent)
				}
			}

			// The run, and every call and tool inside it.
			started, ended := byType[fleet.TypeRunStarted], byType[fleet.TypeRunCompleted]
			if lib.run {
				if len(started) != 1 || len(ended) != 1 || len(byType[fleet.TypeRunFailed]) != 0 {
					t.Fatalf("%d agent.run.started, %d completed, %d failed; want one completed run", len(started), len(ended), len(byType[fleet.TypeRunFailed]))
				}
				for _, ev := range append(byType[fleet.TypeLLMCall], byType[fleet.TypeToolCall]...) {
					if ev.RunID != started[0].RunID {
						t.Errorf("%s %s is in run %q, want the agent's run %q", ev.Type, ev.ID, ev.RunID, started[0].RunID)
					}
				}
			} else if len(started)+len(ended) != 0 {
				t.Errorf("a library with no agent span made %d run events", len(started)+len(ended))
			}

			// Folded: the spend is the table applied to the usages the
			// library reports, to the micro-dollar.
			pricing := fleet.DefaultPricing()
			wantSpend, priced := nodetest.Expected(pricing, lib.script, calls)
			if !priced {
				t.Fatalf("the pricing table does not price %s: pick a model it prices", calls[0].ResponseModel)
			}
			s := fleet.NewState(pricing)
			if dups := fold(t, s, res.Events); dups != 0 {
				t.Fatalf("%d duplicates within one export", dups)
			}
			view := s.View(project)
			p := view.Projects[project]
			if p.SpendTotal != wantSpend || p.UnpricedCalls != 0 {
				t.Errorf("project spend %d µ$ (%d unpriced calls), want %d µ$", p.SpendTotal, p.UnpricedCalls, wantSpend)
			}
			a, ok := view.Agents[agent]
			if !ok || len(view.Agents) != 1 {
				t.Fatalf("roster %v, want only %s", keys(view.Agents), agent)
			}
			if a.ToolCalls != 1 {
				t.Errorf("agent made %d tool calls, want 1", a.ToolCalls)
			}
			if lib.run && (len(a.RecentRuns) != 1 || a.RecentRuns[0].Calls != 3 || a.RecentRuns[0].Status != "completed" || a.RecentRuns[0].Spend != wantSpend) {
				t.Errorf("agent runs %+v, want one completed run of 3 calls (two completions and the tool) costing %d µ$", a.RecentRuns, wantSpend)
			}

			// The exporter retries: the same export maps to the same
			// events, and folds as duplicates that change nothing.
			again := genai.Map(project, rs, genai.Options{})
			if diff := cmp.Diff(res.Events, again.Events, cmp.AllowUnexported(fleet.Event{})); diff != "" {
				t.Fatalf("mapping the same export twice differs (-first +again):\n%s", diff)
			}
			if dups := fold(t, s, again.Events); dups != len(again.Events) {
				t.Errorf("re-sent export: %d of %d events were duplicates", dups, len(again.Events))
			}
			if p2 := s.View(project).Projects[project]; p2.SpendTotal != p.SpendTotal || p2.TokensTotal != p.TokensTotal {
				t.Errorf("re-sent export changed the project: spend %d, tokens %d; was %d, %d", p2.SpendTotal, p2.TokensTotal, p.SpendTotal, p.TokensTotal)
			}
		})
	}
}

// fold applies evs to s, one stream message each, at the event's own
// time, and returns how many the fold took as duplicates.
func fold(t *testing.T, s *fleet.State, evs []fleet.Event) (dups int) {
	t.Helper()
	for _, ev := range evs {
		switch s.Apply(s.Seq()+1, ev.Time, ev) {
		case fleet.Rejected:
			t.Fatalf("fold rejected %s %s: %s", ev.Type, ev.ID, s.Effect().Reason)
		case fleet.Duplicate:
			dups++
		}
	}
	return dups
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// writeFixture writes a library's exports as one OTLP/JSON export request
// to genai/testdata/otlp/<name>.json, less the resource attributes that
// describe the machine that ran it (host.*, process.*).
func writeFixture(t *testing.T, name string, exports []nodetest.Export) {
	t.Helper()
	var req coltracepb.ExportTraceServiceRequest
	for _, e := range exports {
		for _, rs := range e.ResourceSpans {
			if r := rs.GetResource(); r != nil {
				var keep []*commonpb.KeyValue
				for _, kv := range r.Attributes {
					if !strings.HasPrefix(kv.Key, "host.") && !strings.HasPrefix(kv.Key, "process.") {
						keep = append(keep, kv)
					}
				}
				r.Attributes = keep
			}
			req.ResourceSpans = append(req.ResourceSpans, rs)
		}
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&req)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "testdata", "otlp", name+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
