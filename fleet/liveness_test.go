package fleet_test

import (
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// TestSetLiveness checks that a State's liveness thresholds default to
// DESIGN's (30 s, 2 min) and that shorter ones, as tests use, make a
// silent worker stale and offline sooner, on the fold's clock.
func TestSetLiveness(t *testing.T) {
	s := fleet.NewState(nil)
	if st, off := s.Liveness(); st != 30*time.Second || off != 2*time.Minute {
		t.Fatalf("default liveness %s/%s, want 30s/2m", st, off)
	}
	s.SetLiveness(0, 0)
	if st, off := s.Liveness(); st != fleet.StaleAfter || off != fleet.OfflineAfter {
		t.Fatalf("zero liveness %s/%s, want the defaults", st, off)
	}
	s.SetLiveness(time.Second, 3*time.Second)
	feed(t, s, t0, fleettest.Heartbeat("acme", "w-1", "busy", t0))
	status := func() string { return s.View("acme").Workers["w-1"].Status }
	for _, step := range []struct {
		after time.Duration
		want  string
	}{
		{900 * time.Millisecond, fleet.WorkerOnline},
		{1500 * time.Millisecond, fleet.WorkerStale},
		{2900 * time.Millisecond, fleet.WorkerStale},
		{4 * time.Second, fleet.WorkerOffline},
	} {
		tick(s, t0.Add(step.after))
		if got := status(); got != step.want {
			t.Errorf("%s after the last heartbeat: %s, want %s", step.after, got, step.want)
		}
	}
	// Offline never comes before stale.
	s.SetLiveness(time.Minute, time.Second)
	if st, off := s.Liveness(); off != st {
		t.Errorf("liveness %s/%s, want offline raised to stale", st, off)
	}
}
