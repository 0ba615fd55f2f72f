package fleet_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// perMillion is what the test itself believes the generator's models cost,
// in micro-dollars per million tokens (input, output, cache read, cache
// write), copied by hand from pricing.json. A model missing here is unpriced.
// The list prices no cache writes for gpt-5-mini and gemini-2.5-flash, so
// they cost what input does. Generated calls have at most 64,700 input
// tokens, cache included, below claude-sonnet-4-5's tier above 200,000: the
// base prices apply (checked where the costs are worked out).
var perMillion = map[string][4]int64{
	"claude-sonnet-4-5":          {3_000_000, 15_000_000, 300_000, 3_750_000},
	"claude-sonnet-4-5-20250929": {3_000_000, 15_000_000, 300_000, 3_750_000},
	"gpt-5-mini":                 {250_000, 2_000_000, 25_000, 250_000},
	"gemini-2.5-flash":           {300_000, 2_500_000, 30_000, 300_000},
	"llama3.1":                   {0, 0, 0, 0},
}

// TestSpendEqualsTheSumOfCalls checks on random streams that the money and
// tokens the fold shows are exactly the sum, over the llm.call events it
// accepted once, of each call's cost worked out independently here: no call
// lost, none counted twice, no rounding drift, unpriced calls free; and
// that each agent's calls, tokens and spend are those of its own calls.
func TestSpendEqualsTheSumOfCalls(t *testing.T) {
	t.Parallel()
	type sums struct {
		Total, Today   fleet.Micros
		Tokens         int64
		Unpriced       int64
		AgentCalls     int64 // calls that name an agent
		ProjectsCalled int
	}
	type agentSums struct {
		Calls, Tokens int64
		Spend         fleet.Micros
	}
	for seed := range seeds() {
		msgs := generated(seed, 2000)
		s := fleettest.Fold(msgs)
		today := s.Clock().UTC().Format(time.DateOnly)

		var want sums
		perProject := map[string]fleet.Micros{}
		perAgent := map[string]agentSums{}
		seen := map[string]bool{}
		for i, m := range msgs {
			if _, err := fleet.DecodeEvent(m.Subject, m.Body); err != nil {
				continue
			}
			var ev struct {
				ID        string    `json:"id"`
				Type      string    `json:"type"`
				Time      time.Time `json:"time"`
				ProjectID string    `json:"project_id"`
				AgentID   string    `json:"agent_id"`
				Data      struct {
					Model                  string `json:"model"`
					In, Out, Read, Written int64
				} `json:"data"`
			}
			if err := json.Unmarshal(m.Body, &ev); err != nil {
				t.Fatal(err)
			}
			var raw map[string]map[string]any
			json.Unmarshal(m.Body, &raw)
			tokens := func(k string) int64 { v, _ := raw["data"][k].(float64); return int64(v) }
			ev.Data.In, ev.Data.Out, ev.Data.Read, ev.Data.Written = tokens("input_tokens"), tokens("output_tokens"), tokens("cache_read_tokens"), tokens("cache_write_tokens")
			if ev.Type != fleet.TypeLLMCall || seen[ev.ID] {
				continue
			}
			seen[ev.ID] = true
			n := ev.Data.In + ev.Data.Out + ev.Data.Read + ev.Data.Written
			want.Tokens += n
			var cost fleet.Micros
			price, ok := perMillion[ev.Data.Model]
			if ok {
				if in := ev.Data.In + ev.Data.Read + ev.Data.Written; in > 200_000 {
					t.Fatalf("a generated call of %d input tokens: perMillion holds no tier prices", in)
				}
				// tokens × µ$ per million tokens / 1e6, rounded half up per call.
				num := ev.Data.In*price[0] + ev.Data.Out*price[1] + ev.Data.Read*price[2] + ev.Data.Written*price[3]
				cost = fleet.Micros((num + 500_000) / 1_000_000)
			}
			if ev.AgentID != "" {
				// Generated agent ids name their project: no agent is shared.
				want.AgentCalls++
				a := perAgent[ev.AgentID]
				a.Calls, a.Tokens, a.Spend = a.Calls+1, a.Tokens+n, a.Spend+cost
				perAgent[ev.AgentID] = a
			}
			if !ok {
				want.Unpriced++
				continue
			}
			want.Total += cost
			perProject[ev.ProjectID] += cost
			// Today is the fold clock's UTC day; an event counts on the day
			// of its own time, or of the clock when stamped in the future.
			at := ev.Time
			if at.After(msgs[i].At) {
				at = msgs[i].At
			}
			if at.UTC().Format(time.DateOnly) == today {
				want.Today += cost
			}
		}
		want.ProjectsCalled = len(perProject)

		v := s.View(fleet.ScopeAll)
		var got sums
		gotPerProject := map[string]fleet.Micros{}
		for id, p := range v.Projects {
			got.Total += p.SpendTotal
			got.Today += p.SpendToday
			got.Tokens += p.TokensTotal
			got.Unpriced += p.UnpricedCalls
			if p.SpendTotal != 0 {
				gotPerProject[id] = p.SpendTotal
			}
		}
		gotPerAgent := map[string]agentSums{}
		for id, a := range v.Agents {
			got.AgentCalls += a.LLMCalls
			if a.LLMCalls > 0 {
				gotPerAgent[id] = agentSums{a.LLMCalls, a.Tokens, a.Spend}
			}
		}
		if diff := cmp.Diff(perAgent, gotPerAgent); diff != "" {
			t.Errorf("seed %d: per agent calls, tokens and spend (-independent +fold):\n%s", seed, diff)
		}
		got.ProjectsCalled = len(gotPerProject)
		if s.Counts().Unpriced != got.Unpriced {
			t.Errorf("seed %d: Counts().Unpriced = %d, projects say %d", seed, s.Counts().Unpriced, got.Unpriced)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("seed %d: fleet totals (-independent +fold):\n%s", seed, diff)
		}
		for id, w := range perProject {
			if gotPerProject[id] != w {
				t.Errorf("seed %d: %s spend_total = %v, want %v", seed, id, gotPerProject[id], w)
			}
		}
		if v.Posture.SpendTotal != want.Total || v.Posture.SpendToday != want.Today {
			t.Errorf("seed %d: posture spend today %v total %v, want %v and %v", seed, v.Posture.SpendToday, v.Posture.SpendTotal, want.Today, want.Total)
		}
		if want.Total == 0 || want.Unpriced == 0 {
			t.Errorf("seed %d: the stream has no priced or no unpriced call; the test proves little", seed)
		}
	}
}

// client is a subscriber's copy of one scope, kept as plain JSON values and
// changed only the way DESIGN §5 says a diff is applied.
type client struct {
	scope string
	state map[string]any
}

func (c *client) apply(t *testing.T, d map[string]any) {
	t.Helper()
	if set, ok := d["set"].(map[string]any); ok {
		for coll, entries := range set {
			dst := c.state[coll].(map[string]any)
			for id, e := range entries.(map[string]any) {
				dst[id] = e // whole entries: no partial merge
			}
		}
	}
	if del, ok := d["del"].(map[string]any); ok {
		for coll, ids := range del {
			dst := c.state[coll].(map[string]any)
			for _, id := range ids.([]any) {
				delete(dst, id.(string))
			}
		}
	}
	if p, ok := d["posture"]; ok {
		c.state["posture"] = p
	}
	if tk, ok := d["ticker"].([]any); ok {
		all := append(slices.Clone(c.state["ticker"].([]any)), tk...)
		c.state["ticker"] = all[max(0, len(all)-fleet.TickerSize):]
	}
}

// canonical encodes generic JSON values with sorted keys, for a fast equality test.
func canonical(t *testing.T, v map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// leak returns what of another project a scope's delta carries, or of a
// global budget's figures, if anything.
func leak(scope string, d fleet.Delta) string {
	if scope == fleet.ScopeAll {
		return ""
	}
	for id := range d.Set.Projects {
		if id != scope {
			return "project " + id
		}
	}
	for id, a := range d.Set.Agents {
		if a.ProjectID != scope {
			return "agent " + id + " of " + a.ProjectID
		}
	}
	for id, m := range d.Set.Missions {
		if m.ProjectID != scope {
			return "mission " + id + " of " + m.ProjectID
		}
	}
	for id, b := range d.Set.Budgets {
		if b.ProjectID != scope {
			return "budget " + id + " of " + b.ProjectID
		}
		if b.Scope == fleet.BudgetScopeGlobal && (!b.FiguresWithheld || b.LimitUSD != 0 || b.SpentUSD != 0 || b.Pct != 0) {
			return "the figures of global budget " + id
		}
	}
	for id, w := range d.Set.Workers {
		if !slices.Contains(w.Projects, scope) {
			return "worker " + id
		}
	}
	for _, e := range d.Ticker {
		if e.ProjectID != scope {
			return "ticker event " + e.ID + " of " + e.ProjectID
		}
		if strings.HasPrefix(e.Type, "budget.") && strings.Contains(e.Text, ": global ") {
			return "the figures of a global budget in ticker line " + e.Text
		}
	}
	return ""
}

// TestDeltaKeepsClientsExact checks the promise of DESIGN §5 on random
// streams: a client that starts from a scope's View and applies each
// Delta (set replaces whole entries, del removes, posture replaces, ticker
// appends and keeps the newest 50) holds exactly the scope's View after
// every batch, and never sees another project's data. Half the streams
// share ids across tenants, so the whole fleet's keys change as ids become
// shared and stop being; some run into every bound of the limits.
func TestDeltaKeepsClientsExact(t *testing.T) {
	t.Parallel()
	for seed := range seeds() {
		msgs := fleettest.Generate(newRand(seed), 1500, fleettest.Options{SharedIDs: seed%2 == 1})
		rng := newRand(seed + 1000)
		s := fleet.NewState(nil)
		if seed%3 == 2 {
			s.SetLimits(fleet.Limits{Projects: 2, AnnouncedProjects: 1, Agents: 4, Missions: 5, Workers: 3, Budgets: 3,
				OpenRuns: 2, ForgetAgentsAfter: 20 * time.Minute})
		}
		s.TakeChanges()
		var clients []*client
		for _, scope := range append([]string{fleet.ScopeAll}, fleettest.DefaultProjects...) {
			clients = append(clients, &client{scope: scope, state: jsonOf(t, s.View(scope))})
		}
		batches := 0
		for i := 0; i < len(msgs); {
			n := 1 + rng.IntN(120)
			if rng.IntN(4) == 0 {
				n = 1 + rng.IntN(3)
			}
			for ; n > 0 && i < len(msgs); n-- {
				fleettest.Feed(s, uint64(i+1), msgs[i])
				i++
			}
			batches++
			ch := s.TakeChanges()
			for _, c := range clients {
				d := s.Delta(c.scope, ch)
				if what := leak(c.scope, d); what != "" {
					t.Fatalf("seed %d batch %d: the %s delta carries %s", seed, batches, c.scope, what)
				}
				c.apply(t, jsonOf(t, d))
				view := jsonOf(t, s.View(c.scope))
				if !bytes.Equal(canonical(t, view), canonical(t, c.state)) {
					t.Fatalf("seed %d batch %d (message %d): %s client differs from View (-view +client):\n%s", seed, batches, i, c.scope, cmp.Diff(view, c.state))
				}
			}
		}
	}
}

// TestDeltaOfNothing checks that a tick without events sends a delta with
// the posture only, and one where only the clock moved sends what expired.
func TestDeltaOfNothing(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0, fleettest.WorkerJoined("acme", "w1", t0), fleettest.ToolCall("acme", "a1", "", "search", "error", t0))
	s.TakeChanges()
	d := s.Delta("acme", s.TakeChanges())
	if d.Posture == nil || d.Posture.WorkersOnline != 1 {
		t.Fatalf("empty delta posture = %+v, want the current posture", d.Posture)
	}
	d.Posture = nil
	if !d.Empty() {
		t.Errorf("delta after no events = %+v, want nothing but the posture", d)
	}
	tick(s, t0.Add(5*time.Minute)) // the worker goes offline
	d = s.Delta("acme", s.TakeChanges())
	if d.Set.Workers["w1"].Status != fleet.WorkerOffline || d.Posture.WorkersOnline != 0 || d.Posture.Errors1h != 1 {
		t.Errorf("delta after 5 quiet minutes = %+v, want w1 offline", d)
	}
	tick(s, t0.Add(61*time.Minute)) // the error leaves the hour, the worker is forgotten
	d = s.Delta("acme", s.TakeChanges())
	if d.Set.Projects["acme"].Errors1h != 0 || d.Posture.Errors1h != 0 || !slices.Equal(d.Del["workers"], []string{"w1"}) {
		t.Errorf("delta after 61 quiet minutes = %+v, want no error in the hour and w1 deleted", d)
	}
}

// TestCheckpointRestoreFoldsOnIdentically checks that a State restored from
// a checkpoint taken at any point folds the rest of the stream to exactly
// the state the original reaches: a restart changes nothing users see.
func TestCheckpointRestoreFoldsOnIdentically(t *testing.T) {
	t.Parallel()
	for seed := range seeds() {
		// Half the streams share ids across tenants: the indexes of
		// shared ids are rebuilt from the checkpoint.
		msgs := fleettest.Generate(newRand(seed), 1500, fleettest.Options{SharedIDs: seed%2 == 1})
		final := fleettest.Fold(msgs)
		rng := newRand(seed + 2000)
		cuts := []int{0, len(msgs), rng.IntN(len(msgs)), rng.IntN(len(msgs)), rng.IntN(len(msgs))}
		slices.Sort(cuts)
		s, folded := fleet.NewState(nil), 0
		for _, cut := range cuts {
			for ; folded < cut; folded++ {
				fleettest.Feed(s, uint64(folded+1), msgs[folded])
			}
			s.TakeChanges()
			cp, err := s.MarshalCheckpoint()
			if err != nil {
				t.Fatalf("seed %d cut %d: MarshalCheckpoint: %v", seed, cut, err)
			}
			r, err := fleet.RestoreState(cp, nil)
			if err != nil {
				t.Fatalf("seed %d cut %d: RestoreState: %v", seed, cut, err)
			}
			if err := sameState(s, r); err != nil {
				t.Fatalf("seed %d, just restored at message %d: %v", seed, cut, err)
			}
			again, err := r.MarshalCheckpoint()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cp, again) {
				t.Errorf("seed %d cut %d: the restored state checkpoints differently (%d vs %d bytes)", seed, cut, len(cp), len(again))
			}
			for i := cut; i < len(msgs); i++ {
				fleettest.Feed(r, uint64(i+1), msgs[i])
			}
			if err := sameState(final, r); err != nil {
				t.Fatalf("seed %d, restored at message %d and folded on: %v", seed, cut, err)
			}
		}
	}
}

// sameState compares everything users and the hub see of two States.
func sameState(want, got *fleet.State) error {
	if want.Seq() != got.Seq() || !want.Clock().Equal(got.Clock()) || want.Counts() != got.Counts() {
		return fmt.Errorf("seq %d clock %v counts %+v, want seq %d clock %v counts %+v",
			got.Seq(), got.Clock(), got.Counts(), want.Seq(), want.Clock(), want.Counts())
	}
	if diff := cmp.Diff(want.Projects(), got.Projects()); diff != "" {
		return fmt.Errorf("projects (-want +got):\n%s", diff)
	}
	for _, scope := range scopesOf(want, fleettest.DefaultProjects...) {
		w, err := json.Marshal(want.View(scope))
		if err != nil {
			return err
		}
		g, err := json.Marshal(got.View(scope))
		if err != nil {
			return err
		}
		if !bytes.Equal(w, g) {
			var wm, gm map[string]any
			json.Unmarshal(w, &wm)
			json.Unmarshal(g, &gm)
			return fmt.Errorf("view of %s (-want +got):\n%s", scope, cmp.Diff(wm, gm))
		}
	}
	return nil
}

func TestRestoreStateRefusesOtherLayouts(t *testing.T) {
	s := fleettest.Fold(generated(1, 200))
	cp, err := s.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(cp, &m)
	m["version"] = 0
	old, _ := json.Marshal(m)
	if _, err := fleet.RestoreState(old, nil); !errors.Is(err, fleet.ErrCheckpointVersion) {
		t.Errorf("RestoreState of another layout version: %v, want ErrCheckpointVersion", err)
	}
	other, err := fleet.ParsePricing([]byte(`{"as_of":"1999-01-01","models":{"m":{"input":"1","output":"1","cache_read":"1","cache_write":"1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.RestoreState(cp, other); !errors.Is(err, fleet.ErrCheckpointVersion) {
		t.Errorf("RestoreState with another pricing table: %v, want ErrCheckpointVersion", err)
	}
	if _, err := fleet.RestoreState([]byte("{"), nil); err == nil {
		t.Errorf("RestoreState of a truncated checkpoint succeeded")
	}
}

// TestFoldIsDeterministic checks that two States fed the same stream agree,
// whatever the reads in between: replicas and restarts show the same fleet.
func TestFoldIsDeterministic(t *testing.T) {
	t.Parallel()
	for seed := range seeds() {
		// Half the streams share ids across tenants, and some run into
		// the limits: which entity is refused or keyed how must not
		// depend on the order a map is walked in.
		msgs := fleettest.Generate(newRand(seed), 1500, fleettest.Options{SharedIDs: seed%2 == 1})
		var lim fleet.Limits
		if seed%3 == 2 {
			lim = fleet.Limits{Projects: 2, AnnouncedProjects: 1, Agents: 4, Missions: 5, Workers: 3, Budgets: 3, OpenRuns: 2,
				ForgetAgentsAfter: 20 * time.Minute}
		}
		a := fleet.NewState(nil)
		a.SetLimits(lim)
		for i, m := range msgs {
			fleettest.Feed(a, uint64(i+1), m)
		}

		b := fleet.NewState(nil)
		b.SetLimits(lim)
		rng := newRand(seed + 3000)
		for i, m := range msgs {
			fleettest.Feed(b, uint64(i+1), m)
			switch rng.IntN(100) { // reads must not change the state
			case 0:
				ch := b.TakeChanges()
				b.Delta(fleet.ScopeAll, ch)
				b.Delta("acme", ch)
			case 1:
				b.View("globex")
				b.Posture(fleet.ScopeAll)
			case 2:
				if _, err := b.MarshalCheckpoint(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := sameState(a, b); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		ca, _ := a.MarshalCheckpoint()
		cb, _ := b.MarshalCheckpoint()
		if !bytes.Equal(ca, cb) {
			t.Fatalf("seed %d: checkpoints differ", seed)
		}
	}
}

// TestViewSharesNothingWithTheState checks that a View handed to another
// goroutine is not changed by later events.
func TestViewSharesNothingWithTheState(t *testing.T) {
	s := fleet.NewState(nil)
	feed(t, s, t0,
		fleettest.AgentCreated("acme", "a1", "gpt-5", t0),
		fleettest.RunStarted("acme", "a1", "r1", "", "gpt-5", t0),
		fleettest.RunCompleted("acme", "a1", "r1", t0),
		fleettest.ProjectBudget(fleet.TypeBudgetWarning, "acme", 10_000_000, 8_500_000, "warn", t0))
	v := s.View("acme")
	before := jsonOf(t, v)
	for i := range 60 {
		feed(t, s, t0, fleettest.ToolCall("acme", "a1", "", "search", "ok", t0.Add(time.Duration(i)*time.Second)))
	}
	feed(t, s, t0, fleettest.RunStarted("acme", "a1", "r2", "", "gpt-5", t0), fleettest.RunCompleted("acme", "a1", "r2", t0))
	if diff := cmp.Diff(before, jsonOf(t, v)); diff != "" {
		t.Errorf("later events changed a View already taken (-before +after):\n%s", diff)
	}
}
