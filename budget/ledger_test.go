package budget_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/budget/budgettest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// startLedger runs a ledger on js until the test ends.
func startLedger(t testing.TB, js jetstream.JetStream, cfg budget.Config) *budget.Ledger {
	t.Helper()
	l := openLedger(t, js, cfg)
	runLedger(t, l)
	return l
}

// openLedger returns a ledger on js, not running yet.
func openLedger(t testing.TB, js jetstream.JetStream, cfg budget.Config) *budget.Ledger {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := budget.NewLedger(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// runLedger runs l until the test ends and waits until it is ready.
func runLedger(t testing.TB, l *budget.Ledger) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("ledger run: %v", err)
		}
	})
	streamtest.Eventually(t, 10*time.Second, func() bool { return l.Ready() == nil }, "ledger not ready")
}

// secondConn opens another NATS connection to env's server, as a second
// process would.
func secondConn(t testing.TB, env *streamtest.Env) jetstream.JetStream {
	t.Helper()
	nc, err := stream.Connect("", env.Server, "second")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func mustCreate(t testing.TB, l *budget.Ledger, b fleet.BudgetLimit) fleet.BudgetLimit {
	t.Helper()
	st, err := l.CreateBudget(context.Background(), b)
	if err != nil {
		t.Fatalf("CreateBudget(%+v): %v", b, err)
	}
	return st.Budget
}

func standing(t testing.TB, l *budget.Ledger, id string) fleet.BudgetStanding {
	t.Helper()
	st, err := l.Budget(context.Background(), id)
	if err != nil {
		t.Fatalf("Budget(%s): %v", id, err)
	}
	return st
}

// call publishes an llm.call of model with out output tokens for mission
// (and run) of project, and returns its stream sequence.
func call(t testing.TB, env *streamtest.Env, project, team, user, mission, model string, out int64, at time.Time) uint64 {
	t.Helper()
	seq, err := env.Publisher.Publish(context.Background(), callEvent(project, team, user, mission, model, out, at))
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// callEvent is the llm.call event call publishes.
func callEvent(project, team, user, mission, model string, out int64, at time.Time) fleet.Event {
	return fleettest.E{Type: fleet.TypeLLMCall, Time: at, ProjectID: project, TeamID: team, UserID: user,
		AgentID: project + "-agent", MissionID: mission, RunID: "r-" + mission,
		Data: fleet.LLMCall{Provider: "openai", Model: model, OutputTokens: out, Status: "ok"}}.Event()
}

func missionDone(t testing.TB, env *streamtest.Env, project, mission string, failed bool, at time.Time) uint64 {
	t.Helper()
	seq, err := env.Publisher.Publish(context.Background(), missionEnd(project, mission, failed, at))
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// missionEnd is the mission.completed or mission.failed event missionDone
// publishes.
func missionEnd(project, mission string, failed bool, at time.Time) fleet.Event {
	if failed {
		return fleettest.MissionFailed(project, mission, "boom", at)
	}
	return fleettest.MissionCompleted(project, mission, at)
}

func waitSeq(t testing.TB, l *budget.Ledger, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.WaitSeq(ctx, seq); err != nil {
		t.Fatal(err)
	}
}

// gpt-5 output tokens cost 10 µ$ each: $10.00 per million.
const gpt5PerOutputToken = 10

func TestNoBudgetIsNeverRefused(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	l := startLedger(t, env.JS, budget.Config{Now: fleettest.NewClock().Now})
	ctx := context.Background()
	for _, req := range []fleet.BudgetRequest{
		{ProjectID: "acme", Estimate: 0},
		{ProjectID: "acme", TeamID: "support", UserID: "u-1", Model: "gpt-5", Estimate: 999_999_000_000},
		{ProjectID: "globex", Model: "unpriced-model-x", Estimate: 1},
	} {
		dec, err := l.Reserve(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		want := fleet.BudgetDecision{Allowed: true, Model: req.Model}
		if diff := cmp.Diff(want, dec); diff != "" {
			t.Errorf("Reserve(%+v) (-want +got):\n%s", req, diff)
		}
		if err := l.Settle(ctx, dec.Reservation, 5); err != nil {
			t.Errorf("Settle of no reservation: %v", err)
		}
	}
	// A budget of another project changes nothing for acme.
	mustCreate(t, l, fleet.BudgetLimit{Scope: "project", ProjectID: "globex", Period: "daily", LimitUSD: 1, Action: "stop"})
	if dec, err := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Estimate: 1_000_000}); err != nil || !dec.Allowed || dec.Reservation != "" {
		t.Errorf("acme under globex's budget: %+v, %v; want allowed with no reservation", dec, err)
	}
}

// TestConcurrentReservesNeverOverspend is the check-then-act test, proved
// on every write rather than by sampling. 600 requests from 24 goroutines,
// through one gate or three (each on its own connection, as replicas are),
// meet two stop caps that bind: the project's $1.00 and, for half of the
// requests, user u-1's $0.30. The ledger bucket keeps every revision of
// every entry, and each one is checked (budgettest.Check): no write that
// places a hold takes spent plus reserved past its cap, holds grow only by
// being placed, and charges pass a cap only by what work really cost
// beyond its estimate. The work costs less than its estimate, exactly it,
// or more; at exactly the estimate the caps fill to the micro-dollar. Every
// refusal says which budget and by how much; once all work has ended the
// ledger holds exactly the real costs, as does the fold, and every call
// was charged once.
func TestConcurrentReservesNeverOverspend(t *testing.T) {
	const (
		projectCap = fleet.Micros(1_000_000)
		userCap    = fleet.Micros(300_000)
		estimate   = fleet.Micros(10_000) // 1,000 gpt-5 output tokens
		estTokens  = int64(estimate / gpt5PerOutputToken)
		n          = 600
		workers    = 24
	)
	for _, tc := range []struct {
		name  string
		gates int
		// tokens is the real output of a piece of work; overshoot is the
		// most one call can cost beyond its estimate; below says whether
		// work may cost less than its estimate (and so leave room).
		tokens    func() int64
		overshoot fleet.Micros
		below     bool
	}{
		{"below the estimate, 1 gate", 1, func() int64 { return estTokens/2 + rand.Int64N(estTokens/2) }, 0, true},
		{"below the estimate, 3 gates", 3, func() int64 { return estTokens/2 + rand.Int64N(estTokens/2) }, 0, true},
		{"at the estimate, 3 gates", 3, func() int64 { return estTokens }, 0, false},
		{"above the estimate, 3 gates", 3, func() int64 { return estTokens * 6 / 5 }, estimate / 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := streamtest.Start(t, stream.HubConfig{})
			// The gates' clock is the wall clock's time at the start,
			// standing still. Wall clock, because real costs are charged
			// in the window of their call's time, which the ledger never
			// takes later than FLEET's stored time (the NATS server's
			// wall clock): holds and charges must fall in one window.
			// Standing still, so that no hold expires and every write
			// falls in that window even across midnight.
			clk := fleettest.NewClockAt(time.Now().UTC())
			at := clk.Now()
			ls := make([]*budget.Ledger, tc.gates)
			for i := range ls {
				js := env.JS
				if i > 0 {
					js = secondConn(t, env)
				}
				ls[i] = openLedger(t, js, budget.Config{Now: clk.Now})
			}
			// After the last NewLedger, which configures the bucket as
			// production runs it.
			if err := budgettest.KeepHistory(context.Background(), env.JS); err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				runLedger(t, l)
			}
			project := mustCreate(t, ls[0], fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: projectCap, Action: "stop"})
			user := mustCreate(t, ls[0], fleet.BudgetLimit{Scope: "user", ProjectID: "acme", ScopeID: "u-1", Period: "daily", LimitUSD: userCap, Action: "stop"})
			for _, l := range ls {
				streamtest.Eventually(t, 5*time.Second, func() bool { return l.Stats().Budgets == 2 }, "budgets not seen by every gate")
			}
			caps := map[string]fleet.Micros{project.ID: projectCap, user.ID: userCap}

			var (
				next               atomic.Int64
				wg                 sync.WaitGroup
				mu                 sync.Mutex // guards allowed, allowedU1 and problems
				allowed, allowedU1 []string   // reservation ids
				problems           []string
				realSum, realSumU1 atomic.Int64
				refused            atomic.Int64
				lastSeq            atomic.Uint64
			)
			problem := func(s string) {
				mu.Lock()
				problems = append(problems, s)
				mu.Unlock()
			}
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
						l := ls[i%len(ls)]
						userID := []string{"u-1", "u-2"}[i%2]
						mission := fmt.Sprintf("m-%03d", i)
						dec, err := l.Reserve(context.Background(), fleet.BudgetRequest{ProjectID: "acme", UserID: userID, Model: "gpt-5", Estimate: estimate, Ref: mission})
						if err != nil {
							problem(err.Error())
							return
						}
						if !dec.Allowed {
							refused.Add(1)
							if msg := checkRefusal(dec, caps, project, user, estimate, at); msg != "" {
								problem(msg)
							}
							continue
						}
						out := tc.tokens()
						cost := out * gpt5PerOutputToken
						realSum.Add(cost)
						mu.Lock()
						allowed = append(allowed, dec.Reservation)
						if userID == "u-1" {
							allowedU1 = append(allowedU1, dec.Reservation)
							realSumU1.Add(cost)
						}
						mu.Unlock()
						// The work runs: its call, then its end (one in
						// seven fails). Not t.Fatal: this is not the test's
						// goroutine.
						if _, err := env.Publisher.Publish(context.Background(), callEvent("acme", "", userID, mission, "gpt-5", out, at)); err != nil {
							problem(err.Error())
							return
						}
						seq, err := env.Publisher.Publish(context.Background(), missionEnd("acme", mission, i%7 == 0, at))
						if err != nil {
							problem(err.Error())
							return
						}
						for {
							old := lastSeq.Load()
							if seq <= old || lastSeq.CompareAndSwap(old, seq) {
								break
							}
						}
					}
				}()
			}
			wg.Wait()
			if len(problems) > 0 {
				t.Fatalf("%d requests went wrong, e.g. %s", len(problems), problems[0])
			}
			for _, l := range ls {
				waitSeq(t, l, lastSeq.Load())
			}

			// Every revision of every entry.
			history, err := budgettest.History(context.Background(), env.JS)
			if err != nil {
				t.Fatal(err)
			}
			res, bad := budgettest.Check{Caps: caps, Now: func(budgettest.Entry) time.Time { return at }, Overshoot: tc.overshoot}.Verify(history)
			var conflicts int64
			for _, l := range ls {
				conflicts += l.Stats().Conflicts
			}
			t.Logf("%d allowed, %d refused; %d ledger revisions checked; worst committed: project $%s, user $%s; %d compare-and-swap conflicts retried",
				len(allowed), refused.Load(), res.Revisions, res.Worst[project.ID], res.Worst[user.ID], conflicts)
			for i, b := range bad {
				if i == 10 {
					t.Errorf("... and %d more", len(bad)-10)
					break
				}
				t.Error(b)
			}
			if res.Expired != 0 {
				t.Errorf("%d expired holds in the history: the clock stands still, none may expire", res.Expired)
			}
			// The walk saw every hold the gates placed: on the project's
			// entry exactly the allowed reservations (its hold is the
			// last one placed), on u-1's at least u-1's allowed ones
			// (others were placed and taken back when the project refused).
			if diff := cmp.Diff(sorted(allowed), sorted(res.Placed[project.ID])); diff != "" {
				t.Errorf("holds placed on the project's entry are not the allowed reservations (-allowed +placed):\n%s", diff)
			}
			placedU1 := map[string]bool{}
			for _, id := range res.Placed[user.ID] {
				placedU1[id] = true
			}
			for _, id := range allowedU1 {
				if !placedU1[id] {
					t.Errorf("allowed reservation %s of u-1 has no hold in u-1's history", id)
				}
			}
			// The caps did bind: each was, at some write, too full for
			// one more estimate.
			for id, limit := range caps {
				if res.Worst[id]+estimate <= limit {
					t.Errorf("%s: worst committed $%s; the cap of $%s never bound", id, res.Worst[id], limit)
				}
			}

			if refused.Load() == 0 || len(allowed)+int(refused.Load()) != n {
				t.Errorf("%d allowed and %d refused of %d; want some refused", len(allowed), refused.Load(), n)
			}
			// Work that costs at least its estimate never frees room, so
			// no more estimates are allowed than a cap holds; at exactly
			// the estimate the project's cap holds exactly that many.
			// Work that costs less frees room for more.
			fit := int(projectCap / estimate)
			switch {
			case tc.below && len(allowed) < fit:
				t.Errorf("%d allowed, want at least %d: the cap holds that many estimates", len(allowed), fit)
			case !tc.below && tc.overshoot == 0 && len(allowed) != fit:
				t.Errorf("%d allowed, want exactly %d: the cap holds that many estimates", len(allowed), fit)
			case !tc.below && len(allowed) > fit:
				t.Errorf("%d allowed: %d estimates pass the cap", len(allowed), len(allowed))
			}
			if !tc.below && len(allowedU1) > int(userCap/estimate) {
				t.Errorf("%d of u-1's requests allowed: %d estimates pass u-1's cap", len(allowedU1), len(allowedU1))
			}
			for _, w := range []struct {
				b     fleet.BudgetLimit
				spent int64
			}{{project, realSum.Load()}, {user, realSumU1.Load()}} {
				st := standing(t, ls[len(ls)-1], w.b.ID)
				if st.Spent != fleet.Micros(w.spent) || st.Reserved != 0 {
					t.Errorf("%s: ledger spent $%s reserved $%s; want spent = the real costs $%s, nothing reserved",
						w.b.ID, st.Spent, st.Reserved, fleet.Micros(w.spent))
				}
				if !tc.below && tc.overshoot == 0 && st.Spent != w.b.LimitUSD && w.b.ID == project.ID {
					t.Errorf("%s: work at its estimate filled $%s of the $%s cap, want all of it", w.b.ID, st.Spent, w.b.LimitUSD)
				}
			}
			// The fold counted the same money.
			streamtest.WaitSeq(t, env.Hub, lastSeq.Load())
			v, _, err := env.Hub.View(context.Background(), "acme")
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Projects["acme"].SpendTotal; got != fleet.Micros(realSum.Load()) {
				t.Errorf("fold spend $%s, want the real costs $%s", got, fleet.Micros(realSum.Load()))
			}
			// Each call was charged once to each of its budgets, whichever
			// gate's follower got there first.
			calls := map[string]int64{}
			for _, e := range history {
				calls[e.Budget] = e.Calls // the last revision wins
			}
			if diff := cmp.Diff(map[string]int64{project.ID: int64(len(allowed)), user.ID: int64(len(allowedU1))}, calls); diff != "" {
				t.Errorf("calls charged per budget (-want +got):\n%s", diff)
			}
		})
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// checkRefusal returns what is wrong with a refusal, or "": it must stop,
// reserve nothing and carry a stop breach of the project's or user's
// budget that truly had no room for estimate, resetting at the next UTC
// midnight after at.
func checkRefusal(dec fleet.BudgetDecision, caps map[string]fleet.Micros, project, user fleet.BudgetLimit, estimate fleet.Micros, at time.Time) string {
	if dec.Action != fleet.ActionStop || dec.Reservation != "" {
		return fmt.Sprintf("refusal %+v: want action stop and no reservation", dec)
	}
	tomorrow := time.Date(at.Year(), at.Month(), at.Day()+1, 0, 0, 0, 0, time.UTC)
	for _, b := range dec.Breaches {
		if b.Action != fleet.ActionStop {
			continue
		}
		var limit fleet.Micros
		switch {
		case b.Scope == "project" && b.ScopeID == "acme" && b.Period == "daily":
			limit = caps[project.ID]
		case b.Scope == "user" && b.ScopeID == "u-1" && b.Period == "daily":
			limit = caps[user.ID]
		default:
			return fmt.Sprintf("breach %+v: want the project's or u-1's daily budget", b)
		}
		switch {
		case b.LimitUSD != limit:
			return fmt.Sprintf("breach %+v: want the $%s cap", b, limit)
		case b.SpentUSD+b.Reserved+estimate <= limit:
			return fmt.Sprintf("refused with room left: %+v", b)
		case !b.ResetsAt.Equal(tomorrow):
			return fmt.Sprintf("resets at %s, want %s", b.ResetsAt, tomorrow)
		case b.Pct < 100: // a tenth of a percent past the cap rounds to 100.0
			return fmt.Sprintf("pct %.1f for a refusal", b.Pct)
		}
		return ""
	}
	return fmt.Sprintf("refusal %+v carries no stop breach", dec)
}

// TestPeriodBoundaries checks that spend in the last instant of a UTC day
// or month and in the first instant of the next lands in different
// windows, and that each new window starts at zero. (Event times must not
// be in the future: the ledger, like the fold, never believes a time later
// than the stream's own clock. So the boundaries are today's and this
// month's.)
func TestPeriodBoundaries(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	clk := fleettest.NewClockAt(month.Add(-48 * time.Hour)) // the budgets exist before any of the spend below
	l := startLedger(t, env.JS, budget.Config{Now: clk.Now})
	daily := mustCreate(t, l, fleet.BudgetLimit{Scope: "team", ProjectID: "acme", ScopeID: "support", Period: "daily", LimitUSD: 5_000_000, Action: "stop"})
	monthly := mustCreate(t, l, fleet.BudgetLimit{Scope: "team", ProjectID: "acme", ScopeID: "support", Period: "monthly", LimitUSD: 50_000_000, Action: "stop"})

	calls := []struct {
		at  time.Time
		out int64 // gpt-5 output tokens: 10 µ$ each
	}{
		{today.Add(-time.Hour), 100_000},       // $1.00 yesterday
		{today.Add(-time.Millisecond), 20_000}, // $0.20 in yesterday's last instant
		{today, 3_000},                         // $0.03 in today's first instant
		{month.Add(-time.Millisecond), 40_000}, // $0.40 in last month's last instant
		{month, 5_000},                         // $0.05 in this month's first instant
		{month.Add(time.Millisecond), 1},       // $0.00001 just after
	}
	var seq uint64
	for i, c := range calls {
		seq = call(t, env, "acme", "support", "u-1", fmt.Sprintf("m-%d", i), "gpt-5", c.out, c.at)
	}
	waitSeq(t, l, seq)
	// What each window should hold, worked out from the dates alone.
	want := func(layout string, at time.Time) fleet.Micros {
		var sum fleet.Micros
		for _, c := range calls {
			if c.at.Format(layout) == at.Format(layout) {
				sum += fleet.Micros(c.out * gpt5PerOutputToken)
			}
		}
		return sum
	}
	check := func(at time.Time, b fleet.BudgetLimit, layout string) {
		t.Helper()
		clk.Set(at)
		st := standing(t, l, b.ID)
		if st.Window.Key != at.Format(layout) || st.Spent != want(layout, at) {
			t.Errorf("at %s %s: window %s spent $%s; want %s $%s", at.Format(time.RFC3339Nano), b.ID, st.Window.Key, st.Spent,
				at.Format(layout), want(layout, at))
		}
	}
	check(today.Add(-time.Millisecond), daily, "2006-01-02")
	check(today, daily, "2006-01-02")
	check(month.Add(-time.Millisecond), monthly, "2006-01")
	check(month, monthly, "2006-01")
	if want("2006-01-02", today) == want("2006-01-02", today.Add(-time.Millisecond)) {
		t.Fatal("the test's own days coincide")
	}

	// Reservations too: the last instant of yesterday holds yesterday,
	// midnight finds today with only today's spend.
	clk.Set(today.Add(-time.Millisecond))
	room := daily.LimitUSD - want("2006-01-02", today.Add(-time.Millisecond))
	dec, err := l.Reserve(context.Background(), fleet.BudgetRequest{ProjectID: "acme", TeamID: "support", Estimate: room})
	if err != nil || !dec.Allowed {
		t.Fatalf("reserve the $%s left yesterday: %+v, %v", room, dec, err)
	}
	if dec, _ := l.Reserve(context.Background(), fleet.BudgetRequest{ProjectID: "acme", TeamID: "support", Estimate: 1}); dec.Allowed {
		t.Errorf("yesterday's cap is full, yet one more micro-dollar was allowed: %+v", dec)
	}
	clk.Set(today)
	room = daily.LimitUSD - want("2006-01-02", today)
	dec, err = l.Reserve(context.Background(), fleet.BudgetRequest{ProjectID: "acme", TeamID: "support", Estimate: room})
	if err != nil || !dec.Allowed {
		t.Errorf("today's first instant: reserve the $%s left = %+v, %v; want allowed", room, dec, err)
	}
	for _, b := range dec.Breaches {
		if b.Period == "daily" && !b.ResetsAt.Equal(today.AddDate(0, 0, 1)) {
			t.Errorf("daily breach resets at %s, want %s", b.ResetsAt, today.AddDate(0, 0, 1))
		}
	}
}

// TestNewCapDoesNotInheritStaleSpend: a budget deleted and created again,
// or created after spend, starts from zero; one updated keeps its spend.
// (The ledger's clock follows the wall clock here: whether spend came
// before or after a budget is judged against its calls' times, which the
// ledger never takes later than FLEET's stored time, the NATS server's
// wall clock.)
func TestNewCapDoesNotInheritStaleSpend(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	clk := fleettest.NewClockAt(time.Now().UTC().Add(-time.Minute))
	l := startLedger(t, env.JS, budget.Config{Now: clk.Now})
	ctx := context.Background()

	// Spend before any budget exists is nobody's business.
	waitSeq(t, l, call(t, env, "acme", "", "u-7", "m-0", "gpt-5", 10_000, time.Now()))
	b := mustCreate(t, l, fleet.BudgetLimit{Scope: "user", ProjectID: "acme", ScopeID: "u-7", Period: "monthly", LimitUSD: 1_000_000, Action: "stop"})
	clk.Set(time.Now().UTC())
	if st := standing(t, l, b.ID); st.Spent != 0 {
		t.Errorf("a new budget starts with $%s spent, want 0", st.Spent)
	}
	waitSeq(t, l, call(t, env, "acme", "", "u-7", "m-1", "gpt-5", 50_000, time.Now().Add(time.Second)))
	if st := standing(t, l, b.ID); st.Spent != 500_000 {
		t.Fatalf("spent $%s, want $0.50", st.Spent)
	}

	// Raising the cap keeps the month's spend.
	b.LimitUSD = 2_000_000
	st, err := l.UpdateBudget(ctx, b)
	if err != nil || st.Spent != 500_000 || st.Budget.LimitUSD != 2_000_000 {
		t.Errorf("after raising the cap: %+v, %v; want $0.50 of $2.00", st, err)
	}

	// Deleted and created again: a new cap, a new ledger.
	if err := l.DeleteBudget(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Budget(ctx, b.ID); !errors.Is(err, fleet.ErrBudgetNotFound) {
		t.Errorf("deleted budget: %v, want ErrBudgetNotFound", err)
	}
	nb := mustCreate(t, l, fleet.BudgetLimit{Scope: "user", ProjectID: "acme", ScopeID: "u-7", Period: "monthly", LimitUSD: 300_000, Action: "stop"})
	if nb.Gen == b.Gen {
		t.Errorf("the new budget has the old one's generation %q", nb.Gen)
	}
	if st := standing(t, l, nb.ID); st.Spent != 0 {
		t.Errorf("the new cap inherited $%s of stale spend", st.Spent)
	}
	if dec, err := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", UserID: "u-7", Estimate: 300_000}); err != nil || !dec.Allowed {
		t.Errorf("reserve the whole new cap: %+v, %v; want allowed", dec, err)
	}
	if _, err := l.CreateBudget(ctx, fleet.BudgetLimit{Scope: "user", ProjectID: "acme", ScopeID: "u-7", Period: "monthly", LimitUSD: 1, Action: "warn"}); !errors.Is(err, fleet.ErrBudgetExists) {
		t.Errorf("a second budget on the same scope and period: %v, want ErrBudgetExists", err)
	}
}

func TestUnpricedModelIsReportedNotCharged(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	l := startLedger(t, env.JS, budget.Config{})
	b := mustCreate(t, l, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1_000_000, Action: "stop"})
	call(t, env, "acme", "", "", "m-1", "acme-finetune-7b", 1_000_000, time.Now())
	seq := call(t, env, "acme", "", "", "m-1", "gpt-5", 1_000, time.Now())
	waitSeq(t, l, seq)
	if st := standing(t, l, b.ID); st.Spent != 10_000 {
		t.Errorf("spent $%s, want $0.01: the gpt-5 call only", st.Spent)
	}
	if s := l.Stats(); s.Unpriced != 1 || s.Charges != 1 {
		t.Errorf("stats: %d unpriced, %d charged; want 1 and 1", s.Unpriced, s.Charges)
	}
}

// TestWarnThrottleStopAndTheirEvents walks one user through the three
// actions and checks the events the HUD folds.
func TestWarnThrottleStopAndTheirEvents(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond})
	l := startLedger(t, env.JS, budget.Config{Now: fleettest.NewClock().Now, Auditor: env.Publisher, EventEvery: -1})
	ctx := context.Background()
	mustCreate(t, l, fleet.BudgetLimit{Scope: "user", ProjectID: "acme", ScopeID: "u-1", Period: "daily", LimitUSD: 1_000_000, Action: "warn"})
	mustCreate(t, l, fleet.BudgetLimit{Scope: "team", ProjectID: "acme", ScopeID: "research", Period: "daily", LimitUSD: 2_000_000, Action: "throttle", ThrottleModel: "gpt-5-mini"})
	mustCreate(t, l, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "monthly", LimitUSD: 3_000_000, WarnPct: 50, Action: "stop"})
	req := fleet.BudgetRequest{ProjectID: "acme", TeamID: "research", UserID: "u-1", Model: "gpt-5", Estimate: 900_000}

	steps := []struct {
		name       string
		estimate   fleet.Micros
		wantAction string
		wantModel  string
		allowed    bool
	}{
		{"under every threshold", 100_000, "", "gpt-5", true},
		{"past the user's 80 %", 800_000, "warn", "gpt-5", true},           // user: 0.9 of 1.0
		{"past the user's cap: warn only", 200_000, "warn", "gpt-5", true}, // user 1.1 > 1.0, warn action
		{"past the team's cap: throttled", 1_000_000, "throttle", "gpt-5-mini", true},
		{"past the project's cap: stopped", 10_000_000, "stop", "gpt-5", false}, // throttled to $2.00: 1.3 + 2.0 > 3.0
	}
	for _, s := range steps {
		req.Estimate = s.estimate
		dec, err := l.Reserve(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if dec.Action != s.wantAction || dec.Model != s.wantModel || dec.Allowed != s.allowed {
			t.Errorf("%s: %s on %s allowed=%v, want %q on %s allowed=%v; breaches %+v", s.name, dec.Action, dec.Model, dec.Allowed,
				s.wantAction, s.wantModel, s.allowed, dec.Breaches)
		}
		if s.wantAction == "throttle" {
			// gpt-5-mini costs a fifth of gpt-5 per output token: $1.00 becomes $0.20.
			r, err := l.Reservation(ctx, dec.Reservation)
			if err != nil || r.Estimate != 200_000 || r.Model != "gpt-5-mini" {
				t.Errorf("throttled reservation %+v, %v; want $0.20 on gpt-5-mini", r, err)
			}
		}
	}
	// The HUD sees the events: the fold's budgets and ticker.
	var v fleet.View
	streamtest.Eventually(t, 10*time.Second, func() bool {
		v, _, _ = env.Hub.View(ctx, "acme")
		return len(v.Budgets) == 3
	}, "the fold never saw three budgets")
	got := map[string]string{}
	for _, b := range v.Budgets {
		got[b.Scope+":"+b.ScopeID] = b.Status + "/" + b.Action
	}
	want := map[string]string{"user:u-1": "warning/warn", "team:research": "throttled/throttle", "project:acme": "exceeded/stop"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("folded budgets (-want +got):\n%s", diff)
	}
	if p := v.Projects["acme"].Budget; p == nil || p.LimitUSD != 3_000_000 || p.Action != "stop" {
		t.Errorf("project budget gauge %+v, want the $3.00 stop cap", p)
	}
}

// TestHoldsExpireAndSettleReleaseTheRest checks holds over their life:
// expiry, settle, release, and the work's own end. (The ledger's clock
// starts at the wall clock: the calls' charges must draw from holds in the
// same period window, and a call's time is never taken later than FLEET's
// stored time, the NATS server's wall clock.)
func TestHoldsExpireAndSettleReleaseTheRest(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	clk := fleettest.NewClockAt(time.Now().UTC())
	l := startLedger(t, env.JS, budget.Config{Now: clk.Now, HoldTTL: time.Minute})
	ctx := context.Background()
	b := mustCreate(t, l, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "monthly", LimitUSD: 100_000, Action: "stop"})
	req := fleet.BudgetRequest{ProjectID: "acme", Estimate: 100_000, Ref: "m-crash"}

	first, err := l.Reserve(ctx, req)
	if err != nil || !first.Allowed {
		t.Fatalf("first reserve: %+v, %v", first, err)
	}
	if dec, _ := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Estimate: 1}); dec.Allowed {
		t.Fatalf("the cap is held, yet a reservation was allowed")
	}
	// The worker crashed: a minute later the hold no longer counts.
	clk.Advance(time.Minute)
	if st := standing(t, l, b.ID); st.Reserved != 0 {
		t.Errorf("reserved $%s after expiry, want 0", st.Reserved)
	}
	second, err := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Estimate: 60_000, Ref: "m-2"})
	if err != nil || !second.Allowed {
		t.Fatalf("after expiry: %+v, %v; want allowed", second, err)
	}
	// m-2 spends $0.02 and is settled at $0.05 by its caller: $0.03 not yet
	// seen stays held, the rest is free at once.
	waitSeq(t, l, call(t, env, "acme", "", "", "m-2", "gpt-5", 2_000, time.Now()))
	if err := l.Settle(ctx, second.Reservation, 50_000); err != nil {
		t.Fatal(err)
	}
	if st := standing(t, l, b.ID); st.Spent != 20_000 || st.Reserved != 30_000 {
		t.Errorf("after settle: spent $%s reserved $%s; want $0.02 and $0.03", st.Spent, st.Reserved)
	}
	waitSeq(t, l, call(t, env, "acme", "", "", "m-2", "gpt-5", 3_000, time.Now()))
	if st := standing(t, l, b.ID); st.Spent != 50_000 || st.Reserved != 0 {
		t.Errorf("after the last call: spent $%s reserved $%s; want $0.05 and 0", st.Spent, st.Reserved)
	}
	// Settling again, releasing after settling, releasing nothing: no change.
	if err := l.Settle(ctx, second.Reservation, 1); err != nil {
		t.Error(err)
	}
	if err := l.Release(ctx, second.Reservation); err != nil {
		t.Error(err)
	}
	if err := l.Release(ctx, "01NOSUCHRESERVATION0000000"); !errors.Is(err, fleet.ErrReservationNotFound) {
		t.Errorf("release of an unknown reservation: %v", err)
	}
	if st := standing(t, l, b.ID); st.Spent != 50_000 || st.Reserved != 0 {
		t.Errorf("after repeats: spent $%s reserved $%s", st.Spent, st.Reserved)
	}
	// A release frees a hold at once; the work's failure event does too.
	third, _ := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Estimate: 40_000, Ref: "m-3"})
	if err := l.Release(ctx, third.Reservation); err != nil {
		t.Fatal(err)
	}
	fourth, _ := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Estimate: 50_000, Ref: "m-4"})
	if !fourth.Allowed {
		t.Fatalf("after release: %+v", fourth)
	}
	waitSeq(t, l, missionDone(t, env, "acme", "m-4", true, time.Now()))
	if st := standing(t, l, b.ID); st.Reserved != 0 {
		t.Errorf("after m-4 failed: reserved $%s, want 0", st.Reserved)
	}
	if r, _ := l.Reservation(ctx, fourth.Reservation); r.State != fleet.ReservationReleased {
		t.Errorf("m-4's reservation is %q, want released", r.State)
	}
}

func TestBadBudgetsAreRefused(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	l := startLedger(t, env.JS, budget.Config{Now: fleettest.NewClock().Now})
	for _, tt := range []struct {
		b     fleet.BudgetLimit
		field string
	}{
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: -1, Action: "stop"}, "limit_usd"},
		{fleet.BudgetLimit{Scope: "tenant", ProjectID: "acme", Period: "daily", LimitUSD: 1, Action: "stop"}, "scope"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "weekly", LimitUSD: 1, Action: "stop"}, "period"},
		{fleet.BudgetLimit{Scope: "team", ProjectID: "acme", ScopeID: "a", Period: "daily", LimitUSD: 1, Action: "throttle", ThrottleModel: "nope-9"}, "throttle_model"},
	} {
		_, err := l.CreateBudget(context.Background(), tt.b)
		var be *fleet.BudgetError
		if !errors.As(err, &be) || be.Field != tt.field {
			t.Errorf("CreateBudget(%+v) = %v, want a BudgetError on %s", tt.b, err, tt.field)
		}
	}
}

// TestFollowerSurvivesALostStreamTail simulates a machine crash that lost
// FLEET's last messages but not the ledger's writes about them: the cursor
// and an entry's mark point past the stream's end. New events reuse those
// sequences and must still be charged.
func TestFollowerSurvivesALostStreamTail(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	ctx := context.Background()
	first, cancel := context.WithCancel(ctx)
	l, err := budget.NewLedger(ctx, env.JS, budget.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run(first) }()
	streamtest.Eventually(t, 5*time.Second, func() bool { return l.Ready() == nil }, "not ready")
	b := mustCreate(t, l, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 10_000_000, Action: "stop"})
	waitSeq(t, l, call(t, env, "acme", "", "", "m-1", "gpt-5", 1_000, time.Now())) // $0.01
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The ledger remembers 100 messages that FLEET no longer has.
	kv, err := env.JS.KeyValue(ctx, budget.LedgerBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			t.Fatal(err)
		}
		v["seq"] = v["seq"].(float64) + 100
		body, _ := json.Marshal(v)
		if _, err := kv.Put(ctx, k, body); err != nil {
			t.Fatal(err)
		}
	}

	l2 := startLedger(t, env.JS, budget.Config{})
	waitSeq(t, l2, call(t, env, "acme", "", "", "m-2", "gpt-5", 2_000, time.Now())) // $0.02
	if st := standing(t, l2, b.ID); st.Spent != 30_000 {
		t.Errorf("spent $%s, want $0.03: the call after the lost tail must be charged", st.Spent)
	}
}
