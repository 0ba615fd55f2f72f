package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
)

// session is what a server sends one subscriber of scope while it folds
// msgs in batches of about batch messages: a snapshot, then a diff per
// batch, and now and then a fresh snapshot (as to a subscriber that fell
// behind) or an empty diff (as to one that resumed where it stood). views
// holds the scope's View after each frame.
func session(tb testing.TB, msgs []fleettest.Msg, scope string, batch int, rng *rand.Rand) (frames [][]byte, views [][]byte) {
	tb.Helper()
	s := fleet.NewState(nil)
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatalf("encode frame: %v", err)
		}
		return b
	}
	sent := func(frame []byte) {
		frames = append(frames, frame)
		views = append(views, canonical(tb, enc(s.View(scope))))
	}
	s.TakeChanges()
	sent(enc(protocol.Snapshot{Op: protocol.OpSnapshot, Scope: scope, Epoch: "E", Seq: s.Seq(), State: s.View(scope)}))
	prev := s.Seq()
	for i := 0; i < len(msgs); {
		for n := 1 + rng.IntN(batch); n > 0 && i < len(msgs); n-- {
			fleettest.Feed(s, uint64(i+1), msgs[i])
			i++
		}
		ch := s.TakeChanges()
		switch rng.IntN(10) {
		case 0:
			sent(enc(protocol.Snapshot{Op: protocol.OpSnapshot, Scope: scope, Epoch: "E", Seq: s.Seq(), State: s.View(scope)}))
		case 1:
			d := protocol.Diff{Op: protocol.OpDiff, Scope: scope, Epoch: "E", Prev: prev, Seq: prev}
			frames = append(frames, enc(d)) // nothing happened in between: the view is the last one
			views = append(views, views[len(views)-1])
			sent(enc(protocol.Diff{Op: protocol.OpDiff, Scope: scope, Epoch: "E", Prev: prev, Seq: s.Seq(), Delta: s.Delta(scope, ch)}))
		default:
			sent(enc(protocol.Diff{Op: protocol.OpDiff, Scope: scope, Epoch: "E", Prev: prev, Seq: s.Seq(), Delta: s.Delta(scope, ch)}))
		}
		prev = s.Seq()
	}
	return frames, views
}

// canonical re-encodes JSON with sorted keys, as Mirror.JSON does.
func canonical(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("canonical: %v", err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("canonical: %v", err)
	}
	return out
}

// FuzzMirrorFollowsTheFold checks that a Mirror fed the frames a server
// sends for a scope, snapshot and diffs, fresh snapshots and empty diffs
// among them, holds exactly the scope's View after every frame (DESIGN
// §5: applying a diff to the state at prev gives the state at seq), on
// streams the fuzzer picks by seed, batch size and scope.
func FuzzMirrorFollowsTheFold(f *testing.F) {
	for _, s := range []struct {
		seed         uint64
		scope, batch uint8
	}{{1, 0, 30}, {2, 1, 1}, {3, 2, 120}, {4, 3, 7}} {
		f.Add(s.seed, s.scope, s.batch)
	}
	scopes := append([]string{fleet.ScopeAll}, fleettest.DefaultProjects...)
	f.Fuzz(func(t *testing.T, seed uint64, scopeIdx, batch uint8) {
		rng := rand.New(rand.NewPCG(seed, 99))
		msgs := fleettest.Generate(rng, 250, fleettest.Options{ClockTicks: seed%2 == 0, SharedIDs: seed%3 == 0})
		scope := scopes[int(scopeIdx)%len(scopes)]
		frames, views := session(t, msgs, scope, 1+int(batch)%150, rng)
		var m protocol.Mirror
		for i, frame := range frames {
			op, err := m.Apply(frame)
			if err != nil {
				t.Fatalf("frame %d (%s): %v\n%.300s", i, op, err, frame)
			}
			if got := m.JSON(); !bytes.Equal(got, views[i]) {
				var g, w any
				json.Unmarshal(got, &g)
				json.Unmarshal(views[i], &w)
				t.Fatalf("after frame %d (%s) the %s mirror differs from the View (-view +mirror):\n%s", i, op, scope, cmp.Diff(w, g))
			}
		}
	})
}

// FuzzMirrorApply checks that no sequence of frames (one per line),
// however malformed, panics Mirror.Apply; that a frame it refuses changes
// nothing; that an error frame comes back as a *ServerError; and that a
// frame it applies follows DESIGN §5: a snapshot is the new state, a diff
// stores each entry of set whole, removes each id of del, replaces the
// posture, appends the ticker keeping the newest TickerSize entries, and
// moves seq to the diff's.
func FuzzMirrorApply(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, scope := range []string{fleet.ScopeAll, "acme"} {
		frames, _ := session(f, fleettest.Generate(rng, 120, fleettest.Options{}), scope, 25, rng)
		f.Add(bytes.Join(frames[:min(len(frames), 6)], []byte("\n")))
	}
	for _, s := range []string{
		`{"op":"snapshot","scope":"acme","epoch":"E","seq":10,"state":{"posture":{"active_agents":1},"agents":{"a1":{"id":"a1"}},"missions":{"m1":{"id":"m1"}},"ticker":[]}}` + "\n" +
			`{"op":"diff","scope":"acme","epoch":"E","prev":10,"seq":12,"set":{"agents":{"a1":{"id":"a1","state":"thinking"},"a2":{"id":"a2"}}},"del":{"missions":["m1"]},"posture":{"active_agents":2},"ticker":[{"seq":11},{"seq":12}]}` + "\n" +
			`{"op":"diff","scope":"acme","epoch":"E","prev":11,"seq":13}` + "\n" +
			`{"op":"diff","scope":"acme","epoch":"F","prev":12,"seq":13}`,
		`{"op":"diff","epoch":"","prev":0,"seq":1,"set":{"agents":{"a":{}}}}`,
		`{"op":"snapshot","epoch":"E","seq":1,"state":null}` + "\n" + `{"op":"diff","epoch":"E","prev":1,"seq":2}`,
		`{"op":"snapshot","epoch":"E","seq":1,"state":{"agents":5,"ticker":{}}}` + "\n" + `{"op":"diff","epoch":"E","prev":1,"seq":2,"set":{"agents":{"a":1}},"del":{"ticker":["x"]},"ticker":[1,2]}`,
		`{"op":"snapshot","epoch":"E","seq":1,"state":{}}` + "\n" + `{"op":"diff","epoch":"E","prev":1,"seq":2,"set":{"agents":{"a":1}},"del":{"agents":["a"]}}`,
		`{"op":"error","code":"slow","message":"too slow"}`,
		`{"op":"hello"}`, `{"op":"diff","seq":-1}`, `{"op":"snapshot","state":[]}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m protocol.Mirror
		for i, frame := range bytes.Split(data, []byte("\n")) {
			before, seq, epoch, scope := m.JSON(), m.Seq, m.Epoch, m.Scope
			op, err := m.Apply(frame)
			if err != nil {
				if !bytes.Equal(before, m.JSON()) || seq != m.Seq || epoch != m.Epoch || scope != m.Scope {
					t.Fatalf("frame %d (%s) was refused (%v) but changed the mirror", i, op, err)
				}
				var se *protocol.ServerError
				if op == protocol.OpError && !errors.As(err, &se) {
					t.Fatalf("frame %d: an error frame gave %v, not a *ServerError", i, err)
				}
				continue
			}
			if err := followsTheRules(op, frame, &m); err != nil {
				t.Fatalf("frame %d (%s) %.300s: %v", i, op, frame, err)
			}
			if _, err := json.Marshal(m.State); err != nil {
				t.Fatalf("frame %d: the mirrored state cannot be encoded: %v", i, err)
			}
		}
	})
}

// followsTheRules checks the mirror after it applied frame (op).
func followsTheRules(op string, frame []byte, m *protocol.Mirror) error {
	var f struct {
		Scope   string                    `json:"scope"`
		Epoch   string                    `json:"epoch"`
		Seq     uint64                    `json:"seq"`
		State   map[string]any            `json:"state"`
		Set     map[string]map[string]any `json:"set"`
		Del     map[string][]string       `json:"del"`
		Posture map[string]any            `json:"posture"`
		Ticker  []any                     `json:"ticker"`
	}
	if err := json.Unmarshal(frame, &f); err != nil {
		return fmt.Errorf("applied, yet it does not decode: %w", err)
	}
	if m.Seq != f.Seq || m.Epoch != f.Epoch {
		return fmt.Errorf("mirror at epoch %q seq %d, the frame says %q %d", m.Epoch, m.Seq, f.Epoch, f.Seq)
	}
	switch op {
	case protocol.OpSnapshot:
		if m.Scope != f.Scope {
			return fmt.Errorf("scope %q, the snapshot says %q", m.Scope, f.Scope)
		}
		if diff := cmp.Diff(f.State, m.State); diff != "" {
			return fmt.Errorf("the state is not the snapshot's (-snapshot +mirror):\n%s", diff)
		}
	case protocol.OpDiff:
		for _, coll := range fleet.Collections {
			c, _ := m.State[coll].(map[string]any)
			for id, v := range f.Set[coll] {
				if slices.Contains(f.Del[coll], id) {
					continue
				}
				if got, ok := c[id]; !ok || !cmp.Equal(v, got) {
					return fmt.Errorf("%s %q is %v, the diff sets %v", coll, id, got, v)
				}
			}
			for _, id := range f.Del[coll] {
				if _, ok := c[id]; ok {
					return fmt.Errorf("%s %q is still there after del", coll, id)
				}
			}
		}
		if f.Posture != nil && !cmp.Equal(any(f.Posture), m.State["posture"]) {
			return fmt.Errorf("posture %v, the diff says %v", m.State["posture"], f.Posture)
		}
		if len(f.Ticker) > 0 {
			tk, _ := m.State["ticker"].([]any)
			n := min(len(f.Ticker), protocol.TickerSize)
			if len(tk) > protocol.TickerSize || len(tk) < n || !cmp.Equal(tk[len(tk)-n:], f.Ticker[len(f.Ticker)-n:]) {
				return fmt.Errorf("ticker of %d entries does not end with the diff's %d", len(tk), len(f.Ticker))
			}
		}
	default:
		return fmt.Errorf("op %q applied", op)
	}
	return nil
}
