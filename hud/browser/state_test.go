package browser_test

import (
	"cmp"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/PuerkitoBio/goquery"
	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/hud"
)

// pageState is every figure the HUD shows, read off its data-testid hooks
// (and the data attributes of the rows and nodes under them). The same
// shape is read from the browser (readJS), from server-rendered HTML
// (readHTML) and computed from the fold's view (expect), so that the three
// can be compared.
type pageState struct {
	Seq      string            `json:"seq"`
	Live     string            `json:"live"`
	Chrome   bool              `json:"chrome"`
	KPIs     map[string]string `json:"kpis"`
	Values   map[string]string `json:"values"`
	Tabs     []tabState        `json:"tabs"`
	Roster   []rosterRow       `json:"roster"`
	Agents   []nodeState       `json:"agents"`
	Workers  []nodeState       `json:"workers"`
	Missions []missionState    `json:"missions"`
	Edges    []string          `json:"edges"`
	Queue    string            `json:"queue"`
	Ticker   []tickState       `json:"ticker"`
	Gauges   []gaugeState      `json:"gauges"`
	Dossier  dossierState      `json:"dossier"`
}

type tabState struct {
	Scope  string `json:"scope"`
	Counts string `json:"counts"`
	Active bool   `json:"active"`
}

type rosterRow struct {
	ID, Name, Role, Model, State, Calls, Latency string
}

type nodeState struct {
	ID       string  `json:"id"`
	State    string  `json:"state"` // agents: st-*; workers: ws-* wk-*
	Inactive bool    `json:"inactive"`
	X        float64 `json:"x"`
	Y        float64 `json:"y"`
}

type missionState struct {
	ID     string  `json:"id"`
	Status string  `json:"status"`
	Pct    float64 `json:"pct"`
	X      float64 `json:"x"`
	Y      float64 `json:"y"`
}

type tickState struct {
	ID, Time, Project, Type, Text, Level string
}

type gaugeState struct {
	Project, Level, Pct, Spent, Limit, Period string
}

type dossierState struct {
	ID     string            `json:"id"`
	Fields map[string]string `json:"fields"`
	Tools  []string          `json:"tools"`
	Skills []string          `json:"skills"`
	Runs   [][]string        `json:"runs"`
}

// readJS reads pageState in the page.
const readJS = `(() => {
  const q = (s, e = document) => e.querySelector(s);
  const qa = (s, e = document) => Array.from(e.querySelectorAll(s));
  const tx = (e) => (e ? e.textContent.trim() : '');
  const f = (e, n) => tx(q('[data-f="' + n + '"]', e));
  const st = (cls, re) => ((cls || '').match(re) || [''])[0];
  const root = q('#hud');
  const out = { seq: root.dataset.seq, live: tx(q('[data-testid=live-indicator]')), chrome: !!q('.brand'),
    kpis: {}, values: {} };
  for (const e of qa('[data-testid^="kpi-"]')) { out.kpis[e.dataset.testid] = tx(e); out.values[e.dataset.testid] = e.dataset.value; }
  out.tabs = qa('[data-testid=tenant-tab]').map((a) => ({ scope: a.dataset.scope, counts: f(a, 'counts'), active: a.classList.contains('active') }));
  out.roster = qa('[data-testid=agent-roster] > li').map((li) => ({ ID: li.dataset.agentId, Name: f(li, 'name'), Role: f(li, 'role'),
    Model: f(li, 'model'), State: f(li, 'state'), Calls: f(li, 'calls'), Latency: f(li, 'latency') }));
  const topo = q('[data-testid=topology]');
  out.agents = qa('g[data-agent-id]', topo).map((g) => ({ id: g.dataset.agentId, state: st(g.getAttribute('class'), /st-\S+/),
    inactive: g.classList.contains('inactive'), x: Number(g.dataset.x), y: Number(g.dataset.y) }));
  out.workers = qa('g[data-worker-id]', topo).map((g) => ({ id: g.dataset.workerId,
    state: st(g.getAttribute('class'), /ws-\S+/) + ' ' + st(g.getAttribute('class'), /wk-\S+/), x: Number(g.dataset.x), y: Number(g.dataset.y) }));
  out.missions = qa('circle.mdot', topo).map((c) => ({ id: c.dataset.missionId, status: c.dataset.status, pct: Number(c.dataset.pct),
    x: Number(c.dataset.x), y: Number(c.dataset.y) }));
  out.edges = qa('line.edge', topo).map((l) => l.dataset.missionId);
  out.queue = tx(q('#queue-count'));
  out.ticker = qa('[data-testid=ticker] > li').map((li) => ({ ID: li.dataset.id, Time: f(li, 'time'), Project: f(li, 'project'),
    Type: f(li, 'type'), Text: f(li, 'text'), Level: st(li.getAttribute('class'), /lvl-\S+/) }));
  out.gauges = qa('[data-testid=budget-gauge]').map((g) => ({ Project: g.dataset.project, Level: st(g.getAttribute('class'), /lv-\S+/),
    Pct: f(g, 'pct'), Spent: f(g, 'spent'), Limit: f(g, 'limit'), Period: f(g, 'period') }));
  const d = q('[data-testid=dossier]');
  out.dossier = { id: d.classList.contains('empty') ? '' : d.dataset.agentId, fields: {}, tools: qa('[data-list=tools] .chip', d).map(tx),
    skills: qa('[data-list=skills] .chip', d).map(tx), runs: qa('[data-list=runs] tr', d).map((tr) => qa('td', tr).map(tx)) };
  if (out.dossier.id) for (const e of qa('.dz-body [data-f]', d)) if (!e.closest('[data-list]')) out.dossier.fields[e.dataset.f] = tx(e);
  return out;
})()`

var (
	stRE  = regexp.MustCompile(`st-\S+`)
	wsRE  = regexp.MustCompile(`ws-\S+`)
	wkRE  = regexp.MustCompile(`wk-\S+`)
	lvlRE = regexp.MustCompile(`lvl-\S+`)
	lvRE  = regexp.MustCompile(`lv-\S+`)
)

// readHTML reads pageState from server-rendered HTML, as readJS does in
// the browser.
func readHTML(doc *goquery.Document) pageState {
	tx := func(s *goquery.Selection) string { return strings.TrimSpace(s.Text()) }
	f := func(s *goquery.Selection, n string) string { return tx(s.Find(`[data-f="` + n + `"]`).First()) }
	attr := func(s *goquery.Selection, n string) string { v, _ := s.Attr(n); return v }
	num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	root := doc.Find("#hud")
	out := pageState{
		Seq: attr(root, "data-seq"), Live: tx(doc.Find("[data-testid=live-indicator]")), Chrome: doc.Find(".brand").Length() > 0,
		KPIs: map[string]string{}, Values: map[string]string{},
	}
	// Templates hold empty rows for the script: leave them out.
	doc.Find("template").Remove()
	doc.Find(`[data-testid^="kpi-"]`).Each(func(_ int, s *goquery.Selection) {
		out.KPIs[attr(s, "data-testid")] = tx(s)
		out.Values[attr(s, "data-testid")] = attr(s, "data-value")
	})
	doc.Find("[data-testid=tenant-tab]").Each(func(_ int, s *goquery.Selection) {
		out.Tabs = append(out.Tabs, tabState{Scope: attr(s, "data-scope"), Counts: f(s, "counts"), Active: s.HasClass("active")})
	})
	doc.Find("[data-testid=agent-roster] > li").Each(func(_ int, s *goquery.Selection) {
		out.Roster = append(out.Roster, rosterRow{ID: attr(s, "data-agent-id"), Name: f(s, "name"), Role: f(s, "role"),
			Model: f(s, "model"), State: f(s, "state"), Calls: f(s, "calls"), Latency: f(s, "latency")})
	})
	topo := doc.Find("[data-testid=topology]")
	topo.Find("g[data-agent-id]").Each(func(_ int, s *goquery.Selection) {
		out.Agents = append(out.Agents, nodeState{ID: attr(s, "data-agent-id"), State: stRE.FindString(attr(s, "class")),
			Inactive: s.HasClass("inactive"), X: num(attr(s, "data-x")), Y: num(attr(s, "data-y"))})
	})
	topo.Find("g[data-worker-id]").Each(func(_ int, s *goquery.Selection) {
		c := attr(s, "class")
		out.Workers = append(out.Workers, nodeState{ID: attr(s, "data-worker-id"), State: wsRE.FindString(c) + " " + wkRE.FindString(c),
			X: num(attr(s, "data-x")), Y: num(attr(s, "data-y"))})
	})
	topo.Find("circle.mdot").Each(func(_ int, s *goquery.Selection) {
		out.Missions = append(out.Missions, missionState{ID: attr(s, "data-mission-id"), Status: attr(s, "data-status"),
			Pct: num(attr(s, "data-pct")), X: num(attr(s, "data-x")), Y: num(attr(s, "data-y"))})
	})
	topo.Find("line.edge").Each(func(_ int, s *goquery.Selection) { out.Edges = append(out.Edges, attr(s, "data-mission-id")) })
	out.Queue = tx(doc.Find("#queue-count"))
	doc.Find("[data-testid=ticker] > li").Each(func(_ int, s *goquery.Selection) {
		out.Ticker = append(out.Ticker, tickState{ID: attr(s, "data-id"), Time: f(s, "time"), Project: f(s, "project"),
			Type: f(s, "type"), Text: f(s, "text"), Level: lvlRE.FindString(attr(s, "class"))})
	})
	doc.Find("[data-testid=budget-gauge]").Each(func(_ int, s *goquery.Selection) {
		out.Gauges = append(out.Gauges, gaugeState{Project: attr(s, "data-project"), Level: lvRE.FindString(attr(s, "class")),
			Pct: f(s, "pct"), Spent: f(s, "spent"), Limit: f(s, "limit"), Period: f(s, "period")})
	})
	d := doc.Find("[data-testid=dossier]")
	out.Dossier.Fields = map[string]string{}
	if !d.HasClass("empty") {
		out.Dossier.ID = attr(d, "data-agent-id")
		d.Find(".dz-body [data-f]").Each(func(_ int, s *goquery.Selection) {
			if s.Closest("[data-list]").Length() == 0 {
				out.Dossier.Fields[attr(s, "data-f")] = tx(s)
			}
		})
	}
	d.Find("[data-list=tools] .chip").Each(func(_ int, s *goquery.Selection) { out.Dossier.Tools = append(out.Dossier.Tools, tx(s)) })
	d.Find("[data-list=skills] .chip").Each(func(_ int, s *goquery.Selection) { out.Dossier.Skills = append(out.Dossier.Skills, tx(s)) })
	d.Find("[data-list=runs] tr").Each(func(_ int, s *goquery.Selection) {
		var row []string
		s.Find("td").Each(func(_ int, td *goquery.Selection) { row = append(row, tx(td)) })
		out.Dossier.Runs = append(out.Dossier.Runs, row)
	})
	return out
}

// expect is what the HUD must show for the fold's view v of scope: every
// figure formatted by the hud package, every node where hud.Place puts it.
// dossier names the agent the dossier shows ("" for the default, the first
// of the roster).
func expect(v fleet.View, scope string, admin bool, projects []string, dossier string) pageState {
	ps := v.Posture
	out := pageState{
		KPIs: map[string]string{
			"kpi-active-agents":      hud.FormatInt(int64(ps.ActiveAgents)),
			"kpi-missions-in-flight": hud.FormatInt(int64(ps.MissionsInFlight)),
			"kpi-runs-24h":           hud.FormatInt(ps.Runs24h),
			"kpi-tokens-24h":         hud.FormatInt(ps.Tokens24h),
			"kpi-spend-today":        hud.FormatUSD(ps.SpendToday),
			"kpi-errors-1h":          hud.FormatInt(ps.Errors1h),
			"kpi-workers-online":     hud.FormatInt(int64(ps.WorkersOnline)),
		},
		Values: map[string]string{
			"kpi-active-agents":      strconv.Itoa(ps.ActiveAgents),
			"kpi-missions-in-flight": strconv.Itoa(ps.MissionsInFlight),
			"kpi-runs-24h":           strconv.FormatInt(ps.Runs24h, 10),
			"kpi-tokens-24h":         strconv.FormatInt(ps.Tokens24h, 10),
			"kpi-spend-today":        ps.SpendToday.String(),
			"kpi-errors-1h":          strconv.FormatInt(ps.Errors1h, 10),
			"kpi-workers-online":     strconv.Itoa(ps.WorkersOnline),
		},
	}
	page := hud.Page{Scope: scope, View: v, Admin: admin, Projects: projects}
	for _, t := range page.Tabs() {
		ts := tabState{Scope: t.Scope, Active: t.Active}
		if t.Known {
			ts.Counts = hud.TabCounts(t.Agents, t.Missions, t.SpendToday)
		}
		out.Tabs = append(out.Tabs, ts)
	}
	for _, a := range hud.SortedAgents(v) {
		out.Roster = append(out.Roster, rosterRow{ID: a.ID, Name: a.Name, Role: a.Role, Model: a.Model, State: a.State,
			Calls: hud.FormatInt(hud.Calls(a)), Latency: hud.FormatLatency(a.LatencyMS)})
	}
	l := hud.Place(v.Agents, v.Workers)
	for id, n := range l.Agents {
		a := v.Agents[id]
		out.Agents = append(out.Agents, nodeState{ID: id, State: "st-" + a.State, Inactive: !a.Active, X: n.X, Y: n.Y})
	}
	for id, n := range l.Workers {
		w := v.Workers[id]
		out.Workers = append(out.Workers, nodeState{ID: id, State: "ws-" + w.Status + " wk-" + w.State, X: n.X, Y: n.Y})
	}
	queued := 0
	for id, p := range hud.PlaceMissions(l, v.Missions) {
		m := v.Missions[id]
		out.Missions = append(out.Missions, missionState{ID: id, Status: m.Status, Pct: m.Pct, X: p.X, Y: p.Y})
		if p.HasEdge {
			out.Edges = append(out.Edges, id)
		}
		if p.Queued {
			queued++
		}
	}
	out.Queue = strconv.Itoa(queued)
	for _, e := range hud.NewestFirst(v.Ticker) {
		out.Ticker = append(out.Ticker, tickState{ID: e.ID, Time: hud.FormatClock(e.Time), Project: e.ProjectID, Type: e.Type,
			Text: e.Text, Level: "lvl-" + e.Level})
	}
	for _, g := range hud.Gauges(v) {
		out.Gauges = append(out.Gauges, gaugeState{Project: g.ProjectID, Level: "lv-" + g.Level, Pct: hud.FormatPct(g.Budget.Pct),
			Spent: hud.FormatUSD(g.Budget.SpentUSD), Limit: hud.FormatUSD(g.Budget.LimitUSD), Period: g.PeriodAction})
	}
	out.Dossier.Fields = map[string]string{}
	if dossier == "" {
		if sel, ok := page.Selected(); ok {
			dossier = sel.ID
		}
	}
	if a, ok := v.Agents[dossier]; ok {
		out.Dossier = expectDossier(a)
	}
	return out
}

func expectDossier(a fleet.Agent) dossierState {
	version := ""
	if a.Version != "" {
		version = "· v" + a.Version
	}
	d := dossierState{ID: a.ID, Tools: a.Tools, Skills: a.Skills, Fields: map[string]string{
		"role": a.Role, "version": version, "name": a.Name, "id": a.ID, "state": a.State,
		"description": a.Description, "model": a.Model,
		"runs": hud.FormatInt(a.Runs), "runs_failed": hud.FormatInt(a.RunsFailed),
		"llm_calls": hud.FormatInt(a.LLMCalls), "tool_calls": hud.FormatInt(a.ToolCalls),
		"error_rate": hud.ErrorRate(a), "latency": hud.FormatLatency(a.LatencyMS),
		"tokens": hud.FormatInt(a.Tokens), "spend": hud.FormatUSD(a.Spend),
		"worker": orDash(a.WorkerID), "mission": orDash(a.MissionID), "last_seen": hud.FormatClock(a.LastSeen),
		"tools_n": strconv.Itoa(len(a.Tools)), "skills_n": strconv.Itoa(len(a.Skills)),
	}}
	for _, r := range a.RecentRuns {
		d.Runs = append(d.Runs, []string{r.ID, r.Status, hud.FormatLatency(r.DurationMS), hud.FormatInt(r.Calls),
			hud.FormatInt(r.Tokens), hud.FormatUSD(r.Spend)})
	}
	return d
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// diffState compares what a page shows with what it should show: every
// figure exactly, node positions within a tenth (the script and the server
// compute them with different sin and cos). Seq, Live and Chrome are the
// callers' business.
func diffState(got, want pageState) string {
	norm := func(p pageState) pageState {
		p.Seq, p.Live, p.Chrome = "", "", false
		byID := func(a, b nodeState) int { return cmp.Compare(a.ID, b.ID) }
		p.Agents, p.Workers = slices.Clone(p.Agents), slices.Clone(p.Workers)
		slices.SortFunc(p.Agents, byID)
		slices.SortFunc(p.Workers, byID)
		p.Missions = slices.Clone(p.Missions)
		slices.SortFunc(p.Missions, func(a, b missionState) int { return cmp.Compare(a.ID, b.ID) })
		p.Edges = slices.Clone(p.Edges)
		slices.Sort(p.Edges)
		return p
	}
	return gocmp.Diff(norm(want), norm(got),
		cmpopts.EquateEmpty(),
		gocmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) <= 0.15 }),
	)
}
