package live

import (
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/synth"
)

// Tenant is one tenant of the workload: its share of the missions, its
// agents and models, the users who ask for work and its budgets.
type Tenant struct {
	Project, Name, Team string
	// Weight is the tenant's share of the missions.
	Weight int
	// Users ask for the missions, Users[i] with weight UserWeights[i]
	// (1 when absent).
	Users       []string
	UserWeights []int
	Agents      []Agent
	Budgets     []Budget
}

// Agent is an agent of a tenant and the model its missions run on.
type Agent struct {
	ID, Name, Role, Model string
	Tools                 []string
}

// Budget is a budget the workload puts in place (POST /api/v1/budgets,
// or PUT when it exists, so that a run always starts with these caps).
type Budget struct {
	Scope         string       `json:"scope"`
	ProjectID     string       `json:"project_id"`
	ScopeID       string       `json:"scope_id,omitempty"`
	Period        string       `json:"period"`
	LimitUSD      fleet.Micros `json:"limit_usd"`
	WarnPct       float64      `json:"warn_pct,omitempty"`
	Action        string       `json:"action"`
	ThrottleModel string       `json:"throttle_model,omitempty"`
}

// ID is the budget's id in the API (docs/budgets.md).
func (b Budget) ID() string {
	id := b.ScopeID
	if b.Scope == fleet.BudgetScopeProject && id == "" {
		id = b.ProjectID
	}
	return fleet.BudgetID(b.Scope, b.ProjectID, id, b.Period)
}

// DefaultTenants are the three tenants of the examples: Acme's support
// desk on Claude, Globex's research on GPT-5, Initech's engineering on
// Gemini, a local Llama, Claude and a fine-tune of its own that no pricing
// table knows. Their budgets show each action: Acme
// warns, Globex throttles to a cheaper model at its daily cap, Initech
// stops at its cap, and Initech's intern has a daily cap smaller than a
// Claude Haiku mission's estimate, so their first such mission is refused
// while everyone else goes on.
func DefaultTenants() []Tenant {
	return []Tenant{
		{Project: "acme", Name: "Acme support", Team: "support", Weight: 5, Users: []string{"u-ana", "u-ben", "u-chen"},
			Agents: []Agent{
				{ID: "acme-triager", Name: "Triager", Role: "triage", Model: "claude-haiku-4-5", Tools: []string{"search.docs", "ticket.update"}},
				{ID: "acme-responder", Name: "Responder", Role: "reply", Model: "claude-sonnet-4-5", Tools: []string{"search.docs", "http.get"}},
			},
			Budgets: []Budget{
				{Scope: "project", ProjectID: "acme", Period: "monthly", LimitUSD: 2_000 * fleet.MicrosPerUSD, WarnPct: 80, Action: "warn"},
				{Scope: "team", ProjectID: "acme", ScopeID: "support", Period: "daily", LimitUSD: 250 * fleet.MicrosPerUSD, WarnPct: 80, Action: "warn"},
			}},
		{Project: "globex", Name: "Globex research", Team: "research", Weight: 3, Users: []string{"u-dana", "u-eli"},
			Agents: []Agent{
				{ID: "globex-scout", Name: "Scout", Role: "literature-search", Model: "gpt-5-mini", Tools: []string{"http.get"}},
				{ID: "globex-analyst", Name: "Analyst", Role: "analysis", Model: "gpt-5", Tools: []string{"python.exec", "sql.query"}},
			},
			Budgets: []Budget{
				{Scope: "project", ProjectID: "globex", Period: "daily", LimitUSD: 40 * fleet.MicrosPerUSD, WarnPct: 80, Action: "throttle", ThrottleModel: "gpt-5-mini"},
			}},
		{Project: "initech", Name: "Initech engineering", Team: "platform", Weight: 2,
			Users: []string{"u-fay", "u-gus", "u-intern"}, UserWeights: []int{3, 3, 2},
			Agents: []Agent{
				{ID: "initech-reviewer", Name: "Reviewer", Role: "code-review", Model: "gemini-2.5-flash", Tools: []string{"git.diff"}},
				{ID: "initech-summarizer", Name: "Summarizer", Role: "summary", Model: "llama3.1", Tools: []string{"search.docs"}},
				{ID: "initech-tagger", Name: "Tagger", Role: "tagging", Model: "claude-haiku-4-5", Tools: []string{"ticket.update"}},
				// A fine-tune nobody priced: its calls are counted as unpriced, never charged.
				{ID: "initech-coder", Name: "Coder", Role: "refactoring", Model: "initech-coder-ft-v2", Tools: []string{"git.diff", "python.exec"}},
			},
			Budgets: []Budget{
				{Scope: "project", ProjectID: "initech", Period: "daily", LimitUSD: 30 * fleet.MicrosPerUSD, WarnPct: 80, Action: "stop"},
				// Smaller than a Claude Haiku mission's estimate: the roll call's
				// first such mission of the intern is refused at once.
				{Scope: "user", ProjectID: "initech", ScopeID: "u-intern", Period: "daily", LimitUSD: 50_000, WarnPct: 50, Action: "stop"},
			}},
	}
}

// Models lists the models of t's agents, each once, in order.
func (t Tenant) Models() []string {
	var out []string
	for _, a := range t.Agents {
		seen := false
		for _, m := range out {
			seen = seen || m == a.Model
		}
		if !seen {
			out = append(out, a.Model)
		}
	}
	return out
}

// Estimate is the most a mission on model can cost with the synthetic
// agent of package worker: five steps, each a call at the top of the
// model's token ranges, with prompt caching where the provider has it.
// An unpriced model estimates zero (it is never charged).
func Estimate(pricing *fleet.Pricing, model string) fleet.Micros {
	price, ok := pricing.Lookup(model)
	if !ok {
		return 0
	}
	p := synth.ProfileOf(model, pricing)
	c := fleet.LLMCall{InputTokens: p.InMax, OutputTokens: p.OutMax}
	if p.Cache {
		c.CacheReadTokens, c.CacheWriteTokens = 10_000, 4_000
	}
	return 5 * price.Cost(c)
}
