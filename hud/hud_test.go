package hud_test

import (
	"bytes"
	"context"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"
	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/hud"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 11, 27, 16, 54, 18, 983359697, time.UTC)

// fixture is a small fleet: two projects, three agents, two workers, a
// mission queued, one claimed and one running, a budget past its warn
// threshold, and a few ticker entries.
func fixture() fleet.View {
	return fleet.View{
		Posture: fleet.Posture{ActiveAgents: 2, Agents: 3, WorkersOnline: 2, Workers: 2, MissionsInFlight: 3,
			Runs24h: 1234, Tokens24h: 1663264, Errors1h: 2, SpendToday: 2_705_349, SpendTotal: 12_000_001,
			BudgetLimit: 25_000_000, BudgetPct: 10.8},
		Projects: map[string]fleet.Project{
			"acme": {ID: "acme", Agents: 2, ActiveAgents: 2, WorkersOnline: 1, MissionsInFlight: 2, Runs24h: 1000, Tokens24h: 1_000_000,
				Errors1h: 2, SpendToday: 2_105_349, SpendTotal: 9_000_000,
				Budget: &fleet.BudgetStatus{LimitUSD: 2_500_000, SpentUSD: 2_105_349, Pct: 84.2, Action: "warn", Period: "daily"}},
			"globex": {ID: "globex", Agents: 1, WorkersOnline: 1, MissionsInFlight: 1, Runs24h: 234, Tokens24h: 663_264, SpendToday: 600_000},
		},
		Agents: map[string]fleet.Agent{
			"acme-support-triager": {ID: "acme-support-triager", ProjectID: "acme", Name: "acme-support-triager", Role: "triage",
				Model: "claude-haiku-4-5", Version: "1.2.0", Description: "Reads new tickets & routes them <fast>.",
				Tools: []string{"zendesk.search", "kb.lookup"}, Skills: []string{"triage"}, State: fleet.AgentThinking, Active: true,
				WorkerID: "w-01", MissionID: "m-2", RunID: "r-2", Runs: 40, RunsFailed: 1, LLMCalls: 120, ToolCalls: 80, CallErrors: 3,
				LatencyMS: 999.5, Tokens: 400_000, Spend: 1_234_567, LastSeen: t0,
				RecentRuns: []fleet.RunSummary{{ID: "r-1", MissionID: "m-1", Model: "claude-haiku-4-5", Status: "completed", Ended: t0,
					DurationMS: 12_600, Calls: 9, Tokens: 55_912, Spend: 144_824}}},
			"acme-support-refunds": {ID: "acme-support-refunds", ProjectID: "acme", Name: "acme-support-refunds", Role: "billing",
				Model: "claude-sonnet-4-5", Tools: []string{}, Skills: []string{}, State: fleet.AgentIdle, Active: true,
				LLMCalls: 5, LatencyMS: 420.4, LastSeen: t0},
			"globex-research-scout": {ID: "globex-research-scout", ProjectID: "globex", Name: "globex-research-scout", Role: "research",
				Model: "gpt-5", Tools: []string{}, Skills: []string{}, State: fleet.AgentOffline, LastSeen: t0},
		},
		Workers: map[string]fleet.Worker{
			"w-01": {ID: "w-01", Capacity: 4, Projects: []string{"acme"}, State: "busy", Status: fleet.WorkerOnline, ActiveMissions: 2, LastSeen: t0},
			"w-02": {ID: "w-02", Capacity: 2, Projects: []string{"globex"}, State: "idle", Status: fleet.WorkerStale, LastSeen: t0},
		},
		Missions: map[string]fleet.Mission{
			"m-1": {ID: "m-1", ProjectID: "acme", Title: "Queued one", Status: fleet.MissionQueuedStatus, UpdatedAt: t0},
			"m-2": {ID: "m-2", ProjectID: "acme", Title: "Running one", Status: fleet.MissionRunningStatus, WorkerID: "w-01",
				AgentID: "acme-support-triager", Pct: 42.5, UpdatedAt: t0},
			"m-3": {ID: "m-3", ProjectID: "globex", Title: "Claimed one", Status: fleet.MissionClaimedStatus, WorkerID: "w-02", UpdatedAt: t0},
		},
		Budgets: map[string]fleet.Budget{
			"acme/project:acme:daily": {ID: "acme/project:acme:daily", ProjectID: "acme", Scope: "project", ScopeID: "acme",
				Period: "daily", LimitUSD: 2_500_000, SpentUSD: 2_105_349, Pct: 84.2, Action: "warn", Status: "warning", UpdatedAt: t0},
		},
		Ticker: []fleet.TickerEntry{
			{Seq: 10, ID: "e-10", Type: "mission.queued", Time: t0, ProjectID: "acme", MissionID: "m-1", Level: "info", Text: "mission m-1 queued"},
			{Seq: 11, ID: "e-11", Type: "llm.call", Time: t0.Add(time.Second), ProjectID: "acme", Level: "info", Text: "claude-haiku-4-5 4127 tok $0.007133"},
			{Seq: 12, ID: "e-12", Type: "agent.run.failed", Time: t0.Add(2 * time.Second), ProjectID: "globex", Level: "error", Text: "run r-9 failed: timeout"},
		},
	}
}

func page() hud.Page {
	return hud.Page{Scope: fleet.ScopeAll, Epoch: "E1", Seq: 12, View: fixture(), Admin: true, User: "admin", Assets: "v1",
		Projects: []string{"acme", "globex", "initech"}}
}

func render(t *testing.T, c templ.Component) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./hud -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got; go test ./hud -update rewrites it):\n%s", name, diff)
	}
}

func parse(t *testing.T, b []byte) *goquery.Document {
	t.Helper()
	doc, err := goquery.NewDocumentFromReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	doc.Find("template").Remove()
	return doc
}

func TestGoldenHUD(t *testing.T) {
	for _, tc := range []struct {
		name string
		page func() hud.Page
	}{
		{"hud.golden.html", page},
		{"hud-project.golden.html", func() hud.Page {
			p := page()
			p.Scope, p.Admin, p.Projects = "acme", false, []string{"acme"}
			return p
		}},
		{"hud-embed.golden.html", func() hud.Page {
			p := page()
			p.Embed, p.EmbedToken = true, "tok"
			return p
		}},
		{"hud-empty.golden.html", func() hud.Page {
			return hud.Page{Scope: fleet.ScopeAll, Epoch: "E0", Admin: true, User: "admin", Assets: "v1"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, render(t, hud.HUD(tc.page()))) })
	}
	t.Run("login.golden.html", func(t *testing.T) {
		golden(t, "login.golden.html", render(t, hud.Login(hud.LoginPage{Error: "bad username or password", Username: "admin", Next: "/hud?project=acme", Assets: "v1"})))
	})
	t.Run("error.golden.html", func(t *testing.T) {
		golden(t, "error.golden.html", render(t, hud.ErrorPage("403", "Not allowed", `a token of project "acme" may not read scope "globex"`, "v1")))
	})
}

// TestHooksShowTheFigures reads every data-testid hook of DESIGN §6 and
// checks that its text is the figure of the view.
func TestHooksShowTheFigures(t *testing.T) {
	v := fixture()
	doc := parse(t, render(t, hud.HUD(page())))
	text := func(sel string) string { return strings.TrimSpace(doc.Find(sel).First().Text()) }
	for hook, want := range map[string]string{
		"kpi-active-agents":      "2",
		"kpi-runs-24h":           "1,234",
		"kpi-tokens-24h":         "1,663,264",
		"kpi-spend-today":        "$2.71",
		"kpi-errors-1h":          "2",
		"kpi-missions-in-flight": "3",
		"kpi-workers-online":     "2",
		"live-indicator":         "RECONNECTING",
	} {
		if got := text(`[data-testid="` + hook + `"]`); got != want {
			t.Errorf("%s shows %q, want %q", hook, got, want)
		}
	}
	if got := doc.Find(`[data-testid="kpi-spend-today"]`).AttrOr("data-value", ""); got != "2.705349" {
		t.Errorf("spend data-value %q, want the exact 2.705349", got)
	}
	var tabs []string
	doc.Find("[data-testid=tenant-tab]").Each(func(_ int, s *goquery.Selection) {
		tabs = append(tabs, s.AttrOr("data-scope", "")+"="+strings.TrimSpace(s.Find("[data-f=counts]").Text()))
	})
	wantTabs := []string{"*=3 AGT · 3 MSN · $2.71", "acme=2 AGT · 2 MSN · $2.11", "globex=1 AGT · 1 MSN · $0.60", "initech="}
	if diff := cmp.Diff(wantTabs, tabs); diff != "" {
		t.Errorf("tabs (-want +got):\n%s", diff)
	}
	var roster []string
	doc.Find("[data-testid=agent-roster] > li").Each(func(_ int, s *goquery.Selection) {
		f := func(n string) string { return strings.TrimSpace(s.Find("[data-f=" + n + "]").Text()) }
		roster = append(roster, strings.Join([]string{s.AttrOr("data-agent-id", ""), f("role"), f("model"), f("state"), f("calls"), f("latency")}, "|"))
	})
	wantRoster := []string{
		"acme-support-refunds|billing|claude-sonnet-4-5|idle|5|420ms",
		"acme-support-triager|triage|claude-haiku-4-5|thinking|200|1.0s",
		"globex-research-scout|research|gpt-5|offline|0|0ms",
	}
	if diff := cmp.Diff(wantRoster, roster); diff != "" {
		t.Errorf("roster (-want +got):\n%s", diff)
	}
	topo := doc.Find("[data-testid=topology]")
	if n := topo.Find("g[data-agent-id]").Length(); n != len(v.Agents) {
		t.Errorf("topology has %d agent nodes, want %d", n, len(v.Agents))
	}
	if n := topo.Find("g[data-worker-id]").Length(); n != len(v.Workers) {
		t.Errorf("topology has %d worker nodes, want %d", n, len(v.Workers))
	}
	for id, m := range v.Missions {
		dot := topo.Find(`circle.mdot[data-mission-id="` + id + `"]`)
		if dot.AttrOr("data-status", "") != m.Status {
			t.Errorf("mission %s: dot status %q, want %q", id, dot.AttrOr("data-status", ""), m.Status)
		}
	}
	if got := text("#queue-count"); got != "1" {
		t.Errorf("queue shows %q, want 1", got)
	}
	var ticker []string
	doc.Find("[data-testid=ticker] > li").Each(func(_ int, s *goquery.Selection) { ticker = append(ticker, s.AttrOr("data-id", "")) })
	if diff := cmp.Diff([]string{"e-12", "e-11", "e-10"}, ticker); diff != "" {
		t.Errorf("ticker is not newest first (-want +got):\n%s", diff)
	}
	g := doc.Find("[data-testid=budget-gauge]")
	if g.Length() != 1 || g.AttrOr("data-project", "") != "acme" || !g.HasClass("lv-warn") || strings.TrimSpace(g.Find("[data-f=pct]").Text()) != "84.2%" {
		t.Errorf("budget gauges: %d, want acme at 84.2%% coloured warn", g.Length())
	}
	d := doc.Find("[data-testid=dossier]")
	if d.AttrOr("data-agent-id", "") != "acme-support-refunds" {
		t.Errorf("the dossier opens on %q, want the first agent of the roster", d.AttrOr("data-agent-id", ""))
	}
}

func TestDossierShowsTheAgent(t *testing.T) {
	a := fixture().Agents["acme-support-triager"]
	doc := parse(t, render(t, hud.Dossier(a, true)))
	got := map[string]string{}
	doc.Find("[data-f]").Each(func(_ int, s *goquery.Selection) {
		if s.Closest("[data-list]").Length() == 0 {
			got[s.AttrOr("data-f", "")] = strings.TrimSpace(s.Text())
		}
	})
	want := map[string]string{
		"project": "acme", "role": "triage", "version": "· v1.2.0", "name": "acme-support-triager", "id": "acme-support-triager",
		"state": "thinking", "description": "Reads new tickets & routes them <fast>.", "model": "claude-haiku-4-5",
		"runs": "40", "runs_failed": "1", "llm_calls": "120", "tool_calls": "80", "error_rate": "1.5%", "latency": "1.0s",
		"tokens": "400,000", "spend": "$1.23", "worker": "w-01", "mission": "m-2", "last_seen": "16:54:18",
		"tools_n": "2", "skills_n": "1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dossier (-want +got):\n%s", diff)
	}
	if n := doc.Find("[data-list=runs] tr").Length(); n != 1 {
		t.Errorf("%d recent runs, want 1", n)
	}
}

func TestGaugeLevels(t *testing.T) {
	for _, tc := range []struct {
		pct    float64
		status string
		want   string
	}{
		{0, "", "ok"}, {79.9, "", "ok"}, {80, "", "warn"}, {50, "warning", "warn"}, {50, "throttled", "warn"},
		{99.9, "", "warn"}, {100, "", "over"}, {20, "exceeded", "over"}, {250, "", "over"},
	} {
		if got := hud.BudgetLevel(tc.pct, tc.status); got != tc.want {
			t.Errorf("BudgetLevel(%v, %q) = %q, want %q", tc.pct, tc.status, got, tc.want)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{hud.FormatInt(0), "0"},
		{hud.FormatInt(999), "999"},
		{hud.FormatInt(1000), "1,000"},
		{hud.FormatInt(1663264), "1,663,264"},
		{hud.FormatInt(-1234567), "-1,234,567"},
		{hud.FormatUSD(0), "$0.00"},
		{hud.FormatUSD(4_999), "$0.00"},
		{hud.FormatUSD(5_000), "$0.01"},
		{hud.FormatUSD(2_705_349), "$2.71"},
		{hud.FormatUSD(1_234_567_894_999), "$1,234,567.89"},
		{hud.FormatUSD(-5_000), "-$0.01"},
		{hud.FormatPct(0), "0.0%"},
		{hud.FormatPct(38.25), "38.3%"},
		{hud.FormatPct(104), "104.0%"},
		{hud.FormatPct(1234.56), "1,234.6%"},
		{hud.FormatLatency(0), "0ms"},
		{hud.FormatLatency(-3), "0ms"},
		{hud.FormatLatency(419.5), "420ms"},
		{hud.FormatLatency(999.4), "999ms"},
		{hud.FormatLatency(999.5), "1.0s"},
		{hud.FormatLatency(1886.9), "1.9s"},
		{hud.FormatLatency(61_000), "61.0s"},
		{hud.FormatClock(time.Time{}), "—"},
		{hud.FormatClock(t0), "16:54:18"},
		{hud.FormatClock(t0.In(time.FixedZone("CET", 3600))), "16:54:18"},
		{hud.FormatRate(3, 200), "1.5%"},
		{hud.FormatRate(0, 0), "0.0%"},
		{hud.Code("acme"), "ACM"},
		{hud.Code("a-1_b"), "A1B"},
		{hud.Code("*"), "*"},
		{hud.Code("tenant00"), "T00"},
		{hud.Code("team42"), "T42"},
		{hud.Code("x1"), "X1"},
		{hud.Code("123"), "123"},
		{hud.Code("ab-2024"), "A24"},
		{hud.Coord(12.34), "12.3"},
		{hud.Coord(12.35), "12.4"},
		{hud.Coord(600), "600"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestLayoutStaysInTheFrame places fleets from empty to 1,000 agents and
// checks that every node is inside the SVG, that no two agents or workers
// share a place, and that a mission moves from its worker towards its
// agent as it progresses.
func TestLayoutStaysInTheFrame(t *testing.T) {
	for _, n := range []int{0, 1, 7, 36, 37, 500, 1000} {
		agents := map[string]fleet.Agent{}
		workers := map[string]fleet.Worker{}
		for i := range n {
			p := []string{"acme", "globex", "initech", "umbrella"}[i%4]
			id := p + "-agent-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
			agents[id] = fleet.Agent{ID: id, ProjectID: p, Name: id}
		}
		for i := range n/10 + 1 {
			id := "w-" + strings.Repeat("0", i)
			workers[id] = fleet.Worker{ID: id, Projects: []string{"acme"}}
		}
		l := hud.Place(agents, workers)
		if len(l.Agents) != len(agents) || len(l.Workers) != len(workers) {
			t.Fatalf("%d agents: placed %d agents, %d workers", n, len(l.Agents), len(l.Workers))
		}
		seen := map[[2]string]string{}
		for id, node := range l.Agents {
			check(t, id, node.X, node.Y)
			if (node.Label != "") != (n <= hud.MaxAgentLabels) {
				t.Errorf("%d agents: label %q on %s", n, node.Label, id)
			}
			k := [2]string{hud.Coord(node.X), hud.Coord(node.Y)}
			if other, ok := seen[k]; ok {
				t.Errorf("%d agents: %s and %s share a place", n, id, other)
			}
			seen[k] = id
		}
		for id, node := range l.Workers {
			check(t, id, node.X, node.Y)
		}
	}
	agents := map[string]fleet.Agent{"a": {ID: "a", ProjectID: "p"}}
	workers := map[string]fleet.Worker{"w": {ID: "w", Projects: []string{"p"}}}
	l := hud.Place(agents, workers)
	dist := func(pct float64) float64 {
		ps := hud.PlaceMissions(l, map[string]fleet.Mission{"m": {ID: "m", WorkerID: "w", AgentID: "a", Pct: pct}})
		return math.Hypot(ps["m"].X-l.Agents["a"].X, ps["m"].Y-l.Agents["a"].Y)
	}
	if !(dist(0) > dist(50) && dist(50) > dist(100)) {
		t.Errorf("a mission does not move towards its agent: %v, %v, %v", dist(0), dist(50), dist(100))
	}
}

func check(t *testing.T, id string, x, y float64) {
	t.Helper()
	if x < 0 || x > hud.TopoW || y < 0 || y > hud.TopoH || math.IsNaN(x) || math.IsNaN(y) {
		t.Errorf("%s at (%v, %v) is outside the %d×%d frame", id, x, y, hud.TopoW, hud.TopoH)
	}
}
