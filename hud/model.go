package hud

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sagewai/observatory/fleet"
)

// Page is everything the HUD page shows at its first paint: one scope's
// snapshot and who is looking at it.
type Page struct {
	// Scope is fleet.ScopeAll or one project id; Epoch and Seq are the
	// snapshot's, so the script knows where the page stands.
	Scope string
	Epoch string
	Seq   uint64
	View  fleet.View
	// Projects are the tenant tabs besides "all": every project the viewer
	// may open. A project viewer gets its own project only.
	Projects []string
	// Admin viewers may open the "*" scope (the "all" tab).
	Admin bool
	// Embed drops the chrome (brand, user, log out) for an iframe.
	Embed bool
	// EmbedToken is the ?embed_token= the page was opened with, kept in the
	// tabs' links.
	EmbedToken string
	// User is the name shown in the chrome.
	User string
	// Assets is a version tag appended to the static URLs.
	Assets string
}

// Tab is one tenant tab.
type Tab struct {
	Scope  string // fleet.ScopeAll or a project id
	Label  string
	Code   string // three letters
	Active bool
	// Known is false for a project outside the current scope: the page has
	// no live figures for it.
	Known            bool
	Agents, Missions int
	SpendToday       fleet.Micros
	Href             string
}

// Tabs returns the tenant tabs of p: "all" for admins, then one per
// project, each with its own figures when the current scope holds them.
func (p Page) Tabs() []Tab {
	var tabs []Tab
	if p.Admin {
		ps := p.View.Posture
		tabs = append(tabs, Tab{
			Scope: fleet.ScopeAll, Label: "All projects", Code: "*", Active: p.Scope == fleet.ScopeAll,
			Known: p.Scope == fleet.ScopeAll, Agents: ps.Agents, Missions: ps.MissionsInFlight, SpendToday: ps.SpendToday,
			Href: p.href(fleet.ScopeAll),
		})
	}
	ids := slices.Clone(p.Projects)
	for id := range p.View.Projects {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		t := Tab{Scope: id, Label: id, Code: Code(id), Active: p.Scope == id, Href: p.href(id)}
		if pr, ok := p.View.Projects[id]; ok {
			t.Known, t.Agents, t.Missions, t.SpendToday = true, pr.Agents, pr.MissionsInFlight, pr.SpendToday
		}
		tabs = append(tabs, t)
	}
	return tabs
}

// Code is the badge of a project, at most three characters: its first
// letters (ACM for acme), or, when it ends in digits, its first letter and
// last two digits, so that tenant01 and tenant02 stay apart (T01, T02).
// static/hud.js computes the same.
func Code(project string) string {
	if project == fleet.ScopeAll {
		return "*"
	}
	var up []byte
	for _, r := range strings.ToUpper(project) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			up = append(up, byte(r))
		}
	}
	i := len(up)
	for i > 0 && up[i-1] >= '0' && up[i-1] <= '9' {
		i--
	}
	if i > 0 && i < len(up) {
		d := up[i:]
		if len(d) > 2 {
			d = d[len(d)-2:]
		}
		prefix := up[:min(i, 3-len(d))]
		return string(prefix) + string(d)
	}
	return string(up[:min(len(up), 3)])
}

// href is the URL of the page for scope, keeping the embed parameters.
func (p Page) href(scope string) string {
	q := url.Values{}
	if scope != fleet.ScopeAll {
		q.Set("project", scope)
	} else if !p.Admin {
		return "/hud"
	}
	if p.Embed {
		q.Set("embed", "1")
	}
	if p.EmbedToken != "" {
		q.Set("embed_token", p.EmbedToken)
	}
	if len(q) == 0 {
		return "/hud"
	}
	return "/hud?" + q.Encode()
}

// ScopeLabel names the current scope for the chrome.
func (p Page) ScopeLabel() string {
	if p.Scope == fleet.ScopeAll {
		return "ALL PROJECTS"
	}
	return strings.ToUpper(p.Scope)
}

// SortedAgents returns the agents in roster order: by project, then id.
func SortedAgents(v fleet.View) []fleet.Agent {
	out := make([]fleet.Agent, 0, len(v.Agents))
	for _, a := range v.Agents {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b fleet.Agent) int {
		return cmp.Or(cmp.Compare(a.ProjectID, b.ProjectID), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Selected is the agent the dossier opens on: the first of the roster.
func (p Page) Selected() (fleet.Agent, bool) {
	as := SortedAgents(p.View)
	if len(as) == 0 {
		return fleet.Agent{}, false
	}
	return as[0], true
}

// NewestFirst returns the ticker entries newest first.
func NewestFirst(t []fleet.TickerEntry) []fleet.TickerEntry {
	out := slices.Clone(t)
	slices.Reverse(out)
	return out
}

// WarnPct is where a budget gauge turns amber when the budget's own warn
// threshold is not known: the default of DESIGN §10.
const WarnPct = 80

// Gauge is one project's budget gauge.
type Gauge struct {
	ProjectID    string
	Budget       fleet.BudgetStatus
	Level        string  // ok, warn or over
	Fill         float64 // 0–100, the bar's length
	Status       string  // the last budget.* notice: warning, exceeded, throttled
	PeriodAction string
}

// Gauges returns a gauge for every project of v with a budget, by project.
func Gauges(v fleet.View) []Gauge {
	var out []Gauge
	for id, p := range v.Projects {
		if p.Budget == nil {
			continue
		}
		g := Gauge{ProjectID: id, Budget: *p.Budget, Fill: clamp(p.Budget.Pct, 0, 100)}
		for _, b := range v.Budgets {
			if b.ProjectID == id && b.Scope == fleet.BudgetScopeProject && b.ScopeID == id && b.Period == p.Budget.Period {
				g.Status = b.Status
			}
		}
		g.Level = BudgetLevel(p.Budget.Pct, g.Status)
		g.PeriodAction = periodAction(*p.Budget)
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b Gauge) int { return cmp.Compare(a.ProjectID, b.ProjectID) })
	return out
}

// BudgetLevel colours a gauge: over at the cap, warn from the warn
// threshold (or once the server has sent a budget notice), ok below.
func BudgetLevel(pct float64, status string) string {
	switch {
	case pct >= 100 || status == "exceeded":
		return "over"
	case pct >= WarnPct || status == "warning" || status == "throttled":
		return "warn"
	default:
		return "ok"
	}
}

func periodAction(b fleet.BudgetStatus) string {
	period := b.Period
	if period == "" {
		period = "period"
	}
	return period + " · " + b.Action
}

// SpendBudget is the line under the spend KPI: the share of the budget
// spent, or that no cap is set.
func SpendBudget(p fleet.Posture) string {
	if p.BudgetLimit <= 0 {
		return "no cap set"
	}
	return FormatPct(p.BudgetPct) + " of " + FormatUSD(p.BudgetLimit)
}

// WorkersLine is the note under the workers KPI.
func WorkersLine(p fleet.Posture) string {
	return "of " + FormatInt(int64(p.Workers))
}

// Len is the length of a figure in characters, for the stylesheet to fit
// long figures in their tile (data-len).
func Len(s string) string { return strconv.Itoa(utf8.RuneCountInString(s)) }
