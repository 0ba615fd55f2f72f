package dashboards_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/sagewai/observatory/dashboards"
	"github.com/sagewai/observatory/fleet"
)

// Paths from this package's directory.
const (
	repoRoot        = ".."
	composeFile     = "../docker-compose.observability.yml"
	dockerfile      = "../Dockerfile"
	readmeFile      = "../README.md"
	metricsDoc      = "../docs/metrics.md"
	collectorConfig = "otel-collector/config.yaml"
	scrapeConfig    = "victoriametrics/scrape.yml"
	datasourcesFile = "grafana/provisioning/datasources/datasources.yml"
	providersFile   = "grafana/provisioning/dashboards/dashboards.yml"
	readmeSection   = "## The full stack (Docker Compose)"
	projectFilter   = `sagewai_project_id=~"$project"`
	logsFilter      = `sagewai.project_id:~"$project"`
	exceptionPhrase = "no project label"
)

// Datasource types by UID, as the boards and the provisioning must agree.
var datasourceTypes = map[string]string{
	dashboards.MetricsUID: "prometheus",
	dashboards.LogsUID:    "victoriametrics-logs-datasource",
}

// Grafana board JSON, as much as the tests read.
type boardJSON struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []panelJSON `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Datasource dsJSON `json:"datasource"`
			Definition string `json:"definition"`
			Query      struct {
				Query string `json:"query"`
			} `json:"query"`
			IncludeAll bool   `json:"includeAll"`
			AllValue   string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type panelJSON struct {
	ID          int     `json:"id"`
	Type        string  `json:"type"`
	Title       string  `json:"title"`
	Description string  `json:"description"`
	Datasource  *dsJSON `json:"datasource"`
	Targets     []struct {
		RefID      string  `json:"refId"`
		Expr       string  `json:"expr"`
		QueryType  string  `json:"queryType"`
		Datasource *dsJSON `json:"datasource"`
	} `json:"targets"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Panels  []panelJSON               `json:"panels"`
}

type dsJSON struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// loadBoards reads every board of FS, by file name.
func loadBoards(t *testing.T) map[string]boardJSON {
	t.Helper()
	names, err := fs.Glob(dashboards.FS, path.Join(dashboards.BoardsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]boardJSON{}
	for _, name := range names {
		b, err := fs.ReadFile(dashboards.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		var d boardJSON
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s is not valid JSON: %v", name, err)
		}
		out[path.Base(name)] = d
	}
	if _, ok := out["sre.json"]; !ok {
		t.Fatalf("no sre.json among %v", names)
	}
	if _, ok := out["cfo.json"]; !ok {
		t.Fatalf("no cfo.json among %v", names)
	}
	return out
}

// dataPanels returns the panels of d that show data, rows expanded.
func dataPanels(d boardJSON) []panelJSON {
	var out []panelJSON
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
		} else {
			out = append(out, p)
		}
	}
	return out
}

// documented is one row of docs/metrics.md.
type documented struct {
	typ    string
	labels string
}

// metricDocs parses the table of docs/metrics.md.
func metricDocs(t *testing.T) map[string]documented {
	t.Helper()
	b, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]documented{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		out[name] = documented{typ: strings.TrimSpace(cells[2]), labels: cells[4]}
	}
	if len(out) < 25 {
		t.Fatalf("docs/metrics.md lists only %d metrics", len(out))
	}
	return out
}

// family returns the documented family of a series name: the name itself,
// or a histogram's name without _bucket, _sum or _count.
func family(docs map[string]documented, name string) (string, bool) {
	if _, ok := docs[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && docs[base].typ == "histogram" {
			return base, true
		}
	}
	return "", false
}

// hasProjectLabel reports whether the documented family carries the
// project label.
func hasProjectLabel(d documented) bool { return strings.Contains(d.labels, "`sagewai_project_id`") }

// selector is one metric a PromQL expression reads, with its matchers.
type selector struct {
	name     string
	matchers string
}

// promqlKeywords are words of PromQL and MetricsQL that are not metrics.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
}

// selectors parses the metric selectors out of a PromQL/MetricsQL
// expression: identifiers that are not functions, keywords, label lists
// (by, without, on, ignoring, group_*), strings, numbers or durations.
func selectors(expr string) []selector {
	var out []selector
	skipTo := func(i int, open, close byte) int {
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				for i++; i < len(expr) && expr[i] != c; i++ {
					if expr[i] == '\\' {
						i++
					}
				}
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	next := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\n' || expr[i] == '\t') {
			i++
		}
		return i
	}
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			for i++; i < len(expr) && expr[i] != c; i++ {
				if expr[i] == '\\' {
					i++
				}
			}
			i++
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word, k := expr[i:j], next(j)
			switch {
			case !promqlKeywords[strings.ToLower(word)] && (wordAt(expr, k, "by") || wordAt(expr, k, "without")):
				// an aggregation whose grouping comes first: sum by (x) (...)
			case promqlKeywords[strings.ToLower(word)]:
				if k < len(expr) && expr[k] == '(' {
					j = skipTo(k, '(', ')') // a label list
				}
			case k < len(expr) && expr[k] == '(':
				// a function or aggregation
			default:
				s := selector{name: word}
				if k < len(expr) && expr[k] == '{' {
					j = skipTo(k, '{', '}')
					s.matchers = expr[k:j]
				}
				out = append(out, s)
			}
			i = j
		default:
			i++
		}
	}
	return out
}

// wordAt reports whether the identifier w stands at expr[i:].
func wordAt(expr string, i int, w string) bool {
	if !strings.HasPrefix(strings.ToLower(expr[i:]), w) {
		return false
	}
	if j := i + len(w); j < len(expr) {
		c := expr[j]
		return !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
	}
	return true
}

func TestSelectors(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []selector
	}{
		{`sum(rate(http_server_duration_milliseconds_count{sagewai_project_id=~"$project", http_status_code=~"5.."}[5m]))`,
			[]selector{{"http_server_duration_milliseconds_count", `{sagewai_project_id=~"$project", http_status_code=~"5.."}`}}},
		{`histogram_quantile(0.95, sum by (le, http_route) (rate(a_bucket[1m]))) > 2 * b offset 1d and c`,
			[]selector{{"a_bucket", ""}, {"b", ""}, {"c", ""}}},
		{`sum(x) without (instance) / on (sagewai_project_id) group_left (model) y{model="a b"} > 1e6`,
			[]selector{{"x", ""}, {"y", `{model="a b"}`}}},
		{`predict_linear(z[6h:5m], scalar((days_in_month() - day_of_month() + 1) * 86400 - time() % 86400))`,
			[]selector{{"z", ""}}},
		{`vector(0) or sum(q{l="}"})`, []selector{{"q", `{l="}"}`}}},
		{"sum by (le) (rate(r_bucket[1m])) / max without(instance) (byte_total) + count by(x)(bytes)",
			[]selector{{"r_bucket", ""}, {"byte_total", ""}, {"bytes", ""}}},
	} {
		if diff := cmp.Diff(c.want, selectors(c.expr), cmp.AllowUnexported(selector{})); diff != "" {
			t.Errorf("selectors(%q) (-want +got):\n%s", c.expr, diff)
		}
	}
}

func TestBoardsAreCurrentGrafanaJSON(t *testing.T) {
	docs := metricDocs(t)
	for name, d := range loadBoards(t) {
		t.Run(name, func(t *testing.T) {
			if d.SchemaVersion < 39 {
				t.Errorf("schemaVersion %d, want 39 or later", d.SchemaVersion)
			}
			if d.UID == "" || d.Title == "" {
				t.Errorf("uid %q, title %q: both are needed for provisioning and links", d.UID, d.Title)
			}
			ids := map[int]bool{}
			all := dataPanels(d)
			for _, p := range d.Panels {
				if p.Type == "row" {
					all = append(all, p)
				}
			}
			for _, p := range all {
				if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
					t.Errorf("panel %q has no grid position", p.Title)
				}
				if ids[p.ID] {
					t.Errorf("panel id %d is used twice", p.ID)
				}
				ids[p.ID] = true
			}
			var project bool
			for _, v := range d.Templating.List {
				if v.Name != "project" {
					continue
				}
				project = true
				if v.Type != "query" || v.Datasource.UID != dashboards.MetricsUID || !v.IncludeAll || v.AllValue != ".*" {
					t.Errorf("project variable: type %q, datasource %q, includeAll %v, allValue %q; want a query on %s with All = .*",
						v.Type, v.Datasource.UID, v.IncludeAll, v.AllValue, dashboards.MetricsUID)
				}
				m := regexp.MustCompile(`^label_values\((\w+),\s*sagewai_project_id\)$`).FindStringSubmatch(v.Query.Query)
				if m == nil {
					t.Errorf("project variable query %q is not label_values(<metric>, sagewai_project_id)", v.Query.Query)
				} else if fam, ok := family(docs, m[1]); !ok || !hasProjectLabel(docs[fam]) {
					t.Errorf("project variable reads %s, which docs/metrics.md does not list with sagewai_project_id", m[1])
				}
			}
			if !project {
				t.Error("no project variable")
			}
			panels := dataPanels(d)
			if len(panels) < 10 {
				t.Errorf("only %d panels", len(panels))
			}
			for _, p := range panels {
				if p.Datasource == nil || datasourceTypes[p.Datasource.UID] == "" {
					t.Errorf("panel %q: datasource %+v, want one of %v", p.Title, p.Datasource, datasourceTypes)
					continue
				}
				if want := datasourceTypes[p.Datasource.UID]; p.Datasource.Type != want {
					t.Errorf("panel %q: datasource %s has type %q, want %q", p.Title, p.Datasource.UID, p.Datasource.Type, want)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				if p.Description == "" {
					t.Errorf("panel %q has no description", p.Title)
				}
				for _, q := range p.Targets {
					if strings.TrimSpace(q.Expr) == "" || q.RefID == "" {
						t.Errorf("panel %q: query %q has no expression", p.Title, q.RefID)
					}
					if q.Datasource == nil || *q.Datasource != *p.Datasource {
						t.Errorf("panel %q: query %s datasource %+v differs from the panel's %+v", p.Title, q.RefID, q.Datasource, *p.Datasource)
					}
					if p.Datasource.UID == dashboards.LogsUID && q.QueryType == "" {
						t.Errorf("panel %q: a VictoriaLogs query needs a queryType (instant for log lines, statsRange for series)", p.Title)
					}
				}
			}
		})
	}
}

// TestPanelsHonourProject checks that choosing a project filters every
// panel that can be filtered: each selector of a per-project metric
// matches sagewai_project_id on $project, and each logs query filters
// sagewai.project_id. A panel that reads only metrics without a project
// label says so in its description.
func TestPanelsHonourProject(t *testing.T) {
	docs := metricDocs(t)
	exceptions := 0
	for name, d := range loadBoards(t) {
		for _, p := range dataPanels(d) {
			filtered := false
			for _, q := range p.Targets {
				if p.Datasource != nil && p.Datasource.UID == dashboards.LogsUID {
					if !strings.Contains(q.Expr, logsFilter) {
						t.Errorf("%s: logs panel %q query %s does not filter %s", name, p.Title, q.RefID, logsFilter)
					}
					filtered = true
					continue
				}
				for _, s := range selectors(q.Expr) {
					fam, ok := family(docs, s.name)
					if !ok || !hasProjectLabel(docs[fam]) {
						continue
					}
					filtered = true
					if !strings.Contains(s.matchers, projectFilter) {
						t.Errorf("%s: panel %q reads %s without %s: choosing a project would not filter it", name, p.Title, s.name, projectFilter)
					}
				}
			}
			if !filtered {
				exceptions++
				if !strings.Contains(p.Description, exceptionPhrase) {
					t.Errorf("%s: panel %q reads no per-project series and its description does not say it has %s", name, p.Title, exceptionPhrase)
				}
			} else if strings.Contains(p.Description, exceptionPhrase) {
				t.Errorf("%s: panel %q filters by project but its description says it has %s", name, p.Title, exceptionPhrase)
			}
		}
	}
	if exceptions == 0 {
		t.Error("no process-wide panels at all: the hub, NATS and OTel pipeline panels are missing")
	}
}

// TestQueriedMetricsAreDocumented checks that every metric a panel, the
// project variable or an alert rule reads is one docs/metrics.md lists:
// a renamed metric would leave a panel empty or an alert silent.
func TestQueriedMetricsAreDocumented(t *testing.T) {
	docs := metricDocs(t)
	used := map[string]bool{}
	check := func(where, expr string) {
		for _, s := range selectors(expr) {
			fam, ok := family(docs, s.name)
			if !ok {
				t.Errorf("%s reads %s, which docs/metrics.md does not list", where, s.name)
				continue
			}
			used[fam] = true
		}
	}
	qs, err := dashboards.PanelQueries(".*")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Datasource == dashboards.MetricsUID {
			check(q.Board+" / "+q.Panel+" / "+q.RefID, q.Expr)
		}
	}
	for _, r := range alertRules(t) {
		if r.logs {
			continue
		}
		check("alert "+r.Alert, r.Expr)
	}
	for _, want := range []string{"sagewai_llm_cost_usd_total", "sagewai_llm_cost_by_agent_usd_total", "sagewai_agent_runs_in_flight",
		"http_server_duration_milliseconds", "sagewai_otel_export_failures_total", "sagewai_hub_resyncs_total", "sagewai_budget_limit_usd"} {
		if !used[want] {
			t.Errorf("no panel or alert reads %s", want)
		}
	}
}

func TestPanelQueries(t *testing.T) {
	qs, err := dashboards.PanelQueries("acme")
	if err != nil {
		t.Fatal(err)
	}
	boards := loadBoards(t)
	want := 0
	panels := map[string]bool{}
	for _, d := range boards {
		for _, p := range dataPanels(d) {
			want += len(p.Targets)
			panels[d.Title+" / "+p.Title] = true
		}
	}
	if len(qs) != want {
		t.Errorf("%d queries, want %d (every query of every panel, collapsed rows included)", len(qs), want)
	}
	got := map[string]bool{}
	for _, q := range qs {
		got[q.Board+" / "+q.Panel] = true
		if _, ok := datasourceTypes[q.Datasource]; !ok {
			t.Errorf("%s / %s: datasource %q", q.Board, q.Panel, q.Datasource)
		}
		if strings.Contains(q.Expr, "$") || strings.Contains(q.Expr, "[[") {
			t.Errorf("%s / %s: a variable is left: %s", q.Board, q.Panel, q.Expr)
		}
	}
	if diff := cmp.Diff(panels, got); diff != "" {
		t.Errorf("panels (-boards +PanelQueries):\n%s", diff)
	}
	// The NATS row is collapsed: its panels are still there, filtered
	// by nothing (process-wide); a per-project panel carries the value.
	byPanel := map[string]string{}
	for _, q := range qs {
		byPanel[q.Panel] = q.Expr
	}
	if _, ok := byPanel["NATS connected"]; !ok {
		t.Error("the collapsed NATS row's panels are missing")
	}
	if e := byPanel["Spend per project (USD/h)"]; !strings.Contains(e, `sagewai_project_id=~"acme"`) || !strings.Contains(e, "[1m]") {
		t.Errorf("spend per project: %s; want the project and a 1m rate interval substituted", e)
	}
	if e := byPanel["Application logs"]; !strings.Contains(e, `sagewai.project_id:~"acme"`) {
		t.Errorf("application logs: %s", e)
	}
}

// alertRule is one vmalert rule, with where it came from.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	logs        bool
	file        string
	interval    string // the group's
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	files := dashboards.AlertRuleFiles()
	if diff := cmp.Diff([]string{"alerts/observatory-logs.yml", "alerts/observatory.yml"}, files); diff != "" {
		t.Fatalf("AlertRuleFiles (-want +got):\n%s", diff)
	}
	var out []alertRule
	for _, f := range files {
		b, err := fs.ReadFile(dashboards.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Name     string      `yaml:"name"`
				Type     string      `yaml:"type"`
				Interval string      `yaml:"interval"`
				Rules    []alertRule `yaml:"rules"`
			} `yaml:"groups"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range doc.Groups {
			logs := strings.HasSuffix(f, "-logs.yml")
			if logs != (g.Type == "vlogs") {
				t.Errorf("%s: group %s has type %q: the logs file's groups are vlogs, the other's are not", f, g.Name, g.Type)
			}
			for _, r := range g.Rules {
				r.logs, r.file, r.interval = g.Type == "vlogs", f, g.Interval
				out = append(out, r)
			}
		}
	}
	return out
}

func TestAlertRules(t *testing.T) {
	rules := alertRules(t)
	byName := map[string]alertRule{}
	for _, r := range rules {
		if _, dup := byName[r.Alert]; dup || r.Alert == "" {
			t.Errorf("alert name %q is empty or used twice", r.Alert)
		}
		byName[r.Alert] = r
		if r.Annotations["summary"] == "" || r.Annotations["runbook"] == "" {
			t.Errorf("%s: annotations summary and runbook are both needed, have %v", r.Alert, r.Annotations)
		}
		if r.Labels["severity"] == "" {
			t.Errorf("%s: no severity label", r.Alert)
		}
		if r.logs && !regexp.MustCompile(`(^|\s)_time:\d+[smhd]\b`).MatchString(r.Expr) {
			t.Errorf("%s: a logs rule needs an explicit _time: filter: %s", r.Alert, r.Expr)
		}
		if r.For != "" {
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
		}
	}
	for _, name := range []string{"CrossTenantAccessAttempt", "CrossTenantAccessAttemptLogs", "BudgetExceeded", "BudgetNearCap",
		"High5xxRate", "RouteP95Regression", "OTelExportFailures", "HubSlowSubscriberStorm", "WorkersStale",
		"FoldLimitReached", "FoldNearLimit"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("no alert %s", name)
		}
	}
	// The cross-tenant alerts fire within a minute, labelled with the
	// token's project.
	for _, name := range []string{"CrossTenantAccessAttempt", "CrossTenantAccessAttemptLogs"} {
		r := byName[name]
		if r.For != "" {
			if d, _ := time.ParseDuration(r.For); d > time.Minute {
				t.Errorf("%s: for %s, want at most 1m", name, r.For)
			}
		}
		if !strings.Contains(r.Expr, "sagewai_project_id") {
			t.Errorf("%s: the alert is not labelled with the project: %s", name, r.Expr)
		}
	}
	if r := byName["CrossTenantAccessAttempt"]; !strings.Contains(r.Expr, "sagewai_tenant_cross_access_denied_total") || r.logs {
		t.Errorf("CrossTenantAccessAttempt must read the metric: %s", r.Expr)
	}
	if r := byName["CrossTenantAccessAttemptLogs"]; !strings.Contains(r.Expr, `event:="tenant.cross_access_denied"`) || !r.logs {
		t.Errorf("CrossTenantAccessAttemptLogs must read the tenant.cross_access_denied log records: %s", r.Expr)
	}
}

// TestFoldBoundsCovered: FoldNearLimit and the SRE board's fold bounds
// panel watch exactly the bounds that refuse events (fleet.LimitReasons):
// one per project for agents, missions, workers and budgets, and the two
// bounds on projects. A new bound in fleet without them would be hit
// unannounced; adding open_runs or finished_missions, whose bounds drop
// the oldest instead of refusing (and which a busy project always fills),
// would keep the alert firing for nothing. FoldLimitReached reads every
// limit_* reason.
func TestFoldBoundsCovered(t *testing.T) {
	var perProject []string
	for _, r := range fleet.LimitReasons {
		kind, ok := strings.CutPrefix(string(r), "limit_")
		if !ok {
			t.Fatalf("limit reason %q does not start with limit_, which FoldLimitReached matches", r)
		}
		if kind != "projects" {
			perProject = append(perProject, kind)
		}
	}
	sort.Strings(perProject)
	kinds := regexp.MustCompile(`sagewai_hub_fold_largest_project\{kind=~"([a-z_|]+)"\}`)
	check := func(where, expr string) {
		t.Helper()
		m := kinds.FindStringSubmatch(expr)
		if m == nil {
			t.Errorf("%s does not read sagewai_hub_fold_largest_project{kind=~\"...\"}: %s", where, expr)
			return
		}
		got := strings.Split(m[1], "|")
		sort.Strings(got)
		if diff := cmp.Diff(perProject, got); diff != "" {
			t.Errorf("%s watches kinds %v, want the per-project bounds that refuse events (-fleet +rule):\n%s", where, got, diff)
		}
		for _, k := range []string{`kind="projects"`, `kind="announced_projects"`} {
			if !strings.Contains(expr, k) {
				t.Errorf("%s does not watch the bound of %s", where, k)
			}
		}
	}
	byName := map[string]alertRule{}
	for _, r := range alertRules(t) {
		byName[r.Alert] = r
	}
	check("alert FoldNearLimit", byName["FoldNearLimit"].Expr)
	if e := byName["FoldLimitReached"].Expr; !strings.Contains(e, `sagewai_hub_events_rejected_total{reason=~"limit_.*"}`) {
		t.Errorf("FoldLimitReached does not read every limit_* rejection: %s", e)
	}
	qs, err := dashboards.PanelQueries(".*")
	if err != nil {
		t.Fatal(err)
	}
	var panel []string
	for _, q := range qs {
		if q.Panel == "Fold bounds: fullest project / limit" {
			panel = append(panel, q.Expr)
		}
	}
	if len(panel) == 0 {
		t.Fatal("the SRE board has no panel Fold bounds: fullest project / limit")
	}
	check("the Fold bounds panel", strings.Join(panel, "\n"))
}

// TestWorkersStaleCanFire: a worker is stale only between fleet.StaleAfter
// and fleet.OfflineAfter after its last heartbeat, so WorkersStale's
// condition holds for that long at most, shortened by the fold's clock
// ticks (fleet.ClockEvery: the clock of a quiet fleet moves only on them)
// and by one scrape interval (the data shows it from the first scrape
// after it starts). The rule fires once the condition held for its for,
// at the evaluation after that: for plus one evaluation interval must fit
// in what is left, or a fleet whose workers all died never raises it (as
// with for: 2m, longer than the whole 90 s). The end-to-end test in
// vmstack evaluates the rules every 2 s; this checks the shipped interval
// and scrape interval.
func TestWorkersStaleCanFire(t *testing.T) {
	var rule alertRule
	for _, r := range alertRules(t) {
		if r.Alert == "WorkersStale" {
			rule = r
		}
	}
	var cfg struct {
		ScrapeConfigs []struct {
			ScrapeInterval string `yaml:"scrape_interval"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, scrapeConfig, &cfg)
	durations := map[string]string{"for": rule.For, "interval": rule.interval}
	if len(cfg.ScrapeConfigs) > 0 {
		durations["scrape_interval"] = cfg.ScrapeConfigs[0].ScrapeInterval
	}
	d := map[string]time.Duration{}
	for k, v := range durations {
		var err error
		if d[k], err = time.ParseDuration(v); err != nil || d[k] <= 0 {
			t.Fatalf("WorkersStale's %s %q: want a duration (%v)", k, v, err)
		}
	}
	visible := fleet.OfflineAfter - fleet.StaleAfter - fleet.ClockEvery - d["scrape_interval"]
	if need := d["for"] + d["interval"]; need > visible {
		t.Errorf("WorkersStale needs its condition to hold %s (for %s, evaluated every %s), but workers are stale for %s at most and the data shows it for as little as %s (scraped every %s, the fold's clock ticking every %s)",
			need, d["for"], d["interval"], fleet.OfflineAfter-fleet.StaleAfter, visible, d["scrape_interval"], fleet.ClockEvery)
	}
}

// TestOTelExportFailuresWindow: a failed export is counted when its
// retries give up, after the export timeout (30 s by default, the
// OpenTelemetry specification's OTEL_BSP_EXPORT_TIMEOUT and
// OTEL_BLRP_EXPORT_TIMEOUT), so while exports keep failing the counter
// moves every 30 s or so. OTelExportFailures' window must hold two such
// moves, or its condition flickers and the for never completes; and it
// must be shorter than the for, or a single failure fires the alert after
// exports have recovered.
func TestOTelExportFailuresWindow(t *testing.T) {
	const exportTimeout = 30 * time.Second
	for _, r := range alertRules(t) {
		if r.Alert != "OTelExportFailures" {
			continue
		}
		m := regexp.MustCompile(`sagewai_otel_export_failures_total\[([0-9]+[smh])\]`).FindStringSubmatch(r.Expr)
		if m == nil {
			t.Fatalf("OTelExportFailures does not take the increase of sagewai_otel_export_failures_total over a window: %s", r.Expr)
		}
		window, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		forD, err := time.ParseDuration(r.For)
		if err != nil {
			t.Fatalf("OTelExportFailures' for %q: %v", r.For, err)
		}
		if window < 2*exportTimeout || window >= forD {
			t.Errorf("OTelExportFailures' window is %s, want at least %s (two export timeouts) and less than its for, %s", window, 2*exportTimeout, forD)
		}
		return
	}
	t.Fatal("no alert OTelExportFailures")
}

// readYAML decodes a file of this directory into v.
func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// datasources reads the provisioned datasources.
type provisionedDatasource struct {
	Name string `yaml:"name"`
	UID  string `yaml:"uid"`
	Type string `yaml:"type"`
	URL  string `yaml:"url"`
}

func provisionedDatasources(t *testing.T) []provisionedDatasource {
	t.Helper()
	var doc struct {
		APIVersion  int                     `yaml:"apiVersion"`
		Datasources []provisionedDatasource `yaml:"datasources"`
	}
	readYAML(t, datasourcesFile, &doc)
	if doc.APIVersion != 1 {
		t.Errorf("%s: apiVersion %d, want 1", datasourcesFile, doc.APIVersion)
	}
	return doc.Datasources
}

func TestProvisioning(t *testing.T) {
	got := map[string]string{}
	for _, ds := range provisionedDatasources(t) {
		got[ds.UID] = ds.Type
	}
	used := map[string]bool{}
	qs, err := dashboards.PanelQueries(".*")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		used[q.Datasource] = true
	}
	for uid := range used {
		if got[uid] != datasourceTypes[uid] {
			t.Errorf("the boards use datasource %s; provisioned as type %q, want %q", uid, got[uid], datasourceTypes[uid])
		}
	}
	if len(used) != 2 {
		t.Errorf("the boards use datasources %v, want both %v", used, datasourceTypes)
	}

	var providers struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, providersFile, &providers)
	if len(providers.Providers) != 1 || providers.Providers[0].Type != "file" || providers.Providers[0].Options.Path == "" {
		t.Fatalf("%s: want one file provider with a path, have %+v", providersFile, providers.Providers)
	}
	// Grafana reads the boards where the compose file mounts them.
	grafana := composeProject(t).Services["grafana"]
	if src := bindSource(grafana, providers.Providers[0].Options.Path); src != mustAbs(t, dashboards.BoardsDir) {
		t.Errorf("the provider reads %s, where grafana mounts %q, want %s", providers.Providers[0].Options.Path, src, dashboards.BoardsDir)
	}
}

func TestCollectorConfig(t *testing.T) {
	raw, err := os.ReadFile(collectorConfig)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Receivers  map[string]map[string]any `yaml:"receivers"`
		Processors map[string]struct {
			TraceConditions []string `yaml:"trace_conditions"`
			LogConditions   []string `yaml:"log_conditions"`
		} `yaml:"processors"`
		Exporters map[string]map[string]any `yaml:"exporters"`
		Service   struct {
			Pipelines map[string]struct {
				Receivers  []string `yaml:"receivers"`
				Processors []string `yaml:"processors"`
				Exporters  []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	readYAML(t, collectorConfig, &cfg)
	otlp := cfg.Receivers["otlp"]
	if protocols, _ := otlp["protocols"].(map[string]any); protocols["http"] == nil {
		t.Errorf("no OTLP/HTTP receiver: %v", otlp)
	}
	// A filter processor drops probe spans and log records, in both pipelines.
	var filter string
	for name, p := range cfg.Processors {
		if !strings.HasPrefix(name, "filter") {
			continue
		}
		spans, logs := strings.Join(p.TraceConditions, " "), strings.Join(p.LogConditions, " ")
		for _, probe := range []string{`"/healthz"`, `"/readyz"`} {
			if !strings.Contains(spans, probe) || !strings.Contains(logs, probe) {
				t.Errorf("processor %s does not drop %s spans and log records", name, probe)
			}
		}
		filter = name
	}
	if filter == "" {
		t.Fatal("no filter processor")
	}
	if _, ok := cfg.Service.Pipelines["metrics"]; ok {
		t.Error("a metrics pipeline: metrics are scraped from /metrics, never pushed")
	}
	for _, name := range []string{"traces", "logs"} {
		p, ok := cfg.Service.Pipelines[name]
		if !ok {
			t.Errorf("no %s pipeline", name)
			continue
		}
		if !slices.Contains(p.Receivers, "otlp") || !slices.Contains(p.Processors, filter) || len(p.Exporters) == 0 {
			t.Errorf("%s pipeline %+v: want otlp in, %s, and an exporter", name, p, filter)
		}
		for _, e := range p.Exporters {
			if cfg.Exporters[e] == nil {
				t.Errorf("%s pipeline exports to %s, which is not configured", name, e)
			}
		}
	}
	// Where it sends comes from the environment (the pipeline test runs
	// this file on loopback ports); the compose file sets each variable
	// the config requires, to the stack's VictoriaLogs and Jaeger.
	collector := composeProject(t).Services["otel-collector"]
	var logsEndpoint, tracesEndpoint string
	for _, e := range cfg.Service.Pipelines["logs"].Exporters {
		if u, _ := cfg.Exporters[e]["logs_endpoint"].(string); u != "" {
			logsEndpoint = expandEnv(t, u, collector)
		}
	}
	for _, e := range cfg.Service.Pipelines["traces"].Exporters {
		if u, _ := cfg.Exporters[e]["endpoint"].(string); u != "" {
			tracesEndpoint = expandEnv(t, u, collector)
		}
	}
	if logsEndpoint != "http://victorialogs:9428/insert/opentelemetry/v1/logs" {
		t.Errorf("logs go to %q in the compose stack, want VictoriaLogs' OTLP endpoint", logsEndpoint)
	}
	if tracesEndpoint != "jaeger:4317" {
		t.Errorf("traces go to %q in the compose stack, want Jaeger's OTLP/gRPC receiver jaeger:4317", tracesEndpoint)
	}
	required := regexp.MustCompile(`\$\{env:(\w+)\}`).FindAllStringSubmatch(string(raw), -1)
	if len(required) < 2 {
		t.Errorf("the config reads %d endpoints from the environment (${env:NAME}), want the logs and traces exporters' at least", len(required))
	}
	for _, m := range required {
		if env(collector, m[1]) == "" {
			t.Errorf("the config requires %s, which the compose file does not set for otel-collector", m[1])
		}
	}
	for name := range cfg.Exporters {
		if strings.Contains(name, "remotewrite") || strings.Contains(name, "prometheus") {
			t.Errorf("exporter %s: metrics stay scraped, never pushed", name)
		}
	}
	if !regexp.MustCompile(`(?s)scrapes.*GET /metrics.*never.*remote write`).Match(raw) {
		t.Error("the config does not say, in a comment, that metrics are scraped from /metrics and never remote-written, and why")
	}
}

func TestScrapeConfig(t *testing.T) {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			ScrapeInterval string `yaml:"scrape_interval"`
			MetricsPath    string `yaml:"metrics_path"`
			StaticConfigs  []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, scrapeConfig, &cfg)
	if len(cfg.ScrapeConfigs) != 1 {
		t.Fatalf("%d scrape configs, want 1", len(cfg.ScrapeConfigs))
	}
	sc := cfg.ScrapeConfigs[0]
	if sc.JobName != "observatory" || sc.ScrapeInterval != "15s" || len(sc.StaticConfigs) != 1 ||
		!slices.Equal(sc.StaticConfigs[0].Targets, []string{"observatory:9464"}) {
		t.Errorf("scrape config %+v, want job observatory, target observatory:9464, every 15s", sc)
	}
	// observatory:9464 is the compose service and its --metrics-addr
	// listener, which serves /metrics without a token: the compose network
	// alone may reach it, so the port is not published.
	obs := composeProject(t).Services["observatory"]
	if i := slices.Index(obs.Command, "--metrics-addr"); i < 0 || i+1 >= len(obs.Command) || obs.Command[i+1] != ":9464" {
		t.Errorf("observatory's command %v has no --metrics-addr :9464, where it is scraped", obs.Command)
	}
	for _, p := range obs.Ports {
		if p.Target == 9464 || p.Published == "9464" {
			t.Errorf("the unauthenticated metrics port is published: %+v", p)
		}
	}
}

// composeProject loads the compose file with the compose-spec library,
// which validates it against the compose schema, in an empty environment
// (every ${VAR:-default} takes its default).
func composeProject(t *testing.T) *types.Project {
	t.Helper()
	return composeProjectEnv(t)
}

// composeProjectEnv is composeProject with environment variables (K=V) for
// the file's interpolation, as the shell running `docker compose up` has.
func composeProjectEnv(t *testing.T, environ ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory(repoRoot), cli.WithResolvedPaths(true), cli.WithEnv(environ))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return p
}

func mustAbs(t *testing.T, rel string) string {
	t.Helper()
	abs, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// bindSource returns the host path that service mounts at target ("" if none).
func bindSource(s types.ServiceConfig, target string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			return v.Source
		}
	}
	return ""
}

func env(s types.ServiceConfig, k string) string {
	if v := s.Environment[k]; v != nil {
		return *v
	}
	return ""
}

// readmeURLs returns the localhost URLs in the table of the README's
// compose section, with their ports.
func readmeURLs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n"+readmeSection+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", readmeSection)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	if !strings.Contains(sec, "docker compose -f docker-compose.observability.yml up") {
		t.Error("the README section does not say how to start the stack")
	}
	var rows []string
	for _, line := range strings.Split(sec, "\n") {
		if strings.HasPrefix(line, "| ") {
			rows = append(rows, line)
		}
	}
	sec = strings.Join(rows, "\n")
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`\b[a-z]+://localhost:(\d+)[^\s|)`+"`"+`]*`).FindAllStringSubmatch(sec, -1) {
		out[m[0]] = m[1]
	}
	return out
}

func TestComposeFile(t *testing.T) {
	p := composeProject(t)
	for _, name := range []string{"observatory", "otel-collector", "victoriametrics", "victorialogs", "vmalert", "grafana"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}

	t.Run("images are pinned", func(t *testing.T) {
		for name, s := range p.Services {
			if s.Build != nil {
				continue // built here from the Dockerfile
			}
			_, tag, ok := strings.Cut(s.Image[strings.LastIndex(s.Image, "/")+1:], ":")
			if !ok || tag == "" || tag == "latest" {
				t.Errorf("%s: image %q has no pinned tag", name, s.Image)
			}
		}
		if s := p.Services["observatory"]; s.Build == nil || filepath.Base(s.Build.Dockerfile) != "Dockerfile" {
			t.Errorf("observatory is not built from the Dockerfile: %+v", s.Build)
		}
	})

	t.Run("every mounted file exists", func(t *testing.T) {
		root := mustAbs(t, repoRoot)
		mounted := map[string]bool{}
		for name, s := range p.Services {
			for _, v := range s.Volumes {
				if v.Type != types.VolumeTypeBind {
					if _, ok := p.Volumes[v.Source]; !ok {
						t.Errorf("%s mounts volume %q, which is not declared", name, v.Source)
					}
					continue
				}
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s mounts %s: %v", name, v.Source, err)
				}
				rel, _ := filepath.Rel(root, v.Source)
				mounted[filepath.ToSlash(rel)] = true
			}
		}
		for _, want := range []string{"dashboards/grafana/dashboards", "dashboards/grafana/provisioning/datasources",
			"dashboards/grafana/provisioning/dashboards", "dashboards/otel-collector/config.yaml",
			"dashboards/victoriametrics/scrape.yml", "dashboards/alerts/observatory.yml", "dashboards/alerts/observatory-logs.yml"} {
			if !mounted[want] {
				t.Errorf("no service mounts %s", want)
			}
		}
	})

	t.Run("ports and URLs match the README", func(t *testing.T) {
		published := map[string]string{}
		for name, s := range p.Services {
			for _, port := range s.Ports {
				if port.Published == "" {
					t.Errorf("%s: port %d is not published on a fixed host port", name, port.Target)
					continue
				}
				published[port.Published] = name
			}
		}
		urls := readmeURLs(t)
		documented := map[string]bool{}
		for u, port := range urls {
			documented[port] = true
			if published[port] == "" {
				t.Errorf("the README lists %s, but no service publishes port %s", u, port)
			}
		}
		for port, name := range published {
			if !documented[port] {
				t.Errorf("%s publishes port %s, which the README section does not list", name, port)
			}
		}
		for u, svc := range map[string]string{"http://localhost:3001/hud": "observatory", "http://localhost:3000": "grafana"} {
			if port, ok := urls[u]; !ok || published[port] != svc {
				t.Errorf("the README section does not list %s as %s's", u, svc)
			}
		}
	})

	t.Run("services find each other", func(t *testing.T) {
		// Every in-stack URL names a service and a port it listens on.
		targets := map[string]bool{}
		for name, s := range p.Services {
			for _, port := range s.Ports {
				targets[name+":"+strconv.Itoa(int(port.Target))] = true
			}
		}
		targets["jaeger:4317"] = true
		var urls []string
		for _, ds := range provisionedDatasources(t) {
			urls = append(urls, ds.URL)
		}
		obs := p.Services["observatory"]
		urls = append(urls, env(obs, "OTEL_EXPORTER_OTLP_ENDPOINT"), "http://victorialogs:9428/insert/opentelemetry/v1/logs")
		for _, s := range p.Services {
			for _, arg := range s.Command {
				if _, u, ok := strings.Cut(arg, "="); ok && strings.HasPrefix(u, "http://") {
					urls = append(urls, u)
				}
			}
		}
		for _, u := range urls {
			host := strings.TrimPrefix(u, "http://")
			host, _, _ = strings.Cut(host, "/")
			if host == "localhost:3000" {
				continue // vmalert's links, for the browser
			}
			if !targets[host] {
				t.Errorf("%s: no service listens on %s", u, host)
			}
		}
		sort.Strings(urls)
		if len(urls) < 6 {
			t.Errorf("too few service URLs to prove anything: %v", urls)
		}
	})

	t.Run("observatory", func(t *testing.T) {
		s := p.Services["observatory"]
		cmd := strings.Join(s.Command, " ")
		for _, want := range []string{"serve", "--addr :3001", "--public-url http://localhost:3001", "--public-url http://observatory:3001",
			"--embed-origins http://localhost:8080", "--nats-listen 0.0.0.0:4222"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("command %q lacks %q", cmd, want)
			}
		}
		if got := env(s, "OTEL_EXPORTER_OTLP_ENDPOINT"); got != "http://otel-collector:4318" {
			t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT = %q", got)
		}
		// The data dir the image names is a volume: the streams and the
		// keys (NATS's, the signing keys) outlive the container.
		dataDir := dockerfileEnv(t)["OBSERVATORY_DATA_DIR"]
		mounted := false
		for _, v := range s.Volumes {
			mounted = mounted || v.Type == types.VolumeTypeVolume && v.Target == dataDir
		}
		if dataDir == "" || !mounted {
			t.Errorf("observatory mounts no volume at the image's data dir %q: %+v", dataDir, s.Volumes)
		}
	})

	t.Run("NATS is embedded and authenticated", func(t *testing.T) {
		// Finding 1 of issue 12: a NATS service without authentication,
		// its port published on every interface. NATS is now observatory's
		// own, in operator mode; no other NATS runs in the stack.
		for name, s := range p.Services {
			if strings.HasPrefix(s.Image[strings.LastIndex(s.Image, "/")+1:], "nats:") {
				t.Errorf("service %s runs a NATS of its own (%s): observatory embeds NATS in operator mode", name, s.Image)
			}
			for _, port := range s.Ports {
				if port.Target == 4222 && !loopbackHost(port.HostIP) {
					t.Errorf("%s publishes NATS (%d) on %q: want 127.0.0.1 at most", name, port.Target, port.HostIP)
				}
			}
		}
		obs := p.Services["observatory"]
		if slices.Contains(obs.Command, "--nats-url") {
			t.Errorf("observatory dials an external NATS: %v", obs.Command)
		}
		// What enrolled workers are told to dial: observatory's NATS on
		// the compose network, and the port published on this machine's
		// loopback.
		i := slices.Index(obs.Command, "--nats-advertise")
		if i < 0 || i+1 >= len(obs.Command) {
			t.Fatalf("observatory's command %v has no --nats-advertise: enrolled workers would be told an address inside its container", obs.Command)
		}
		listens := map[string]bool{}
		for _, port := range obs.Ports {
			if port.Target == 4222 {
				listens["localhost:"+port.Published] = true
			}
		}
		listens["observatory:4222"] = true
		for _, u := range strings.Split(obs.Command[i+1], ",") {
			host, ok := strings.CutPrefix(u, "nats://")
			if !ok || !listens[host] {
				t.Errorf("--nats-advertise names %q, which is neither observatory:4222 nor a port it publishes on this machine (%v)", u, listens)
			}
		}
	})

	t.Run("ports are published on loopback only", func(t *testing.T) {
		// The metrics and log stores, Jaeger, vmalert and the collector's
		// OTLP receivers take no credentials, and VictoriaMetrics holds
		// every tenant's series: none of them may be published on every
		// interface, and the HUD, Grafana and NATS need not be.
		n := 0
		for name, s := range p.Services {
			for _, port := range s.Ports {
				n++
				if !loopbackHost(port.HostIP) {
					t.Errorf("%s publishes port %s (target %d) on %q: want 127.0.0.1", name, port.Published, port.Target, cmpOr(port.HostIP, "all interfaces"))
				}
			}
		}
		if n < 10 {
			t.Errorf("only %d published ports: the README's table lists more", n)
		}
	})

	t.Run("no default password", func(t *testing.T) {
		raw, err := os.ReadFile(composeFile)
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(?i)admin\s*/\s*admin\b`).Find(raw); m != nil {
			t.Errorf("the compose file still says %q", m)
		}
		for name, s := range p.Services {
			for k, v := range s.Environment {
				if strings.Contains(k, "PASSWORD") && (v == nil || *v == "" || *v == "admin") {
					t.Errorf("%s: %s is %q: want a password that is not the default", name, k, env(s, k))
				}
			}
		}
		// Each password comes from the shell's environment when it has one.
		set := composeProjectEnv(t, "OBSERVATORY_ADMIN_PASSWORD=obs-secret-1", "GRAFANA_ADMIN_PASSWORD=grafana-secret-2")
		for svc, kv := range map[string][2]string{
			"observatory": {"OBSERVATORY_ADMIN_PASSWORD", "obs-secret-1"},
			"grafana":     {"GF_SECURITY_ADMIN_PASSWORD", "grafana-secret-2"},
		} {
			if got := env(set.Services[svc], kv[0]); got != kv[1] {
				t.Errorf("%s: %s = %q with the password set in the environment, want %q", svc, kv[0], got, kv[1])
			}
			if got := env(p.Services[svc], kv[0]); got == "" || got == "admin" {
				t.Errorf("%s: %s defaults to %q", svc, kv[0], got)
			}
		}
	})

	t.Run("grafana", func(t *testing.T) {
		s := p.Services["grafana"]
		for k, want := range map[string]string{
			"GF_SECURITY_ADMIN_USER":    "admin",
			"GF_AUTH_ANONYMOUS_ENABLED": "false", "GF_SECURITY_ALLOW_EMBEDDING": "true",
		} {
			if got := env(s, k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if env(s, "GF_SECURITY_COOKIE_SAMESITE") == "" {
			t.Error("GF_SECURITY_COOKIE_SAMESITE is not set for embedding")
		}
		if !strings.Contains(env(s, "GF_PLUGINS_PREINSTALL")+env(s, "GF_INSTALL_PLUGINS"), "victoriametrics-logs-datasource") {
			t.Error("the VictoriaLogs datasource plugin is not installed")
		}
		// Framing is allowed for the admin app's origin, the one observatory
		// lets embed its HUD.
		if csp := env(s, "GF_SECURITY_CONTENT_SECURITY_POLICY_TEMPLATE"); !strings.Contains(csp, "frame-ancestors") ||
			!strings.Contains(csp, "http://localhost:8080") || env(s, "GF_SECURITY_CONTENT_SECURITY_POLICY") != "true" {
			t.Errorf("CSP %q does not allow the admin app's origin to frame Grafana", csp)
		}
	})

	t.Run("vmalert loads every rule file", func(t *testing.T) {
		var mounted []string
		for name, s := range p.Services {
			if !strings.HasPrefix(s.Image, "victoriametrics/vmalert:") {
				continue
			}
			for _, v := range s.Volumes {
				if v.Type == types.VolumeTypeBind {
					if !slices.Contains(s.Command, "-rule="+v.Target) {
						t.Errorf("%s mounts %s but does not load it", name, v.Target)
					}
					rel, _ := filepath.Rel(mustAbs(t, "."), v.Source)
					mounted = append(mounted, filepath.ToSlash(rel))
				}
			}
		}
		sort.Strings(mounted)
		if diff := cmp.Diff(dashboards.AlertRuleFiles(), mounted); diff != "" {
			t.Errorf("rule files (-dashboards +compose):\n%s", diff)
		}
	})
}

// loopbackHost reports whether a published port's host_ip is a loopback
// address ("" means every interface).
func loopbackHost(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsLoopback()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// dockerfileEnv returns the variables the Dockerfile's ENV instructions
// set (KEY=VALUE pairs, lines continued with a backslash).
func dockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ENV ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				out[k] = v
			}
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var froms, instr []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr = append(instr, line)
		if f, ok := strings.CutPrefix(line, "FROM "); ok {
			froms = append(froms, strings.Fields(f)[0])
		}
	}
	text := strings.Join(instr, "\n")
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26") {
		t.Errorf("stages %v: want a golang:1.26 builder and a final stage", froms)
	}
	for _, f := range froms {
		if !strings.Contains(f, ":") || strings.HasSuffix(f, ":latest") {
			t.Errorf("image %s is not pinned", f)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/observatory", "HEALTHCHECK", "EXPOSE 3001"} {
		if !strings.Contains(text, want) {
			t.Errorf("the Dockerfile lacks %s", want)
		}
	}
	final := text[strings.LastIndex(text, "FROM "):]
	if m := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(final); m == nil || m[1] == "root" || strings.HasPrefix(m[1], "0") {
		t.Errorf("the final stage does not run as a non-root user: %v", m)
	}
	checkHealthcheck(t, string(b))
	checkRunExample(t, string(b))
	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil || !strings.Contains(string(ignore), ".git") {
		t.Errorf(".dockerignore: %v; want it to keep .git out of the build context", err)
	}
}

// checkHealthcheck: the image's HEALTHCHECK runs the binary's healthcheck
// without --url, so that the environment decides what it asks
// (OBSERVATORY_HEALTHCHECK_URL, and OBSERVATORY_HEALTHCHECK_INSECURE under
// TLS, which a flag would override); the image's URL is /readyz on the
// port serve listens on (OBSERVATORY_ADDR), by loopback IP. And the image
// bakes in no admin password.
func checkHealthcheck(t *testing.T, dockerfileText string) {
	t.Helper()
	joined := strings.ReplaceAll(dockerfileText, "\\\n", " ")
	m := regexp.MustCompile(`(?m)^HEALTHCHECK\s.*\sCMD\s+(\[.*\])\s*$`).FindStringSubmatch(joined)
	if m == nil {
		t.Fatal("no HEALTHCHECK ... CMD [...] (exec form) in the Dockerfile")
	}
	var argv []string
	if err := json.Unmarshal([]byte(m[1]), &argv); err != nil {
		t.Fatalf("HEALTHCHECK CMD %s: %v", m[1], err)
	}
	if len(argv) < 2 || argv[0] != "/usr/local/bin/observatory" || argv[1] != "healthcheck" {
		t.Errorf("HEALTHCHECK runs %q, want /usr/local/bin/observatory healthcheck", argv)
	}
	for _, a := range argv {
		if strings.HasPrefix(a, "--url") || strings.HasPrefix(a, "-url") {
			t.Errorf("HEALTHCHECK passes %q: the flag would override OBSERVATORY_HEALTHCHECK_URL, which TLS deployments set to https", a)
		}
	}
	envs := dockerfileEnv(t)
	if _, ok := envs["OBSERVATORY_ADMIN_PASSWORD"]; ok {
		t.Error("the image sets OBSERVATORY_ADMIN_PASSWORD: a password baked into an image is everyone's")
	}
	_, port, err := net.SplitHostPort(envs["OBSERVATORY_ADDR"])
	if err != nil {
		t.Fatalf("OBSERVATORY_ADDR %q: %v", envs["OBSERVATORY_ADDR"], err)
	}
	u, err := url.Parse(envs["OBSERVATORY_HEALTHCHECK_URL"])
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() != port || u.Path != "/readyz" {
		t.Errorf("OBSERVATORY_HEALTHCHECK_URL %q (%v): want http://127.0.0.1:%s/readyz, serve's own port", envs["OBSERVATORY_HEALTHCHECK_URL"], err, port)
	}
	for _, want := range []string{"OBSERVATORY_HEALTHCHECK_INSECURE=true", "https://127.0.0.1:" + port + "/readyz"} {
		if !strings.Contains(dockerfileText, want) {
			t.Errorf("the Dockerfile does not say how to probe under TLS (%s)", want)
		}
	}
}

// checkRunExample: the Dockerfile's `docker run` example starts a server
// on :3001 in the container, beyond loopback, which serve and demo refuse
// without a non-default admin password and a public URL; so the example
// sets both, and publishes the port on the host's loopback.
func checkRunExample(t *testing.T, dockerfileText string) {
	t.Helper()
	var cmd []string
	in := false
	for _, line := range strings.Split(dockerfileText, "\n") {
		c, ok := strings.CutPrefix(line, "#")
		if !ok {
			break
		}
		c = strings.TrimSpace(c)
		if strings.HasPrefix(c, "docker run") {
			in = true
		}
		if in {
			cmd = append(cmd, strings.TrimSuffix(c, "\\"))
			if !strings.HasSuffix(c, "\\") {
				break
			}
		}
	}
	run := strings.Join(strings.Fields(strings.Join(cmd, " ")), " ")
	if run == "" {
		t.Fatal("the Dockerfile's header has no docker run example")
	}
	for _, want := range []string{"-p 127.0.0.1:3001:3001", "-e OBSERVATORY_ADMIN_PASSWORD=", "-e OBSERVATORY_PUBLIC_URL=http://localhost:3001", "-v observatory-data:/var/lib/observatory"} {
		if !strings.Contains(run, want) {
			t.Errorf("the docker run example %q lacks %q", run, want)
		}
	}
	if strings.Contains(run, "OBSERVATORY_ADMIN_PASSWORD=admin ") {
		t.Errorf("the docker run example uses the default password: %q", run)
	}
}
