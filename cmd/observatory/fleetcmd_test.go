package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestFleetJSON runs the fleet example small and fast on its own embedded
// NATS and checks the figures of DESIGN §8.
func TestFleetJSON(t *testing.T) {
	out := runCmd(t, "fleet", "--workers", "20", "--missions", "60", "--rate", "100", "--time-scale", "0.005", "--json")
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("--json printed more than one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"workers", "tenants", "missions_enqueued", "missions_completed", "missions_failed",
		"throughput_per_sec", "claim_latency_p50_ms", "claim_latency_p95_ms", "claim_latency_p99_ms", "cross_tenant_leaks"} {
		if _, ok := raw[k].(float64); !ok {
			t.Errorf("%s missing or not a number: %v", k, raw[k])
		}
	}
	var f fleetFigures
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatal(err)
	}
	if f.Workers != 20 || f.Tenants != 3 {
		t.Errorf("workers %d, tenants %d; want 20 and 3", f.Workers, f.Tenants)
	}
	if f.MissionsEnqueued != 60 || f.MissionsCompleted+f.MissionsFailed != 60 {
		t.Errorf("enqueued %d, completed %d, failed %d; want 60 = completed + failed", f.MissionsEnqueued, f.MissionsCompleted, f.MissionsFailed)
	}
	if f.CrossTenantLeaks != 0 || f.MissionsLost != 0 || f.DoubleEnded != 0 {
		t.Errorf("leaks %d, lost %d, double ended %d; want none", f.CrossTenantLeaks, f.MissionsLost, f.DoubleEnded)
	}
	if !(f.ClaimP50MS <= f.ClaimP95MS && f.ClaimP95MS <= f.ClaimP99MS) || f.ClaimP50MS < 0 {
		t.Errorf("claim latencies out of order: p50 %v, p95 %v, p99 %v", f.ClaimP50MS, f.ClaimP95MS, f.ClaimP99MS)
	}
	if f.ThroughputPerSec <= 0 {
		t.Errorf("throughput %v; want > 0", f.ThroughputPerSec)
	}
	var perTenant int64
	for _, bt := range f.ByTenant {
		perTenant += bt.Enqueued
		if bt.Workers == 0 {
			t.Errorf("tenant %s has no worker", bt.ProjectID)
		}
	}
	if perTenant != 60 || len(f.ByTenant) != 3 {
		t.Errorf("by_tenant %+v: want 3 tenants adding up to 60 missions", f.ByTenant)
	}
}

// TestFleetProofBlock checks the human output: progress lines on stderr
// (not a terminal), the proof block and the JSON on stdout.
func TestFleetProofBlock(t *testing.T) {
	var stdout, stderr syncBuffer
	args := []string{"fleet", "--workers", "4", "--tenants", "2", "--missions", "8", "--rate", "100", "--time-scale", "0.002"}
	if err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("fleet: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"Proof\n", "missions enqueued   8\n", "cross-tenant leaks  0\n", `"cross_tenant_leaks":0`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if bytes.Contains([]byte(stderr.String()), []byte("\r")) {
		t.Errorf("progress rewrote a line on a non-terminal:\n%q", stderr.String())
	}
}

func TestFleetFlags(t *testing.T) {
	for _, args := range [][]string{{"--workers", "0"}, {"--tenants", "4"}, {"--missions", "0"}, {"--rate", "0"}, {"extra"}} {
		var stdout, stderr syncBuffer
		if err := run(context.Background(), append([]string{"fleet"}, args...), func(string) string { return "" }, &stdout, &stderr); err == nil {
			t.Errorf("fleet %v: want an error", args)
		}
	}
}
