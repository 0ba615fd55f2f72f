package vmstack_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/dashboards"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/vmstack"
)

// The cross-tenant alerts of dashboards/alerts, one per rule file.
const (
	alertMetrics = "CrossTenantAccessAttempt"
	alertLogs    = "CrossTenantAccessAttemptLogs"
)

// businessEvents matches the event attribute of business events, as the
// boards' Business events panels select them (DESIGN §7).
const businessEvents = `event:~"^(agent|auth|budget|tenant|project)[.]"`

// TestPipelineEndToEnd runs the real pipeline on loopback: `observatory
// demo` (its workers and live HTTP workload, without the workload's own
// cross-tenant attempts) scraped every 2 s by VictoriaMetrics, sending its
// log records over OTLP to VictoriaLogs, and the rules of dashboards/alerts
// evaluated by vmalert (one reading VictoriaMetrics, one reading
// VictoriaLogs, both writing ALERTS to VictoriaMetrics). Beside the demo
// run a drill server (`observatory serve` on a NATS the test runs, sending
// its log records to a VictoriaLogs of its own) and a worker host (real
// workers in a process of their own, enrolled over HTTP with an
// enrollment key and running on the NATS credentials it gave them).
//
// It checks that no alert is active until the faults begin; that one
// cross-tenant request fires both cross-tenant alerts; that every panel
// query of every board returns data; that VictoriaMetrics' spend per
// project equals the fold's; that VictoriaLogs holds the business events
// with their project and no health-probe line; and that every alert but
// RouteP95Regression (which compares with the same hours a day before)
// fires on a fault made to happen for real, in vmalert and as an ALERTS
// series, and ends once the fault is over (or the rule's window has
// passed).
func TestPipelineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real VictoriaMetrics, VictoriaLogs, vmalert and observatory for about seven minutes")
	}
	began := time.Now()
	bin := observatorytest.Build(t)
	built := time.Since(began)

	vl := vmstack.StartLogs(t, vmstack.LogsConfig{})
	obs := &observatory{observatorytest.Start(t, bin, []string{
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=" + vl.OTLPLogsURL(),
		"OTEL_TRACES_EXPORTER=none",
		"OTEL_SERVICE_NAME=observatory-e2e",
	}, "demo", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:-1", "--cross-tenant-every", "0")}
	drill := startDrillServer(t, bin)
	vm := vmstack.StartMetrics(t, vmstack.MetricsConfig{Targets: []string{obs.Host}, BearerToken: obs.metricsToken(t),
		Jobs: []vmstack.ScrapeJob{{Name: drillJob, Targets: []string{drill.Host}, Interval: drillScrapeInterval, BearerToken: drill.metricsToken(t)}}})
	metricRules, logRules := ruleFiles(t)
	alertM := vmstack.StartAlerter(t, vmstack.AlerterConfig{Name: "vmalert-metrics", RuleFiles: metricRules, Datasource: vm.URL, RemoteWrite: vm.URL})
	alertL := vmstack.StartAlerter(t, vmstack.AlerterConfig{Name: "vmalert-logs", RuleFiles: logRules, Datasource: vl.URL, RemoteWrite: vm.URL})
	t.Logf("stack up %.1fs after the start (go build %.1fs): observatory %s, drill server %s, VictoriaMetrics %s, VictoriaLogs %s and %s, vmalert %s and %s",
		time.Since(began).Seconds(), built.Seconds(), obs.Base, drill.Base, vm.URL, vl.URL, drill.logs.URL, alertM.URL, alertL.URL)
	ctx := context.Background()
	alerters := []*vmstack.Alerter{alertM, alertL}
	// On failure, what the processes said (before they are stopped).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("observatory stderr (tail):\n%s", observatorytest.Tail(obs.Stderr.String(), 20))
		t.Logf("drill server stderr (tail):\n%s", observatorytest.Tail(drill.Stderr.String(), 20))
		for _, a := range alerters {
			t.Logf("%s warnings and errors:\n%s", a.Name, problems(a.Log()))
		}
	})

	// Health probes, which must never reach the logs: the test's own, and
	// VictoriaMetrics' scrapes of /metrics every 2 s.
	const probes = 20
	for range probes {
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, err := obs.status(ctx, p); err != nil || code != http.StatusOK {
				t.Fatalf("GET %s: %d %v", p, code, err)
			}
		}
	}

	// What the drills need before their faults: the worker host's workers
	// online in the demo's fold, and a budget of globex's research team
	// that has seen some spend.
	admin := obs.login(t, "admin", "admin")
	await(t, time.Minute, "the demo to set globex's budgets up", func() (bool, string) {
		_, err := obs.budget(ctx, admin, globexDaily)
		return err == nil, fmt.Sprint(err)
	})
	obs.mustJSON(t, http.MethodPost, "/api/v1/budgets", admin, map[string]any{"scope": "team", "project_id": "globex", "scope_id": "research",
		"period": "monthly", "limit_usd": 1000, "action": "warn"}, http.StatusCreated, nil)
	// The worker host's workers enroll as workers on other machines do:
	// with an enrollment key for acme's drill pool, over HTTP, and run on
	// the NATS credentials enrollment gives them (the demo's NATS refuses
	// anonymous clients).
	var key struct {
		Key string `json:"key"`
	}
	obs.mustJSON(t, http.MethodPost, "/api/v1/enrollment-keys", admin, map[string]any{"projects": []string{"acme"}, "pools": []string{workerPool}, "ttl": "1h"},
		http.StatusCreated, &key)
	host := startWorkerHost(t, obs.Base, key.Key, drillWorkers, "acme")

	// Phase 1: no fault yet. Every rule is evaluated on real data at
	// least three times, and no alert is pending or firing.
	failedScrapes := map[string]int{}
	scraped := await(t, 2*time.Minute, "VictoriaMetrics to scrape both observatories three times in a row", func() (bool, string) {
		var detail []string
		for _, job := range []string{vm.Job, drillJob} {
			ser, err := vm.QueryMatrix(ctx, fmt.Sprintf(`up{job=%q}[2m]`, job))
			if err != nil || len(ser) != 1 {
				return false, fmt.Sprintf("up of %s: %v %v", job, ser, err)
			}
			// A scrape may fail on a loaded machine (a /metrics answer
			// slower than the 2 s interval); three in a row must not.
			ok, failed := 0, 0
			for _, p := range ser[0].Points {
				if p.Value == 1 {
					ok++
				} else {
					ok, failed = 0, failed+1
				}
			}
			failedScrapes[job] = failed
			if ok < 3 {
				detail = append(detail, fmt.Sprintf("%s: the last %d scrapes succeeded, %d failed: %v", job, ok, failed, ser[0].Points))
			}
		}
		return len(detail) == 0, strings.Join(detail, "; ")
	})
	t.Logf("scrapes failed before three in a row succeeded: %v", failedScrapes)
	logsIn := await(t, time.Minute, "VictoriaLogs to receive observatory's log records", func() (bool, string) {
		es, err := vl.Query(ctx, `_time:5m`, 1)
		return err == nil && len(es) > 0, fmt.Sprint(err)
	})
	prepared := await(t, 2*time.Minute, "the drills' preconditions", func() (bool, string) {
		var waiting []string
		host.checkAlive(t)
		byStatus, err := obs.drillWorkersByStatus(ctx, admin)
		if err != nil {
			return false, err.Error()
		}
		if byStatus[fleet.WorkerOnline] != drillWorkers {
			waiting = append(waiting, fmt.Sprintf("the worker host's workers by status in the demo's fold: %v, want %d online", byStatus, drillWorkers))
		}
		b, err := obs.budget(ctx, admin, researchBudget)
		if err != nil {
			return false, err.Error()
		}
		if b.SpentUSD == 0 {
			waiting = append(waiting, researchBudget+" has no spend yet")
		}
		if n := drill.answered()[http.StatusOK]; n == 0 {
			waiting = append(waiting, fmt.Sprintf("the drill server answered no audit read with 200: %v", drill.answered()))
		}
		return len(waiting) == 0, strings.Join(waiting, "; ")
	})
	dataSince := map[bool]time.Time{false: latest(scraped, prepared), true: logsIn} // by "rule on logs"
	await(t, 90*time.Second, "vmalert to evaluate every rule three times on data, with no alert active", func() (bool, string) {
		if a := activeAlerts(t, alerters); len(a) > 0 {
			t.Fatalf("phase 1 (no fault yet): active alerts %+v", a)
		}
		var waiting []string
		for _, a := range alerters {
			groups, err := a.Groups(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range groups {
				for _, r := range g.Rules {
					from := dataSince[g.Type == "vlogs"]
					switch {
					case r.LastError != "":
						t.Fatalf("%s: rule %s of group %s (%s): %s", a.Name, r.Name, g.Name, g.File, r.LastError)
					case !r.LastEvaluation.After(from.Add(2 * interval(g))):
						waiting = append(waiting, fmt.Sprintf("%s last evaluated %s, data since %s, every %s", r.Name, r.LastEvaluation.Format(time.TimeOnly), from.Format(time.TimeOnly), interval(g)))
					}
				}
			}
		}
		return len(waiting) == 0, strings.Join(waiting, "; ")
	})
	if es, err := vl.Query(ctx, `_time:10m event:="tenant.cross_access_denied"`, 10); err != nil || len(es) != 0 {
		t.Fatalf("phase 1: tenant.cross_access_denied records before any cross-tenant request (the demo ran with --cross-tenant-every 0): %v %v", es, err)
	}
	if s, err := vm.Query(ctx, `ALERTS`); err != nil || len(s) != 0 {
		t.Fatalf("phase 1: ALERTS in VictoriaMetrics: %v %v", s, err)
	}
	faultsBegan := time.Now()
	phase1 := faultsBegan.Sub(began)
	t.Logf("phase 1: no alert after %.1fs", phase1.Seconds())

	// Phase 2: one cross-tenant request, refused with 403; both alerts
	// fire for the token's project. (And one failed login, for its
	// business event.) The other faults begin at the same time.
	obs.mustJSON(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"username": "admin", "password": "not-the-password"}, http.StatusUnauthorized, nil)
	var minted struct {
		Token string `json:"token"`
	}
	obs.mustJSON(t, http.MethodPost, "/api/v1/projects/acme/tokens", admin, map[string]string{"name": "e2e-cross-tenant", "ttl": "10m"}, http.StatusCreated, &minted)
	if code := obs.mustJSON(t, http.MethodGet, "/api/v1/projects/globex/agents", minted.Token, nil, http.StatusForbidden, nil); code != "forbidden" {
		t.Fatalf("cross-tenant request: error code %q, want forbidden", code)
	}
	attempted := time.Now()
	drills := faults(t, obs, admin, drill, host)
	for _, d := range drills {
		d.began = time.Now()
		if d.start != nil {
			if err := d.start(); err != nil {
				t.Fatalf("%s: %v", d.fault, err)
			}
		}
	}
	drills = append(drills, &alertDrill{fault: "one cross-tenant request (403)", began: attempted,
		alerts: []wantAlert{{alertMetrics, map[string]string{"sagewai_project_id": "acme"}}, {alertLogs, map[string]string{"sagewai_project_id": "acme"}}},
		how:    "ends when the request leaves the rules' 5-minute window"})

	firstSeen := map[string]time.Duration{} // what was first seen when after the request
	// A few seconds: the rules are evaluated every 2 s here, and
	// VictoriaMetrics makes a new series searchable some 10 s after it
	// first arrives (the denial counter, then ALERTS). The bound only
	// bounds a hang.
	await(t, 3*time.Minute, "both cross-tenant alerts to fire for acme", func() (bool, string) {
		var missing []string
		if _, seen := firstSeen["the denial counter in VictoriaMetrics"]; !seen {
			if s, err := vm.Query(ctx, `sagewai_tenant_cross_access_denied_total{sagewai_project_id="acme"}`); err == nil && len(s) > 0 {
				firstSeen["the denial counter in VictoriaMetrics"] = time.Since(attempted)
			}
		}
		active := crossTenantAlerts(t, alerters)
		for _, name := range []string{alertMetrics, alertLogs} {
			firing := false
			for _, a := range active {
				firing = firing || (a.Name == name && a.State == "firing" && a.Labels["sagewai_project_id"] == "acme")
			}
			s, err := vm.Query(ctx, fmt.Sprintf(`ALERTS{alertname=%q,alertstate="firing",sagewai_project_id="acme"}`, name))
			if err != nil {
				return false, err.Error()
			}
			for where, ok := range map[string]bool{"vmalert": firing, "ALERTS": len(s) > 0} {
				if _, seen := firstSeen[name+" in "+where]; ok && !seen {
					firstSeen[name+" in "+where] = time.Since(attempted)
				}
			}
			if !firing || len(s) == 0 {
				missing = append(missing, fmt.Sprintf("%s (vmalert firing: %v, ALERTS series: %d)", name, firing, len(s)))
			}
		}
		return len(missing) == 0, "not firing: " + strings.Join(missing, ", ")
	})
	fired := time.Since(attempted)
	var when []string
	for k, d := range firstSeen {
		when = append(when, fmt.Sprintf("%s after %.1fs", k, d.Seconds()))
	}
	sort.Strings(when)
	t.Logf("phase 2: both alerts firing for acme: %s", strings.Join(when, ", "))

	// Every panel query of every board returns data: polled every scrape
	// interval until all do.
	queries, err := dashboards.PanelQueries(".*")
	if err != nil {
		t.Fatal(err)
	}
	var nMetrics, nLogs int
	awaitEvery(t, 3*time.Minute, vm.ScrapeInterval, "every panel query of every board to return data", func() (bool, string) {
		nMetrics, nLogs = 0, 0
		var empty []string
		for _, q := range queries {
			what := fmt.Sprintf("board %q, panel %q, query %s (%s)", q.Board, q.Panel, q.RefID, q.Datasource)
			switch q.Datasource {
			case dashboards.MetricsUID:
				nMetrics++
				s, err := vm.Query(ctx, q.Expr)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				} else if len(s) == 0 {
					empty = append(empty, fmt.Sprintf("%s returned no series:\n  %s", what, q.Expr))
				}
			case dashboards.LogsUID:
				nLogs++
				lq := vmstack.WithTimeFilter(q.Expr, "5m")
				es, err := vl.Query(ctx, lq, 10)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				} else if len(es) == 0 {
					empty = append(empty, fmt.Sprintf("%s returned no log entries:\n  %s", what, lq))
				}
			default:
				t.Fatalf("%s: unknown datasource", what)
			}
		}
		return len(empty) == 0, fmt.Sprintf("after %s of workload:\n%s", time.Since(obs.Started).Round(time.Second), strings.Join(empty, "\n"))
	})
	t.Logf("panel queries: %d on VictoriaMetrics, %d on VictoriaLogs, from %d boards' panels, all with data after %.1fs of workload",
		nMetrics, nLogs, len(boards(queries)), time.Since(obs.Started).Seconds())

	checkSpend(t, obs, vm, admin)
	checkLogs(t, vl, probes)

	// Every drill's alerts fire and end. The longest is OTelExportFailures:
	// 5 minutes of failures (its for), then a minute until the failures
	// leave its window. The bound only bounds a hang, within go test's
	// default 10-minute timeout.
	runDrills(t, alerters, drills, 8*time.Minute)
	logDrills(t, drills)
	checkAlertsSeries(t, vm, drills, faultsBegan)
	answers := drill.answered()
	if answers[http.StatusServiceUnavailable] == 0 || answers[http.StatusOK] < 2 {
		t.Errorf("the drill server's audit reads: %v, want 200s before and after its NATS was down and 503s meanwhile", answers)
	}
	t.Logf("the drill server's audit reads by status: %v", answers)
	t.Logf("total %.1fs: build %.1fs, phase 1 %.1fs, cross-tenant alerts fired after %.1fs, drills %.1fs",
		time.Since(began).Seconds(), built.Seconds(), phase1.Seconds(), fired.Seconds(), time.Since(faultsBegan).Seconds())
}

// faults returns the drills of the faults other than the cross-tenant
// request, not yet begun.
func faults(t *testing.T, obs *observatory, admin string, drill *drillServer, host *workerHost) []*alertDrill {
	t.Helper()
	ctx := context.Background()
	logsAddr := drill.logs.Addr()
	natsDown := &alertDrill{
		fault:  "the drill server's NATS shut down",
		alerts: []wantAlert{{"High5xxRate", map[string]string{"sagewai_project_id": drillProject}}},
		start: func() error {
			drill.nats.stop()
			return nil
		},
		recover: func() error {
			if err := drill.nats.start(); err != nil {
				return err
			}
			return drill.outnumberFailures(ctx)
		},
		how: "NATS started again and the audit log read again without failing",
	}
	return []*alertDrill{
		{
			fault: "globex's daily budget made a stop budget under what globex spent today, and once globex's spend stopped, the research team's monthly budget set to 85% spent",
			alerts: []wantAlert{
				{"BudgetExceeded", map[string]string{"sagewai_project_id": "globex", "scope": "project", "period": "daily"}},
				{"BudgetNearCap", map[string]string{"sagewai_project_id": "globex", "scope": "team", "period": "monthly", "team": "research"}},
			},
			start: func() error {
				b, err := obs.budget(ctx, admin, globexDaily)
				if err != nil {
					return err
				}
				return obs.putBudget(ctx, admin, globexDaily, map[string]any{"limit_usd": max(b.SpentUSD/2, 1), "action": fleet.ActionStop})
			},
			ready: func() (bool, string, error) {
				idle, detail, err := obs.idle(ctx, admin, "globex")
				if err != nil || !idle {
					return false, detail, err
				}
				b, err := obs.budget(ctx, admin, researchBudget)
				if err != nil {
					return false, "", err
				}
				limit := fleet.Micros(math.Ceil(float64(b.SpentUSD) / nearCap))
				return true, "", obs.putBudget(ctx, admin, researchBudget, map[string]any{"limit_usd": limit, "action": fleet.ActionWarn})
			},
			recover: func() error {
				if err := obs.putBudget(ctx, admin, globexDaily, map[string]any{"limit_usd": 40, "action": fleet.ActionThrottle, "throttle_model": "gpt-5-mini"}); err != nil {
					return err
				}
				return obs.putBudget(ctx, admin, researchBudget, map[string]any{"limit_usd": 1000, "action": fleet.ActionWarn})
			},
			how: "caps raised again",
		},
		{
			fault:  "the worker host killed",
			alerts: []wantAlert{{"WorkersStale", nil}},
			start: func() error {
				host.kill()
				return nil
			},
			how: "ends when its workers turn offline, 2 minutes after their last heartbeat",
		},
		{
			fault:  fmt.Sprintf("%d /ws subscribers of the demo stop reading", slowSubscribers),
			alerts: []wantAlert{{"HubSlowSubscriberStorm", nil}},
			start: func() error {
				slowClients(t, obs.Base, admin, slowSubscribers, slowResubscribes)
				return nil
			},
			how: "ends when the slow subscribers leave the rule's 5-minute window",
		},
		{
			fault:  "the drill server's log store (VictoriaLogs) stopped",
			alerts: []wantAlert{{"OTelExportFailures", map[string]string{"signal": "logs"}}},
			start: func() error {
				drill.logs.Stop(t)
				return nil
			},
			recover: func() error {
				vmstack.StartLogs(t, vmstack.LogsConfig{Addr: logsAddr})
				return nil
			},
			how: "log store started again",
		},
		// Before the NATS drill: its missions must reach the drill
		// server's fold before that NATS goes down.
		{
			fault: fmt.Sprintf("%d missions of %s queued on the drill server's FLEET, one more than its bound (--fold-max-missions %d)",
				drillFoldMissions+1, drillProject, drillFoldMissions),
			alerts: []wantAlert{
				{"FoldLimitReached", map[string]string{"reason": string(fleet.ReasonLimitMissions)}},
				{"FoldNearLimit", map[string]string{"kind": "missions"}},
			},
			start:   func() error { return drill.overfillMissions(ctx) },
			recover: func() error { return drill.endMissions(ctx) },
			// Failing the missions needs the drill server's NATS.
			after: natsDown,
			// FoldLimitReached ends once the refusal leaves its 5-minute
			// window, by then or soon after.
			how: "the missions in flight failed once the drill server's NATS was back",
		},
		natsDown,
	}
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// problems returns the warning and error lines of a VictoriaMetrics
// component's log.
func problems(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "\twarn\t") || strings.Contains(l, "\terror\t") {
			out = append(out, l)
		}
	}
	return observatorytest.Tail(strings.Join(out, "\n"), 20)
}

// ruleFiles writes the rule files of dashboards to disk and splits them
// into the files on metrics and the files on logs (groups of type vlogs).
//
// Each group's own interval line is left out, so that vmalert evaluates
// every group at its -evaluationInterval (vmstack's default, 2 s) rather
// than every 15 or 30 s: the expressions, for durations, labels and
// annotations are the shipped ones, and every alert fires and ends within
// one short evaluation of when the shipped rule says. (TestAlertTiming in
// package dashboards checks that the for durations work with the shipped
// intervals.)
func ruleFiles(t *testing.T) (metrics, logs []string) {
	t.Helper()
	names := dashboards.AlertRuleFiles()
	if len(names) == 0 {
		t.Fatal("dashboards.AlertRuleFiles lists no rule file")
	}
	vlogs := regexp.MustCompile(`(?m)^\s*type:\s*["']?vlogs["']?\s*$`)
	groupLine := regexp.MustCompile(`(?m)^  - name: `)
	intervalLine := regexp.MustCompile(`(?m)^    interval: [0-9]+[smh]\n`)
	for _, p := range vmstack.WriteRuleFiles(t, dashboards.FS, names...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		groups, intervals := len(groupLine.FindAll(b, -1)), len(intervalLine.FindAll(b, -1))
		if groups == 0 || intervals != groups {
			t.Fatalf("%s: %d groups and %d group interval lines, want one per group", p, groups, intervals)
		}
		if err := os.WriteFile(p, intervalLine.ReplaceAll(b, nil), 0o644); err != nil {
			t.Fatal(err)
		}
		if vlogs.Match(b) {
			logs = append(logs, p)
		} else {
			metrics = append(metrics, p)
		}
	}
	if len(metrics) == 0 || len(logs) == 0 {
		t.Fatalf("want rule files on metrics and on logs, got %v and %v from %v", metrics, logs, names)
	}
	return metrics, logs
}

// await polls cond every 250 ms until it holds and returns when it first
// held. bound only bounds a hang: past it, t fails with cond's last word.
func await(t *testing.T, bound time.Duration, what string, cond func() (bool, string)) time.Time {
	t.Helper()
	return awaitEvery(t, bound, 250*time.Millisecond, what, cond)
}

// awaitEvery is await polling every poll.
func awaitEvery(t *testing.T, bound, poll time.Duration, what string, cond func() (bool, string)) time.Time {
	t.Helper()
	hang := time.NewTimer(bound)
	defer hang.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return time.Now()
		}
		select {
		case <-hang.C:
			t.Fatalf("waited %s for %s: %s", bound, what, detail)
		case <-tick.C:
		}
	}
}

// crossTenantAlerts returns the active alerts named CrossTenant*.
func crossTenantAlerts(t *testing.T, alerters []*vmstack.Alerter) []vmstack.Alert {
	t.Helper()
	var out []vmstack.Alert
	for _, a := range alerters {
		as, err := a.Alerts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, al := range as {
			if strings.HasPrefix(al.Name, "CrossTenant") {
				out = append(out, al)
			}
		}
	}
	return out
}

func interval(g vmstack.Group) time.Duration {
	return time.Duration(g.Interval * float64(time.Second))
}

func boards(qs []dashboards.Query) []string {
	var out []string
	for _, q := range qs {
		if !slices.Contains(out, q.Board) {
			out = append(out, q.Board)
		}
	}
	return out
}

// checkSpend compares each project's spend in VictoriaMetrics with the
// fold's, at two scrapes.
//
// VictoriaMetrics stamps a scrape with its ideal time ts (the previous one
// plus the interval), which the real start of the scrape may miss by up
// to a tenth of the interval before it moves the stamp; the request
// then takes scrape_duration_seconds. So the counters were collected at
// some moment in [ts - interval/10, ts + interval/10 + duration]. A GET
// /api/v1/fleet shows the fold at some moment between sending it and
// reading the answer. Spend only grows, so for a read a answered before
// that span and a read b sent after it, the scrape's value must lie in
// [spend(a), spend(b)], exactly (to the micro-dollar each series is
// rounded to). The margin spend(b) - spend(a) is the spend of the time
// between the reads, which the check requires to be at most one scrape
// interval: so VictoriaMetrics and the HUD's snapshot agree within one
// scrape interval's worth of spend, and in practice within a quarter of
// it (reads every 100 ms around a ±200 ms span). The fold is read every
// 100 ms until VictoriaMetrics shows two scrapes with such reads around
// them.
func checkSpend(t *testing.T, obs *observatory, vm *vmstack.Metrics, admin string) {
	t.Helper()
	ctx := context.Background()
	type scrape struct {
		at    time.Time
		dur   time.Duration
		spend map[string]fleet.Micros
		// points and series count the cost series with a sample of this
		// scrape and those with a sample of it or an earlier one.
		points, series int
		a, b           *fleetRead // the reads answered before it and sent after it
	}
	// Each series (one per model) is rounded to the micro-dollar before
	// the sum; the fold adds exact micro-dollars. Allow one micro-dollar
	// per series.
	jitter := vm.ScrapeInterval/10 + time.Millisecond // plus the stamps' rounding to the millisecond
	var reads []fleetRead
	var scrapes []scrape
	seriesOf := map[string]int{} // cost series (one per model) by project
	awaitEvery(t, time.Minute, 100*time.Millisecond, "VictoriaMetrics to show two scrapes between fleet reads at most one scrape interval apart", func() (bool, string) {
		r, err := obs.readFleet(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		reads = append(reads, r)
		first, last := reads[0], reads[len(reads)-1]
		scrapes = scrapes[:0]
		cost, err := vm.QueryMatrix(ctx, `sagewai_llm_cost_usd_total{job="observatory"}[30s]`)
		if err != nil {
			return false, err.Error()
		}
		durs, err := vm.QueryMatrix(ctx, `scrape_duration_seconds{job="observatory"}[30s]`)
		if err != nil || len(durs) != 1 {
			return false, fmt.Sprintf("scrape_duration_seconds: %v %v", durs, err)
		}
		clear(seriesOf)
		for _, s := range cost {
			seriesOf[s.Labels["sagewai_project_id"]]++
		}
		byTime := map[int64]*scrape{}
		for _, p := range durs[0].Points {
			if p.Time.After(first.end) && p.Time.Before(last.start) {
				byTime[p.Time.UnixMilli()] = &scrape{at: p.Time, dur: time.Duration(p.Value * float64(time.Second)), spend: map[string]fleet.Micros{}}
			}
		}
		for _, s := range cost {
			for _, p := range s.Points {
				if sc := byTime[p.Time.UnixMilli()]; sc != nil && !math.IsNaN(p.Value) {
					sc.spend[s.Labels["sagewai_project_id"]] += fleet.Micros(math.Round(p.Value * fleet.MicrosPerUSD))
					sc.points++
				}
			}
			for _, sc := range byTime {
				if len(s.Points) > 0 && !s.Points[0].Time.After(sc.at) {
					sc.series++
				}
			}
		}
		for _, sc := range byTime {
			// VictoriaMetrics may show a scrape's scrape_duration_seconds
			// before its samples (seen here: the newest scrapes' cost
			// samples missing while their durations were there), and a
			// failed scrape has a duration and no samples. A scrape that
			// a cost series older than it has no sample of is not whole
			// and says nothing.
			if sc.points == 0 || sc.points != sc.series {
				continue
			}
			for i := range reads {
				r := &reads[i]
				if r.end.Before(sc.at.Add(-jitter)) {
					sc.a = r
				}
				if sc.b == nil && r.start.After(sc.at.Add(jitter+sc.dur)) {
					sc.b = r
				}
			}
			if sc.a != nil && sc.b != nil && sc.b.start.Sub(sc.a.end) <= vm.ScrapeInterval {
				scrapes = append(scrapes, *sc)
			}
		}
		sort.Slice(scrapes, func(i, j int) bool { return scrapes[i].at.Before(scrapes[j].at) })
		return len(scrapes) >= 2, fmt.Sprintf("%d scrapes with reads around them between %s and %s (%d reads)",
			len(scrapes), first.end.Format(time.TimeOnly), last.start.Format(time.TimeOnly), len(reads))
	})
	for _, sc := range scrapes {
		a, b := sc.a, sc.b
		projects := map[string]bool{}
		for p := range sc.spend {
			projects[p] = true
		}
		for p, v := range b.spend {
			if v != 0 {
				projects[p] = true
			}
		}
		ids := make([]string, 0, len(projects))
		for p := range projects {
			ids = append(ids, p)
		}
		sort.Strings(ids)
		var summary []string
		for _, p := range ids {
			v, lo, hi := sc.spend[p], a.spend[p], b.spend[p]
			slack := fleet.Micros(seriesOf[p])
			margin := hi - lo
			if v < lo-slack || v > hi+slack {
				t.Errorf("project %s: VictoriaMetrics has $%s at the scrape of %s, the fold had $%s before it (GET /api/v1/fleet answered %s) and $%s after it (sent %s): outside the margin of $%s (the spend between the two reads, %s apart, less than one %s scrape interval) plus %d µ$ rounding",
					p, v, sc.at.Format("15:04:05.000"), lo, a.end.Format("15:04:05.000"), hi, b.start.Format("15:04:05.000"), margin, b.start.Sub(a.end).Round(time.Millisecond), vm.ScrapeInterval, slack)
			}
			summary = append(summary, fmt.Sprintf("%s $%s (fold $%s..$%s)", p, v, lo, hi))
		}
		t.Logf("spend at the scrape of %s: %s", sc.at.Format("15:04:05.000"), strings.Join(summary, ", "))
	}
}

// checkLogs checks VictoriaLogs: the business events are there with their
// project, the cross-tenant request left exactly one record, and no health
// probe (the test's probes nor VictoriaMetrics' scrapes) left any line.
func checkLogs(t *testing.T, vl *vmstack.Logs, probes int) {
	t.Helper()
	ctx := context.Background()
	rows, err := vl.Query(ctx, `_time:10m `+businessEvents+` | stats by (event, sagewai.project_id) count() as n`, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[string]string{} // event → project → count
	var table []string
	for _, r := range rows {
		if seen[r["event"]] == nil {
			seen[r["event"]] = map[string]string{}
		}
		seen[r["event"]][r["sagewai.project_id"]] = r["n"]
		table = append(table, fmt.Sprintf("%s/%s=%s", r["event"], r["sagewai.project_id"], r["n"]))
	}
	sort.Strings(table)
	t.Logf("business events in VictoriaLogs (event/project=records): %s", strings.Join(table, " "))

	// What the test did itself (for the project named), and what the
	// workload does (any project): one record of at least one of events.
	want := []struct {
		events  []string
		project string
	}{
		{[]string{"auth.login.succeeded"}, "global"},
		{[]string{"auth.login.failed"}, "global"},
		{[]string{"auth.token.issued"}, "acme"},
		{[]string{"tenant.cross_access_denied"}, "acme"},
		{[]string{"agent.created"}, ""},
		{[]string{"agent.run.completed", "agent.run.failed"}, ""},
		{[]string{"budget.warning", "budget.exceeded"}, ""},
	}
	for _, w := range want {
		found := false
		for _, ev := range w.events {
			for p := range seen[ev] {
				found = found || w.project == "" || p == w.project
			}
		}
		if !found {
			where := "any project"
			if w.project != "" {
				where = "project " + w.project
			}
			t.Errorf("VictoriaLogs has no %s record for %s (DESIGN §7: business events are log records too)", strings.Join(w.events, " or "), where)
		}
	}
	if unowned, err := vl.Query(ctx, `_time:10m `+businessEvents+` sagewai.project_id:""`, 10); err != nil || len(unowned) != 0 {
		t.Errorf("business-event records without sagewai.project_id: %v %v", unowned, err)
	}
	denied, err := vl.Query(ctx, `_time:10m event:="tenant.cross_access_denied"`, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(denied) != 1 {
		t.Errorf("%d tenant.cross_access_denied records, want the one of the test's request: %v", len(denied), denied)
	} else if d := denied[0]; d["sagewai.project_id"] != "acme" || d["scope"] != "globex" || !strings.Contains(d["user_id"], "acme") {
		t.Errorf("tenant.cross_access_denied record: %v, want project acme, scope globex, an acme subject", d)
	}

	probeQuery := `_time:10m (route:in("/healthz", "/readyz", "/metrics") or "/healthz" or "/readyz" or "/metrics")`
	if lines, err := vl.Query(ctx, probeQuery, 10); err != nil || len(lines) != 0 {
		t.Errorf("health-probe lines in VictoriaLogs (the test sent %d probes to each of /healthz and /readyz; VictoriaMetrics scrapes /metrics every 2 s): %v %v\n  query: %s", probes, lines, err, probeQuery)
	}
	// The access lines themselves do arrive, so the absence above means
	// something.
	if lines, err := vl.Query(ctx, `_time:10m event:="http.request" route:="/api/v1/fleet"`, 1); err != nil || len(lines) == 0 {
		t.Errorf("no access line of GET /api/v1/fleet in VictoriaLogs: %v", err)
	}
}
