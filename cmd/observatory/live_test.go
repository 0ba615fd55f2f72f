package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/stream/streamtest"
)

// apiGet is GET path as token, decoded into out; it fails the test on any
// status but 200.
func apiGet(t *testing.T, base, token, path string, out any) {
	t.Helper()
	c := &live.Client{Base: base, HTTP: http.DefaultClient}
	if _, err := c.Do(context.Background(), token, http.MethodGet, path, nil, http.StatusOK, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// TestLiveAgainstServe runs `observatory live --json` against a real
// `observatory serve` (no workers: the missions stay queued) and checks
// its figures against what the server itself recorded: the missions in
// flight per tenant on the fold, the cross-tenant denials on AUDIT.
func TestLiveAgainstServe(t *testing.T) {
	s := startServe(t)
	out := runCmd(t, "live", "--url", s.base, "--duration", "4s", "--mission-rate", "8", "--read-rate", "20",
		"--probe-every", "200ms", "--cross-tenant-every", "1s", "--drain", "0s", "--seed", "7", "--json")
	var f live.Figures
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("--json printed more than one JSON object: %v\n%s", err, out)
	}
	if p := f.Problems(); len(p) > 0 {
		t.Fatalf("the server answered wrongly: %v", p)
	}
	if f.HTTPCalls < 80 || f.Status2xx == 0 {
		t.Errorf("%d calls (%d 2xx) in 4 s at 28 requests/s; want at least 80", f.HTTPCalls, f.Status2xx)
	}
	if f.Probes401 == 0 || f.Probes404 == 0 {
		t.Errorf("probes refused: %d with 401, %d with 404; want both", f.Probes401, f.Probes404)
	}
	if f.CrossTenantAttempts < 2 || f.CrossTenantDenied != f.CrossTenantAttempts {
		t.Errorf("cross-tenant: %d attempts, %d denied; want at least 2, all denied", f.CrossTenantAttempts, f.CrossTenantDenied)
	}
	if f.Status4xx < f.Probes401+f.Probes404+f.CrossTenantDenied {
		t.Errorf("%d 4xx answers; fewer than the %d probes and denials refused", f.Status4xx, f.Probes401+f.Probes404+f.CrossTenantDenied)
	}

	admin := login(t, s.base, "admin", "admin")
	// Every mission the workload says it enqueued is on the fold, queued
	// (there are no workers), in its own tenant.
	streamtest.Eventually(t, 10*time.Second, func() bool {
		_, snap := getFleet(t, s.base, admin, "*")
		for _, tf := range f.ByTenant {
			if int64(snap.State.Projects[tf.ProjectID].MissionsInFlight) != tf.Enqueued {
				return false
			}
		}
		return true
	}, fmt.Sprintf("the fold's missions in flight per tenant never equalled what live enqueued: %+v", f.ByTenant))
	var total int64
	for _, tf := range f.ByTenant {
		total += tf.Enqueued
		if tf.Enqueued == 0 {
			t.Errorf("tenant %s got no mission", tf.ProjectID)
		}
		// The intern's cap is below a Claude Haiku mission's estimate: the
		// roll call's is refused with 402; nobody else is refused.
		if want := tf.ProjectID == "initech"; (tf.Refused > 0) != want {
			t.Errorf("tenant %s: %d missions refused by a budget; want some: %v", tf.ProjectID, tf.Refused, want)
		}
	}
	if total < 20 {
		t.Errorf("%d missions in 4 s at 8/s; want at least 20", total)
	}
	// Each cross-tenant attempt is on AUDIT, as the tenant whose token it was.
	var audit struct {
		Events []fleet.Event `json:"events"`
	}
	apiGet(t, s.base, admin, "/api/v1/audit?type=tenant.cross_access_denied&limit=1000", &audit)
	if int64(len(audit.Events)) != f.CrossTenantAttempts {
		t.Errorf("AUDIT has %d cross-tenant denials; live made %d attempts", len(audit.Events), f.CrossTenantAttempts)
	}
	// The budgets the workload put in place are the server's.
	var budgets struct {
		Budgets []struct{ ID string } `json:"budgets"`
	}
	apiGet(t, s.base, admin, "/api/v1/budgets", &budgets)
	have := map[string]bool{}
	for _, b := range budgets.Budgets {
		have[b.ID] = true
	}
	for _, tn := range live.DefaultTenants() {
		for _, b := range tn.Budgets {
			if !have[b.ID()] {
				t.Errorf("budget %s missing; the server has %v", b.ID(), have)
			}
		}
	}
	// The HUD shows every project budget from the start (budget.status),
	// with the cap the workload set.
	streamtest.Eventually(t, 20*time.Second, func() bool {
		_, snap := getFleet(t, s.base, admin, "*")
		for _, tn := range live.DefaultTenants() {
			for _, b := range tn.Budgets {
				pb := snap.State.Projects[b.ProjectID].Budget
				if b.Scope == fleet.BudgetScopeProject && (pb == nil || pb.LimitUSD != b.LimitUSD || pb.Period != b.Period) {
					return false
				}
			}
		}
		return true
	}, "the fleet view never showed the three project budgets with their caps")
	// /metrics reports the caps the gate holds from the start, before any
	// budget.* event: the board's budget panels have data at once.
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, tn := range live.DefaultTenants() {
		for _, b := range tn.Budgets {
			if b.Scope != fleet.BudgetScopeProject {
				continue
			}
			re := regexp.MustCompile(`(?m)^sagewai_budget_limit_usd\{[^}]*period="` + b.Period + `"[^}]*sagewai_project_id="` + b.ProjectID +
				`"[^}]*scope="project"[^}]*\} (\S+)$`)
			m := re.FindSubmatch(body)
			if m == nil {
				t.Errorf("/metrics has no budget limit for %s", b.ID())
				continue
			}
			if got, _ := strconv.ParseFloat(string(m[1]), 64); got != b.LimitUSD.USD() {
				t.Errorf("/metrics says %s caps at %v; the budget is %v", b.ID(), got, b.LimitUSD.USD())
			}
		}
	}
}

// TestLiveRefusesWrongPassword checks that a workload that cannot log in
// says so and exits non-zero, before sending anything else.
func TestLiveRefusesWrongPassword(t *testing.T) {
	s := startServe(t)
	var stdout, stderr syncBuffer
	err := run(context.Background(), []string{"live", "--url", s.base, "--password", "wrong", "--duration", "2s"},
		func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("live with a wrong password: %v; want a 401 error", err)
	}
}

var (
	cfoLineRE = regexp.MustCompile(`(?m)^Project acme spent \$(\d+\.\d\d), Project globex spent \$(\d+\.\d\d), Project initech spent \$(\d+\.\d\d) this run\.$`)
	bannerRE  = regexp.MustCompile(`HUD\s+(http://\S+)/hud`)
)

// TestDemo runs `observatory demo` in process, as the README's first
// command does: within 10 s of the start the fleet is alive on the API the
// HUD reads (workers online, missions completed and money spent for each
// tenant), and a stop (Ctrl-C) ends it cleanly with the proof block and
// the CFO line, whose figures are at least what the fold showed before.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- run(ctx, []string{"demo", "--addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--tick", "50ms", "--workers", "9", "--mission-rate", "6", "--time-scale", "0.05", "--cross-tenant-every", "1s"},
			func(string) string { return "" }, &stdout, &stderr)
	}()
	var base string
	streamtest.Eventually(t, 10*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("demo exited early: %v\n%s", err, stderr.String())
		default:
		}
		m := bannerRE.FindStringSubmatch(stdout.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, "demo printed no banner")
	admin := login(t, base, "admin", "admin")
	var snapAlive map[string]fleet.Project
	streamtest.Eventually(t, time.Until(start.Add(10*time.Second)), func() bool {
		code, snap := getFleet(t, base, admin, "*")
		if code != http.StatusOK || snap.State.Posture.WorkersOnline < 9 {
			return false
		}
		for _, p := range []string{"acme", "globex", "initech"} {
			pr := snap.State.Projects[p]
			if pr.MissionsDone == 0 || pr.SpendTotal == 0 {
				return false
			}
		}
		snapAlive = snap.State.Projects
		return true
	}, "within 10 s of the start, the fleet was not alive: 9 workers online and each tenant with a completed mission and spend")
	t.Logf("alive after %s", time.Since(start).Round(time.Millisecond))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stopped with %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop within 20 s of Ctrl-C")
	}
	out := stdout.String()
	for _, want := range []string{"Proof", "HTTP calls", "cross-tenant", "unexpected answers  0", "0 cross-tenant leaks"} {
		if !strings.Contains(out, want) {
			t.Errorf("the proof block lacks %q:\n%s", want, out)
		}
	}
	m := cfoLineRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no CFO line for the three tenants:\n%s", out)
	}
	for i, p := range []string{"acme", "globex", "initech"} {
		cents, _ := strconv.ParseFloat(m[i+1], 64)
		if seen := snapAlive[p].SpendTotal.USD(); cents+0.005 < seen {
			t.Errorf("the CFO line says %s spent $%s; the fold had shown $%.4f before the stop", p, m[i+1], seen)
		}
	}
}

// TestHealthcheck checks the container image's probe: 0 against a ready
// server, an error against a port nobody listens on.
func TestHealthcheck(t *testing.T) {
	s := startServe(t)
	if out := runCmd(t, "healthcheck", "--url", s.base+"/readyz"); !strings.Contains(out, "200 OK") {
		t.Errorf("healthcheck printed %q; want the 200", out)
	}
	var stdout, stderr syncBuffer
	err := run(context.Background(), []string{"healthcheck", "--url", "http://127.0.0.1:1/readyz", "--timeout", "1s"},
		func(string) string { return "" }, &stdout, &stderr)
	if err == nil {
		t.Error("healthcheck of a closed port succeeded")
	}
}
