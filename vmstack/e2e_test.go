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

// workloadTime is how long the demo's workload runs before the boards'
// queries are checked (issue 7: "about a minute"). The panels' rates look
// one minute back.
const workloadTime = 60 * time.Second

// businessEvents matches the event attribute of business events, as the
// boards' Business events panels select them (DESIGN §7).
const businessEvents = `event:~"^(agent|auth|budget|tenant|project)[.]"`

// TestPipelineEndToEnd runs the real pipeline on loopback: `observatory
// demo` (its workers and live HTTP workload, without the workload's own
// cross-tenant attempts) scraped every 2 s by VictoriaMetrics, sending its
// log records over OTLP to VictoriaLogs, and the rules of dashboards/alerts
// evaluated by vmalert (one reading VictoriaMetrics, one reading
// VictoriaLogs, both writing ALERTS to VictoriaMetrics). It checks that
// the cross-tenant alerts stay silent until one cross-tenant request is
// made, then fire; that every panel query of every board returns data;
// that VictoriaMetrics' spend per project equals the fold's; and that
// VictoriaLogs holds the business events with their project and no
// health-probe line.
func TestPipelineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real VictoriaMetrics, VictoriaLogs, vmalert and observatory for about a minute and a half")
	}
	began := time.Now()
	bin := observatorytest.Build(t)
	built := time.Since(began)

	vl := vmstack.StartLogs(t)
	obs := &observatory{observatorytest.Start(t, bin, []string{
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=" + vl.OTLPLogsURL(),
		"OTEL_TRACES_EXPORTER=none",
		"OTEL_SERVICE_NAME=observatory-e2e",
	}, "demo", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:-1", "--cross-tenant-every", "0")}
	demoStarted := time.Now()
	vm := vmstack.StartMetrics(t, vmstack.MetricsConfig{Targets: []string{obs.Host}})
	metricRules, logRules := ruleFiles(t)
	alertM := vmstack.StartAlerter(t, vmstack.AlerterConfig{Name: "vmalert-metrics", RuleFiles: metricRules, Datasource: vm.URL, RemoteWrite: vm.URL})
	alertL := vmstack.StartAlerter(t, vmstack.AlerterConfig{Name: "vmalert-logs", RuleFiles: logRules, Datasource: vl.URL, RemoteWrite: vm.URL})
	t.Logf("stack up %.1fs after the start (go build %.1fs): observatory %s, VictoriaMetrics %s, VictoriaLogs %s, vmalert %s and %s",
		time.Since(began).Seconds(), built.Seconds(), obs.Base, vm.URL, vl.URL, alertM.URL, alertL.URL)
	ctx := context.Background()
	// On failure, what the processes said (before they are stopped).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("observatory stderr (tail):\n%s", observatorytest.Tail(obs.Stderr.String(), 20))
		for _, a := range []*vmstack.Alerter{alertM, alertL} {
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

	// Phase 1: no cross-tenant attempt yet. Both alerts are evaluated on
	// real data at least three times, and neither is pending or firing.
	scraped := await(t, 30*time.Second, "VictoriaMetrics to scrape observatory three times", func() (bool, string) {
		ser, err := vm.QueryMatrix(ctx, `up{job="observatory"}[1m]`)
		if err != nil || len(ser) != 1 {
			return false, fmt.Sprintf("up: %v %v", ser, err)
		}
		for _, p := range ser[0].Points {
			if p.Value != 1 {
				return false, fmt.Sprintf("a scrape failed: %v", ser[0].Points)
			}
		}
		return len(ser[0].Points) >= 3, fmt.Sprintf("%d scrapes", len(ser[0].Points))
	})
	logsIn := await(t, 30*time.Second, "VictoriaLogs to receive observatory's log records", func() (bool, string) {
		es, err := vl.Query(ctx, `_time:5m`, 1)
		return err == nil && len(es) > 0, fmt.Sprint(err)
	})
	since := map[string]time.Time{alertMetrics: scraped, alertLogs: logsIn}
	alerters := []*vmstack.Alerter{alertM, alertL}
	await(t, 90*time.Second, "vmalert to evaluate both cross-tenant rules three times on data, without firing", func() (bool, string) {
		if a := crossTenantAlerts(t, alerters); len(a) > 0 {
			t.Fatalf("phase 1 (no cross-tenant request yet): active alerts %+v", a)
		}
		var waiting []string
		for name, from := range since {
			g, r, ok := findRule(t, alerters, name)
			switch {
			case !ok:
				t.Fatalf("no vmalert has a rule %s (rule files %v %v)", name, metricRules, logRules)
			case r.LastError != "":
				t.Fatalf("rule %s: %s", name, r.LastError)
			case !r.LastEvaluation.After(from.Add(2 * interval(g))):
				waiting = append(waiting, fmt.Sprintf("%s last evaluated %s, data since %s, every %s", name, r.LastEvaluation.Format(time.TimeOnly), from.Format(time.TimeOnly), interval(g)))
			}
		}
		return len(waiting) == 0, strings.Join(waiting, "; ")
	})
	for _, a := range alerters {
		groups, err := a.Groups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			for _, r := range g.Rules {
				if r.LastError != "" {
					t.Errorf("%s: rule %s of group %s (%s): %s", a.Name, r.Name, g.Name, g.File, r.LastError)
				}
			}
		}
	}
	if es, err := vl.Query(ctx, `_time:10m event:="tenant.cross_access_denied"`, 10); err != nil || len(es) != 0 {
		t.Fatalf("phase 1: tenant.cross_access_denied records before any cross-tenant request (the demo ran with --cross-tenant-every 0): %v %v", es, err)
	}
	if s, err := vm.Query(ctx, `ALERTS{alertname=~"CrossTenant.*"}`); err != nil || len(s) != 0 {
		t.Fatalf("phase 1: ALERTS in VictoriaMetrics: %v %v", s, err)
	}
	phase1 := time.Since(demoStarted)
	t.Logf("phase 1: no cross-tenant alert after %.1fs of workload", phase1.Seconds())

	// Phase 2: one cross-tenant request, refused with 403; both alerts
	// fire for the token's project. (And one failed login, for its
	// business event.)
	admin := obs.login(t, "admin", "admin")
	obs.mustJSON(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"username": "admin", "password": "not-the-password"}, http.StatusUnauthorized, nil)
	var minted struct {
		Token string `json:"token"`
	}
	obs.mustJSON(t, http.MethodPost, "/api/v1/projects/acme/tokens", admin, map[string]string{"name": "e2e-cross-tenant", "ttl": "10m"}, http.StatusCreated, &minted)
	if code := obs.mustJSON(t, http.MethodGet, "/api/v1/projects/globex/agents", minted.Token, nil, http.StatusForbidden, nil); code != "forbidden" {
		t.Fatalf("cross-tenant request: error code %q, want forbidden", code)
	}
	attempted := time.Now()
	firstSeen := map[string]time.Duration{} // what was first seen when after the request
	// About 25 s here: the 15 s evaluation interval of the groups, and
	// VictoriaMetrics makes a new series searchable some 10 s after it
	// first arrives (the denial counter, then ALERTS).
	await(t, 75*time.Second, "both cross-tenant alerts to fire for acme", func() (bool, string) {
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

	// The workload runs about a minute before the boards are read.
	if d := time.Until(demoStarted.Add(workloadTime)); d > 0 {
		time.Sleep(d)
	}

	// Every panel query of every board returns data.
	queries, err := dashboards.PanelQueries(".*")
	if err != nil {
		t.Fatal(err)
	}
	var nMetrics, nLogs int
	for _, q := range queries {
		what := fmt.Sprintf("board %q, panel %q, query %s (%s)", q.Board, q.Panel, q.RefID, q.Datasource)
		switch q.Datasource {
		case dashboards.MetricsUID:
			nMetrics++
			s, err := vm.Query(ctx, q.Expr)
			if err != nil {
				t.Errorf("%s: %v", what, err)
			} else if len(s) == 0 {
				t.Errorf("%s returned no series after %s of workload:\n  %s", what, time.Since(demoStarted).Round(time.Second), q.Expr)
			}
		case dashboards.LogsUID:
			nLogs++
			lq := vmstack.WithTimeFilter(q.Expr, "5m")
			es, err := vl.Query(ctx, lq, 10)
			if err != nil {
				t.Errorf("%s: %v", what, err)
			} else if len(es) == 0 {
				t.Errorf("%s returned no log entries:\n  %s", what, lq)
			}
		default:
			t.Errorf("%s: unknown datasource", what)
		}
	}
	t.Logf("panel queries: %d on VictoriaMetrics, %d on VictoriaLogs, from %d boards' panels", nMetrics, nLogs, len(boards(queries)))

	checkSpend(t, obs, vm, admin)
	checkLogs(t, vl, probes)
	t.Logf("total %.1fs: build %.1fs, phase 1 %.1fs, alerts fired after %.1fs, workload %.1fs",
		time.Since(began).Seconds(), built.Seconds(), phase1.Seconds(), fired.Seconds(), time.Since(demoStarted).Seconds())
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
func ruleFiles(t *testing.T) (metrics, logs []string) {
	t.Helper()
	names := dashboards.AlertRuleFiles()
	if len(names) == 0 {
		t.Fatal("dashboards.AlertRuleFiles lists no rule file")
	}
	vlogs := regexp.MustCompile(`(?m)^\s*type:\s*["']?vlogs["']?\s*$`)
	for _, p := range vmstack.WriteRuleFiles(t, dashboards.FS, names...) {
		b, err := os.ReadFile(p)
		if err != nil {
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

// await polls cond every 250 ms until it holds, failing t with cond's last
// word after timeout. It returns when cond first held.
func await(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %s", timeout, what, detail)
		}
		time.Sleep(250 * time.Millisecond)
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

// findRule returns the rule called name and its group.
func findRule(t *testing.T, alerters []*vmstack.Alerter, name string) (vmstack.Group, vmstack.Rule, bool) {
	t.Helper()
	for _, a := range alerters {
		groups, err := a.Groups(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			for _, r := range g.Rules {
				if r.Name == name {
					return g, r, true
				}
			}
		}
	}
	return vmstack.Group{}, vmstack.Rule{}, false
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
// fold's, at one scrape.
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
// it (reads every 100 ms around a ±200 ms span).
func checkSpend(t *testing.T, obs *observatory, vm *vmstack.Metrics, admin string) {
	t.Helper()
	ctx := context.Background()
	var reads []fleetRead
	window := time.Now().Add(3 * vm.ScrapeInterval)
	for time.Now().Before(window) {
		r, err := obs.readFleet(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		reads = append(reads, r)
		time.Sleep(100 * time.Millisecond)
	}
	first, last := reads[0], reads[len(reads)-1]

	type scrape struct {
		at    time.Time
		dur   time.Duration
		spend map[string]fleet.Micros
	}
	var scrapes []scrape
	seriesOf := map[string]int{} // cost series (one per model) by project
	// Wait until the scrapes during the reads are visible (the latency
	// offset), then take them with their timestamps.
	await(t, 10*time.Second, "VictoriaMetrics to show the scrapes made during the fleet reads", func() (bool, string) {
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
				}
			}
		}
		for _, sc := range byTime {
			scrapes = append(scrapes, *sc)
		}
		sort.Slice(scrapes, func(i, j int) bool { return scrapes[i].at.Before(scrapes[j].at) })
		return len(scrapes) >= 2, fmt.Sprintf("%d scrapes between %s and %s", len(scrapes), first.end.Format(time.TimeOnly), last.start.Format(time.TimeOnly))
	})
	// Each series (one per model) is rounded to the micro-dollar before
	// the sum; the fold adds exact micro-dollars. Allow one micro-dollar
	// per series.
	jitter := vm.ScrapeInterval/10 + time.Millisecond // plus the stamps' rounding to the millisecond
	checked := 0
	for _, sc := range scrapes {
		var a, b *fleetRead
		for i := range reads {
			r := &reads[i]
			if r.end.Before(sc.at.Add(-jitter)) {
				a = r
			}
			if b == nil && r.start.After(sc.at.Add(jitter+sc.dur)) {
				b = r
			}
		}
		if a == nil || b == nil || b.start.Sub(a.end) > vm.ScrapeInterval {
			continue
		}
		checked++
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
	if checked == 0 {
		t.Errorf("no scrape between fleet reads at most %s apart: %d scrapes, %d reads", vm.ScrapeInterval, len(scrapes), len(reads))
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
