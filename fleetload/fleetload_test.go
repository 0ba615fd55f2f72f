package fleetload_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/fleetload"
)

// TestRun runs the example small and fast on its own embedded NATS and
// checks the figures of DESIGN §8: every mission enqueued ended once, in
// its own tenant, and the JSON has the keys the contract names.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := fleetload.Run(ctx, fleetload.Config{Workers: 20, Missions: 60, Rate: 100, TimeScale: 0.005, Seed: 40})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"workers", "tenants", "missions_enqueued", "missions_completed", "missions_failed",
		"throughput_per_sec", "claim_latency_p50_ms", "claim_latency_p95_ms", "claim_latency_p99_ms", "cross_tenant_leaks"} {
		if _, ok := raw[k].(float64); !ok {
			t.Errorf("%s missing or not a number: %v", k, raw[k])
		}
	}
	if f.Workers != 20 || f.Tenants != 3 {
		t.Errorf("workers %d, tenants %d; want 20 and 3", f.Workers, f.Tenants)
	}
	if f.MissionsEnqueued != 60 || f.MissionsCompleted+f.MissionsFailed != 60 {
		t.Errorf("enqueued %d, completed %d, failed %d; want 60 = completed + failed", f.MissionsEnqueued, f.MissionsCompleted, f.MissionsFailed)
	}
	if f.CrossTenantLeaks != 0 || f.MissionsLost != 0 || f.DoubleEnded != 0 || f.MissionsRejected != 0 {
		t.Errorf("leaks %d, lost %d, double ended %d, rejected %d; want none", f.CrossTenantLeaks, f.MissionsLost, f.DoubleEnded, f.MissionsRejected)
	}
	if p := f.Problems(); len(p) != 0 {
		t.Errorf("problems %v; want none", p)
	}
	if !(f.ClaimP50MS <= f.ClaimP95MS && f.ClaimP95MS <= f.ClaimP99MS && f.ClaimP99MS <= f.ClaimMaxMS) || f.ClaimP50MS < 0 {
		t.Errorf("claim latencies out of order: p50 %v, p95 %v, p99 %v, max %v", f.ClaimP50MS, f.ClaimP95MS, f.ClaimP99MS, f.ClaimMaxMS)
	}
	if f.ThroughputPerSec <= 0 || f.DurationSec <= 0 {
		t.Errorf("throughput %v over %v s; want both > 0", f.ThroughputPerSec, f.DurationSec)
	}
	var perTenant, workers int64
	for _, bt := range f.ByTenant {
		perTenant += bt.Enqueued
		workers += int64(bt.Workers)
		if bt.Workers == 0 {
			t.Errorf("tenant %s has no worker", bt.ProjectID)
		}
		if bt.Completed+bt.Failed != bt.Enqueued {
			t.Errorf("tenant %s: %d enqueued, %d completed, %d failed", bt.ProjectID, bt.Enqueued, bt.Completed, bt.Failed)
		}
	}
	if perTenant != 60 || len(f.ByTenant) != 3 {
		t.Errorf("by_tenant %+v: want 3 tenants adding up to 60 missions", f.ByTenant)
	}
	// 20 workers, one tenant each, every third (6) a second one.
	if workers != 26 {
		t.Errorf("the tenants count %d worker enrolments; want 26", workers)
	}
}

func TestEnrolment(t *testing.T) {
	tenants := []string{"acme", "globex", "initech"}
	var got [][]string
	for i := range 6 {
		got = append(got, fleetload.Enrolment(tenants, i))
	}
	want := [][]string{{"acme"}, {"globex"}, {"initech", "acme"}, {"acme"}, {"globex"}, {"initech", "acme"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("enrolments (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"acme"}, fleetload.Enrolment([]string{"acme"}, 2)); d != "" {
		t.Errorf("a single tenant (-want +got):\n%s", d)
	}
}

func TestProblems(t *testing.T) {
	f := &fleetload.Figures{MissionsEnqueued: 10, MissionsCompleted: 6, MissionsFailed: 1, MissionsLost: 3, CrossTenantLeaks: 2, DoubleEnded: 1, MissionsRejected: 4}
	want := []string{"2 cross-tenant leaks", "3 missions lost (enqueued 10, ended 7)", "1 missions ended more than once", "4 missions refused by the admin API"}
	if d := cmp.Diff(want, f.Problems()); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
}

// TestRunOnItsOwnClock runs the example on a test clock (fleettest.Epoch,
// moved by OBSERVATORY_TEST_CLOCK, running at the wall clock's pace): the
// API, the dispatcher, the workers and the measure share it, so the claim
// latencies and the duration are this run's, not the distance between the
// test clock and the wall clock, which any part reading the wall clock
// instead would add. (The fold and the stream still date messages by the
// NATS server's wall clock, as they must.)
func TestRunOnItsOwnClock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	epoch, began := fleettest.Epoch(), time.Now()
	now := func() time.Time { return epoch.Add(time.Since(began)) }
	f, err := fleetload.Run(ctx, fleetload.Config{Workers: 6, Tenants: 3, Missions: 30, Rate: 100, TimeScale: 0.005, Seed: 7, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Problems(); len(p) != 0 || f.MissionsCompleted+f.MissionsFailed != 30 {
		t.Fatalf("problems %v, %d of 30 missions ended", p, f.MissionsCompleted+f.MissionsFailed)
	}
	if f.ClaimP50MS < 0 || f.ClaimMaxMS > 60_000 {
		t.Errorf("claim latencies p50 %v ms, max %v ms: not this run's", f.ClaimP50MS, f.ClaimMaxMS)
	}
	if elapsed := time.Since(began).Seconds(); f.DurationSec <= 0 || f.DurationSec > elapsed {
		t.Errorf("the run took %v s by its clock; %v s passed", f.DurationSec, elapsed)
	}
}
