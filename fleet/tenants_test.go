package fleet_test

import (
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// figures are what a tenant's HUD shows of one project and one agent.
type figures struct {
	Agents, InFlight                        int
	Spend                                   fleet.Micros
	Tokens, Errors1h, Done, Failed, RunsAll int64
	AgentModel, AgentState                  string
	AgentCalls, AgentRuns, AgentFailed      int64
	AgentSpend                              fleet.Micros
}

func figuresOf(s *fleet.State, project, agent string) figures {
	v := s.View(project)
	p, a := v.Projects[project], v.Agents[agent]
	return figures{p.Agents, p.MissionsInFlight, p.SpendTotal, p.TokensTotal, p.Errors1h, p.MissionsDone, p.MissionsFailed,
		p.RunsTotal, a.Model, a.State, a.LLMCalls, a.Runs, a.RunsFailed, a.Spend}
}

// TestSameIDsInTwoProjectsAreTwoEntities checks that two tenants who name
// their agent, mission and run alike each see their own: every figure of
// one project is what its own events make, whatever the other publishes
// under the same ids, before, between and after.
func TestSameIDsInTwoProjectsAreTwoEntities(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0,
		fleettest.AgentCreated("acme", "triager", "claude-sonnet-4-5", t0),
		fleettest.MissionQueued("acme", "m-1", "acme's refund", t0),
		fleettest.RunStarted("acme", "triager", "r-1", "m-1", "claude-sonnet-4-5", t0),
		fleettest.LLMCall("acme", "triager", "r-1", "claude-sonnet-4-5", 1000, 0, 0, 0, t0), // 3,000 µ$

		// globex uses the very same ids, and fails where acme succeeds.
		fleettest.AgentCreated("globex", "triager", "gpt-5", t0),
		fleettest.MissionQueued("globex", "m-1", "globex's report", t0),
		fleettest.RunStarted("globex", "triager", "r-1", "m-1", "gpt-5", t0),
		fleettest.LLMCall("globex", "triager", "r-1", "gpt-5", 50_000, 0, 0, 0, t0), // 62,500 µ$
		fleettest.AgentState("globex", "triager", fleet.AgentError, t0),
		fleettest.ToolCall("globex", "triager", "r-1", "search", "error", t0),
		fleettest.RunFailed("globex", "triager", "r-1", "boom", t0),
		fleettest.MissionFailed("globex", "m-1", "boom", t0),
		fleettest.MissionFailed("globex", "m-1", "boom again", t0), // a repeat: counts nothing

		fleettest.LLMCall("acme", "triager", "r-1", "claude-sonnet-4-5", 1000, 0, 0, 0, t0), // 3,000 µ$
		fleettest.RunCompleted("acme", "triager", "r-1", t0))

	want := map[string]figures{
		"acme": {Agents: 1, InFlight: 1, Spend: 6000, Tokens: 2000, RunsAll: 1,
			AgentModel: "claude-sonnet-4-5", AgentState: "idle", AgentCalls: 2, AgentRuns: 1, AgentSpend: 6000},
		// Two errors: the failed tool call and the failed run; the failed
		// mission once, though it failed twice.
		"globex": {Agents: 1, Spend: 62_500, Tokens: 50_000, Errors1h: 3, Failed: 1, RunsAll: 1,
			AgentModel: "gpt-5", AgentState: "idle", AgentCalls: 1, AgentRuns: 1, AgentFailed: 1, AgentSpend: 62_500},
	}
	for project, w := range want {
		if diff := cmp.Diff(w, figuresOf(s, project, "triager")); diff != "" {
			t.Errorf("%s's figures (-want +got):\n%s", project, diff)
		}
	}
	acmeRun := s.View("acme").Agents["triager"].RecentRuns[0]
	if acmeRun.MissionID != "m-1" || acmeRun.Calls != 2 || acmeRun.Tokens != 2000 || acmeRun.Spend != 6000 || acmeRun.Status != "completed" {
		t.Errorf("acme's run r-1 = %+v, want its own two calls on its own mission", acmeRun)
	}
	globexRun := s.View("globex").Agents["triager"].RecentRuns[0]
	if globexRun.Calls != 2 || globexRun.Tokens != 50_000 || globexRun.Spend != 62_500 || globexRun.Status != "failed" {
		t.Errorf("globex's run r-1 = %+v, want its own call and tool call", globexRun)
	}
	if m := s.View("acme").Missions["m-1"]; m.Title != "acme's refund" || m.Status != fleet.MissionRunningStatus || m.RunID != "r-1" {
		t.Errorf("acme's mission m-1 = %+v", m)
	}

	// The whole fleet sees both, each under <project>/<id>.
	all := s.View(fleet.ScopeAll)
	if got, want := keys(all.Agents), []string{"acme/triager", "globex/triager"}; !slices.Equal(got, want) {
		t.Errorf("the fleet's agents are %v, want %v", got, want)
	}
	if a := all.Agents["globex/triager"]; a.ID != "globex/triager" || a.ProjectID != "globex" || a.Name != "triager" {
		t.Errorf("globex's agent in the fleet's view: %+v", a)
	}
	if got, want := keys(all.Missions), []string{"m-1"}; !slices.Equal(got, want) {
		t.Errorf("the fleet's missions are %v, want acme's alone under its own id (globex's has ended)", got)
	}
	if m := all.Missions["m-1"]; m.ProjectID != "acme" || m.AgentID != "acme/triager" {
		t.Errorf("acme's mission in the fleet's view: %+v, want its agent named by its key there", m)
	}
	if all.Posture.Agents != 2 || all.Posture.MissionsInFlight != 1 || all.Posture.SpendTotal != 68_500 {
		t.Errorf("fleet posture %+v", all.Posture)
	}
}

// TestAProjectCannotBlockAnotherProjectsMissionID checks the fault the
// model found: a project that finishes a mission id first must not keep
// another tenant from using it later, nor make it count twice.
func TestAProjectCannotBlockAnotherProjectsMissionID(t *testing.T) {
	s := fleet.NewState(nil)
	ended := func(ev fleet.Event) bool {
		t.Helper()
		feed(t, s, t0, ev)
		return s.Effect().Finished
	}
	if !ended(fleettest.MissionFailed("globex", "m-7", "squatting", t0)) {
		t.Errorf("globex's first mission.failed of m-7 did not end it")
	}
	if ended(fleettest.MissionFailed("globex", "m-7", "again", t0)) {
		t.Errorf("a second mission.failed of m-7 in globex ended it again")
	}
	feed(t, s, t0,
		fleettest.MissionQueued("acme", "m-7", "acme's own m-7", t0),
		fleettest.MissionClaimed("acme", "m-7", "w-1", t0),
		fleettest.MissionProgress("globex", "m-7", 90, t0)) // globex's m-7 has ended: nothing
	type row struct {
		InFlight       int
		Errors, Failed int64
		Status         string
	}
	rowOf := func(p string) row {
		v := s.View(p)
		return row{v.Projects[p].MissionsInFlight, v.Projects[p].Errors1h, v.Projects[p].MissionsFailed, v.Missions["m-7"].Status}
	}
	if diff := cmp.Diff(map[string]row{"acme": {1, 0, 0, "claimed"}, "globex": {0, 1, 1, ""}},
		map[string]row{"acme": rowOf("acme"), "globex": rowOf("globex")}); diff != "" {
		t.Errorf("after globex failed m-7 twice and acme queued its own (-want +got):\n%s", diff)
	}
	if !ended(fleettest.MissionFailed("acme", "m-7", "lease lost", t0)) || ended(fleettest.MissionFailed("acme", "m-7", "lease lost", t0)) {
		t.Errorf("acme's m-7 must end on its first failure, once")
	}
	if diff := cmp.Diff(map[string]row{"acme": {0, 1, 1, ""}, "globex": {0, 1, 1, ""}},
		map[string]row{"acme": rowOf("acme"), "globex": rowOf("globex")}); diff != "" {
		t.Errorf("after acme's m-7 failed (twice) (-want +got):\n%s", diff)
	}
}

// TestFleetViewKeysSharedIDs checks the keys of the whole fleet's view as
// ids become shared and stop being, through diffs: a client that applies
// them holds exactly the View, never two entities under one key.
func TestFleetViewKeysSharedIDs(t *testing.T) {
	s := fleet.NewState(nil)
	all := &client{scope: fleet.ScopeAll, state: jsonOf(t, s.View(fleet.ScopeAll))}
	step := func(name string, wantAgents, wantMissions []string, evs ...fleet.Event) fleet.Delta {
		t.Helper()
		feed(t, s, t0, evs...)
		d := s.Delta(fleet.ScopeAll, s.TakeChanges())
		all.apply(t, jsonOf(t, d))
		v := s.View(fleet.ScopeAll)
		if diff := cmp.Diff(jsonOf(t, v), all.state); diff != "" {
			t.Fatalf("%s: the client differs from the View (-view +client):\n%s", name, diff)
		}
		if got := keys(v.Agents); !slices.Equal(got, wantAgents) {
			t.Errorf("%s: agents %v, want %v", name, got, wantAgents)
		}
		if got := keys(v.Missions); !slices.Equal(got, wantMissions) {
			t.Errorf("%s: missions %v, want %v", name, got, wantMissions)
		}
		return d
	}
	step("acme alone", []string{"a1"}, []string{"m-1"},
		fleettest.AgentCreated("acme", "a1", "gpt-5", t0),
		fleettest.RunStarted("acme", "a1", "r-1", "m-1", "gpt-5", t0))
	d := step("globex queues m-1", []string{"a1"}, []string{"acme/m-1", "globex/m-1"},
		fleettest.MissionQueued("globex", "m-1", "globex's", t0))
	if !slices.Equal(d.Del["missions"], []string{"m-1"}) {
		t.Errorf("the diff deletes %v, want acme's old key m-1", d.Del["missions"])
	}
	step("globex makes a1", []string{"acme/a1", "globex/a1"}, []string{"acme/m-1", "globex/m-1"},
		fleettest.AgentCreated("globex", "a1", "gpt-5", t0))
	if got := s.View(fleet.ScopeAll).Missions["acme/m-1"].AgentID; got != "acme/a1" {
		t.Errorf("acme's mission names its agent %q in the fleet's view, want acme/a1", got)
	}
	step("globex's m-1 ends", []string{"acme/a1", "globex/a1"}, []string{"m-1"},
		fleettest.MissionCompleted("globex", "m-1", t0))
	step("a mission with a slash", []string{"acme/a1", "globex/a1"}, []string{"acme/x/y", "m-1"},
		fleettest.MissionQueued("acme", "x/y", "slashed", t0))
	// Each project's own view keeps its ids as published.
	if got := keys(s.View("acme").Missions); !slices.Equal(got, []string{"m-1", "x/y"}) {
		t.Errorf("acme's own missions %v", got)
	}
	if got := s.View("globex").Agents["a1"].ID; got != "a1" {
		t.Errorf("globex's own view names its agent %q", got)
	}
}

// TestWorkerNamedByAnotherProject checks that a project publishing events
// about another tenant's worker id changes nothing that tenant sees: not
// the worker's host, models or liveness, not its workers_online; it sees
// only its own record, and the fleet's view lists both projects.
func TestWorkerNamedByAnotherProject(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0, fleettest.WorkerJoined("acme", "w-01", t0))
	before := s.View("acme").Workers["w-01"]
	forged := fleettest.E{Type: fleet.TypeWorkerJoined, Time: t0, ProjectID: "globex", WorkerID: "w-01",
		Data: fleet.WorkerJoined{Host: "evil.example", Capacity: 99, Models: []string{"stolen"}}}.Event()
	feed(t, s, t0.Add(time.Second), forged, fleettest.WorkerLeft("globex", "w-01", "forged", t0))
	if diff := cmp.Diff(before, s.View("acme").Workers["w-01"]); diff != "" {
		t.Errorf("acme's worker after globex named it (-before +after):\n%s", diff)
	}
	if got := s.View("acme").Posture.WorkersOnline; got != 1 {
		t.Errorf("acme's workers_online = %d after globex's worker.left, want 1", got)
	}
	g := s.View("globex").Workers["w-01"]
	if g.Host != "evil.example" || g.Status != fleet.WorkerOffline || !slices.Equal(g.Projects, []string{"globex"}) {
		t.Errorf("globex sees %+v: want its own record only", g)
	}
	w := s.View(fleet.ScopeAll).Workers["w-01"]
	if w.Host != "w-01.local" || w.Status != fleet.WorkerOnline || !slices.Equal(w.Projects, []string{"acme", "globex"}) {
		t.Errorf("the fleet sees %+v: want the online record's fields and both projects", w)
	}
	// globex's heartbeats keep only its own record alive.
	for i := 1; i <= 7; i++ {
		at := t0.Add(time.Duration(i) * 20 * time.Second)
		feed(t, s, at, fleettest.WorkerJoined("globex", "w-01", at))
	}
	if got := s.View("acme").Workers["w-01"].Status; got != fleet.WorkerOffline {
		t.Errorf("acme's silent worker is %s after 140 s, want offline: another project's events keep it alive", got)
	}
}

// TestEventIDsAreKeptPerProject checks that an event id one project uses
// does not make another project's event of the same id a duplicate.
func TestEventIDsAreKeptPerProject(t *testing.T) {
	s := fleet.NewState(nil)
	for _, p := range []string{"globex", "acme", "acme"} {
		ev := fleettest.E{ID: "ev-guessed", Type: fleet.TypeLLMCall, Time: t0, ProjectID: p, AgentID: "a1",
			Data: fleet.LLMCall{Model: "gpt-5", InputTokens: 1000, Status: "ok"}}.Event()
		s.Apply(s.Seq()+1, t0, ev)
	}
	if got := (fleet.Counts{Applied: 2, Duplicates: 1}); s.Counts() != got {
		t.Errorf("counts %+v, want %+v", s.Counts(), got)
	}
	if got := s.View("acme").Projects["acme"].SpendTotal; got != 1250 {
		t.Errorf("acme spend = %v, want its one call", got)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
