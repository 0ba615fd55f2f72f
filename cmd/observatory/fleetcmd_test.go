package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleetload"
	"github.com/sagewai/observatory/stream"
)

// TestFleetJSON: --json prints one JSON object, the figures, and nothing
// else on stdout.
func TestFleetJSON(t *testing.T) {
	out := runCmd(t, "fleet", "--workers", "4", "--tenants", "2", "--missions", "8", "--rate", "100", "--time-scale", "0.002", "--json")
	var f fleetload.Figures
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("--json printed no figures: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("--json printed more than one JSON object:\n%s", out)
	}
	if f.Workers != 4 || f.Tenants != 2 || f.MissionsEnqueued != 8 || f.MissionsCompleted+f.MissionsFailed != 8 {
		t.Errorf("figures %+v; want 4 workers, 2 tenants, 8 missions that all ended", f)
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
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workers", "0"}, "want --workers between 1 and 2000"},
		{[]string{"--tenants", "4"}, "want --tenants between 1 and 3"},
		{[]string{"--missions", "0"}, "want --missions between 1 and 100000"},
		{[]string{"--rate", "0"}, "want --rate above 0"},
		{[]string{"--time-scale", "11"}, "want --time-scale above 0"},
		{[]string{"--timeout", "0s"}, "want a positive --timeout"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var stdout, stderr syncBuffer
		err := run(context.Background(), append([]string{"fleet"}, tc.args...), noEnv, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("fleet %v = %v; want an error with %q", tc.args, err, tc.want)
		}
	}
}

// runFleet runs `observatory fleet --json` with args and returns the
// figures it printed and the error it returned.
func runFleet(t *testing.T, args ...string) (fleetload.Figures, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	err := run(ctx, append(append([]string{"fleet"}, args...), "--json"), noEnv, &stdout, &stderr)
	var f fleetload.Figures
	if jerr := json.Unmarshal([]byte(stdout.String()), &f); jerr != nil {
		t.Fatalf("fleet printed no figures: %v (it returned %v)\n%s\n%s", jerr, err, stdout.String(), stderr.String())
	}
	return f, err
}

// TestFleetFailsOnLostMissions runs the example with one worker for three
// tenants: the worker serves acme only, so globex's and initech's missions
// are never claimed. They are lost when the wait ends, and the command
// says so and exits non-zero.
func TestFleetFailsOnLostMissions(t *testing.T) {
	f, err := runFleet(t, "--workers", "1", "--tenants", "3", "--missions", "12", "--rate", "100", "--time-scale", "0.002", "--timeout", "3s")
	var unserved int64
	for _, bt := range f.ByTenant {
		if bt.Workers == 0 {
			unserved += bt.Enqueued
		}
	}
	if unserved == 0 {
		t.Fatalf("no mission went to a tenant without workers: %+v", f.ByTenant)
	}
	if f.MissionsLost < unserved || f.MissionsEnqueued != 12 {
		t.Errorf("%d of 12 missions lost; the tenants without workers had %d", f.MissionsLost, unserved)
	}
	want := fmt.Sprintf("fleet: %d missions lost (enqueued 12, ended %d)", f.MissionsLost, f.MissionsCompleted+f.MissionsFailed)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("fleet = %v; want an error with %q", err, want)
	}
}

// TestFleetFailsOnCrossTenantLeak runs the example on a NATS the test
// shares and, as soon as acme's first mission is queued, publishes a
// forged claim of that mission by a worker of globex onto globex's mission
// subject: the example counts the leak, says so and exits non-zero.
func TestFleetFailsOnCrossTenantLeak(t *testing.T) {
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	pub, _ := publisherFor(t, ns.ClientURL())
	nc, err := stream.Connect(ns.ClientURL(), nil, "forger")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	forged := make(chan error, 1)
	var once sync.Once
	sub, err := nc.Subscribe("fleet.acme."+fleet.TypeMissionQueued, func(m *nats.Msg) {
		once.Do(func() {
			ev, err := fleet.DecodeEvent(m.Subject, m.Data)
			if err != nil {
				forged <- err
				return
			}
			_, err = pub.Publish(context.Background(), fleet.Event{ID: "ev-forged-claim", Type: fleet.TypeMissionClaimed, Time: time.Now().UTC(),
				ProjectID: "globex", WorkerID: "w-forger", MissionID: ev.MissionID})
			forged <- err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })

	f, err := runFleet(t, "--nats-url", ns.ClientURL(), "--workers", "4", "--tenants", "2", "--missions", "10", "--rate", "5", "--time-scale", "0.002")
	select {
	case ferr := <-forged:
		if ferr != nil {
			t.Fatalf("the forged claim: %v", ferr)
		}
	default:
		t.Fatal("no acme mission was queued to forge a claim for")
	}
	if f.CrossTenantLeaks != 1 || f.MissionsLost != 0 || f.MissionsEnqueued != 10 {
		t.Errorf("leaks %d, lost %d, enqueued %d; want the one forged leak, nothing lost, 10 missions", f.CrossTenantLeaks, f.MissionsLost, f.MissionsEnqueued)
	}
	if err == nil || err.Error() != "fleet: 1 cross-tenant leaks" {
		t.Fatalf("fleet = %v; want exactly the error %q", err, "fleet: 1 cross-tenant leaks")
	}
}
