package fleettest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// TestModelFollowsTheDocs pins the model to the rules of docs/protocol.md
// on a small stream worked out by hand, so that the model is checked
// against the documents and not only against the fold it checks.
func TestModelFollowsTheDocs(t *testing.T) {
	e := fleettest.Epoch()
	t0 := time.Date(e.Year(), e.Month(), e.Day(), 23, 0, 30, 0, time.UTC) // an hour before a UTC midnight
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tick := func(d time.Duration) fleettest.Msg {
		return fleettest.Msg{Subject: fleet.ClockSubject, Body: []byte("{}"), At: at(d)}
	}
	call := fleettest.LLMCall("acme", "a1", "r1", "gpt-5", 1000, 0, 0, 0, at(0)) // 1,000 × 1.25 = 1,250 µ$
	msgs := []fleettest.Msg{
		fleettest.MsgOf(fleettest.WorkerJoined("acme", "w1", at(0)), at(0)),
		fleettest.MsgOf(fleettest.RunStarted("acme", "a1", "r1", "", "gpt-5", at(0)), at(0)),
		fleettest.MsgOf(call, at(0)),
		fleettest.MsgOf(call, at(time.Second)), // a duplicate
		fleettest.MsgOf(fleettest.ToolCall("acme", "a1", "r1", "search", "error", at(0)), at(time.Second)),
		fleettest.MsgOf(fleettest.Heartbeat("acme", "w1", "busy", at(time.Second)), at(time.Second)),
		{Subject: "fleet.acme.llm.call", Body: []byte(`{"id":`), At: at(time.Second)},                                         // rejected
		fleettest.MsgOf(fleettest.E{Type: "custom.thing", ProjectID: "acme", Time: at(time.Hour)}.Event(), at(2*time.Second)), // from the future
	}
	type figures struct {
		Status                    string
		Active                    bool
		Runs24h, Tokens, Errors1h int64
		Today, Total              fleet.Micros
		Ticker                    int
	}
	figuresAt := func(d *fleettest.Derived) figures {
		v := d.View("acme")
		p := v.Projects["acme"]
		return figures{v.Workers["w1"].Status, v.Agents["a1"].Active, p.Runs24h, p.Tokens24h, p.Errors1h, p.SpendToday, p.SpendTotal, len(v.Ticker)}
	}
	var m fleettest.Model
	d := m.Derive(fleettest.Records(msgs))
	if want := (fleet.Counts{Applied: 5, Duplicates: 1, Unknown: 1, Rejected: 1}); d.Counts() != want {
		t.Errorf("counts %+v, want %+v", d.Counts(), want)
	}
	if tk := d.View("acme").Ticker; tk[len(tk)-1].Time != at(2*time.Second) || tk[len(tk)-1].Text != "unknown event custom.thing" {
		t.Errorf("the unknown event from the future is in the ticker as %+v; want it at the clock", tk[len(tk)-1])
	}
	for _, st := range []struct {
		after time.Duration
		want  figures
	}{
		// One error (the tool call); no heartbeat in the ticker: joined,
		// run, call, tool call, unknown.
		{2 * time.Second, figures{"online", true, 1, 1000, 1, 1250, 1250, 5}},
		{31*time.Second - time.Nanosecond, figures{"online", true, 1, 1000, 1, 1250, 1250, 5}},
		{31 * time.Second, figures{"stale", true, 1, 1000, 1, 1250, 1250, 5}},    // 30 s after the heartbeat
		{121 * time.Second, figures{"offline", true, 1, 1000, 1, 1250, 1250, 5}}, // 2 min after it
		{5*time.Minute + time.Second, figures{"offline", false, 1, 1000, 1, 1250, 1250, 5}},
		{59*time.Minute + 29*time.Second, figures{"offline", false, 1, 1000, 1, 1250, 1250, 5}}, // 23:59:59
		{59*time.Minute + 30*time.Second, figures{"offline", false, 1, 1000, 0, 0, 1250, 5}},    // 00:00: a new day, and the 23:00 minute left the hour
		{time.Hour + time.Second, figures{"", false, 1, 1000, 0, 0, 1250, 5}},                   // silent an hour: forgotten
		{24*time.Hour - 31*time.Second, figures{"", false, 1, 1000, 0, 0, 1250, 5}},             // 22:59:59 the next day
		{24*time.Hour - 30*time.Second, figures{"", false, 0, 0, 0, 0, 1250, 5}},                // 23:00: the run's minute left the day
	} {
		msgs = append(msgs, tick(st.after))
		d := m.Derive(fleettest.Records(msgs))
		if diff := cmp.Diff(st.want, figuresAt(d)); diff != "" {
			t.Errorf("at +%v (-want +got):\n%s", st.after, diff)
		}
	}
}

// TestModelEdges checks that the model names the instants where its view
// changes with time alone.
func TestModelEdges(t *testing.T) {
	e := fleettest.Epoch()
	t0 := time.Date(e.Year(), e.Month(), e.Day(), 15, 0, 10, 0, time.UTC)
	msgs := []fleettest.Msg{
		fleettest.MsgOf(fleettest.Heartbeat("acme", "w1", "busy", t0), t0),
		fleettest.MsgOf(fleettest.ToolCall("acme", "a1", "", "search", "error", t0), t0),
	}
	got := fleettest.Model{}.Derive(fleettest.Records(msgs)).Edges()
	minute := t0.Truncate(time.Minute)
	want := []time.Time{
		t0.Add(30 * time.Second), // the worker turns stale
		t0.Add(2 * time.Minute),  // offline
		t0.Add(5 * time.Minute),  // the agent is no longer active
		minute.Add(time.Hour),    // the error leaves the hour
		t0.Add(time.Hour),        // the worker is forgotten
	}
	if diff := cmp.Diff(want, got[:len(want)]); diff != "" {
		t.Errorf("edges (-want +got):\n%s", diff)
	}
}

// TestModelKeepsTenantsApart pins the model's rules for ids two tenants
// share and for the limits, on a stream worked out by hand from
// docs/protocol.md §4 and docs/design.md §3.
func TestModelKeepsTenantsApart(t *testing.T) {
	t0 := fleettest.Epoch()
	msgs := []fleettest.Msg{}
	add := func(evs ...fleet.Event) {
		for _, ev := range evs {
			msgs = append(msgs, fleettest.MsgOf(ev, t0))
		}
	}
	add(
		fleettest.MissionFailed("globex", "m-1", "squatting", t0), // globex ends its m-1 before acme has one
		fleettest.MissionFailed("globex", "m-1", "again", t0),     // a repeat: nothing
		fleettest.AgentCreated("acme", "a1", "gpt-5", t0),
		fleettest.RunStarted("acme", "a1", "r-1", "m-1", "gpt-5", t0), // acme's m-1 is in flight all the same
		fleettest.AgentCreated("globex", "a1", "gpt-5", t0),
		fleettest.AgentCreated("globex", "a2", "gpt-5", t0), // past globex's 1 agent: refused
		fleettest.Heartbeat("acme", "w-1", "busy", t0),
		fleettest.WorkerLeft("globex", "w-1", "forged", t0),
		fleettest.Heartbeat("initech", "w-9", "idle", t0), // a third project: past 2 unannounced, refused
		fleettest.ProjectCreated("initech", t0),           // announced, it is in
	)
	d := fleettest.Model{Limits: fleet.Limits{Projects: 2, Agents: 1}}.Derive(fleettest.Records(msgs))
	if got, want := d.Counts(), (fleet.Counts{Applied: 8, Rejected: 2, Limited: 2}); got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	all := d.View(fleet.ScopeAll)
	type row struct {
		Agents, Missions []string
		MissionAgent     string
		GlobexErrors     int64
		GlobexFailed     int64
	}
	got := row{keys(all.Agents), keys(all.Missions), all.Missions["m-1"].AgentID,
		all.Projects["globex"].Errors1h, all.Projects["globex"].MissionsFailed}
	want := row{[]string{"acme/a1", "globex/a1"}, []string{"m-1"}, "acme/a1", 1, 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the fleet's view (-want +got):\n%s", diff)
	}
	if w := all.Workers["w-1"]; w.Status != fleet.WorkerOnline || w.LeftReason != "" || !slices.Equal(w.Projects, []string{"acme", "globex"}) {
		t.Errorf("the fleet's w-1 = %+v: want acme's online record, listing both projects", w)
	}
	if g := d.View("globex").Workers["w-1"]; g.Status != fleet.WorkerOffline || !slices.Equal(g.Projects, []string{"globex"}) {
		t.Errorf("globex's own w-1 = %+v: want its record, offline", g)
	}
	if got := d.Projects(); !slices.Equal(got, []string{"acme", "globex", "initech"}) {
		t.Errorf("projects %v", got)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
