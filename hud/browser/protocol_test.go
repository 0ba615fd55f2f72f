package browser_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/synth"
)

// TestHUDSpeaksV2: the page negotiates observatory.v2, and the state it
// builds from the snapshot and the v2 diffs (patches, unsets, posture
// fields) is exactly the fold's view at the seq it stands at: every
// field of every entity, not only those it paints. A patch applied wrong
// shows up here before it shows on a screen.
func TestHUDSpeaksV2(t *testing.T) {
	r := newRig(t, nil)
	s := newSim(7, synth.Config{}, 3*time.Minute)
	r.publish(s.run(time.Minute)...)

	tb := newTab(t, 1280, 720)
	r.login(tb, "/hud")
	if p := eval[string](tb, `window.observatoryHUD.protocol`); p != protocol.SubprotocolV2 {
		t.Fatalf("the page speaks %q, want %q", p, protocol.SubprotocolV2)
	}
	for i := range 4 {
		r.publish(s.run(5 * time.Second)...)
		v, seq := r.view(fleet.ScopeAll)
		tb.waitTrue("the page follows the stream", fmt.Sprintf(`window.observatoryHUD.seq === %d`, seq), 20*time.Second)
		got := eval[string](tb, `JSON.stringify((({scope, epoch, seq, ...rest}) => rest)(window.observatoryHUD.state))`)
		var g, w any
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		json.Unmarshal(b, &w)
		if d := cmp.Diff(w, g); d != "" {
			t.Fatalf("step %d: the page's state at seq %d differs from the fold's view (-fold +page):\n%s", i, seq, d)
		}
	}
	if n := eval[int](tb, `window.observatoryHUD.stats.diffs`); n < 4 {
		t.Errorf("the page applied %d diffs, want several", n)
	}
	if n := eval[int](tb, `window.observatoryHUD.stats.gaps`); n != 0 {
		t.Errorf("the page saw %d gaps, want none", n)
	}
}
