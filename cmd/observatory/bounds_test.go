package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestServeFoldBounds: serve's --fold-max-agents bounds what the fold
// keeps of one project's agents; events past it are refused and counted
// with their reason on /metrics, and the project's first agents stay.
func TestServeFoldBounds(t *testing.T) {
	s := startServe(t, "--fold-max-agents", "3")
	pub, _ := s.natsAdmin(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for i := range 5 {
		ev := fleettest.E{Type: fleet.TypeAgentCreated, Time: now, ProjectID: "acme", AgentID: fmt.Sprintf("acme-agent-%d", i),
			Data: map[string]any{"name": "a", "model": "gpt-5"}}.Event()
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	token := login(t, s.base, "admin", "admin")
	streamtest.Eventually(t, time.Minute, func() bool { return rejected(t, s.base, "limit_agents") == 2 },
		"two agents refused with reason limit_agents")
	_, snap := getFleet(t, s.base, token, "acme")
	if len(snap.State.Agents) != 3 {
		t.Errorf("the fold keeps %d agents of acme, want 3", len(snap.State.Agents))
	}
	for i := range 3 {
		if _, ok := snap.State.Agents[fmt.Sprintf("acme-agent-%d", i)]; !ok {
			t.Errorf("acme-agent-%d, among the first three, is missing", i)
		}
	}
}

// rejected reads sagewai_hub_events_rejected_total{reason} off serve's
// /metrics.
func rejected(t *testing.T, base, reason string) float64 {
	t.Helper()
	resp := getMetrics(t, base)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var n float64
	for _, m := range fams["sagewai_hub_events_rejected_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" && l.GetValue() == reason {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func TestBoundsFlagsRefuseNonsense(t *testing.T) {
	for _, args := range [][]string{
		{"--fleet-max-bytes", "lots"},
		{"--audit-max-bytes", "0"},
		{"--fold-max-agents", "0"},
		{"--fold-forget-agents-after", "-1h"},
	} {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"serve", "--data-dir", t.TempDir()}, args...), func(string) string { return "" }, &out, &errb)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("serve %v: %v (exit %d), want a usage error (exit 2)", args, err, exitCode(err))
		}
	}
	for in, want := range map[string]int64{"8GiB": 8 << 30, "500MiB": 500 << 20, "1000": 1000, "2 GB": 2e9} {
		if got, err := parseBytes("--x", in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}
