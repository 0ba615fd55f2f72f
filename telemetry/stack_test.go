package telemetry_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/telemetry/otlptest"
	"github.com/sagewai/observatory/web/auth"
)

var projects = []string{"acme", "globex", "initech"}

// publishFleet publishes a realistic mixed stream for the three projects
// (with duplicates, unknown types and invalid messages), plus a stop
// budget, waits until the hub has folded it all and returns what it sent.
func publishFleet(t *testing.T, st *stack, seed uint64, n int) []fleettest.Msg {
	t.Helper()
	ctx := context.Background()
	msgs := fleettest.Generate(rand.New(rand.NewPCG(seed, 7)), n, fleettest.Options{Projects: projects})
	// The budget events' times are the wall clock's, as NATS stamps the
	// messages with it and the fold's clock is their stored time.
	now := time.Now().UTC()
	extra := []fleet.Event{
		fleettest.E{Type: fleet.TypeBudgetExceeded, Time: now, ProjectID: "acme",
			Data: fleet.BudgetNotice{Scope: "project", ScopeID: "acme", Period: "daily", LimitUSD: 5_000_000, SpentUSD: 5_100_000, Action: "stop"}}.Event(),
		fleettest.E{Type: fleet.TypeBudgetWarning, Time: now, ProjectID: "globex", TeamID: "research",
			Data: fleet.BudgetNotice{Scope: "team", ScopeID: "research", Period: "monthly", LimitUSD: 100_000_000, SpentUSD: 81_000_000, Action: "warn"}}.Event(),
	}
	for _, ev := range extra {
		msgs = append(msgs, fleettest.MsgOf(ev, time.Time{}))
	}
	var last uint64
	for _, m := range msgs {
		seq, err := st.nats.Publisher.PublishRaw(ctx, m.Subject, m.Body, "")
		if err != nil {
			t.Fatalf("publish %s: %v", m.Subject, err)
		}
		last = seq
	}
	streamtest.WaitSeq(t, st.nats.Hub, last)
	return msgs
}

// httpTraffic sends known requests and returns how many each project made
// to GET /api/v1/fleet with status 200.
func httpTraffic(t *testing.T, st *stack) map[string]int {
	t.Helper()
	ok := map[string]int{}
	if r := st.do(t, http.MethodPost, "/api/v1/auth/login", `{"username":"admin","password":"`+adminPassword+`"}`, nil); r.status != http.StatusOK {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	for range 2 {
		if r := st.do(t, http.MethodPost, "/api/v1/auth/login", `{"username":"admin","password":"wrong"}`, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("bad login: %d", r.status)
		}
	}
	admin := bearer(st.token(t, auth.RoleAdmin, ""))
	for i, p := range projects {
		for range i + 1 {
			if r := st.do(t, http.MethodGet, "/api/v1/fleet?scope="+p, "", admin); r.status != http.StatusOK {
				t.Fatalf("fleet %s: %d %s", p, r.status, r.body)
			}
			ok[p]++
		}
	}
	// A project token of globex reading acme: 403 and an audit event.
	if r := st.do(t, http.MethodGet, "/api/v1/fleet?scope=acme", "", bearer(st.token(t, auth.RoleProject, "globex"))); r.status != http.StatusForbidden {
		t.Fatalf("cross-tenant read: %d", r.status)
	}
	if r := st.do(t, http.MethodGet, "/api/v1/nope/12345", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown path: %d", r.status)
	}
	if r := st.do(t, http.MethodGet, "/api/v1/fleet", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("no token: %d", r.status)
	}
	return ok
}

// foldTotals is what the fold says of each project.
func foldTotals(t *testing.T, st *stack) map[string]fleet.Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, err := st.nats.Hub.View(ctx, fleet.ScopeAll)
	if err != nil {
		t.Fatal(err)
	}
	return v.Projects
}

func TestSpansFromMixedTraffic(t *testing.T) {
	st := newStack(t, true)
	publishFleet(t, st, 1, 1500)
	httpTraffic(t, st)
	if err := st.tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := st.recv.Spans()
	totals := foldTotals(t, st)

	t.Run("every span carries its project", func(t *testing.T) {
		for _, s := range spans {
			if p, _ := s.Attrs["sagewai.project_id"].(string); p == "" {
				t.Errorf("span %q has no sagewai.project_id: %v", s.Name, s.Attrs)
			}
		}
		if len(spans) < 100 {
			t.Fatalf("only %d spans received", len(spans))
		}
	})

	t.Run("http spans are named by route with the resolved project", func(t *testing.T) {
		type key struct{ name, project string }
		got := map[key]int{}
		for _, s := range spans {
			if s.Kind == "SPAN_KIND_SERVER" {
				got[key{s.Name, s.Attrs["sagewai.project_id"].(string)}]++
			}
		}
		want := map[key]int{
			{"POST /api/v1/auth/login", "global"}: 3,
			{"GET /api/v1/fleet", "acme"}:         1,
			{"GET /api/v1/fleet", "globex"}:       3, // 2 as admin, 1 refused (the token's project)
			{"GET /api/v1/fleet", "initech"}:      3,
			{"GET /api/v1/fleet", "global"}:       1, // no token
			{"GET unmatched", "global"}:           1,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("server spans (-want +got):\n%s", diff)
		}
	})

	t.Run("runs parent their calls", func(t *testing.T) {
		runs := map[string]otlptest.Span{}
		for _, s := range spans {
			if s.Attrs["gen_ai.operation.name"] == "invoke_agent" {
				runs[s.Attrs["sagewai.project_id"].(string)+"/"+s.Attrs["sagewai.run.id"].(string)] = s
			}
		}
		parented := 0
		for _, s := range spans {
			op := s.Attrs["gen_ai.operation.name"]
			if op != "chat" && op != "execute_tool" {
				continue
			}
			runID, _ := s.Attrs["sagewai.run.id"].(string)
			r, ok := runs[s.Attrs["sagewai.project_id"].(string)+"/"+runID]
			if !ok {
				continue
			}
			parented++
			if s.ParentID != r.SpanID || s.TraceID != r.TraceID {
				t.Errorf("%s of run %s: parent %s/%s, want the run span %s/%s", s.Name, runID, s.TraceID, s.ParentID, r.TraceID, r.SpanID)
			}
			// The generated stream has late and early event times, so a
			// call may fall outside its run; its own times must hold.
			if s.End.Before(s.Start) {
				t.Errorf("%s: ends at %s before it starts at %s", s.Name, s.End, s.Start)
			}
		}
		if len(runs) == 0 || parented == 0 {
			t.Fatalf("%d run spans, %d calls under them", len(runs), parented)
		}
	})

	t.Run("genai attributes", func(t *testing.T) {
		n := 0
		for _, s := range spans {
			switch s.Attrs["gen_ai.operation.name"] {
			case "chat":
				n++
				for _, k := range []string{"gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens",
					"gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens", "sagewai.cost_usd"} {
					if _, ok := s.Attrs[k]; !ok {
						t.Errorf("chat span %q lacks %s", s.Name, k)
					}
				}
				if s.Kind != "SPAN_KIND_CLIENT" || !strings.HasPrefix(s.Name, "chat ") {
					t.Errorf("chat span %q has kind %s", s.Name, s.Kind)
				}
			case "execute_tool":
				if _, ok := s.Attrs["gen_ai.tool.name"]; !ok {
					t.Errorf("tool span %q lacks gen_ai.tool.name", s.Name)
				}
			}
		}
		if n == 0 {
			t.Fatal("no chat spans")
		}
	})

	t.Run("tokens and cost add up to the fold", func(t *testing.T) {
		type sums struct {
			Tokens int64
			Spend  int64
		}
		got, want := map[string]sums{}, map[string]sums{}
		for _, s := range spans {
			if s.Attrs["gen_ai.operation.name"] != "chat" {
				continue
			}
			p := s.Attrs["sagewai.project_id"].(string)
			x := got[p]
			x.Tokens += s.Attrs["gen_ai.usage.input_tokens"].(int64) + s.Attrs["gen_ai.usage.output_tokens"].(int64)
			x.Spend += micros(s.Attrs["sagewai.cost_usd"].(float64))
			got[p] = x
		}
		for p, v := range totals {
			want[p] = sums{v.TokensTotal, int64(v.SpendTotal)}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("per project (-fold +spans):\n%s", diff)
		}
	})
}

func TestMetricsAfterKnownTraffic(t *testing.T) {
	st := newStack(t, false)
	publishFleet(t, st, 2, 1500)
	fleetOK := httpTraffic(t, st)
	totals := foldTotals(t, st)
	stats := st.nats.Hub.Stats()
	fams := st.scrape(t)

	t.Run("http requests by route template", func(t *testing.T) {
		for _, p := range projects {
			want := float64(fleetOK[p])
			if got := sum(fams, "http_server_duration_milliseconds", map[string]string{
				"http_method": "GET", "http_route": "/api/v1/fleet", "http_status_code": "200", "sagewai_project_id": p}); got != want {
				t.Errorf("GET /api/v1/fleet 200 %s: %v requests, want %v", p, got, want)
			}
		}
		for _, c := range []struct {
			labels map[string]string
			want   float64
		}{
			{map[string]string{"http_route": "unmatched", "http_status_code": "404", "sagewai_project_id": "global"}, 1},
			{map[string]string{"http_route": "/api/v1/fleet", "http_status_code": "403", "sagewai_project_id": "globex"}, 1},
			{map[string]string{"http_route": "/api/v1/fleet", "http_status_code": "401", "sagewai_project_id": "global"}, 1},
			{map[string]string{"http_route": "/api/v1/auth/login", "http_status_code": "200"}, 1},
			{map[string]string{"http_route": "/api/v1/auth/login", "http_status_code": "401"}, 2},
		} {
			if got := sum(fams, "http_server_duration_milliseconds", c.labels); got != c.want {
				t.Errorf("%v: %v requests, want %v", c.labels, got, c.want)
			}
		}
		for _, name := range []string{"http_server_duration_milliseconds", "http_server_request_size_bytes", "http_server_response_size_bytes", "http_server_active_requests"} {
			for _, m := range fams[name].GetMetric() {
				r := labels(m)["http_route"]
				if strings.ContainsAny(r, "?=") || strings.Contains(r, "12345") || strings.Contains(r, "nope") {
					t.Errorf("%s has a raw path as http_route: %q", name, r)
				}
			}
		}
		if got := sum(fams, "http_server_active_requests", nil); got != 1 {
			t.Errorf("active requests: %v, want 1 (the scrape itself)", got)
		}
	})

	t.Run("security counters", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"sagewai_auth_logins_total", map[string]string{"result": "succeeded"}, 1},
			{"sagewai_auth_logins_total", map[string]string{"result": "failed", "reason": "bad_credentials"}, 2},
			{"sagewai_tenant_cross_access_denied_total", map[string]string{"sagewai_project_id": "globex", "http_route": "/api/v1/fleet"}, 1},
		} {
			if got := sum(fams, c.name, c.labels); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	})

	t.Run("fleet figures equal the fold", func(t *testing.T) {
		type figures struct {
			SpendMicros, Tokens, Unpriced, Done, Failed, InFlight, Agents int64
		}
		got, want := map[string]figures{}, map[string]figures{}
		for p, v := range totals {
			want[p] = figures{int64(v.SpendTotal), v.TokensTotal, v.UnpricedCalls, v.MissionsDone, v.MissionsFailed, int64(v.MissionsInFlight), int64(v.Agents)}
			var spend int64
			for _, m := range fams["sagewai_llm_cost_usd_total"].GetMetric() {
				if labels(m)["sagewai_project_id"] == p {
					spend += micros(m.GetCounter().GetValue())
				}
			}
			pl := map[string]string{"sagewai_project_id": p}
			got[p] = figures{
				SpendMicros: spend,
				Tokens:      int64(sum(fams, "sagewai_llm_tokens_total", pl)),
				Unpriced:    int64(sum(fams, "sagewai_llm_unpriced_calls_total", pl)),
				Done:        int64(sum(fams, "sagewai_missions_total", map[string]string{"sagewai_project_id": p, "outcome": "completed"})),
				Failed:      int64(sum(fams, "sagewai_missions_total", map[string]string{"sagewai_project_id": p, "outcome": "failed"})),
				InFlight:    int64(sum(fams, "sagewai_missions_in_flight", pl)),
				Agents:      int64(sum(fams, "sagewai_fleet_agents", pl)),
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("per project (-fold +metrics):\n%s", diff)
		}
		if want["acme"].SpendMicros == 0 || want["acme"].Unpriced == 0 {
			t.Errorf("traffic too thin to prove anything: %+v", want["acme"])
		}
	})

	t.Run("spend by agent and team adds up to the fold's spend", func(t *testing.T) {
		// The CFO board's spend by agent and by team loses and adds
		// nothing: per project, it is the fold's spend to the micro-dollar.
		// (TestSpendByAgentAndTeam checks the attribution itself.)
		got := map[string]int64{}
		want := map[string]int64{}
		series, teams := 0, map[string]bool{}
		for _, m := range fams["sagewai_llm_cost_by_agent_usd_total"].GetMetric() {
			l := labels(m)
			got[l["sagewai_project_id"]] += micros(m.GetCounter().GetValue())
			teams[l["team"]] = true
			series++
		}
		for p, v := range totals {
			if v.SpendTotal != 0 {
				want[p] = int64(v.SpendTotal)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("spend by agent and team, summed by project (-fold +metrics):\n%s", diff)
		}
		if series < 6 || len(teams) < 3 {
			t.Errorf("traffic too thin to prove anything: %d series, teams %v", series, teams)
		}
	})

	t.Run("runs in flight equal the agents in a run", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, _, err := st.nats.Hub.View(ctx, fleet.ScopeAll)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{}
		for p := range v.Projects {
			want[p] = 0
		}
		for _, a := range v.Agents {
			if a.RunID != "" {
				want[a.ProjectID]++
			}
		}
		got := map[string]int64{}
		for p := range v.Projects {
			got[p] = int64(sum(fams, "sagewai_agent_runs_in_flight", map[string]string{"sagewai_project_id": p}))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("runs in flight (-fold +metrics):\n%s", diff)
		}
	})

	t.Run("hub counters equal its stats", func(t *testing.T) {
		got := map[string]int64{}
		want := map[string]int64{"applied": stats.Applied, "duplicate": stats.Duplicates, "unknown": stats.Unknown}
		var rejected int64
		for r, n := range stats.Rejected {
			rejected += n
			want["reason "+string(r)] = n
			got["reason "+string(r)] = int64(sum(fams, "sagewai_hub_events_rejected_total", map[string]string{"reason": string(r)}))
		}
		want["rejected"] = rejected
		for _, r := range []string{"applied", "duplicate", "unknown", "rejected"} {
			got[r] = int64(sum(fams, "sagewai_hub_events_ingested_total", map[string]string{"result": r}))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-stats +metrics):\n%s", diff)
		}
		if got := sum(fams, "sagewai_hub_pending_events", nil); got != 0 {
			t.Errorf("pending events: %v, want 0", got)
		}
		if got := sum(fams, "sagewai_budget_rejections_total", map[string]string{"sagewai_project_id": "acme", "scope": "project"}); got != 1 {
			t.Errorf("budget rejections of acme: %v, want 1", got)
		}
		if got := sum(fams, "sagewai_budget_limit_usd", map[string]string{"sagewai_project_id": "globex", "scope": "team", "team": "research", "period": "monthly"}); got != 100 {
			t.Errorf("team budget limit of globex: %v, want 100", got)
		}
	})

	t.Run("access lines carry trace ids with OTLP off", func(t *testing.T) {
		n := 0
		for _, l := range logEvents(t, st, "http.request") {
			n++
			if tid, _ := l["trace_id"].(string); len(tid) != 32 {
				t.Errorf("access line without a trace id: %v", l)
			}
		}
		if n == 0 {
			t.Fatal("no access lines")
		}
	})

	t.Run("pipeline health is zero, not absent, with OTLP off", func(t *testing.T) {
		for _, name := range []string{"sagewai_otel_spans_exported_total", "sagewai_otel_spans_dropped_total", "sagewai_otel_spans_queued",
			"sagewai_otel_log_records_exported_total", "sagewai_otel_log_records_dropped_total", "sagewai_otel_log_records_queued",
			"sagewai_otel_export_failures_total"} {
			if len(fams[name].GetMetric()) == 0 {
				t.Errorf("%s is absent", name)
			} else if got := sum(fams, name, nil); got != 0 {
				t.Errorf("%s = %v, want 0", name, got)
			}
		}
	})

	t.Run("every family is documented and every documented family exposed", func(t *testing.T) {
		documented := documentedFamilies(t)
		for name := range fams {
			if !documented[name] {
				t.Errorf("%s is exposed but not in docs/metrics.md", name)
			}
		}
		for name := range documented {
			if _, ok := fams[name]; !ok {
				t.Errorf("%s is in docs/metrics.md but not exposed", name)
			}
		}
		if len(documented) < 25 {
			t.Errorf("only %d metric families documented", len(documented))
		}
	})
}

// TestSpendByAgentAndTeam: the CFO board's spend by agent and team, and
// by model, from a stream whose costs are worked out by hand below from
// the per-million prices of fleet/pricing.json (as of 2026-11-01), to the
// micro-dollar. A call without a team is its mission's, the mission named
// by the call or by its run's agent.run.started; a call without agent or
// team is "unknown"'s; a duplicate is counted once; a model without a
// price costs nothing.
func TestSpendByAgentAndTeam(t *testing.T) {
	st := newStack(t, false)
	ctx := context.Background()
	// Event times are the wall clock's, as NATS stamps the messages with
	// it and the fold's clock is their stored time.
	now := time.Now().UTC()
	call := func(project, team, agent, mission, run, model string, in, out, cacheRead, cacheWrite int64) fleettest.E {
		return fleettest.E{Type: fleet.TypeLLMCall, Time: now, ProjectID: project, TeamID: team, AgentID: agent, MissionID: mission, RunID: run,
			Data: fleet.LLMCall{Provider: "test", Model: model, InputTokens: in, OutputTokens: out,
				CacheReadTokens: cacheRead, CacheWriteTokens: cacheWrite, LatencyMS: 420, Status: "ok"}}
	}
	sonnet := call("acme", "", "acme-triager", "", "r-1", "claude-sonnet-4-5", 1000, 2000, 10000, 400)
	sonnet.ID = fleettest.NextID()
	evs := []fleettest.E{
		{Type: fleet.TypeMissionQueued, Time: now, ProjectID: "acme", TeamID: "support", UserID: "u-ana", MissionID: "m-1",
			Data: map[string]any{"title": "refund", "priority": 2}},
		{Type: fleet.TypeRunStarted, Time: now, ProjectID: "acme", AgentID: "acme-triager", MissionID: "m-1", RunID: "r-1",
			Data: fleet.RunStarted{Model: "claude-sonnet-4-5"}},
		// claude-sonnet-4-5: $3.00, $15.00, $0.30 and $3.75 per million
		// input, output, cache-read and cache-write tokens:
		// 1000×3 + 2000×15 + 10000×0.30 + 400×3.75 = 3000 + 30000 + 3000 +
		// 1500 = 37500 µ$, for support (run r-1's mission m-1's team).
		sonnet,
		sonnet, // the same event again: counted once
		// claude-haiku-4-5: $1.00 and $5.00: 2500×1 + 300×5 = 4000 µ$, for
		// the call's own team.
		call("acme", "escalations", "acme-triager", "", "", "claude-haiku-4-5", 2500, 300, 0, 0),
		// gpt-5-mini: $0.25 and $2.00: 333×0.25 + 77×2 = 237.25 µ$, 237
		// rounded, for support (mission m-1's team).
		call("acme", "", "acme-responder", "m-1", "", "gpt-5-mini", 333, 77, 0, 0),
		// gpt-5: $1.25, $10.00 and $0.125: 10000×1.25 + 1000×10 +
		// 2000×0.125 = 12500 + 10000 + 250 = 22750 µ$, nobody's.
		call("globex", "", "", "", "", "gpt-5", 10000, 1000, 2000, 0),
		// A fine-tune in no pricing table: nothing.
		call("acme", "support", "acme-coder", "", "", "initech-coder-ft-v2", 5000, 5000, 0, 0),
	}
	var last uint64
	for _, e := range evs {
		// No message id: the duplicate reaches the fold, which must
		// count it once.
		seq, err := st.nats.Publisher.PublishRaw(ctx, e.Subject(), e.Body(), "")
		if err != nil {
			t.Fatalf("publish %s: %v", e.Type, err)
		}
		last = seq
	}
	streamtest.WaitSeq(t, st.nats.Hub, last)
	fams := st.scrape(t)

	byAgent := map[string]int64{}
	for _, m := range fams["sagewai_llm_cost_by_agent_usd_total"].GetMetric() {
		l := labels(m)
		byAgent[l["sagewai_project_id"]+" "+l["agent"]+" "+l["team"]] += micros(m.GetCounter().GetValue())
	}
	wantByAgent := map[string]int64{
		"acme acme-triager support":     37500,
		"acme acme-triager escalations": 4000,
		"acme acme-responder support":   237,
		"acme acme-coder support":       0,
		"globex unknown unknown":        22750,
	}
	if diff := cmp.Diff(wantByAgent, byAgent); diff != "" {
		t.Errorf("spend by project, agent and team in µ$ (-by hand +metrics):\n%s", diff)
	}
	byModel := map[string]int64{}
	for _, m := range fams["sagewai_llm_cost_usd_total"].GetMetric() {
		l := labels(m)
		byModel[l["sagewai_project_id"]+" "+l["model"]] += micros(m.GetCounter().GetValue())
	}
	wantByModel := map[string]int64{
		"acme claude-sonnet-4-5":   37500,
		"acme claude-haiku-4-5":    4000,
		"acme gpt-5-mini":          237,
		"acme initech-coder-ft-v2": 0,
		"globex gpt-5":             22750,
	}
	if diff := cmp.Diff(wantByModel, byModel); diff != "" {
		t.Errorf("spend by project and model in µ$ (-by hand +metrics):\n%s", diff)
	}
}

// logEvents returns the JSON log lines whose event is one of types.
func logEvents(t *testing.T, st *stack, types ...string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range st.logs.lines(t) {
		for _, typ := range types {
			if l["event"] == typ {
				out = append(out, l)
			}
		}
	}
	return out
}

func TestBusinessEventLogs(t *testing.T) {
	st := newStack(t, true)
	httpTraffic(t, st)
	if err := st.tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	type record struct {
		Event, Project, User, Route, Scope, Reason string
		Traced                                     bool
	}
	want := []record{
		{Event: "auth.login.succeeded", Project: "global", User: "admin", Traced: true},
		{Event: "auth.login.failed", Project: "global", User: "admin", Reason: "bad_credentials", Traced: true},
		{Event: "auth.login.failed", Project: "global", User: "admin", Reason: "bad_credentials", Traced: true},
		{Event: "tenant.cross_access_denied", Project: "globex", User: "api:globex", Route: "/api/v1/fleet", Scope: "acme", Traced: true},
	}
	str := func(v any) string { s, _ := v.(string); return s }

	t.Run("json lines", func(t *testing.T) {
		var got []record
		traceIDs := map[string]bool{}
		for _, l := range logEvents(t, st, "auth.login.succeeded", "auth.login.failed", "tenant.cross_access_denied") {
			for _, k := range []string{"time", "level", "msg", "event_id"} {
				if l[k] == nil {
					t.Errorf("%s line lacks %s: %v", l["event"], k, l)
				}
			}
			got = append(got, record{Event: str(l["event"]), Project: str(l["sagewai.project_id"]), User: str(l["user_id"]),
				Route: str(l["route"]), Scope: str(l["scope"]), Reason: str(l["reason"]),
				Traced: len(str(l["trace_id"])) == 32 && len(str(l["span_id"])) == 16})
			traceIDs[str(l["trace_id"])] = true
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("business events on stdout (-want +got):\n%s", diff)
		}
		// The request's access line carries the same trace id.
		for _, l := range logEvents(t, st, "http.request") {
			if l["route"] == "/api/v1/auth/login" && !traceIDs[str(l["trace_id"])] {
				t.Errorf("access line of a login has trace id %v, which no business event has", l["trace_id"])
			}
		}
	})

	t.Run("otlp log records", func(t *testing.T) {
		var got []record
		for _, r := range st.recv.Logs() {
			switch r.EventName {
			case "auth.login.succeeded", "auth.login.failed", "tenant.cross_access_denied":
			default:
				continue
			}
			if r.Body != r.EventName || r.Severity != "INFO" {
				t.Errorf("record %s: body %q, severity %q", r.EventName, r.Body, r.Severity)
			}
			got = append(got, record{Event: r.EventName, Project: str(r.Attrs["sagewai.project_id"]), User: str(r.Attrs["user_id"]),
				Route: str(r.Attrs["route"]), Scope: str(r.Attrs["scope"]), Reason: str(r.Attrs["reason"]),
				Traced: len(r.TraceID) == 32 && r.TraceID != strings.Repeat("0", 32) && len(r.SpanID) == 16})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("business events over OTLP (-want +got):\n%s", diff)
		}
	})
}

func TestHealthProbesAreSilent(t *testing.T) {
	st := newStack(t, true)
	st.do(t, http.MethodGet, "/healthz", "", nil) // warm up
	if err := st.tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	linesBefore := len(st.logs.lines(t))
	spansBefore := len(st.recv.Spans())
	logsBefore := len(st.recv.Logs())
	for i := range 1000 {
		path := "/healthz"
		if i%2 == 1 {
			path = "/readyz"
		}
		if r := st.do(t, http.MethodGet, path, "", nil); r.status != http.StatusOK {
			t.Fatalf("%s: %d", path, r.status)
		}
	}
	// Scrapes are as silent as probes.
	for range 20 {
		st.scrape(t)
	}
	if err := st.tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(st.logs.lines(t)) - linesBefore; n != 0 {
		t.Errorf("1000 probes and 20 scrapes wrote %d log lines:\n%s", n, st.logs.String())
	}
	if n := len(st.recv.Spans()) - spansBefore; n != 0 {
		t.Errorf("1000 probes and 20 scrapes made %d spans", n)
	}
	if n := len(st.recv.Logs()) - logsBefore; n != 0 {
		t.Errorf("1000 probes and 20 scrapes sent %d OTLP log records", n)
	}
	fams := st.scrape(t)
	for _, route := range []string{"/healthz", "/readyz", "/metrics"} {
		if got := sum(fams, "http_server_duration_milliseconds", map[string]string{"http_route": route}); got != 0 {
			t.Errorf("%s: %v duration samples, want 0", route, got)
		}
	}
	if got := sum(fams, "http_server_request_size_bytes", map[string]string{"http_route": "/healthz"}); got != 501 {
		t.Errorf("/healthz requests counted by size: %v, want 501", got)
	}
}

// documentedFamilies parses the table of docs/metrics.md: the first cell
// of each row, in backticks.
func documentedFamilies(t *testing.T) map[string]bool {
	t.Helper()
	b, err := readRepoFile("docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if out[name] {
			t.Errorf("docs/metrics.md lists %s twice", name)
		}
		out[name] = true
		if len(cells) != 8 {
			t.Errorf("docs/metrics.md row of %s has %d cells, want 6", name, len(cells)-2)
		}
	}
	return out
}

// TestFleetBusinessEventLogs checks that agent.created and agent.run.*
// folded from the stream are business log records (DESIGN §7), in JSON and
// over OTLP, each with its project and ids.
func TestFleetBusinessEventLogs(t *testing.T) {
	st := newStack(t, true)
	ctx := context.Background()
	// Event times are the wall clock's, as NATS stamps the messages with
	// it and the fold's clock is their stored time.
	now := time.Now().UTC()
	evs := []fleet.Event{
		fleettest.E{Type: fleet.TypeAgentCreated, Time: now, ProjectID: "acme", AgentID: "acme-triager",
			Data: fleet.AgentCreated{Name: "Triager", Role: "triage", Model: "claude-haiku-4-5"}}.Event(),
		fleettest.E{Type: fleet.TypeRunStarted, Time: now, ProjectID: "acme", AgentID: "acme-triager", RunID: "r-1", WorkerID: "w-1",
			Data: fleet.RunStarted{Model: "claude-haiku-4-5"}}.Event(),
		fleettest.E{Type: fleet.TypeRunFailed, Time: now, ProjectID: "acme", AgentID: "acme-triager", RunID: "r-1", WorkerID: "w-1",
			Data: fleet.Outcome{DurationMS: 900, Error: "tool timed out"}}.Event(),
	}
	var last uint64
	for _, ev := range evs {
		seq, err := st.nats.Publisher.Publish(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	streamtest.WaitSeq(t, st.nats.Hub, last)
	if err := st.tel.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	type record struct{ Event, Project, Agent, Run, ID string }
	want := []record{
		{fleet.TypeAgentCreated, "acme", "acme-triager", "", evs[0].ID},
		{fleet.TypeRunStarted, "acme", "acme-triager", "r-1", evs[1].ID},
		{fleet.TypeRunFailed, "acme", "acme-triager", "r-1", evs[2].ID},
	}
	str := func(v any) string { s, _ := v.(string); return s }
	var lines []record
	for _, l := range logEvents(t, st, fleet.TypeAgentCreated, fleet.TypeRunStarted, fleet.TypeRunFailed) {
		lines = append(lines, record{str(l["event"]), str(l["sagewai.project_id"]), str(l["agent_id"]), str(l["run_id"]), str(l["event_id"])})
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("fleet business events on stdout (-want +got):\n%s", diff)
	}
	var records []record
	for _, r := range st.recv.Logs() {
		if r.EventName == fleet.TypeAgentCreated || strings.HasPrefix(r.EventName, "agent.run.") {
			records = append(records, record{r.EventName, str(r.Attrs["sagewai.project_id"]), str(r.Attrs["agent_id"]), str(r.Attrs["run_id"]), str(r.Attrs["event_id"])})
		}
	}
	if diff := cmp.Diff(want, records); diff != "" {
		t.Errorf("fleet business events over OTLP (-want +got):\n%s", diff)
	}
}
