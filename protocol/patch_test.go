package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
)

// twoSessions is what a server sends a v1 and a v2 subscriber of scope
// while it folds msgs in batches of about batch messages: the same
// snapshots, and per batch the v1 diff and the v2 diff of the same Delta.
// Now and then the v2 patcher is reset (as the hub does when a scope's v2
// frames stopped for want of subscribers), a fresh snapshot is sent (as to
// a subscriber that fell behind, which seeds the patcher), or the posture
// is dropped from the Delta when unchanged (as the hub does). views holds
// the scope's View after each frame.
func twoSessions(tb testing.TB, msgs []fleettest.Msg, scope string, batch int, rng *rand.Rand) (v1, v2, views [][]byte) {
	tb.Helper()
	s := fleet.NewState(nil)
	var p protocol.Patcher
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatalf("encode frame: %v", err)
		}
		return b
	}
	snapshot := func() {
		snap := enc(protocol.Snapshot{Op: protocol.OpSnapshot, Scope: scope, Epoch: "E", Seq: s.Seq(), State: s.View(scope)})
		if err := p.Seed(snap); err != nil {
			tb.Fatalf("seed: %v", err)
		}
		v1, v2 = append(v1, snap), append(v2, snap)
		views = append(views, canonical(tb, enc(s.View(scope))))
	}
	s.TakeChanges()
	snapshot()
	prev, posture := s.Seq(), s.Posture(scope)
	for i := 0; i < len(msgs); {
		for n := 1 + rng.IntN(batch); n > 0 && i < len(msgs); n-- {
			fleettest.Feed(s, uint64(i+1), msgs[i])
			i++
		}
		ch := s.TakeChanges()
		d := s.Delta(scope, ch)
		if rng.IntN(2) == 0 && *d.Posture == posture {
			d.Posture = nil
		}
		if d.Posture != nil {
			posture = *d.Posture
		}
		if rng.IntN(20) == 0 {
			p.Reset()
		}
		v1 = append(v1, enc(protocol.Diff{Op: protocol.OpDiff, Scope: scope, Epoch: "E", Prev: prev, Seq: s.Seq(), Delta: d}))
		frame, err := p.Encode(protocol.DiffHead{Scope: scope, Epoch: "E", Prev: prev, Seq: s.Seq()}, &d)
		if err != nil {
			tb.Fatalf("v2 encode: %v", err)
		}
		v2 = append(v2, frame)
		views = append(views, canonical(tb, enc(s.View(scope))))
		prev = s.Seq()
		if rng.IntN(12) == 0 {
			snapshot()
		}
	}
	return v1, v2, views
}

// FuzzMirrorV1AndV2Converge checks that a v1 Mirror fed the v1 frames and a v2
// Mirror fed the v2 frames of the same fold hold exactly the scope's View
// after every frame (DESIGN §5: applying a diff to the state at prev gives
// the state at seq, in either version), on fold histories the fuzzer
// picks by seed, batch size and scope.
func FuzzMirrorV1AndV2Converge(f *testing.F) {
	for _, s := range []struct {
		seed         uint64
		scope, batch uint8
	}{{1, 0, 30}, {2, 1, 1}, {3, 2, 120}, {4, 3, 7}, {5, 0, 3}, {6, 1, 40}} {
		f.Add(s.seed, s.scope, s.batch)
	}
	scopes := append([]string{fleet.ScopeAll}, fleettest.DefaultProjects...)
	f.Fuzz(func(t *testing.T, seed uint64, scopeIdx, batch uint8) {
		rng := rand.New(rand.NewPCG(seed, 99))
		msgs := fleettest.Generate(rng, 300, fleettest.Options{ClockTicks: seed%2 == 0, SharedIDs: seed%3 == 0})
		scope := scopes[int(scopeIdx)%len(scopes)]
		v1, v2, views := twoSessions(t, msgs, scope, 1+int(batch)%150, rng)
		m1 := protocol.Mirror{Protocol: protocol.Subprotocol}
		m2 := protocol.Mirror{Protocol: protocol.SubprotocolV2}
		for i := range views {
			for _, c := range []struct {
				m     *protocol.Mirror
				frame []byte
			}{{&m1, v1[i]}, {&m2, v2[i]}} {
				op, err := c.m.Apply(c.frame)
				if err != nil {
					t.Fatalf("%s frame %d (%s): %v\n%.300s", c.m.Protocol, i, op, err, c.frame)
				}
				if got := c.m.JSON(); !bytes.Equal(got, views[i]) {
					var g, w any
					json.Unmarshal(got, &g)
					json.Unmarshal(views[i], &w)
					t.Fatalf("after frame %d (%s) the %s mirror of %s differs from the View (-view +mirror):\n%s\nframe: %.500s",
						i, op, c.m.Protocol, scope, cmp.Diff(w, g), c.frame)
				}
			}
		}
	})
}

// TestV2DiffIsSmaller checks what the version is for, on the histories of
// the property test: over a whole session the v2 diffs never weigh more
// than the v1 diffs, and a diff that only moves counters weighs less.
func TestV2DiffIsSmaller(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	msgs := fleettest.Generate(rng, 600, fleettest.Options{})
	v1, v2, _ := twoSessions(t, msgs, fleet.ScopeAll, 5, rng)
	var b1, b2 int
	for i := range v1 {
		b1 += len(v1[i])
		b2 += len(v2[i])
	}
	if b2 >= b1 {
		t.Fatalf("v2 diffs weigh %d bytes, v1 %d: no smaller", b2, b1)
	}
	t.Logf("%d frames: v1 %d bytes, v2 %d bytes (%.0f %%)", len(v1), b1, b2, 100*float64(b2)/float64(b1))
}

// TestPatcherFrame pins the v2 diff of docs/protocol.md: a new agent is
// set whole, a known one gets its changed fields and the names of the
// ones that went, an unchanged entity touched by the fold is left out,
// and the posture carries its changed fields only.
func TestPatcherFrame(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	a1 := fleet.Agent{ID: "a1", ProjectID: "acme", Name: "triage", Model: "m", State: "thinking", RunID: "r-7", Runs: 6, LastSeen: at}
	w1 := fleet.Worker{ID: "w1"}
	var p protocol.Patcher
	snap, _ := json.Marshal(protocol.Snapshot{Op: protocol.OpSnapshot, Scope: "acme", Epoch: "E", Seq: 10, State: fleet.View{
		Posture: fleet.Posture{ActiveAgents: 1, Agents: 1, Runs24h: 6},
		Agents:  map[string]fleet.Agent{"a1": a1},
		Workers: map[string]fleet.Worker{"w1": w1},
	}})
	if err := p.Seed(snap); err != nil {
		t.Fatal(err)
	}
	a1.State, a1.RunID, a1.Runs, a1.LastSeen = "idle", "", 7, at.Add(time.Second)
	a2 := fleet.Agent{ID: "a2", ProjectID: "acme", Name: "coder", Model: "m", State: "idle", LastSeen: at}
	d := fleet.Delta{
		Set:     fleet.Set{Agents: map[string]fleet.Agent{"a1": a1, "a2": a2}, Workers: map[string]fleet.Worker{"w1": w1}},
		Del:     map[string][]string{"missions": {"m1"}},
		Posture: &fleet.Posture{ActiveAgents: 2, Agents: 2, Runs24h: 7},
	}
	got, err := p.Encode(protocol.DiffHead{Scope: "acme", Epoch: "E", Prev: 10, Seq: 12}, &d)
	if err != nil {
		t.Fatal(err)
	}
	newAgent, _ := json.Marshal(a2)
	want := `{"op":"diff","scope":"acme","epoch":"E","prev":10,"seq":12,` +
		`"set":{"agents":{"a2":` + string(newAgent) + `}},` +
		`"patch":{"agents":{"a1":{"state":"idle","runs":7,"last_seen":"2026-12-06T10:00:01Z"}}},` +
		`"unset":{"agents":{"a1":["run_id"]}},` +
		`"del":{"missions":["m1"]},` +
		`"posture":{"active_agents":2,"agents":2,"runs_24h":7}}`
	if string(got) != want {
		t.Fatalf("v2 diff\n got %s\nwant %s", got, want)
	}
	if !json.Valid(got) {
		t.Fatal("not JSON")
	}
	if p.Entities() != 3 || p.Bytes() <= 0 {
		t.Errorf("patcher remembers %d entities in %d bytes, want 3 (a1, a2, w1)", p.Entities(), p.Bytes())
	}

	// The same frame applied to the snapshot gives the state the v1 frame
	// gives.
	m := protocol.Mirror{Protocol: protocol.SubprotocolV2}
	m1 := protocol.Mirror{Protocol: protocol.Subprotocol}
	v1, _ := json.Marshal(protocol.Diff{Op: protocol.OpDiff, Scope: "acme", Epoch: "E", Prev: 10, Seq: 12, Delta: d})
	for _, f := range []struct {
		m      *protocol.Mirror
		frames [][]byte
	}{{&m, [][]byte{snap, got}}, {&m1, [][]byte{snap, v1}}} {
		for _, fr := range f.frames {
			if _, err := f.m.Apply(fr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d := cmp.Diff(m1.State, m.State); d != "" {
		t.Errorf("v2 state differs from v1 state (-v1 +v2):\n%s", d)
	}
}

// TestMirrorRefusesPatchOfUnknownEntity checks that a v2 diff patching or
// unsetting an entity the mirror lacks is refused whole: the state and seq
// stay, and the error says so (ErrPatch), so that a client resubscribes
// instead of holding a half-built entity.
func TestMirrorRefusesPatchOfUnknownEntity(t *testing.T) {
	for _, frame := range []string{
		`{"op":"diff","scope":"acme","epoch":"E","prev":1,"seq":2,"set":{"agents":{"a2":{"id":"a2"}}},"patch":{"agents":{"zz":{"state":"idle"}}}}`,
		`{"op":"diff","scope":"acme","epoch":"E","prev":1,"seq":2,"unset":{"agents":{"zz":["run_id"]}},"del":{"agents":["a1"]}}`,
		`{"op":"diff","scope":"acme","epoch":"E","prev":1,"seq":2,"patch":{"workers":{"a1":{"x":1}}}}`,
	} {
		m := protocol.Mirror{Protocol: protocol.SubprotocolV2}
		if _, err := m.Apply([]byte(`{"op":"snapshot","scope":"acme","epoch":"E","seq":1,"state":{"agents":{"a1":{"id":"a1","state":"thinking"}},"workers":{}}}`)); err != nil {
			t.Fatal(err)
		}
		before := m.JSON()
		if _, err := m.Apply([]byte(frame)); !errors.Is(err, protocol.ErrPatch) {
			t.Errorf("%s: err = %v, want ErrPatch", frame, err)
		}
		if !bytes.Equal(before, m.JSON()) || m.Seq != 1 {
			t.Errorf("%s: refused, yet the mirror changed to seq %d %s", frame, m.Seq, m.JSON())
		}
	}
	// A patch of an entity the same frame sets is fine.
	m := protocol.Mirror{Protocol: protocol.SubprotocolV2}
	m.Apply([]byte(`{"op":"snapshot","scope":"acme","epoch":"E","seq":1,"state":{"posture":{"a":1,"b":2}}}`))
	if _, err := m.Apply([]byte(`{"op":"diff","scope":"acme","epoch":"E","prev":1,"seq":2,"set":{"agents":{"a2":{"id":"a2","x":1}}},"patch":{"agents":{"a2":{"x":2}}},"posture":{"b":3}}`)); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"agents": map[string]any{"a2": map[string]any{"id": "a2", "x": 2.0}}, "posture": map[string]any{"a": 1.0, "b": 3.0}}
	if d := cmp.Diff(want, m.State); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
