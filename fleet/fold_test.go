package fleet_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

func TestDuplicatesAreIgnored(t *testing.T) {
	s := fleet.NewState(nil)
	call := fleettest.LLMCall("acme", "a1", "r1", "claude-sonnet-4-5", 1000, 0, 0, 0, t0) // 3,000 µ$
	feed(t, s, t0, call)
	if res := s.Apply(2, t0.Add(time.Second), call); res != fleet.Duplicate {
		t.Errorf("second Apply of the same event = %v, want Duplicate", res)
	}
	// The same id in another body (a publisher that re-encoded it) is still a duplicate.
	again := fleettest.LLMCall("acme", "a1", "r1", "claude-sonnet-4-5", 9999, 0, 0, 0, t0)
	again.ID = call.ID
	if res := s.Apply(3, t0.Add(2*time.Second), again); res != fleet.Duplicate {
		t.Errorf("Apply of a re-encoded duplicate = %v, want Duplicate", res)
	}
	v := s.View("acme")
	got := []int64{s.Counts().Applied, s.Counts().Duplicates, int64(v.Projects["acme"].SpendTotal), v.Projects["acme"].TokensTotal,
		v.Agents["a1"].LLMCalls, int64(len(v.Ticker)), int64(s.Seq())}
	want := []int64{1, 2, 3000, 1000, 1, 1, 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("applied, duplicates, spend, tokens, agent calls, ticker length, seq (-want +got):\n%s", diff)
	}
}

func TestMissionsLeaveInFlightWhenFinished(t *testing.T) {
	for _, finish := range []string{fleet.TypeMissionCompleted, fleet.TypeMissionFailed} {
		t.Run(finish, func(t *testing.T) {
			s := fleet.NewState(nil)
			feed(t, s, t0,
				fleettest.MissionQueued("acme", "m-1", "refund #1", t0),
				fleettest.MissionQueued("acme", "m-2", "refund #2", t0),
				fleettest.MissionClaimed("acme", "m-1", "w1", t0),
				fleettest.MissionProgress("acme", "m-1", 40, t0))
			m := s.View("acme").Missions["m-1"]
			if m.Status != fleet.MissionRunningStatus || m.Pct != 40 || m.WorkerID != "w1" || m.Attempts != 1 || m.Title != "refund #1" {
				t.Errorf("m-1 in flight = %+v, want running at 40 %% on w1, attempt 1", m)
			}
			at := t0.Add(time.Minute)
			finished := fleettest.MissionCompleted("acme", "m-1", at)
			if finish == fleet.TypeMissionFailed {
				finished = fleettest.MissionFailed("acme", "m-1", "lease lost", at)
			}
			feed(t, s, at, finished)
			// Late events about m-1, stamped before it finished, and a second
			// finish under another id, must not bring it back or count it twice.
			feed(t, s, at.Add(time.Second),
				fleettest.MissionProgress("acme", "m-1", 80, t0.Add(30*time.Second)),
				fleettest.MissionClaimed("acme", "m-1", "w2", t0.Add(31*time.Second)),
				fleettest.MissionQueued("acme", "m-1", "refund #1", t0),
				fleettest.MissionCompleted("acme", "m-1", at))
			v := s.View("acme")
			if _, ok := v.Missions["m-1"]; ok {
				t.Errorf("m-1 is still in flight after %s and late events: %+v", finish, v.Missions["m-1"])
			}
			p := v.Projects["acme"]
			got := []int64{int64(len(v.Missions)), int64(p.MissionsInFlight), int64(v.Posture.MissionsInFlight), p.MissionsDone, p.MissionsFailed, p.Errors1h}
			want := []int64{1, 1, 1, 1, 0, 0}
			if finish == fleet.TypeMissionFailed {
				want = []int64{1, 1, 1, 0, 1, 1}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("missions listed, project in flight, posture in flight, completed, failed, errors_1h (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMissionRetryingGoesBackToTheQueue(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0,
		fleettest.MissionQueued("acme", "m-1", "refund", t0),
		fleettest.MissionClaimed("acme", "m-1", "w1", t0),
		fleettest.MissionRetrying("acme", "m-1", t0))
	m := s.View("acme").Missions["m-1"]
	if m.Status != fleet.MissionRetryingStatus || m.WorkerID != "" {
		t.Errorf("after a lost lease m-1 = status %q on %q, want retrying on no worker", m.Status, m.WorkerID)
	}
	feed(t, s, t0, fleettest.MissionClaimed("acme", "m-1", "w2", t0))
	m = s.View("acme").Missions["m-1"]
	if m.Status != fleet.MissionClaimedStatus || m.WorkerID != "w2" || m.Attempts != 2 {
		t.Errorf("after the second claim m-1 = status %q on %q attempt %d, want claimed on w2, attempt 2", m.Status, m.WorkerID, m.Attempts)
	}
}

// windows is what the HUD shows of the three windows, for a project and
// for the fleet.
type windows struct{ Runs24h, Tokens24h, Errors1h, PostureRuns, PostureTokens, PostureErrors int64 }

func windowsOf(s *fleet.State, project string) windows {
	v := s.View(project)
	p := v.Projects[project]
	return windows{p.Runs24h, p.Tokens24h, p.Errors1h, v.Posture.Runs24h, v.Posture.Tokens24h, v.Posture.Errors1h}
}

func TestWindowsExpireAsTheClockMoves(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0, // 15:00:30
		fleettest.RunStarted("acme", "a1", "r1", "", "gpt-5", t0),
		fleettest.LLMCall("acme", "a1", "r1", "gpt-5", 700, 300, 0, 0, t0),
		fleettest.ToolCall("acme", "a1", "r1", "search", "error", t0),
		fleettest.RunFailed("acme", "a1", "r1", "boom", t0))
	steps := []struct {
		after time.Duration
		want  windows
	}{
		{0, windows{1, 1000, 2, 1, 1000, 2}},
		{59 * time.Minute, windows{1, 1000, 2, 1, 1000, 2}},              // 15:59:30: still within the hour
		{60 * time.Minute, windows{1, 1000, 0, 1, 1000, 0}},              // 16:00:30: the 15:00 minute left the hour
		{23*time.Hour + 59*time.Minute, windows{1, 1000, 0, 1, 1000, 0}}, // 14:59:30 next day
		{24 * time.Hour, windows{0, 0, 0, 0, 0, 0}},                      // 15:00:30 next day: left the day
		{48 * time.Hour, windows{0, 0, 0, 0, 0, 0}},
	}
	for _, st := range steps {
		tick(s, t0.Add(st.after))
		if diff := cmp.Diff(st.want, windowsOf(s, "acme")); diff != "" {
			t.Errorf("at +%v (-want +got):\n%s", st.after, diff)
		}
	}
	if p := s.View("acme").Projects["acme"]; p.TokensTotal != 1000 || p.RunsTotal != 1 {
		t.Errorf("totals after the windows expired: tokens %d, runs %d; want 1000 and 1", p.TokensTotal, p.RunsTotal)
	}
}

func TestWindowsUseEventTimeButNeverTheFuture(t *testing.T) {
	s := fleet.NewState(nil)
	now := t0.Add(48 * time.Hour)
	tick(s, now)
	feed(t, s, now,
		// Late but within the day and the hour: counted.
		fleettest.LLMCall("acme", "a1", "", "gpt-5", 100, 0, 0, 0, now.Add(-22*time.Hour)),
		fleettest.ToolCall("acme", "a1", "", "search", "error", now.Add(-30*time.Minute)),
		// Older than a day: counted in the totals only.
		fleettest.LLMCall("acme", "a1", "", "gpt-5", 10_000, 0, 0, 0, now.Add(-25*time.Hour)),
		// From a worker whose clock runs an hour fast: counted now, not later.
		fleettest.ToolCall("acme", "a1", "", "search", "error", now.Add(time.Hour)))
	if diff := cmp.Diff(windows{0, 100, 2, 0, 100, 2}, windowsOf(s, "acme")); diff != "" {
		t.Errorf("now (-want +got):\n%s", diff)
	}
	tick(s, now.Add(31*time.Minute)) // the late error (stamped now-30m) leaves the hour
	if diff := cmp.Diff(windows{0, 100, 1, 0, 100, 1}, windowsOf(s, "acme")); diff != "" {
		t.Errorf("at +31m (-want +got):\n%s", diff)
	}
	tick(s, now.Add(61*time.Minute)) // the fast worker's error counted at now: it leaves too
	if diff := cmp.Diff(windows{0, 100, 0, 0, 100, 0}, windowsOf(s, "acme")); diff != "" {
		t.Errorf("at +61m (-want +got):\n%s", diff)
	}
	if got := s.View("acme").Projects["acme"].TokensTotal; got != 10_100 {
		t.Errorf("tokens_total = %d, want 10100", got)
	}
}

func TestSpendTodayResetsAtUTCMidnight(t *testing.T) {
	// The UTC midnight that ends t0's day, and clocks around it, some read
	// in other zones.
	midnight := time.Date(t0.Year(), t0.Month(), t0.Day()+1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return midnight.Add(d) }
	in := func(hours int, tm time.Time) time.Time { return tm.In(time.FixedZone("", hours*3600)) }
	type spend struct{ Today, Total, PostureToday, PostureTotal fleet.Micros }
	spendOf := func(s *fleet.State, project string) spend {
		v := s.View(project)
		p := v.Projects[project]
		return spend{p.SpendToday, p.SpendTotal, v.Posture.SpendToday, v.Posture.SpendTotal}
	}
	s := fleet.NewState(nil)
	steps := []struct {
		name   string
		at     time.Time
		ev     fleet.Event
		acme   spend
		globex spend
	}{
		{"acme before midnight", at(-10 * time.Minute),
			fleettest.LLMCall("acme", "a1", "", "claude-sonnet-4-5", 1000, 0, 0, 0, at(-10*time.Minute)), // 1,000 × 3.00
			spend{3000, 3000, 3000, 3000}, spend{}},
		{"globex before midnight", at(-5 * time.Minute),
			fleettest.LLMCall("globex", "g1", "", "gpt-5", 0, 100, 0, 0, at(-5*time.Minute)), // 100 × 10.00
			spend{3000, 3000, 3000, 3000}, spend{1000, 1000, 1000, 1000}},
		{"acme after midnight", at(5 * time.Minute),
			fleettest.LLMCall("acme", "a1", "", "gpt-5", 0, 100, 0, 0, at(5*time.Minute)), // 1,000
			spend{1000, 4000, 1000, 4000}, spend{0, 1000, 0, 1000}}, // globex, quiet, is reset too
		{"a late acme call from yesterday", at(6 * time.Minute),
			fleettest.LLMCall("acme", "a1", "", "claude-sonnet-4-5", 2000, 0, 0, 0, at(-2*time.Minute)), // 6,000
			spend{1000, 10_000, 1000, 10_000}, spend{0, 1000, 0, 1000}},
		{"yesterday in UTC though today at +02:00", at(7 * time.Minute),
			fleettest.LLMCall("acme", "a1", "", "gpt-5", 800, 0, 0, 0, in(2, at(-53*time.Minute))), // 01:07+02:00, 1,000
			spend{1000, 11_000, 1000, 11_000}, spend{0, 1000, 0, 1000}},
		{"today in UTC though yesterday at -05:00", at(8 * time.Minute),
			fleettest.LLMCall("acme", "a1", "", "gpt-5", 800, 0, 0, 0, in(-5, at(7*time.Minute))), // 19:07-05:00, 00:07Z, 1,000
			spend{2000, 12_000, 2000, 12_000}, spend{0, 1000, 0, 1000}},
	}
	for _, st := range steps {
		feed(t, s, st.at, st.ev)
		if diff := cmp.Diff(st.acme, spendOf(s, "acme")); diff != "" {
			t.Errorf("%s: acme spend (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.globex, spendOf(s, "globex")); diff != "" {
			t.Errorf("%s: globex spend (-want +got):\n%s", st.name, diff)
		}
	}
	if got := s.Posture(fleet.ScopeAll); got.SpendToday != 2000 || got.SpendTotal != 13_000 {
		t.Errorf("fleet spend today %v total %v, want 0.002000 and 0.013000", got.SpendToday, got.SpendTotal)
	}
}

func TestWorkerLiveness(t *testing.T) {
	type live struct {
		Status                                  string
		ProjectOnline, PostureOnline, AllOnline int
		Workers                                 int
	}
	liveOf := func(s *fleet.State) live {
		v := s.View("acme")
		return live{v.Workers["w1"].Status, v.Projects["acme"].WorkersOnline, v.Posture.WorkersOnline,
			s.Posture(fleet.ScopeAll).WorkersOnline, v.Posture.Workers}
	}
	s := fleet.NewState(nil)
	steps := []struct {
		name  string
		after time.Duration
		ev    *fleet.Event // nil: the clock moves, nothing else
		want  live
	}{
		{"joined", 0, ptr(fleettest.WorkerJoined("acme", "w1", t0)), live{"online", 1, 1, 1, 1}},
		{"28 s quiet", 28 * time.Second, nil, live{"online", 1, 1, 1, 1}},
		{"29.5 s quiet", 29500 * time.Millisecond, nil, live{"online", 1, 1, 1, 1}},
		// Half a second later: liveness is exact on every message, not
		// re-derived at most once a second of clock.
		{"30 s quiet", 30 * time.Second, nil, live{"stale", 0, 0, 0, 1}},
		{"119 s quiet", 119 * time.Second, nil, live{"stale", 0, 0, 0, 1}},
		{"2 min quiet", 120 * time.Second, nil, live{"offline", 0, 0, 0, 1}},
		{"a heartbeat again", 130 * time.Second, ptr(fleettest.Heartbeat("acme", "w1", "busy", t0.Add(130*time.Second))), live{"online", 1, 1, 1, 1}},
		{"left, at the same instant", 130 * time.Second, ptr(fleettest.WorkerLeft("acme", "w1", "shutdown", t0.Add(130*time.Second))), live{"offline", 0, 0, 0, 1}},
		{"a heartbeat still in flight", 131 * time.Second, ptr(fleettest.Heartbeat("acme", "w1", "busy", t0.Add(129*time.Second))), live{"offline", 0, 0, 0, 1}},
		{"joined again", 140 * time.Second, ptr(fleettest.WorkerJoined("acme", "w1", t0.Add(140*time.Second))), live{"online", 1, 1, 1, 1}},
		{"left for good", 150 * time.Second, ptr(fleettest.WorkerLeft("acme", "w1", "scale-in", t0.Add(150*time.Second))), live{"offline", 0, 0, 0, 1}},
		{"gone an hour: forgotten", 150*time.Second + time.Hour, nil, live{"", 0, 0, 0, 0}},
	}
	for _, st := range steps {
		if st.ev != nil {
			feed(t, s, t0.Add(st.after), *st.ev)
		} else {
			tick(s, t0.Add(st.after))
		}
		if diff := cmp.Diff(st.want, liveOf(s)); diff != "" {
			t.Errorf("%s (+%v) (-want +got):\n%s", st.name, st.after, diff)
		}
	}
}

func TestWorkerServingTwoProjects(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0,
		fleettest.Heartbeat("acme", "pool-1", "busy", t0),
		fleettest.Heartbeat("globex", "pool-1", "busy", t0))
	for _, scope := range []string{"acme", "globex"} {
		v := s.View(scope)
		if w, ok := v.Workers["pool-1"]; !ok || w.Status != fleet.WorkerOnline || v.Posture.WorkersOnline != 1 || v.Projects[scope].WorkersOnline != 1 {
			t.Errorf("%s sees pool-1 %v (%+v), workers_online %d", scope, ok, w, v.Posture.WorkersOnline)
		}
	}
	if got := s.Posture(fleet.ScopeAll); got.WorkersOnline != 1 || got.Workers != 1 {
		t.Errorf("fleet posture counts %d of %d workers online, want the shared worker once", got.WorkersOnline, got.Workers)
	}
	tick(s, t0.Add(StaleAfter()))
	for _, scope := range []string{"acme", "globex", fleet.ScopeAll} {
		if got := s.Posture(scope).WorkersOnline; got != 0 {
			t.Errorf("%s: workers_online = %d after 30 s of silence, want 0", scope, got)
		}
	}
}

// StaleAfter is fleet.StaleAfter, named for the table above.
func StaleAfter() time.Duration { return fleet.StaleAfter }

func ptr[T any](v T) *T { return &v }

func TestAgentActive(t *testing.T) {
	type active struct {
		Active       bool
		State        string
		ActiveAgents int
		Agents       int
	}
	activeOf := func(s *fleet.State) active {
		v := s.View("acme")
		return active{v.Agents["a1"].Active, v.Agents["a1"].State, v.Posture.ActiveAgents, v.Posture.Agents}
	}
	s := fleet.NewState(nil)
	steps := []struct {
		name  string
		after time.Duration
		ev    *fleet.Event
		want  active
	}{
		{"created", 0, ptr(fleettest.AgentCreated("acme", "a1", "gpt-5", t0)), active{true, "idle", 1, 1}},
		{"4m58s quiet", 4*time.Minute + 58*time.Second, nil, active{true, "idle", 1, 1}},
		{"4m59.5s quiet", 5*time.Minute - 500*time.Millisecond, nil, active{true, "idle", 1, 1}},
		// Half a second later: activity is exact on every message too.
		{"5 min quiet", 5 * time.Minute, nil, active{false, "idle", 0, 1}},
		{"a call", 5*time.Minute + time.Second, ptr(fleettest.LLMCall("acme", "a1", "", "gpt-5", 1, 1, 0, 0, t0.Add(5*time.Minute))), active{true, "idle", 1, 1}},
		{"went offline", 5*time.Minute + 2*time.Second, ptr(fleettest.AgentState("acme", "a1", fleet.AgentOffline, t0.Add(5*time.Minute))), active{false, "offline", 0, 1}},
		{"back to idle", 5*time.Minute + 3*time.Second, ptr(fleettest.AgentState("acme", "a1", fleet.AgentIdle, t0.Add(5*time.Minute))), active{true, "idle", 1, 1}},
		{"offline again", 5*time.Minute + 4*time.Second, ptr(fleettest.AgentState("acme", "a1", fleet.AgentOffline, t0.Add(5*time.Minute))), active{false, "offline", 0, 1}},
		{"a run wakes it", 5*time.Minute + 5*time.Second, ptr(fleettest.RunStarted("acme", "a1", "r1", "", "gpt-5", t0.Add(5*time.Minute))), active{true, "thinking", 1, 1}},
		{"run done", 5*time.Minute + 6*time.Second, ptr(fleettest.RunCompleted("acme", "a1", "r1", t0.Add(5*time.Minute))), active{true, "idle", 1, 1}},
	}
	for _, st := range steps {
		if st.ev != nil {
			feed(t, s, t0.Add(st.after), *st.ev)
		} else {
			tick(s, t0.Add(st.after))
		}
		if diff := cmp.Diff(st.want, activeOf(s)); diff != "" {
			t.Errorf("%s (+%v) (-want +got):\n%s", st.name, st.after, diff)
		}
	}
}

// TestAgentListsAreArrays checks that an agent's lists are JSON arrays
// from the start, never null, as docs/protocol.md says a client may rely on.
func TestAgentListsAreArrays(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0, fleettest.ToolCall("acme", "a1", "", "search", "ok", t0)) // an agent seen before it is created
	a := jsonOf(t, s.View("acme"))["agents"].(map[string]any)["a1"].(map[string]any)
	for _, list := range []string{"tools", "skills", "recent_runs"} {
		if _, ok := a[list].([]any); !ok {
			t.Errorf("agent %s is %#v, want an array", list, a[list])
		}
	}
}

func TestRunIDReusedByAnotherProjectDoesNotLeak(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0,
		fleettest.MissionQueued("acme", "acme-secret-mission", "secret", t0),
		fleettest.RunStarted("acme", "a1", "r-1", "acme-secret-mission", "claude-sonnet-4-5", t0),
		fleettest.LLMCall("acme", "a1", "r-1", "claude-sonnet-4-5", 1000, 0, 0, 0, t0), // 3,000 µ$
		fleettest.RunStarted("globex", "g1", "r-1", "", "gpt-5", t0),
		fleettest.LLMCall("globex", "g1", "r-1", "gpt-5", 50_000, 0, 0, 0, t0),
		fleettest.RunCompleted("globex", "g1", "r-1", t0),
		fleettest.ToolCall("globex", "g1", "r-1", "search", "ok", t0),                  // not a call of acme's r-1
		fleettest.LLMCall("acme", "a1", "r-1", "claude-sonnet-4-5", 1000, 0, 0, 0, t0), // 3,000 µ$
		fleettest.RunCompleted("acme", "a1", "r-1", t0))
	acme := s.View("acme").Agents["a1"].RecentRuns
	globex := s.View("globex").Agents["g1"].RecentRuns
	if len(acme) != 1 || len(globex) != 1 {
		t.Fatalf("recent runs: acme %d, globex %d; want one each", len(acme), len(globex))
	}
	type run struct {
		Mission, Model string
		Calls, Tokens  int64
		Spend          fleet.Micros
	}
	if diff := cmp.Diff(run{"acme-secret-mission", "claude-sonnet-4-5", 2, 2000, 6000},
		run{acme[0].MissionID, acme[0].Model, acme[0].Calls, acme[0].Tokens, acme[0].Spend}); diff != "" {
		t.Errorf("acme's run r-1 (-want +got):\n%s", diff)
	}
	if globex[0].MissionID != "" || globex[0].Model == "claude-sonnet-4-5" || globex[0].Tokens > 50_000 || globex[0].Calls > 1 {
		t.Errorf("globex's run r-1 = %+v: want nothing of acme's run in it", globex[0])
	}
}

func TestTickerKeepsTheNewest50(t *testing.T) {
	s := fleet.NewState(nil)
	var all, acme, globex []uint64
	for i := range 150 {
		at := t0.Add(time.Duration(i) * time.Second)
		switch {
		case i%5 == 4:
			feed(t, s, at, fleettest.Heartbeat("acme", "w1", "busy", at))
		case i%3 == 2:
			feed(t, s, at, fleettest.ToolCall("globex", "g1", "", "search", "ok", at))
			all, globex = append(all, s.Seq()), append(globex, s.Seq())
		default:
			feed(t, s, at, fleettest.LLMCall("acme", "a1", "", "gpt-5", 1000, 0, 0, 0, at))
			all, acme = append(all, s.Seq()), append(acme, s.Seq())
		}
	}
	// Neither a duplicate nor a rejected message reaches the ticker.
	s.Apply(s.Seq()+1, t0.Add(time.Hour), fleettest.LLMCall("acme", "a1", "", "gpt-5", 1, 0, 0, 0, t0))
	all, acme = append(all, s.Seq()), append(acme, s.Seq())
	last := s.View("acme").Ticker[49]
	dup := fleettest.E{ID: last.ID, Type: "llm.call", Time: t0, ProjectID: "acme"}.Event()
	if res := s.Apply(s.Seq()+1, t0.Add(time.Hour), dup); res != fleet.Duplicate {
		t.Fatalf("Apply of a duplicate = %v", res)
	}
	tick(s, t0.Add(time.Hour))

	newest := func(seqs []uint64) []uint64 { return seqs[max(0, len(seqs)-fleet.TickerSize):] }
	for _, tt := range []struct {
		scope string
		want  []uint64
	}{{fleet.ScopeAll, newest(all)}, {"acme", newest(acme)}, {"globex", newest(globex)}} {
		var got []uint64
		for _, e := range s.View(tt.scope).Ticker {
			if e.Type == fleet.TypeWorkerHeartbeat {
				t.Errorf("%s ticker shows a heartbeat: %+v", tt.scope, e)
			}
			if tt.scope != fleet.ScopeAll && e.ProjectID != tt.scope {
				t.Errorf("%s ticker shows an event of %s", tt.scope, e.ProjectID)
			}
			got = append(got, e.Seq)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s ticker seqs, newest last (-want +got):\n%s", tt.scope, diff)
		}
	}
	if got := len(s.View("globex").Ticker); got != 40 {
		t.Errorf("globex ticker has %d entries, want all 40 of its events", got)
	}
	e := s.View("acme").Ticker[49]
	if e.Type != fleet.TypeLLMCall || !strings.Contains(e.Text, "gpt-5") || e.Level != "info" || !e.Time.Equal(t0) {
		t.Errorf("newest acme entry = %+v, want the late gpt-5 call stamped at its own time", e)
	}
	if text := s.View("acme").Ticker[0].Text; !strings.Contains(text, "$0.001250") {
		t.Errorf("llm.call ticker text %q does not show the cost $0.001250", text)
	}
}

// TestPostureAgreesWithTheRoster checks, on random streams, that every
// headline figure equals what the lists it summarizes show, in every scope.
func TestPostureAgreesWithTheRoster(t *testing.T) {
	t.Parallel()
	for seed := range seeds() {
		msgs := generated(seed, 1500)
		s := fleet.NewState(nil)
		for i, m := range msgs {
			fleettest.Feed(s, uint64(i+1), m)
			if i%150 != 149 {
				continue
			}
			for _, scope := range scopesOf(s) {
				if err := checkPosture(s.View(scope), scope); err != "" {
					t.Fatalf("seed %d after message %d, scope %s: %s", seed, i+1, scope, err)
				}
			}
		}
	}
}

func checkPosture(v fleet.View, scope string) string {
	type counts struct {
		Agents, Active, Missions, Online, Workers int
		Runs, Tokens, Errors                      int64
		Today, Total                              fleet.Micros
	}
	perProject := map[string]*counts{}
	row := func(id string) *counts {
		if perProject[id] == nil {
			perProject[id] = &counts{}
		}
		return perProject[id]
	}
	var all counts
	for _, a := range v.Agents {
		row(a.ProjectID).Agents++
		all.Agents++
		if a.Active {
			row(a.ProjectID).Active++
			all.Active++
		}
		if a.Active && a.State == fleet.AgentOffline {
			return fmt.Sprintf("agent %s is offline but active", a.ID)
		}
	}
	for _, m := range v.Missions {
		row(m.ProjectID).Missions++
		all.Missions++
	}
	for _, w := range v.Workers {
		all.Workers++
		if w.Status == fleet.WorkerOnline {
			all.Online++
			for _, p := range w.Projects {
				row(p).Online++
			}
		}
	}
	var sum counts
	for id, p := range v.Projects {
		c := row(id)
		if scope == fleet.ScopeAll {
			// The fleet's view merges a worker's records of several
			// projects into one, online if any is: a project's own count
			// of online workers is checked in its own scope.
			c.Online = p.WorkersOnline
		}
		got := counts{p.Agents, p.ActiveAgents, p.MissionsInFlight, p.WorkersOnline, 0, 0, 0, 0, 0, 0}
		if diff := cmp.Diff(counts{c.Agents, c.Active, c.Missions, c.Online, 0, 0, 0, 0, 0, 0}, got); diff != "" {
			return "project " + id + " row disagrees with the lists (-lists +row):\n" + diff
		}
		if p.SpendToday > p.SpendTotal || p.SpendToday < 0 || p.Tokens24h > p.TokensTotal || p.Runs24h > p.RunsTotal || p.Errors1h < 0 {
			return fmt.Sprintf("project %s has impossible figures: %+v", id, p)
		}
		sum.Runs += p.Runs24h
		sum.Tokens += p.Tokens24h
		sum.Errors += p.Errors1h
		sum.Today += p.SpendToday
		sum.Total += p.SpendTotal
	}
	want := fleet.Posture{ActiveAgents: all.Active, Agents: all.Agents, WorkersOnline: all.Online, Workers: all.Workers,
		MissionsInFlight: all.Missions, Runs24h: sum.Runs, Tokens24h: sum.Tokens, Errors1h: sum.Errors,
		SpendToday: sum.Today, SpendTotal: sum.Total}
	got := v.Posture
	got.BudgetLimit, got.BudgetPct, got.UnpricedCalls = 0, 0, 0
	if scope != fleet.ScopeAll {
		want.WorkersOnline = row(scope).Online
	}
	if diff := cmp.Diff(want, got); diff != "" {
		return "posture disagrees with the lists (-lists +posture):\n" + diff
	}
	return ""
}

// TestBudgetStatus checks budget.status, the gate's periodic standing: the
// budget shows from its first status (with the project's gauge), its
// status follows the figures against its warn threshold, and it never
// fills the ticker.
func TestBudgetStatus(t *testing.T) {
	s := fleet.NewState(nil)
	status := func(spent fleet.Micros, warn float64) fleet.Event {
		return fleettest.E{Type: fleet.TypeBudgetStatus, Time: t0, ProjectID: "acme",
			Data: fleet.BudgetNotice{Scope: "project", ScopeID: "acme", Period: "daily", LimitUSD: 10_000_000, SpentUSD: spent,
				Action: "stop", WarnPct: warn}}.Event()
	}
	for _, tc := range []struct {
		spent  fleet.Micros
		warn   float64
		status string
	}{
		{1_000_000, 0, "ok"},
		{8_000_000, 0, "warning"}, // the default threshold, 80 %
		{6_000_000, 50, "warning"},
		{4_000_000, 50, "ok"},
		{10_000_000, 0, "reached"},
	} {
		feed(t, s, t0, status(tc.spent, tc.warn))
		v := s.View("acme")
		b, ok := v.Budgets["acme/project:acme:daily"]
		if !ok || b.Status != tc.status || b.SpentUSD != tc.spent || b.LimitUSD != 10_000_000 {
			t.Errorf("spent %s of $10 (warn %v): budget %+v; want status %s", tc.spent, tc.warn, b, tc.status)
		}
		pb := v.Projects["acme"].Budget
		if pb == nil || pb.SpentUSD != tc.spent || pb.LimitUSD != 10_000_000 {
			t.Errorf("spent %s: the project's gauge is %+v", tc.spent, pb)
		}
	}
	if n := len(s.View("acme").Ticker); n != 0 {
		t.Errorf("budget.status put %d entries in the ticker; want none", n)
	}
}
