package genai_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/genai"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// fold applies evs to s, one stream message each, stored at the event's
// own time, and returns how many the fold took as duplicates.
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

// mixedBatch is one export with calls of every convention, an agent
// invocation with its call and tool, and an unpriced model.
func mixedBatch() []*tracepb.ResourceSpans {
	return []*tracepb.ResourceSpans{
		res("support-bot", nil,
			sp{tr: 30, s: 2, p: 1, startMS: 10, durMS: 500, attrs: []any{
				"gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-5",
				"gen_ai.response.model", "gpt-5", "gen_ai.usage.input_tokens", 1200, "gen_ai.usage.cache_read.input_tokens", 200,
				"gen_ai.usage.output_tokens", 300, "gen_ai.usage.cost", 1000.0,
			}},
			sp{tr: 30, s: 3, p: 1, startMS: 520, durMS: 30, attrs: []any{"gen_ai.operation.name", "execute_tool", "gen_ai.tool.name", "search_kb"}},
			sp{tr: 30, s: 1, durMS: 600, attrs: []any{"gen_ai.operation.name", "invoke_agent", "gen_ai.agent.id", "triager", "gen_ai.request.model", "gpt-5"}},
		),
		res("oi-app", nil, sp{tr: 31, s: 1, durMS: 200, attrs: []any{
			"openinference.span.kind", "LLM", "llm.provider", "anthropic", "llm.model_name", "claude-sonnet-4-5",
			"llm.token_count.prompt", 5000, "llm.token_count.prompt_details.cache_read", 3000,
			"llm.token_count.prompt_details.cache_write", 1000, "llm.token_count.completion", 400,
		}}),
		res("next-app", nil,
			sp{tr: 32, s: 2, p: 1, durMS: 100, attrs: []any{
				"ai.operationId", "ai.generateText.doGenerate", "gen_ai.system", "openai.chat", "gen_ai.request.model", "gpt-5-mini",
				"gen_ai.usage.input_tokens", 1500.0, "gen_ai.usage.output_tokens", 100.0, "ai.usage.cachedInputTokens", 1000.0,
			}},
			sp{tr: 32, s: 1, durMS: 120, attrs: []any{
				"ai.operationId", "ai.generateText", "ai.model.id", "gpt-5-mini", "ai.usage.promptTokens", 1500.0, "ai.usage.completionTokens", 100.0,
			}},
			sp{tr: 32, s: 3, durMS: 100, attrs: []any{
				"ai.operationId", "ai.generateText.doGenerate", "gen_ai.system", "acme-llm", "gen_ai.request.model", "house-model-1",
				"gen_ai.usage.input_tokens", 70.0, "gen_ai.usage.output_tokens", 7.0,
			}},
		),
	}
}

// TestFoldSpend folds a mapped export and checks that the project's spend
// is the server's pricing table applied to the normalised token counts,
// to the micro-dollar, whatever cost the spans claimed; and that the same
// export sent again changes nothing.
func TestFoldSpend(t *testing.T) {
	pricing := fleet.DefaultPricing()
	want := fleet.Micros(0)
	for _, c := range []fleet.LLMCall{
		{Model: "gpt-5", InputTokens: 1000, OutputTokens: 300, CacheReadTokens: 200},
		{Model: "claude-sonnet-4-5", InputTokens: 1000, OutputTokens: 400, CacheReadTokens: 3000, CacheWriteTokens: 1000},
		{Model: "gpt-5-mini", InputTokens: 500, OutputTokens: 100, CacheReadTokens: 1000},
	} {
		price, ok := pricing.Lookup(c.Model)
		if !ok {
			t.Fatalf("pricing.json no longer prices %s", c.Model)
		}
		want += price.Cost(c)
	}
	// Pinned by hand from pricing.json: gpt-5 1000×1.25 + 300×10 + 200×0.125
	// = 4,275 µ$; claude-sonnet-4-5 1000×3 + 400×15 + 3000×0.30 + 1000×3.75
	// = 13,650 µ$; gpt-5-mini 500×0.25 + 100×2 + 1000×0.025 = 350 µ$.
	if want != 4275+13650+350 {
		t.Fatalf("pricing table changed: the three calls cost %d µ$, the hand sum is 18275", want)
	}

	s := fleet.NewState(pricing)
	first := genai.Map("acme", mixedBatch(), genai.Options{})
	if len(first.Refused) != 0 {
		t.Fatalf("refused %+v", first.Refused)
	}
	if dups := fold(t, s, first.Events); dups != 0 {
		t.Fatalf("%d duplicates within one export", dups)
	}
	p := s.View("acme").Projects["acme"]
	if p.SpendTotal != want || p.UnpricedCalls != 1 || p.RunsTotal != 1 {
		t.Fatalf("spend %d µ$, unpriced %d, runs %d; want %d, 1, 1", p.SpendTotal, p.UnpricedCalls, p.RunsTotal, want)
	}
	if tokens := int64(1000 + 300 + 200 + 1000 + 400 + 3000 + 1000 + 500 + 100 + 1000 + 70 + 7); p.TokensTotal != tokens {
		t.Errorf("tokens %d, want %d", p.TokensTotal, tokens)
	}
	agents := s.View("acme").Agents
	var names []string
	for id := range agents {
		names = append(names, id)
	}
	if diff := cmp.Diff([]string{"next-app", "oi-app", "triager"}, slices.Sorted(slices.Values(names))); diff != "" {
		t.Errorf("roster (-want +got):\n%s", diff)
	}
	tr := agents["triager"]
	if len(tr.RecentRuns) != 1 || tr.RecentRuns[0].Calls != 2 || tr.RecentRuns[0].Status != "completed" || tr.ToolCalls != 1 {
		t.Errorf("triager: runs %+v, tool calls %d; want one completed run with its call and its tool", tr.RecentRuns, tr.ToolCalls)
	}

	// The exporter retries: the same export, mapped again, is all
	// duplicates and changes no figure.
	again := genai.Map("acme", mixedBatch(), genai.Options{})
	if diff := cmp.Diff(first.Events, again.Events, cmp.AllowUnexported(fleet.Event{})); diff != "" {
		t.Fatalf("mapping the same export twice differs (-first +again):\n%s", diff)
	}
	if dups := fold(t, s, again.Events); dups != len(again.Events) {
		t.Errorf("re-sent export: %d of %d events were duplicates", dups, len(again.Events))
	}
	if p2 := s.View("acme").Projects["acme"]; p2.SpendTotal != p.SpendTotal || p2.TokensTotal != p.TokensTotal || p2.RunsTotal != p.RunsTotal {
		t.Errorf("re-sent export changed the project: %+v, was %+v", p2, p)
	}
}

// TestAgentAnnouncedOnceAcrossExports checks that an agent named by two
// exports is announced under one id, so the fold creates it once; and that
// each export's calls still reach it.
func TestAgentAnnouncedOnceAcrossExports(t *testing.T) {
	s := fleet.NewState(fleet.DefaultPricing())
	var announced []string
	for i := byte(0); i < 3; i++ {
		r := genai.Map("acme", []*tracepb.ResourceSpans{res("svc", nil,
			sp{tr: 40 + i, s: 1, startMS: int(i) * 1000, durMS: 10, attrs: chat("gen_ai.agent.name", "writer")})}, genai.Options{})
		for _, ev := range r.Events {
			if ev.Type == fleet.TypeAgentCreated {
				announced = append(announced, ev.ID)
			}
		}
		fold(t, s, r.Events)
	}
	want := genai.AgentEventID("acme", "writer")
	if diff := cmp.Diff([]string{want, want, want}, announced); diff != "" {
		t.Errorf("announcement ids (-want +got):\n%s", diff)
	}
	if c := s.Counts(); c.Duplicates != 2 {
		t.Errorf("fold saw %d duplicates, want the 2 repeated announcements", c.Duplicates)
	}
	if a := s.View("acme").Agents["writer"]; a.LLMCalls != 3 {
		t.Errorf("writer has %d calls, want 3", a.LLMCalls)
	}
	// Another project's agent of the same name is another agent.
	if genai.AgentEventID("globex", "writer") == want {
		t.Error("two projects' agents share an announcement id")
	}
}

// TestTeamAndUser checks that sagewai.team_id and sagewai.user_id reach
// the envelope, the span's over the resource's, so team and user budgets
// see ingested spend.
func TestTeamAndUser(t *testing.T) {
	r := genai.Map("acme", []*tracepb.ResourceSpans{res("svc", []any{genai.ProjectAttr, "acme", genai.TeamAttr, "support", genai.UserAttr, "u-1"},
		sp{tr: 50, s: 1, durMS: 10, attrs: chat(genai.UserAttr, "u-42")},
		sp{tr: 50, s: 2, durMS: 10, attrs: chat()},
	)}, genai.Options{})
	var got [][2]string
	for _, ev := range check(t, "acme", r) {
		if ev.Type == fleet.TypeLLMCall {
			got = append(got, [2]string{ev.Team, ev.User})
		}
	}
	if diff := cmp.Diff([][2]string{{"support", "u-42"}, {"support", "u-1"}}, got); diff != "" {
		t.Errorf("team and user (-want +got):\n%s", diff)
	}
}
