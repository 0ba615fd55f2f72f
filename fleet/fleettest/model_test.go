package fleettest_test

import (
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
