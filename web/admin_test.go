package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/web"
)

// Response shapes of the admin API, as a client decodes them.
type (
	projectOut struct {
		ID          string    `json:"id"`
		Name        string    `json:"name"`
		Description string    `json:"description"`
		CreatedAt   time.Time `json:"created_at"`
		CreatedBy   string    `json:"created_by"`
		Seq         uint64    `json:"seq"`
	}
	agentOut struct {
		ID          string   `json:"id"`
		ProjectID   string   `json:"project_id"`
		Name        string   `json:"name"`
		Role        string   `json:"role"`
		Model       string   `json:"model"`
		Version     string   `json:"version"`
		Tools       []string `json:"tools"`
		Skills      []string `json:"skills"`
		Description string   `json:"description"`
		CreatedBy   string   `json:"created_by"`
		Seq         uint64   `json:"seq"`
	}
	budgetOut struct {
		Action      string               `json:"action"`
		Throttled   bool                 `json:"throttled"`
		Reservation string               `json:"reservation"`
		Breaches    []fleet.BudgetBreach `json:"breaches"`
	}
	missionOut struct {
		ID             string       `json:"id"`
		ProjectID      string       `json:"project_id"`
		Title          string       `json:"title"`
		Priority       string       `json:"priority"`
		TeamID         string       `json:"team_id"`
		UserID         string       `json:"user_id"`
		Model          string       `json:"model"`
		RequestedModel string       `json:"requested_model"`
		EstimateUSD    fleet.Micros `json:"estimate_usd"`
		Reservation    string       `json:"reservation"`
		Status         string       `json:"status"`
		Seq            uint64       `json:"seq"`
		Budget         *budgetOut   `json:"budget"`
	}
	settlementOut struct {
		Reservation string        `json:"reservation"`
		Settled     bool          `json:"settled"`
		Released    bool          `json:"released"`
		CostUSD     *fleet.Micros `json:"cost_usd"`
		Error       string        `json:"error"`
	}
	runOut struct {
		ID             string          `json:"id"`
		ProjectID      string          `json:"project_id"`
		AgentID        string          `json:"agent_id"`
		MissionID      string          `json:"mission_id"`
		TeamID         string          `json:"team_id"`
		UserID         string          `json:"user_id"`
		Model          string          `json:"model"`
		RequestedModel string          `json:"requested_model"`
		Reservation    string          `json:"reservation"`
		Status         string          `json:"status"`
		DurationMS     float64         `json:"duration_ms"`
		Error          string          `json:"error"`
		Calls          int64           `json:"calls"`
		Tokens         int64           `json:"tokens"`
		SpendUSD       *fleet.Micros   `json:"spend_usd"`
		Seq            uint64          `json:"seq"`
		Budget         json.RawMessage `json:"budget"`
	}
)

func TestAdminProjects(t *testing.T) {
	a := newAdminEnv(t, nil)
	var acme projectOut
	a.must(t, "POST", "/api/v1/projects", a.admin, `{"id":"acme","name":"Acme Corp","description":"support\nand sales"}`, 201, &acme)
	want := projectOut{ID: "acme", Name: "Acme Corp", Description: "support\nand sales", CreatedBy: "api:admin"}
	if diff := cmp.Diff(want, acme, cmpopts.IgnoreFields(projectOut{}, "CreatedAt", "Seq")); diff != "" {
		t.Errorf("created project (-want +got):\n%s", diff)
	}
	if acme.Seq == 0 || !acme.CreatedAt.Equal(a.clock.Now()) {
		t.Errorf("seq %d, created_at %s; want the server's clock, %s", acme.Seq, acme.CreatedAt, a.clock.Now())
	}

	// The fold sees it: the project appears with its event in the ticker.
	v := a.view(t, "*", acme.Seq)
	if _, ok := v.Projects["acme"]; !ok {
		t.Errorf("project acme not in the fold's view: %v", v.Projects)
	}
	if n := len(v.Ticker); n == 0 || v.Ticker[n-1].Type != web.TypeProjectCreated || v.Ticker[n-1].ProjectID != "acme" {
		t.Errorf("ticker %+v does not end with project.created of acme", v.Ticker)
	}

	a.must(t, "POST", "/api/v1/projects", a.admin, `{"id":"globex"}`, 201, nil)
	if res := a.call(t, "POST", "/api/v1/projects", a.admin, `{"id":"acme","name":"again"}`); res.status != 409 || res.errorCode(t) != "conflict" {
		t.Errorf("duplicate project: %d %s", res.status, res.body)
	}
	if res := a.call(t, "POST", "/api/v1/projects", a.projectToken(t, "acme"), `{"id":"initech"}`); res.status != 403 || res.errorCode(t) != "forbidden" {
		t.Errorf("project token creating a project: %d %s", res.status, res.body)
	}

	ids := func(tok string) []string {
		var out struct {
			Projects []projectOut `json:"projects"`
		}
		a.must(t, "GET", "/api/v1/projects", tok, "", 200, &out)
		var got []string
		for _, p := range out.Projects {
			got = append(got, p.ID)
		}
		return got
	}
	for _, tc := range []struct {
		name string
		tok  string
		want []string
	}{
		{"admin sees all, newest first", a.admin, []string{"globex", "acme"}},
		{"a project token sees its own", a.projectToken(t, "acme"), []string{"acme"}},
		{"a project without a record sees nothing", a.projectToken(t, "initech"), nil},
	} {
		if diff := cmp.Diff(tc.want, ids(tc.tok)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	var limited struct {
		Projects []projectOut `json:"projects"`
		More     bool         `json:"more"`
	}
	a.must(t, "GET", "/api/v1/projects?limit=1", a.admin, "", 200, &limited)
	if len(limited.Projects) != 1 || limited.Projects[0].ID != "globex" || !limited.More {
		t.Errorf("limit=1: %+v", limited)
	}

	// Creating a project is on the audit log.
	evs := auditEvents(t, a, a.admin, "?type=project.created")
	if len(evs) != 2 || evs[0].ProjectID != "acme" || evs[0].UserID != "api:admin" {
		t.Errorf("project.created audit events: %+v", evs)
	}
}

func TestAdminAgents(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	a.project(t, "globex")
	acmeTok := a.projectToken(t, "acme")

	var got agentOut
	a.must(t, "POST", "/api/v1/projects/acme/agents", a.admin, `{"id":"acme-triager","name":"Triager","role":"triage",
		"model":"claude-haiku-4-5","version":"1.2.0","tools":["search","ticket.update"],"skills":["classification"],
		"description":"Sorts tickets."}`, 201, &got)
	want := agentOut{ID: "acme-triager", ProjectID: "acme", Name: "Triager", Role: "triage", Model: "claude-haiku-4-5",
		Version: "1.2.0", Tools: []string{"search", "ticket.update"}, Skills: []string{"classification"},
		Description: "Sorts tickets.", CreatedBy: "api:admin"}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(agentOut{}, "Seq")); diff != "" {
		t.Errorf("created agent (-want +got):\n%s", diff)
	}
	fa := a.view(t, "acme", got.Seq).Agents["acme-triager"]
	wantFold := fleet.Agent{ID: "acme-triager", ProjectID: "acme", Name: "Triager", Role: "triage", Model: "claude-haiku-4-5",
		Version: "1.2.0", Tools: want.Tools, Skills: want.Skills, Description: "Sorts tickets.", State: fleet.AgentIdle}
	if diff := cmp.Diff(wantFold, fa, cmpopts.IgnoreFields(fleet.Agent{}, "LastSeen", "Active", "RecentRuns")); diff != "" {
		t.Errorf("the fold's agent (-want +got):\n%s", diff)
	}

	// A project token may register its own project's agents; the id is
	// made from the name when none is given.
	var gen agentOut
	a.must(t, "POST", "/api/v1/projects/acme/agents", acmeTok, `{"name":"Refund Bot!","model":"gpt-5-mini"}`, 201, &gen)
	if !regexp.MustCompile(`^refund-bot-[a-z0-9]{8}$`).MatchString(gen.ID) || gen.CreatedBy != "api:acme" {
		t.Errorf("generated agent %+v", gen)
	}
	if gen.Tools == nil || gen.Skills == nil {
		t.Errorf("tools %v, skills %v: want empty lists, not null", gen.Tools, gen.Skills)
	}

	// Agent ids are unique across projects: the fold keys agents by id.
	for _, path := range []string{"/api/v1/projects/acme/agents", "/api/v1/projects/globex/agents"} {
		res := a.call(t, "POST", path, a.admin, `{"id":"acme-triager","name":"x","model":"m"}`)
		if res.status != 409 || res.errorCode(t) != "conflict" {
			t.Errorf("%s with a taken id: %d %s", path, res.status, res.body)
		}
	}

	list := func(project string) []string {
		var out struct {
			Agents []agentOut `json:"agents"`
		}
		a.must(t, "GET", "/api/v1/projects/"+project+"/agents", a.admin, "", 200, &out)
		var ids []string
		for _, ag := range out.Agents {
			ids = append(ids, ag.ID)
		}
		return ids
	}
	if diff := cmp.Diff([]string{gen.ID, "acme-triager"}, list("acme")); diff != "" {
		t.Errorf("acme agents (-want +got):\n%s", diff)
	}
	if got := list("globex"); len(got) != 0 {
		t.Errorf("globex agents %v, want none", got)
	}
}

func TestAdminMissions(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")

	var m missionOut
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.projectToken(t, "acme"), `{"title":"Refund order 1234","priority":"high",
		"team_id":"support","user_id":"u-42","model":"claude-sonnet-4-5","estimate_usd":0.25}`, 201, &m)
	want := missionOut{ID: m.ID, ProjectID: "acme", Title: "Refund order 1234", Priority: "high", TeamID: "support",
		UserID: "u-42", Model: "claude-sonnet-4-5", EstimateUSD: 250_000, Status: "queued", Seq: m.Seq}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("created mission (-want +got):\n%s", diff)
	}
	if !regexp.MustCompile(`^m-[0-9a-z]{26}$`).MatchString(m.ID) || m.Seq == 0 {
		t.Errorf("mission id %q, seq %d", m.ID, m.Seq)
	}

	// The fold holds it in flight.
	fm := a.view(t, "acme", m.Seq).Missions[m.ID]
	wantFold := fleet.Mission{ID: m.ID, ProjectID: "acme", TeamID: "support", UserID: "u-42", Title: "Refund order 1234",
		Priority: "high", Status: fleet.MissionQueuedStatus}
	if diff := cmp.Diff(wantFold, fm, cmpopts.IgnoreFields(fleet.Mission{}, "QueuedAt", "UpdatedAt")); diff != "" {
		t.Errorf("the fold's mission (-want +got):\n%s", diff)
	}

	// The dispatcher finds it on MISSIONS, with what it needs.
	queued := lastQueued(t, a, "acme")
	if queued.MissionID != m.ID || queued.TeamID != "support" || queued.UserID != "u-42" {
		t.Errorf("queued envelope %+v", queued)
	}
	var data map[string]any
	if err := json.Unmarshal(queued.Data, &data); err != nil {
		t.Fatal(err)
	}
	wantData := map[string]any{"title": "Refund order 1234", "priority": "high", "model": "claude-sonnet-4-5", "estimate_usd": 0.25}
	if diff := cmp.Diff(wantData, data); diff != "" {
		t.Errorf("queued data (-want +got):\n%s", diff)
	}

	type listOut struct {
		InFlight []fleet.Mission `json:"in_flight"`
		Recent   []missionOut    `json:"recent"`
		Seq      uint64          `json:"seq"`
	}
	check := func(a *adminEnv, status string, inFlight int) {
		t.Helper()
		var l listOut
		a.must(t, "GET", "/api/v1/projects/acme/missions", a.admin, "", 200, &l)
		if len(l.InFlight) != inFlight || len(l.Recent) != 1 || l.Recent[0].ID != m.ID || l.Recent[0].Status != status {
			t.Errorf("missions list: %+v, want %d in flight and %s %s", l, inFlight, m.ID, status)
		}
	}
	check(a, "queued", 1)

	// Once the mission ends, the fold lets it go and the list says so. A
	// worker stamps the end with the wall clock, as NATS stores it.
	seq, err := a.nats.Publisher.Publish(context.Background(), fleet.Event{ID: "done-1", Type: fleet.TypeMissionCompleted,
		Time: time.Now().UTC(), ProjectID: "acme", MissionID: m.ID, Data: json.RawMessage(`{"duration_ms":1500}`)})
	if err != nil {
		t.Fatal(err)
	}
	a.view(t, "acme", seq)
	check(a, "finished", 0)

	// A hub without View is read through its snapshot frames.
	b := newAdminEnvOn(t, a, func(cfg *web.Config) {})
	check(b, "finished", 0)
}

// newAdminEnvOn is a second server on a's NATS and registry whose hub
// offers snapshots only.
func newAdminEnvOn(t *testing.T, a *adminEnv, edit func(*web.Config)) *adminEnv {
	t.Helper()
	b := *a
	b.env = &env{logs: &syncBuffer{}, clock: a.clock}
	cfg := web.Config{
		AdminPassword: adminPassword, SigningKey: []byte(strings.Repeat("k", 32)), Now: a.clock.Now,
		Records: a.reg.Records, Work: a.reg.Work, Events: a.events, Missions: a.reg.Missions,
		AuditLog: stream.NewAuditLog(a.nats.JS),
	}
	edit(&cfg)
	srv, err := web.New(cfg, snapshotOnlyHub{a.nats.Hub}, a.nats.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	b.srv, b.url = srv, newTestServer(t, srv)
	b.admin = b.adminToken(t)
	return &b
}

// lastQueued returns the last mission on missions.<project>.
func lastQueued(t *testing.T, a *adminEnv, project string) fleet.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := a.nats.JS.Stream(ctx, stream.MissionsStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, stream.MissionSubject(project))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := fleet.DecodeEvent("", msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// queuedCount counts the missions waiting on MISSIONS.
func queuedCount(t *testing.T, a *adminEnv) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := a.nats.JS.Stream(ctx, stream.MissionsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestAdminRuns(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	a.project(t, "globex")
	a.agent(t, "acme", "acme-triager", "claude-haiku-4-5")
	a.agent(t, "globex", "globex-researcher", "gpt-5")
	var m missionOut
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin,
		`{"title":"triage","team_id":"support","user_id":"u-7","model":"claude-sonnet-4-5"}`, 201, &m)

	// A mission's run inherits its model, team and user.
	var r runOut
	a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager","mission_id":"`+m.ID+`"}`, 201, &r)
	want := runOut{ID: r.ID, ProjectID: "acme", AgentID: "acme-triager", MissionID: m.ID, TeamID: "support", UserID: "u-7",
		Model: "claude-sonnet-4-5", Status: "running", Seq: r.Seq}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("created run (-want +got):\n%s", diff)
	}
	v := a.view(t, "acme", r.Seq)
	if ag := v.Agents["acme-triager"]; ag.RunID != r.ID || ag.State != fleet.AgentThinking || ag.Runs != 1 {
		t.Errorf("the fold's agent after the start: %+v", ag)
	}
	if fm := v.Missions[m.ID]; fm.Status != fleet.MissionRunningStatus || fm.RunID != r.ID {
		t.Errorf("the fold's mission after the start: %+v", fm)
	}

	// One LLM call, then the end.
	call := fleet.LLMCall{Provider: "anthropic", Model: "claude-sonnet-4-5", InputTokens: 1000, OutputTokens: 200, Status: "ok"}
	publishCall(t, a, "acme", "acme-triager", r.ID, call)
	var done runOut
	a.must(t, "POST", "/api/v1/projects/acme/runs/"+r.ID+"/complete", a.admin, `{"status":"completed","duration_ms":1234.5}`, 200, &done)
	if done.Status != "completed" || done.DurationMS != 1234.5 || done.Seq == 0 || done.Budget != nil {
		t.Errorf("completed run %+v", done)
	}
	ag := a.view(t, "acme", done.Seq).Agents["acme-triager"]
	if len(ag.RecentRuns) != 1 || ag.RecentRuns[0].ID != r.ID || ag.RecentRuns[0].Status != "completed" || ag.RunID != "" {
		t.Errorf("the fold's agent after the end: %+v", ag)
	}
	if res := a.call(t, "POST", "/api/v1/projects/acme/runs/"+r.ID+"/complete", a.admin, `{"status":"failed","duration_ms":1}`); res.status != 409 || res.errorCode(t) != "conflict" {
		t.Errorf("completing a run twice: %d %s", res.status, res.body)
	}

	// A failed run on its own, with the agent's model. It starts a second
	// later by the server's clock, so the list shows it first.
	a.clock.Advance(time.Second)
	var f runOut
	a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager"}`, 201, &f)
	if f.Model != "claude-haiku-4-5" || f.MissionID != "" {
		t.Errorf("run without a mission: %+v", f)
	}
	a.must(t, "POST", "/api/v1/projects/acme/runs/"+f.ID+"/complete", a.admin, `{"status":"failed","duration_ms":5,"error":"tool timed out"}`, 200, &f)
	if f.Status != "failed" || f.Error != "tool timed out" {
		t.Errorf("failed run %+v", f)
	}

	for _, tc := range []struct{ name, body, code string }{
		{"unknown agent", `{"agent_id":"nobody"}`, "not_found"},
		{"another project's agent", `{"agent_id":"globex-researcher"}`, "not_found"},
		{"unknown mission", `{"agent_id":"acme-triager","mission_id":"m-nope"}`, "not_found"},
	} {
		if res := a.call(t, "POST", "/api/v1/projects/acme/runs", a.admin, tc.body); res.errorCode(t) != tc.code {
			t.Errorf("%s: %d %s", tc.name, res.status, res.body)
		}
	}

	var l struct {
		Runs []runOut `json:"runs"`
	}
	a.must(t, "GET", "/api/v1/projects/acme/runs", a.admin, "", 200, &l)
	price, _ := fleet.DefaultPricing().Lookup(call.Model)
	cost := price.Cost(call)
	wantList := []runOut{
		{ID: f.ID, ProjectID: "acme", AgentID: "acme-triager", Model: "claude-haiku-4-5", Status: "failed", DurationMS: 5,
			Error: "tool timed out", SpendUSD: new(fleet.Micros)},
		{ID: r.ID, ProjectID: "acme", AgentID: "acme-triager", MissionID: m.ID, TeamID: "support", UserID: "u-7",
			Model: "claude-sonnet-4-5", Status: "completed", DurationMS: 1234.5, Calls: 1, Tokens: 1200, SpendUSD: &cost},
	}
	if diff := cmp.Diff(wantList, l.Runs); diff != "" {
		t.Errorf("runs list (-want +got):\n%s", diff)
	}
}

// publishCall publishes one llm.call of a run, as a worker would: stamped
// with the wall clock, which is also what NATS stores it at (the fold's
// clock).
func publishCall(t *testing.T, a *adminEnv, project, agent, run string, call fleet.LLMCall) uint64 {
	t.Helper()
	data, _ := json.Marshal(call)
	seq, err := a.nats.Publisher.Publish(context.Background(), fleet.Event{ID: fleettest.NextID(),
		Type: fleet.TypeLLMCall, Time: time.Now().UTC(), ProjectID: project, AgentID: agent, RunID: run, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// lastStored returns when stream name stored its last message, which
// must be the event id.
func lastStored(t *testing.T, a *adminEnv, name, id string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := a.nats.JS.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := fleet.DecodeEvent("", msg.Data); err != nil || ev.ID != id {
		t.Fatalf("the last message of %s is %q (%v), want event %s", name, msg.Data, err, id)
	}
	return msg.Time
}

// auditEvents reads GET /api/v1/audit with query as tok.
func auditEvents(t *testing.T, a *adminEnv, tok, query string) []fleet.Event {
	t.Helper()
	var out struct {
		Events []fleet.Event `json:"events"`
	}
	a.must(t, "GET", "/api/v1/audit"+query, tok, "", 200, &out)
	return out.Events
}

func TestAdminTokens(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	a.project(t, "globex")

	var tok struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
		Project   string    `json:"project"`
		Name      string    `json:"name"`
		Subject   string    `json:"subject"`
	}
	a.must(t, "POST", "/api/v1/projects/acme/tokens", a.admin, `{"name":"ci-runner","ttl":"24h"}`, 201, &tok)
	if tok.Token == "" || tok.Project != "acme" || tok.Name != "ci-runner" || tok.Subject != "api:acme:ci-runner" {
		t.Errorf("minted %+v", tok)
	}
	if d := tok.ExpiresAt.Sub(a.issuedAt()); d != 24*time.Hour {
		t.Errorf("expires in %s by the server's clock, want 24h", d)
	}

	// The token works for acme and only for acme.
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/api/v1/projects/acme/agents", "", 200},
		{"POST", "/api/v1/projects/acme/agents", `{"id":"acme-bot","name":"bot","model":"gpt-5-mini"}`, 201},
		{"GET", "/api/v1/projects", "", 200},
		{"GET", "/api/v1/audit", "", 200},
		{"GET", "/api/v1/projects/globex/agents", "", 403},
		{"POST", "/api/v1/projects/globex/missions", `{"title":"x","model":"m"}`, 403},
		{"GET", "/api/v1/audit?project=globex", "", 403},
		{"POST", "/api/v1/projects/acme/tokens", `{"name":"more"}`, 403},
		{"POST", "/api/v1/projects", `{"id":"initech"}`, 403},
	} {
		if res := a.call(t, tc.method, tc.path, tok.Token, tc.body); res.status != tc.status {
			t.Errorf("%s %s with the acme token: %d, want %d: %s", tc.method, tc.path, res.status, tc.status, res.body)
		}
	}
	var ag agentOut
	a.must(t, "GET", "/api/v1/projects/acme/agents", tok.Token, "", 200, nil)
	a.must(t, "POST", "/api/v1/projects/acme/agents", tok.Token, `{"id":"acme-bot-2","name":"bot","model":"gpt-5-mini"}`, 201, &ag)
	if ag.CreatedBy != "api:acme:ci-runner" {
		t.Errorf("created_by %q, want the token's subject", ag.CreatedBy)
	}

	for _, tc := range []struct{ ttl, want string }{{`""`, "720h0m0s"}, {`"30d"`, "720h0m0s"}, {`"90m"`, "1h30m0s"}} {
		var got struct {
			ExpiresAt time.Time `json:"expires_at"`
		}
		a.must(t, "POST", "/api/v1/projects/acme/tokens", a.admin, `{"name":"n","ttl":`+tc.ttl+`}`, 201, &got)
		if d := got.ExpiresAt.Sub(a.issuedAt()); d.String() != tc.want {
			t.Errorf("ttl %s: expires in %s, want %s", tc.ttl, d, tc.want)
		}
	}

	// Minting is audited, without the token.
	evs := auditEvents(t, a, a.admin, "?project=acme&type="+web.TypeTokenIssued)
	if len(evs) != 4 {
		t.Fatalf("%d auth.token.issued events, want 4: %+v", len(evs), evs)
	}
	var data map[string]string
	if err := json.Unmarshal(evs[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if data["name"] != "ci-runner" || data["subject"] != "api:acme:ci-runner" || evs[0].UserID != "api:admin" {
		t.Errorf("audit event %+v %v", evs[0], data)
	}
	if strings.Contains(string(evs[0].Data), tok.Token) || strings.Contains(a.logs.String(), tok.Token) {
		t.Error("the minted token is in the audit event or the log")
	}
}

func TestAdminAudit(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	ctx := context.Background()
	// The audit log's time range is when AUDIT stored each event (NATS's
	// wall-clock stamp), so the marks are those stamps, read back: stored[i]
	// is when e<i> was stored.
	var stored []time.Time
	for i, ev := range []struct{ project, typ string }{
		{"acme", "auth.login.failed"}, {"globex", "auth.login.failed"}, {"acme", "budget.warning"}, {"globex", "budget.warning"},
	} {
		id := fmt.Sprintf("e%d", i)
		err := a.nats.Publisher.Audit(ctx, fleet.Event{ID: id, Type: ev.typ, Time: a.clock.Now(),
			ProjectID: ev.project, Data: json.RawMessage(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		at := lastStored(t, a, stream.AuditStream, id)
		if i > 0 && !at.After(stored[i-1]) {
			t.Fatalf("AUDIT stored e%d at %s, not after e%d at %s: the time ranges below cannot tell them apart", i, at, i-1, stored[i-1])
		}
		stored = append(stored, at)
	}
	mark := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	acmeTok := a.projectToken(t, "acme")
	for _, tc := range []struct {
		name, tok, query string
		want             []string
	}{
		{"admin, everything", a.admin, "?type=auth.login.failed", []string{"e0", "e1"}},
		{"admin, one project", a.admin, "?project=globex", []string{"e1", "e3"}},
		{"admin, type", a.admin, "?type=budget.warning", []string{"e2", "e3"}},
		{"admin, from", a.admin, "?from=" + mark(stored[2]), []string{"e2", "e3"}},
		{"admin, from and to", a.admin, "?from=" + mark(stored[1]) + "&to=" + mark(stored[3].Add(-time.Nanosecond)), []string{"e1", "e2"}},
		{"admin, to is inclusive", a.admin, "?type=auth.login.failed&to=" + mark(stored[0]), []string{"e0"}},
		{"admin, limit", a.admin, "?project=globex&limit=1", []string{"e1"}},
		{"project token, its own by default", acmeTok, "?type=auth.login.failed", []string{"e0"}},
		{"project token, its own named", acmeTok, "?project=acme&type=budget.warning", []string{"e2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, ev := range auditEvents(t, a, tc.tok, tc.query) {
				got = append(got, ev.ID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
	var page struct {
		More bool `json:"more"`
	}
	a.must(t, "GET", "/api/v1/audit?project=globex&limit=1", a.admin, "", 200, &page)
	if !page.More {
		t.Error("a cut page does not say more")
	}
}

func TestAdminUnavailable(t *testing.T) {
	e := newEnv(t, nil) // no registry, queue, publisher or audit reader
	admin := e.adminToken(t)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/api/v1/projects", `{"id":"acme"}`},
		{"GET", "/api/v1/projects", ""},
		{"GET", "/api/v1/projects/acme/agents", ""},
		{"POST", "/api/v1/projects/acme/missions", `{"title":"x","model":"m"}`},
		{"POST", "/api/v1/projects/acme/tokens", `{"name":"x"}`},
		{"GET", "/api/v1/audit", ""},
	} {
		res := e.do(t, tc.method, tc.path, tc.body, bearer(admin))
		if res.status != 503 || res.errorCode(t) != "unavailable" {
			t.Errorf("%s %s: %d %s, want 503 unavailable", tc.method, tc.path, res.status, res.body)
		}
	}
	if got := web.StatusOf(web.CodeConflict); got != http.StatusConflict {
		t.Errorf("conflict → %d, want 409", got)
	}
}

// rawStatus sends a request and returns its status; safe from any goroutine.
func (a *adminEnv) rawStatus(method, path, tok, body string) (int, error) {
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// race sends n copies of a request at once and counts the statuses.
func (a *adminEnv) race(t *testing.T, n int, req func(i int) (method, path, body string)) map[int]int {
	t.Helper()
	statuses := make(chan int, n)
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			m, p, b := req(i)
			st, err := a.rawStatus(m, p, a.admin, b)
			statuses <- st
			errs <- err
		}()
	}
	close(start)
	got := map[int]int{}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		got[<-statuses]++
	}
	return got
}

func TestAdminRaces(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	a.project(t, "globex")

	got := a.race(t, 8, func(i int) (string, string, string) {
		project := []string{"acme", "globex"}[i%2]
		return "POST", "/api/v1/projects/" + project + "/agents", `{"id":"shared-bot","name":"b","model":"m"}`
	})
	if diff := cmp.Diff(map[int]int{201: 1, 409: 7}, got); diff != "" {
		t.Errorf("one agent id from 8 requests in 2 projects (-want +got):\n%s", diff)
	}

	var r runOut
	owner := "acme"
	if res := a.call(t, "GET", "/api/v1/projects/acme/agents", a.admin, ""); !strings.Contains(string(res.body), "shared-bot") {
		owner = "globex"
	}
	a.must(t, "POST", "/api/v1/projects/"+owner+"/runs", a.admin, `{"agent_id":"shared-bot"}`, 201, &r)
	got = a.race(t, 8, func(int) (string, string, string) {
		return "POST", "/api/v1/projects/" + owner + "/runs/" + r.ID + "/complete", `{"status":"completed","duration_ms":5}`
	})
	if diff := cmp.Diff(map[int]int{200: 1, 409: 7}, got); diff != "" {
		t.Errorf("one run ended by 8 requests (-want +got):\n%s", diff)
	}
	var l struct {
		Runs []runOut `json:"runs"`
	}
	a.must(t, "GET", "/api/v1/projects/"+owner+"/runs", a.admin, "", 200, &l)
	if len(l.Runs) != 1 || l.Runs[0].Status != "completed" {
		t.Fatalf("runs %+v", l.Runs)
	}
	// The fold saw exactly one end.
	seq := a.lastSeqs(t)[stream.FleetStream]
	n := 0
	for _, rs := range a.view(t, owner, seq).Agents["shared-bot"].RecentRuns {
		if rs.ID == r.ID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the fold holds %d ends of run %s, want 1", n, r.ID)
	}
}

// TestMissionAgent checks a mission's optional agent: a registered agent
// of the project is carried to the queue (the worker runs it under that
// agent); another project's agent, or none registered, is 404 and nothing
// is queued; a malformed id is 400.
func TestMissionAgent(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	a.project(t, "globex")
	a.agent(t, "acme", "acme-triager", "claude-haiku-4-5")
	a.agent(t, "globex", "globex-scout", "gpt-5-mini")

	var m struct {
		ID      string `json:"id"`
		AgentID string `json:"agent_id"`
	}
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.projectToken(t, "acme"),
		`{"title":"Triage ticket 9","model":"claude-haiku-4-5","agent_id":"acme-triager"}`, http.StatusCreated, &m)
	if m.AgentID != "acme-triager" {
		t.Errorf("created mission's agent %q, want acme-triager", m.AgentID)
	}
	if q := lastQueued(t, a, "acme"); q.MissionID != m.ID || q.AgentID != "acme-triager" {
		t.Errorf("queued envelope: mission %s agent %q; want %s and acme-triager", q.MissionID, q.AgentID, m.ID)
	}
	before := queuedCount(t, a)
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"title":"x","model":"gpt-5-mini","agent_id":"globex-scout"}`, http.StatusNotFound},
		{`{"title":"x","model":"gpt-5-mini","agent_id":"nobody"}`, http.StatusNotFound},
		{`{"title":"x","model":"gpt-5-mini","agent_id":"bad id!"}`, http.StatusBadRequest},
	} {
		a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin, tc.body, tc.status, nil)
	}
	if after := queuedCount(t, a); after != before {
		t.Errorf("refused missions were queued: %d waiting, %d before", after, before)
	}
}
