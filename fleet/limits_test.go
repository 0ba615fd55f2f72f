package fleet_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// limited is a fold with small bounds, and the refusals it made.
type limited struct {
	t *testing.T
	s *fleet.State
}

func newLimited(t *testing.T, l fleet.Limits) *limited {
	s := fleet.NewState(nil)
	s.SetLimits(l)
	return &limited{t, s}
}

// apply folds ev stored at at and returns the reason it was refused, or "".
// A refused event must leave every view as it was.
func (l *limited) apply(at time.Time, ev fleet.Event) fleet.Reason {
	l.t.Helper()
	scopes := append([]string{fleet.ScopeAll, ev.ProjectID}, l.s.Projects()...)
	before := map[string][]byte{}
	l.s.Tick(l.s.Seq()+1, at) // the clock moves first, as it does for any message
	for _, sc := range scopes {
		before[sc], _ = json.Marshal(l.s.View(sc))
	}
	res := l.s.Apply(l.s.Seq()+1, at, ev)
	r := l.s.Effect().Reason
	if (res == fleet.Rejected) != (r != "") {
		l.t.Fatalf("Apply(%s) = %v with reason %q", ev.Type, res, r)
	}
	if res == fleet.Rejected {
		for _, sc := range scopes {
			if after, _ := json.Marshal(l.s.View(sc)); !bytes.Equal(before[sc], after) {
				l.t.Fatalf("the refused %s changed the %s view", ev.Type, sc)
			}
		}
	}
	return r
}

// TestLimitsRefuseAndFree checks each bound of fleet.Limits: the event past
// it is refused with its reason and changes nothing, another project still
// has all its room, and what frees room frees it.
func TestLimitsRefuseAndFree(t *testing.T) {
	at := t0
	next := func(d time.Duration) time.Time { at = at.Add(d); return at }
	type step struct {
		name string
		ev   fleet.Event
		want fleet.Reason
	}
	l := newLimited(t, fleet.Limits{Projects: 2, AnnouncedProjects: 2, Agents: 2, Missions: 2, Workers: 1, Budgets: 1,
		OpenRuns: 2, ForgetAgentsAfter: 2 * time.Hour})
	run := func(steps []step) {
		t.Helper()
		for _, st := range steps {
			if got := l.apply(next(time.Second), st.ev); got != st.want {
				t.Errorf("%s: refused for %q, want %q", st.name, got, st.want)
			}
		}
	}
	run([]step{
		{"acme's first agent", fleettest.AgentCreated("acme", "a1", "gpt-5", at), ""},
		{"acme's second agent", fleettest.AgentCreated("acme", "a2", "gpt-5", at), ""},
		{"acme's third agent", fleettest.AgentCreated("acme", "a3", "gpt-5", at), fleet.ReasonLimitAgents},
		{"a call of a third agent", fleettest.LLMCall("acme", "a3", "", "gpt-5", 1000, 0, 0, 0, at), fleet.ReasonLimitAgents},
		{"a call of a known agent", fleettest.LLMCall("acme", "a1", "", "gpt-5", 1000, 0, 0, 0, at), ""},
		{"globex has its own room", fleettest.AgentCreated("globex", "a3", "gpt-5", at), ""},
		{"globex's second", fleettest.AgentCreated("globex", "a4", "gpt-5", at), ""},

		{"a third unannounced project", fleettest.Heartbeat("initech", "w-1", "idle", at), fleet.ReasonLimitProjects},
		{"announced, it is in", fleettest.ProjectCreated("initech", at), ""},
		{"and its events too", fleettest.Heartbeat("initech", "w-1", "idle", at), ""},
		{"announcing acme frees room", fleettest.ProjectCreated("acme", at), ""},
		{"a third announcement", fleettest.ProjectCreated("hooli", at), fleet.ReasonLimitProjects},
		{"room for one unannounced", fleettest.AgentCreated("hooli", "h1", "gpt-5", at), ""},

		{"acme's first mission", fleettest.MissionQueued("acme", "m-1", "one", at), ""},
		{"acme's second mission", fleettest.MissionQueued("acme", "m-2", "two", at), ""},
		{"acme's third mission", fleettest.MissionQueued("acme", "m-3", "three", at), fleet.ReasonLimitMissions},
		{"a run on a third mission", fleettest.RunStarted("acme", "a1", "r-9", "m-3", "gpt-5", at), fleet.ReasonLimitMissions},
		{"a mission ends", fleettest.MissionCompleted("acme", "m-1", at), ""},
		{"its room is free", fleettest.MissionQueued("acme", "m-3", "three", at), ""},
		{"a late event of the ended one", fleettest.MissionProgress("acme", "m-1", 50, at), ""},

		{"acme's worker", fleettest.WorkerJoined("acme", "w-1", at), ""},
		{"acme's second worker", fleettest.WorkerJoined("acme", "w-2", at), fleet.ReasonLimitWorkers},
		{"the first leaves", fleettest.WorkerLeft("acme", "w-1", "scale-in", at), ""},
		{"still remembered for an hour", fleettest.WorkerJoined("acme", "w-2", at), fleet.ReasonLimitWorkers},

		{"acme's budget", fleettest.UserBudget("acme", "u-1", 1_000_000, 0, at), ""},
		{"its standing again", fleettest.UserBudget("acme", "u-1", 1_000_000, 10, at), ""},
		{"acme's second budget", fleettest.UserBudget("acme", "u-2", 1_000_000, 0, at), fleet.ReasonLimitBudgets},
	})
	next(time.Hour)
	run([]step{
		{"an hour after it left, w-1 has gone", fleettest.WorkerJoined("acme", "w-2", at), ""},
	})
	next(2 * time.Hour)
	run([]step{
		{"two quiet hours later the agents are forgotten", fleettest.AgentCreated("acme", "a3", "gpt-5", at), ""},
		{"and a4 has room", fleettest.AgentCreated("acme", "a5", "gpt-5", at), ""},
	})
	v := l.s.View("acme")
	if len(v.Agents) != 2 || v.Agents["a1"].ID != "" || v.Projects["acme"].Agents != 2 {
		t.Errorf("acme's agents after the forgetting: %v", keys(v.Agents))
	}
	if got := l.s.View("globex").Projects["globex"].Agents; got != 0 {
		t.Errorf("globex still has %d agents two hours after their last event", got)
	}
	if got, want := l.s.Counts().Limited, int64(9); got != want {
		t.Errorf("Counts().Limited = %d, want %d", got, want)
	}
	if got := l.s.Counts().Rejected; got != l.s.Counts().Limited {
		t.Errorf("Counts().Rejected = %d, want the refusals (%d) among them", got, l.s.Counts().Limited)
	}
	if p := l.s.View("acme").Projects["acme"]; p.SpendTotal != 1250 || p.MissionsInFlight != 2 || p.MissionsDone != 1 {
		t.Errorf("acme's row %+v: want one call's spend, two missions in flight, one done", p)
	}
	if !l.s.Announced("initech") || !l.s.Announced("acme") || l.s.Announced("hooli") || l.s.Announced("globex") {
		t.Errorf("announced: initech %v acme %v hooli %v globex %v", l.s.Announced("initech"), l.s.Announced("acme"),
			l.s.Announced("hooli"), l.s.Announced("globex"))
	}
}

// TestOpenRunsDropTheOldest checks that a project past its open runs drops
// its own oldest, never another project's.
func TestOpenRunsDropTheOldest(t *testing.T) {
	l := newLimited(t, fleet.Limits{OpenRuns: 2})
	feed(t, l.s, t0,
		fleettest.RunStarted("globex", "g1", "r-1", "", "gpt-5", t0),
		fleettest.LLMCall("globex", "g1", "r-1", "gpt-5", 1000, 0, 0, 0, t0))
	for i := 1; i <= 3; i++ {
		run := fmt.Sprintf("r-%d", i)
		feed(t, l.s, t0, fleettest.RunStarted("acme", "a1", run, "", "gpt-5", t0),
			fleettest.LLMCall("acme", "a1", run, "gpt-5", 1000, 0, 0, 0, t0))
	}
	feed(t, l.s, t0, fleettest.RunCompleted("acme", "a1", "r-1", t0), fleettest.RunCompleted("acme", "a1", "r-3", t0),
		fleettest.RunCompleted("globex", "g1", "r-1", t0))
	calls := func(p, agent string) map[string]int64 {
		out := map[string]int64{}
		for _, r := range l.s.View(p).Agents[agent].RecentRuns {
			out[r.ID] = r.Calls
		}
		return out
	}
	if diff := cmp.Diff(map[string]int64{"r-1": 0, "r-3": 1}, calls("acme", "a1")); diff != "" {
		t.Errorf("acme's runs: r-1 was dropped for r-3 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{"r-1": 1}, calls("globex", "g1")); diff != "" {
		t.Errorf("globex's run is its own (-want +got):\n%s", diff)
	}
	if z := l.s.Size(); z.OpenRuns != 1 || z.Largest.OpenRuns != 1 {
		t.Errorf("open runs left: %+v, want acme's r-2", z)
	}
}

// TestLimitsSurviveACheckpoint checks that a State restored from a
// checkpoint and given the same limits refuses and frees exactly as the
// original.
func TestLimitsSurviveACheckpoint(t *testing.T) {
	lim := fleet.Limits{Projects: 2, AnnouncedProjects: 1, Agents: 3, Missions: 3, Workers: 2, Budgets: 2, OpenRuns: 2,
		ForgetAgentsAfter: 30 * time.Minute}
	msgs := fleettest.Generate(newRand(77), 3000, fleettest.Options{SharedIDs: true, ClockTicks: true})
	a := fleet.NewState(nil)
	a.SetLimits(lim)
	var b *fleet.State
	for i, m := range msgs {
		fleettest.Feed(a, uint64(i+1), m)
		if i == len(msgs)/2 {
			a.TakeChanges()
			cp, err := a.MarshalCheckpoint()
			if err != nil {
				t.Fatal(err)
			}
			if b, err = fleet.RestoreState(cp, nil); err != nil {
				t.Fatal(err)
			}
			b.SetLimits(lim)
			continue
		}
		if b != nil {
			fleettest.Feed(b, uint64(i+1), m)
		}
	}
	if a.Counts().Limited == 0 {
		t.Fatalf("no event refused: the test proves nothing")
	}
	if err := sameState(a, b); err != nil {
		t.Fatal(err)
	}
}
