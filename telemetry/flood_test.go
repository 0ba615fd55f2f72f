package telemetry_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/telemetry"
)

// flood publishes events to FLEET as fast as NATS acknowledges them, in
// order, and counts them per project.
type flood struct {
	t      *testing.T
	js     jetstream.JetStream
	n      int
	counts map[string]int
	rng    *rand.Rand
	now    time.Time
	ids    int
}

// send publishes one event. data is its JSON data; extra its envelope
// fields besides id, type, time and project_id.
func (f *flood) send(project, typ string, extra map[string]string, data string) {
	f.t.Helper()
	f.n++
	id := fmt.Sprintf("flood-%07d", f.n)
	env := ""
	for k, v := range extra {
		env += fmt.Sprintf(",%q:%q", k, v)
	}
	body := fmt.Sprintf(`{"id":%q,"type":%q,"time":%q,"project_id":%q%s,"data":%s}`,
		id, typ, f.now.Format(time.RFC3339Nano), project, env, data)
	if f.js.PublishAsyncPending() >= 1024 {
		f.wait() // a window of acknowledgements, as a fast publisher keeps
	}
	if _, err := f.js.PublishAsync("fleet."+project+"."+typ, []byte(body), jetstream.WithMsgID(id)); err != nil {
		f.t.Fatalf("publish: %v", err)
	}
	f.counts[project]++
}

// wait waits until NATS has acknowledged everything sent.
func (f *flood) wait() {
	f.t.Helper()
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute): // only bounds a hang
		f.t.Fatalf("NATS did not acknowledge %d messages", f.js.PublishAsyncPending())
	}
}

// junk is a random word, for label values.
func (f *flood) junk() string { return fmt.Sprintf("%08x", f.rng.Uint32()) }

// uniq is a made-up id never used before, so that what a bound lets in is
// known exactly.
func (f *flood) uniq(prefix string) string {
	f.ids++
	return fmt.Sprintf("%s%x-%s", prefix, f.ids, f.junk()[:4])
}

const callData = `{"provider":"openai","model":"gpt-5-mini","input_tokens":4000,"output_tokens":500,"latency_ms":300,"status":"ok"}`

// workload is a real tenant's work: missions from..to (ids m-001, ...;
// every fifth fails) run by agent, each run with two gpt-5-mini calls of
// 2,000 µ$ ($0.002) each and a tool call. With create, the agent is
// created first.
func (f *flood) workload(p, agent string, create bool, from, to int) {
	if create {
		f.send(p, fleet.TypeAgentCreated, map[string]string{"agent_id": agent}, `{"name":"`+agent+`","model":"gpt-5-mini"}`)
	}
	for i := from; i <= to; i++ {
		m, r := fmt.Sprintf("m-%03d", i), fmt.Sprintf("r-%03d", i)
		ids := map[string]string{"agent_id": agent, "mission_id": m, "run_id": r, "worker_id": "w-01", "team_id": "support"}
		f.send(p, fleet.TypeMissionQueued, map[string]string{"mission_id": m, "team_id": "support"}, `{"title":"ticket"}`)
		f.send(p, fleet.TypeMissionClaimed, map[string]string{"mission_id": m, "worker_id": "w-01"}, `{}`)
		f.send(p, fleet.TypeRunStarted, ids, `{"model":"gpt-5-mini"}`)
		f.send(p, fleet.TypeLLMCall, ids, callData)
		f.send(p, fleet.TypeToolCall, ids, `{"tool":"search","latency_ms":20,"status":"ok"}`)
		f.send(p, fleet.TypeLLMCall, ids, callData)
		if i%5 == 0 {
			f.send(p, fleet.TypeRunFailed, ids, `{"duration_ms":900,"error":"tool budget exhausted"}`)
			f.send(p, fleet.TypeMissionFailed, ids, `{"duration_ms":1000,"error":"run failed"}`)
		} else {
			f.send(p, fleet.TypeRunCompleted, ids, `{"duration_ms":900}`)
			f.send(p, fleet.TypeMissionCompleted, ids, `{"duration_ms":1000}`)
		}
	}
}

// TestFloodLeavesTenantsIntact floods a real hub on real NATS with made-up
// ids, the way a broken or hostile publisher would: hundreds of thousands
// of events for random projects, forged project announcements, and, in one
// project, random agents, missions, workers and budgets, plus that
// project's events about the real tenants' own mission, run, agent and
// worker ids. It checks that the fold stays within its bounds (exactly at
// them, by its own counts, and in its checkpoint's size), that every
// refusal is counted with its reason and logged once per reason per
// RejectLogEvery, and that three real tenants (one in the registry, one
// announced on the stream, one created through both after the flood had
// filled every room) show exactly their own figures in the fold and in the
// sagewai_* series of the Prometheus exporter, each under its own label.
func TestFloodLeavesTenantsIntact(t *testing.T) {
	ctx := context.Background()
	// 220,576 events; a quarter under the race detector, a tenth with -short.
	scale := 1
	switch {
	case testing.Short():
		scale = 10
	case raceEnabled:
		scale = 4
	}
	lim := fleet.Limits{Projects: 300, AnnouncedProjects: 20, Agents: 1000, Missions: 500, Workers: 100, Budgets: 50}
	n := struct{ projects, announcements, agents, missions, workers, budgets int }{
		projects: 60_000 / scale, announcements: 60, agents: 80_000 / scale, missions: 40_000 / scale,
		workers: 20_000 / scale, budgets: 20_000 / scale,
	}

	logs := &syncBuffer{}
	tel, err := telemetry.Setup(ctx, envOf(nil), telemetry.Options{LogOutput: logs, LogLevel: slog.LevelInfo})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	// The hub's own clock only spaces its log lines here: it stands still
	// until the test moves it. The fold's clock is the stream's stored
	// time, NATS's wall clock, so the events are of now.
	clock := fleettest.NewClock()
	cpDir := t.TempDir()
	env := streamtest.Start(t, stream.HubConfig{Tick: 50 * time.Millisecond, Logger: tel.Logger(), Observe: tel.ObserveFleet,
		Limits: lim, Now: clock.Now, Checkpoints: stream.NewCheckpoints(cpDir), CheckpointEvery: time.Hour})
	hub := env.Hub
	if err := hub.RegisterMetrics(tel.MeterProvider()); err != nil {
		t.Fatal(err)
	}
	reg, err := stream.OpenRegistry(ctx, env.JS, stream.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	register := func(p string) {
		t.Helper()
		if _, ok, err := reg.Records.Create(ctx, "projects."+p, []byte(`{"id":"`+p+`"}`)); err != nil || !ok {
			t.Fatalf("register %s: %v %v", p, ok, err)
		}
	}
	register("acme")
	projects := stream.NewProjectSet(reg.Records)
	runCtx, stop := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- projects.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-watched })
	if err := projects.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tel.WatchFleet(telemetry.FleetSource{View: hub.View, Registered: projects.Has}); err != nil {
		t.Fatal(err)
	}

	f := &flood{t: t, js: env.JS, counts: map[string]int{}, rng: rand.New(rand.NewPCG(12, 12)), now: time.Now().UTC()}
	// Before the flood: acme is in the registry, globex announces itself,
	// and evil publishes about the others' ids first: it fails their
	// missions m-001..m-020 and run r-005, and names their worker and
	// agent. Then acme and globex work.
	f.send("globex", fleet.TypeProjectCreated, nil, `{"name":"Globex"}`)
	f.send("evil", fleet.TypeWorkerHeartbeat, map[string]string{"worker_id": "w-evil"}, `{"state":"idle"}`)
	for i := 1; i <= 20; i++ {
		f.send("evil", fleet.TypeMissionFailed, map[string]string{"mission_id": fmt.Sprintf("m-%03d", i)}, `{"error":"squatted"}`)
	}
	evilIDs := map[string]string{"agent_id": "triager", "run_id": "r-005", "mission_id": "m-005", "worker_id": "w-01"}
	f.send("evil", fleet.TypeRunFailed, evilIDs, `{"error":"forged"}`)
	f.send("evil", fleet.TypeAgentState, evilIDs, `{"state":"error"}`)
	f.send("evil", fleet.TypeWorkerLeft, evilIDs, `{"reason":"forged"}`)
	for _, p := range []string{"acme", "globex"} {
		f.send(p, fleet.TypeWorkerJoined, map[string]string{"worker_id": "w-01"}, `{"host":"w-01.`+p+`","capacity":4}`)
		f.workload(p, "triager", true, 1, 10)
	}
	evilWorkers, evilAgents := 2, 1 // w-evil and its record of w-01; its own "triager"

	// The flood: made-up projects, each new.
	for range n.projects {
		f.send(f.uniq("junk-"), fleet.TypeLLMCall, map[string]string{"agent_id": "a"}, callData)
	}
	f.wait()
	// initech is created the admin API's way after the flood has filled
	// the room for unannounced projects: a registry record, then its
	// announcement on FLEET.
	register("initech")
	streamtest.Eventually(t, 10*time.Second, func() bool { return projects.Has("initech") }, "initech never reached the project set")
	f.send("initech", fleet.TypeProjectCreated, nil, `{"name":"Initech"}`)
	for range n.announcements {
		f.send(f.uniq("fake-"), fleet.TypeProjectCreated, nil, `{"name":"forged"}`)
	}
	// In evil: random agents (with random models and teams), missions,
	// workers and budgets.
	for range n.agents {
		f.send("evil", fleet.TypeLLMCall, map[string]string{"agent_id": f.uniq("a-"), "team_id": "t-" + f.junk()},
			`{"provider":"p-`+f.junk()+`","model":"m-`+f.junk()+`","input_tokens":10,"output_tokens":10,"status":"ok"}`)
	}
	for range n.missions {
		f.send("evil", fleet.TypeMissionQueued, map[string]string{"mission_id": f.uniq("x-")}, `{"title":"junk"}`)
	}
	for range n.workers {
		f.send("evil", fleet.TypeWorkerHeartbeat, map[string]string{"worker_id": f.uniq("w-")}, `{"state":"busy"}`)
	}
	for range n.budgets {
		f.send("evil", fleet.TypeBudgetStatus, nil, `{"scope":"user","scope_id":"`+f.uniq("u-")+`","period":"daily","limit_usd":1,"spent_usd":0,"action":"warn"}`)
	}
	// After the flood the real tenants go on, with a new agent each, and
	// initech does all its work.
	for _, p := range []string{"acme", "globex"} {
		f.workload(p, "writer", true, 11, 20)
	}
	f.send("initech", fleet.TypeWorkerJoined, map[string]string{"worker_id": "w-01"}, `{"host":"w-01.initech","capacity":4}`)
	f.workload("initech", "triager", true, 1, 10)
	f.workload("initech", "writer", true, 11, 20)
	f.wait()
	waitFolded(t, env)

	// Every refusal counted with its reason: what each room held before
	// its flood is known, so what it let in is.
	// acme and evil were in before the made-up projects, globex and
	// initech before the forged announcements.
	wantRejected := map[fleet.Reason]int64{
		fleet.ReasonLimitProjects: int64(n.projects - (lim.Projects - 2) + n.announcements - (lim.AnnouncedProjects - 2)),
		fleet.ReasonLimitAgents:   int64(n.agents - (lim.Agents - evilAgents)),
		fleet.ReasonLimitMissions: int64(n.missions - lim.Missions),
		fleet.ReasonLimitWorkers:  int64(n.workers - (lim.Workers - evilWorkers)),
		fleet.ReasonLimitBudgets:  int64(n.budgets - lim.Budgets),
	}
	st := hub.Stats()
	if diff := cmp.Diff(wantRejected, st.Rejected); diff != "" {
		t.Errorf("rejections by reason (-want +got):\n%s", diff)
	}
	// The fold is exactly at its bounds.
	wantSize := fleet.Size{
		Projects: lim.Projects + lim.AnnouncedProjects, AnnouncedProjects: lim.AnnouncedProjects,
		// evil's, two each of the real tenants', one per made-up project
		Agents:   lim.Agents + 3*2 + (lim.Projects - 2),
		Missions: lim.Missions,
		Workers:  lim.Workers + 3, // evil's, and each real tenant's w-01
		Budgets:  lim.Budgets,
		Largest:  fleet.ProjectSize{Agents: lim.Agents, Missions: lim.Missions, Workers: lim.Workers, Budgets: lim.Budgets},
	}
	got := st.Fold
	got.EventIDs, got.FinishedMissions, got.Largest.FinishedMissions = 0, 0, 0 // below their own bounds, checked next
	if diff := cmp.Diff(wantSize, got); diff != "" {
		t.Errorf("what the fold holds (-want +got):\n%s", diff)
	}
	if st.Fold.EventIDs > 1<<16 || st.Fold.Largest.FinishedMissions > lim.WithDefaults().FinishedMissions {
		t.Errorf("the fold remembers %d event ids and up to %d finished missions of a project", st.Fold.EventIDs, st.Fold.Largest.FinishedMissions)
	}

	// The real tenants' figures: each exactly its own work, whatever evil
	// did with the same ids and however many events came between.
	type agentFigures struct {
		Calls, Runs, Failed int64
		Spend               fleet.Micros
	}
	type tenantFigures struct {
		Project fleet.Project
		Agents  map[string]agentFigures
		Host    string
	}
	want := tenantFigures{
		Project: fleet.Project{Agents: 2, SpendTotal: 80_000, TokensTotal: 180_000,
			RunsTotal: 20, Runs24h: 20, Tokens24h: 180_000, Errors1h: 8, MissionsDone: 16, MissionsFailed: 4},
		Agents: map[string]agentFigures{"triager": {20, 10, 2, 40_000}, "writer": {20, 10, 2, 40_000}},
	}
	for _, p := range []string{"acme", "globex", "initech"} {
		v, _, err := hub.View(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		got := tenantFigures{Project: v.Projects[p], Agents: map[string]agentFigures{}, Host: v.Workers["w-01"].Host}
		// What depends on how long the flood took on the wall clock
		// (activity, liveness, the UTC day) is left out.
		got.Project.ActiveAgents, got.Project.WorkersOnline, got.Project.SpendToday = 0, 0, 0
		for id, a := range v.Agents {
			got.Agents[id] = agentFigures{a.LLMCalls, a.Runs, a.RunsFailed, a.Spend}
		}
		w := want
		w.Project.ID, w.Host = p, "w-01."+p
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("%s's figures after the flood (-want +got):\n%s", p, diff)
		}
	}

	// The same figures in the exporter's series, under each tenant's own
	// label, though a hundred made-up projects took the label pool first.
	fams := scrapeHandler(t, tel.MetricsHandler())
	for _, p := range []string{"acme", "globex", "initech"} {
		pl := map[string]string{"sagewai_project_id": p}
		with := func(kv ...string) map[string]string {
			m := map[string]string{"sagewai_project_id": p}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		gotSeries := map[string]int64{
			"cost":             micros(sum(fams, "sagewai_llm_cost_usd_total", with("model", "gpt-5-mini"))),
			"cost triager":     micros(sum(fams, "sagewai_llm_cost_by_agent_usd_total", with("agent", "triager", "team", "support"))),
			"cost writer":      micros(sum(fams, "sagewai_llm_cost_by_agent_usd_total", with("agent", "writer", "team", "support"))),
			"input tokens":     int64(sum(fams, "sagewai_llm_tokens_total", with("token_type", "input"))),
			"output tokens":    int64(sum(fams, "sagewai_llm_tokens_total", with("token_type", "output"))),
			"calls":            int64(sum(fams, "sagewai_llm_calls_total", with("status", "ok"))),
			"completed":        int64(sum(fams, "sagewai_missions_total", with("outcome", "completed"))),
			"failed":           int64(sum(fams, "sagewai_missions_total", with("outcome", "failed"))),
			"runs failed":      int64(sum(fams, "sagewai_agent_runs_total", with("outcome", "failed"))),
			"tool calls":       int64(sum(fams, "sagewai_tool_calls_total", with("tool", "search"))),
			"events":           int64(sum(fams, "sagewai_fleet_events_total", pl)),
			"agents (gauge)":   int64(sum(fams, "sagewai_fleet_agents", pl)),
			"in flight":        int64(sum(fams, "sagewai_missions_in_flight", pl)),
			"runs (in flight)": int64(sum(fams, "sagewai_agent_runs_in_flight", pl)),
		}
		wantSeries := map[string]int64{"cost": 80_000, "cost triager": 40_000, "cost writer": 40_000, "input tokens": 160_000,
			"output tokens": 20_000, "calls": 40, "completed": 16, "failed": 4, "runs failed": 4, "tool calls": 20,
			"events": int64(f.counts[p]), "agents (gauge)": 2, "in flight": 0, "runs (in flight)": 0}
		if diff := cmp.Diff(wantSeries, gotSeries); diff != "" {
			t.Errorf("%s's series (-want +got):\n%s", p, diff)
		}
	}
	// Labels stay bounded: the three tenants, the announced made-up
	// projects the fold let in, the pool of 100 (evil came first) and
	// "other" for the rest; within evil, its own caps.
	values := func(name, label string, where map[string]string) map[string]bool {
		out := map[string]bool{}
		for _, m := range fams[name].GetMetric() {
			ls := labels(m)
			match := true
			for k, v := range where {
				match = match && ls[k] == v
			}
			if match {
				out[ls[label]] = true
			}
		}
		return out
	}
	projectLabels := values("sagewai_fleet_events_total", "sagewai_project_id", nil)
	if want := 3 + (lim.AnnouncedProjects - 2) + 100 + 1; len(projectLabels) != want || !projectLabels["other"] || !projectLabels["evil"] {
		t.Errorf("%d project labels (other: %v, evil: %v), want %d", len(projectLabels), projectLabels["other"], projectLabels["evil"], want)
	}
	evil := map[string]string{"sagewai_project_id": "evil"}
	for _, c := range []struct {
		name, label string
		max         int
	}{
		{"sagewai_llm_cost_by_agent_usd_total", "agent", 200},
		{"sagewai_llm_cost_by_agent_usd_total", "team", 50},
		{"sagewai_llm_calls_total", "model", 50},
		{"gen_ai_client_token_usage", "gen_ai_provider_name", 20},
	} {
		if vs := values(c.name, c.label, evil); len(vs) != c.max+1 || !vs["other"] {
			t.Errorf("evil has %d %s values in %s (other: %v), want its cap of %d and other", len(vs), c.label, c.name, vs["other"], c.max)
		}
	}
	if got := int64(sum(fams, "sagewai_hub_events_rejected_total", map[string]string{"reason": "limit_agents"})); got != wantRejected[fleet.ReasonLimitAgents] {
		t.Errorf("sagewai_hub_events_rejected_total{reason=limit_agents} = %d, want %d", got, wantRejected[fleet.ReasonLimitAgents])
	}
	if got := int64(sum(fams, "sagewai_hub_fold_largest_project", map[string]string{"kind": "agents"})); got != int64(lim.Agents) {
		t.Errorf("sagewai_hub_fold_largest_project{kind=agents} = %d, want %d", got, lim.Agents)
	}

	// One log line per reason while the hub's clock stands still; the
	// next, once RejectLogEvery has passed, says how many were not logged.
	refusalLines := func() map[fleet.Reason][]float64 {
		out := map[fleet.Reason][]float64{}
		for _, l := range logs.lines(t) {
			if l["event"] == "event.rejected" {
				s, _ := l["suppressed"].(float64)
				out[fleet.Reason(l["reason"].(string))] = append(out[fleet.Reason(l["reason"].(string))], s)
			}
		}
		return out
	}
	wantLines := map[fleet.Reason][]float64{}
	for r := range wantRejected {
		wantLines[r] = []float64{0}
	}
	if diff := cmp.Diff(wantLines, refusalLines()); diff != "" {
		t.Errorf("refusal log lines, by reason, with their suppressed counts (-want +got):\n%s", diff)
	}
	clock.Advance(stream.RejectLogEvery)
	f.send("evil", fleet.TypeAgentCreated, map[string]string{"agent_id": "one-more"}, `{}`)
	f.wait()
	waitFolded(t, env)
	wantLines[fleet.ReasonLimitAgents] = []float64{0, float64(wantRejected[fleet.ReasonLimitAgents] - 1)}
	if diff := cmp.Diff(wantLines, refusalLines()); diff != "" {
		t.Errorf("refusal log lines after %v (-want +got):\n%s", stream.RejectLogEvery, diff)
	}

	// The checkpoint holds the bounded fold: a few megabytes, where the
	// unbounded one held a project per made-up id.
	env.StopHub(t)
	fi, err := os.Stat(filepath.Join(cpDir, "hub-checkpoint.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 4<<20 {
		t.Errorf("checkpoint of %d bytes, want at most 4 MiB", fi.Size())
	}
	t.Logf("%d events, checkpoint %d bytes, fold %+v", f.n, fi.Size(), st.Fold)
}

// waitFolded waits until the hub has folded everything FLEET holds.
func waitFolded(t *testing.T, env *streamtest.Env) {
	t.Helper()
	s, err := env.JS.Stream(context.Background(), stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A generous bound on a hang; the race detector folds slowly.
	streamtest.Eventually(t, 5*time.Minute, func() bool { return env.Hub.Stats().Seq >= info.State.LastSeq }, "the hub did not fold the flood")
	if _, _, err := env.Hub.View(context.Background(), fleet.ScopeAll); err != nil { // a frame boundary: sizes and counts are current
		t.Fatal(err)
	}
}
