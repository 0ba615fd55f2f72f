package costreport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/rig"
)

// tenant is one tenant of the cost example.
type tenant struct {
	project, team, story string
	users                []string
	agents               []agent
	budget               fleet.BudgetLimit
}

// agent is an agent and the shape of its calls.
type agent struct {
	id, role, model, provider string
	calls                     [2]int   // min, max LLM calls per run
	in, out, cacheRead        [2]int64 // token ranges per call
	cacheWrite                [2]int64
	tool                      string
}

var tenants = []tenant{
	{project: "northwind", team: "support", story: "customer support on Anthropic models",
		users: []string{"u-ana", "u-ben", "u-chen"},
		agents: []agent{
			{id: "northwind-support-triager", role: "triage", model: "claude-haiku-4-5", provider: "anthropic",
				calls: [2]int{2, 3}, in: [2]int64{1_500, 4_000}, out: [2]int64{150, 500}, cacheRead: [2]int64{8_000, 20_000}, tool: "zendesk.search"},
			{id: "northwind-support-responder", role: "reply", model: "claude-sonnet-4-5", provider: "anthropic",
				calls: [2]int{3, 5}, in: [2]int64{2_000, 6_000}, out: [2]int64{500, 1_500}, cacheRead: [2]int64{10_000, 30_000},
				cacheWrite: [2]int64{0, 4_000}, tool: "kb.lookup"},
		},
		budget: fleet.BudgetLimit{Scope: fleet.BudgetScopeProject, ProjectID: "northwind", Period: fleet.PeriodMonthly,
			LimitUSD: 50_000_000, Action: fleet.ActionStop}},
	{project: "contoso", team: "research", story: "research on OpenAI models, summaries on a local Llama",
		users: []string{"u-dana", "u-eli"},
		agents: []agent{
			{id: "contoso-research-scout", role: "literature-search", model: "gpt-5-mini", provider: "openai",
				calls: [2]int{2, 4}, in: [2]int64{3_000, 8_000}, out: [2]int64{400, 1_200}, cacheRead: [2]int64{0, 6_000}, tool: "arxiv.search"},
			{id: "contoso-research-analyst", role: "analysis", model: "gpt-5", provider: "openai",
				calls: [2]int{2, 4}, in: [2]int64{5_000, 15_000}, out: [2]int64{1_000, 3_000}, cacheRead: [2]int64{0, 20_000}, tool: "python.exec"},
			{id: "contoso-research-summarizer", role: "summary", model: "ollama/llama3.1:8b", provider: "local",
				calls: [2]int{1, 3}, in: [2]int64{4_000, 12_000}, out: [2]int64{300, 900}, tool: "docs.write"},
			{id: "contoso-research-classifier", role: "tagging", model: "contoso-finetune-7b", provider: "self-hosted",
				calls: [2]int{1, 1}, in: [2]int64{500, 1_500}, out: [2]int64{20, 60}, tool: "tags.write"},
		},
		budget: fleet.BudgetLimit{Scope: fleet.BudgetScopeProject, ProjectID: "contoso", Period: fleet.PeriodMonthly,
			LimitUSD: 20_000_000, Action: fleet.ActionThrottle, ThrottleModel: "gpt-5-mini"}},
}

// Figures is `observatory cost --json`.
type Figures struct {
	ByProject     []ProjectCost     `json:"by_project"`
	ByModel       []ModelCost       `json:"by_model"`
	GrandTotalUSD fleet.Micros      `json:"grand_total_usd"`
	LocalVsCloud  []ProviderMix     `json:"local_vs_cloud"`
	Preflight     []PreflightResult `json:"preflight"`
	// The same money as three independent counts: the budget ledger, the
	// fold (GET /api/v1/fleet) and a rollup read back from FLEET.
	LedgerUSD      map[string]fleet.Micros `json:"ledger_usd"`
	FoldUSD        map[string]fleet.Micros `json:"fold_usd"`
	RollupUSD      map[string]fleet.Micros `json:"rollup_usd"`
	Agree          bool                    `json:"agree"`
	UnpricedCalls  int64                   `json:"unpriced_calls"`
	UnpricedModels []string                `json:"unpriced_models"`
	Missions       int                     `json:"missions"`
	PricingAsOf    string                  `json:"pricing_as_of"`
}

// ProjectCost is one project's share of the money.
type ProjectCost struct {
	ProjectID string       `json:"project_id"`
	CostUSD   fleet.Micros `json:"cost_usd"`
	Tokens    int64        `json:"tokens"`
	Runs      int64        `json:"runs"`
	Calls     int64        `json:"calls"`
	SharePct  float64      `json:"share_pct"`
}

// ModelCost is one model's share of the money.
type ModelCost struct {
	Model    string       `json:"model"`
	Provider string       `json:"provider"`
	CostUSD  fleet.Micros `json:"cost_usd"`
	Tokens   int64        `json:"tokens"`
	Calls    int64        `json:"calls"`
	Unpriced bool         `json:"unpriced,omitempty"`
	SharePct float64      `json:"share_pct"`
}

// ProviderMix is the money and tokens of local or of cloud models.
type ProviderMix struct {
	Kind      string       `json:"kind"` // local or cloud
	CostUSD   fleet.Micros `json:"cost_usd"`
	Tokens    int64        `json:"tokens"`
	Calls     int64        `json:"calls"`
	TokensPct float64      `json:"tokens_pct"`
}

// PreflightResult is what the budget gate says about one more mission of
// a tenant's costliest kind.
type PreflightResult struct {
	ProjectID   string               `json:"project_id"`
	Budget      string               `json:"budget"`
	LimitUSD    fleet.Micros         `json:"limit_usd"`
	SpentUSD    fleet.Micros         `json:"spent_usd"`
	Pct         float64              `json:"pct"`
	NextUSD     fleet.Micros         `json:"next_mission_usd"`
	Decision    fleet.BudgetDecision `json:"decision"`
	RunwayTimes int64                `json:"missions_left"`
}

// Config configures a run. Zero values mean the defaults.
type Config struct {
	// NATSURL runs on this NATS (a running server's) instead of an
	// embedded one in a temporary directory.
	NATSURL string
	// NATSCreds is the credentials file of a NATSURL user allowed what
	// serve's own user is (an operator-mode NATS admits nobody else).
	NATSCreds string
	// Pricing prices the calls (default fleet.DefaultPricing).
	Pricing *fleet.Pricing
	// Missions per tenant (default 12).
	Missions int
	// Seed seeds the workload (the command's default is 34).
	Seed uint64
	// Out receives the header and the run trace (default: discard).
	Out io.Writer
	// Now is the run's clock (default time.Now); see the package doc.
	Now func() time.Time
	// Logger receives the pipeline's logs (default: discard).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Pricing == nil {
		c.Pricing = fleet.DefaultPricing()
	}
	if c.Missions == 0 {
		c.Missions = 12
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Run publishes the cost-tagged work of every tenant through the real
// pipeline and reads back where the money went. Figures.Agree says
// whether the three counts of the money agree.
func Run(ctx context.Context, cfg Config) (Figures, error) {
	cfg.defaults()
	p, err := rig.Start(ctx, rig.Config{NATSURL: cfg.NATSURL, NATSCreds: cfg.NATSCreds, Pricing: cfg.Pricing, Logger: cfg.Logger, Now: cfg.Now})
	if err != nil {
		return Figures{}, err
	}
	defer p.Stop()
	out := cfg.Out
	fmt.Fprintf(out, "observatory cost: %d missions for each of %d tenants, priced by the table of %s\n\n", cfg.Missions, len(tenants), p.Pricing.AsOf)

	// Before: the budgets, and what the fold and the ledger already hold
	// (nothing, unless this runs against a live server).
	before := map[string]fleet.Micros{}
	foldBefore, err := foldSpend(ctx, p)
	if err != nil {
		return Figures{}, err
	}
	budgets := map[string]fleet.BudgetLimit{}
	for _, t := range tenants {
		st, err := ensureBudget(ctx, p, t.budget)
		if err != nil {
			return Figures{}, fmt.Errorf("budget of %s: %w", t.project, err)
		}
		budgets[t.project], before[t.project] = st.Budget, st.Spent
	}
	start := cfg.Now().UTC()

	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc05))
	r := run{p: p, rng: rng, out: out, worker: "w-cost-" + strings.ToLower(start.Format("150405"))}
	fmt.Fprintln(out, "Run trace")
	var last uint64
	for _, t := range tenants {
		if last, err = r.setup(ctx, t); err != nil {
			return Figures{}, err
		}
	}
	for i := range cfg.Missions {
		for _, t := range tenants {
			seq, err := r.mission(ctx, t, i)
			if err != nil {
				return Figures{}, err
			}
			last = max(last, seq)
		}
	}
	if err := p.Settle(ctx, last); err != nil {
		return Figures{}, err
	}
	end := cfg.Now().UTC().Add(time.Millisecond)

	fig, err := report(ctx, p, start, end, before, foldBefore, budgets)
	if err != nil {
		return Figures{}, err
	}
	fig.Missions = r.missions
	return fig, nil
}

// ensureBudget creates b unless its scope and period have a budget
// already, and returns the one in force.
func ensureBudget(ctx context.Context, p *rig.Pipeline, b fleet.BudgetLimit) (fleet.BudgetStanding, error) {
	st, err := p.Ledger.CreateBudget(ctx, b)
	if errors.Is(err, fleet.ErrBudgetExists) {
		if err := b.Normalize(); err != nil {
			return fleet.BudgetStanding{}, err
		}
		return p.Ledger.Budget(ctx, b.ID)
	}
	return st, err
}

// run publishes the example's events as a fleet would.
type run struct {
	p        *rig.Pipeline
	rng      *rand.Rand
	out      io.Writer
	worker   string
	missions int
}

func eventData(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// setup announces the tenant's worker and agents.
func (r *run) setup(ctx context.Context, t tenant) (uint64, error) {
	seq, err := r.p.Publish(ctx, fleet.Event{Type: fleet.TypeWorkerJoined, ProjectID: t.project, WorkerID: r.worker + "-" + t.project,
		Data: eventData(fleet.WorkerJoined{Host: "cost-example", Version: "example", Capacity: 4})})
	if err != nil {
		return 0, err
	}
	for _, a := range t.agents {
		if seq, err = r.p.Publish(ctx, fleet.Event{Type: fleet.TypeAgentCreated, ProjectID: t.project, TeamID: t.team, AgentID: a.id,
			Data: eventData(fleet.AgentCreated{Name: a.id, Role: a.role, Model: a.model, Version: "1", Tools: []string{a.tool}, Skills: []string{}})}); err != nil {
			return 0, err
		}
	}
	return seq, nil
}

func (r *run) between(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + r.rng.Int64N(hi-lo+1)
}

// mission runs one mission of tenant t: reserve its estimated maximum,
// publish its run and calls, settle. It returns the last sequence.
func (r *run) mission(ctx context.Context, t tenant, i int) (uint64, error) {
	a := t.agents[i%len(t.agents)] // every agent works, in turn
	user := t.users[r.rng.IntN(len(t.users))]
	mission := fmt.Sprintf("m-%s-%03d", t.project, i+1)
	runID := fmt.Sprintf("r-%s-%03d", t.project, i+1)
	worker := r.worker + "-" + t.project
	calls := int(r.between(int64(a.calls[0]), int64(a.calls[1])))
	// The estimate is the most the plan can cost: every call at the top of
	// its ranges.
	var estimate fleet.Micros
	if price, ok := r.p.Pricing.Lookup(a.model); ok {
		estimate = price.Cost(fleet.LLMCall{InputTokens: a.in[1], OutputTokens: a.out[1], CacheReadTokens: a.cacheRead[1],
			CacheWriteTokens: a.cacheWrite[1]}) * fleet.Micros(a.calls[1])
	}
	dec, err := r.p.Ledger.Reserve(ctx, fleet.BudgetRequest{ProjectID: t.project, TeamID: t.team, UserID: user,
		Model: a.model, Estimate: estimate, Ref: mission})
	if err != nil {
		return 0, err
	}
	if !dec.Allowed {
		fmt.Fprintf(r.out, "  %-10s %-17s refused: %s\n", t.project, mission, fleet.BreachText(dec.Breaches[0]))
		return 0, nil
	}
	model := dec.Model
	env := fleet.Event{ProjectID: t.project, TeamID: t.team, UserID: user, WorkerID: worker, MissionID: mission}
	ev := env
	ev.Type, ev.Data = fleet.TypeMissionQueued, eventData(fleet.MissionQueued{Title: fmt.Sprintf("%s: %s job %d", t.team, a.role, i+1), Priority: "normal"})
	if _, err := r.p.Publish(ctx, ev); err != nil {
		return 0, err
	}
	ev = env
	ev.Type = fleet.TypeMissionClaimed
	if _, err := r.p.Publish(ctx, ev); err != nil {
		return 0, err
	}
	env.AgentID, env.RunID = a.id, runID
	ev = env
	ev.Type, ev.Data = fleet.TypeRunStarted, eventData(fleet.RunStarted{Model: model})
	if _, err := r.p.Publish(ctx, ev); err != nil {
		return 0, err
	}
	var cost fleet.Micros
	var tokens int64
	for range calls {
		c := fleet.LLMCall{Provider: a.provider, Model: model, InputTokens: r.between(a.in[0], a.in[1]),
			OutputTokens: r.between(a.out[0], a.out[1]), CacheReadTokens: r.between(a.cacheRead[0], a.cacheRead[1]),
			CacheWriteTokens: r.between(a.cacheWrite[0], a.cacheWrite[1]), LatencyMS: float64(r.between(300, 4_000)), Status: "ok"}
		if price, ok := r.p.Pricing.Lookup(c.Model); ok {
			cost += price.Cost(c)
		}
		tokens += c.Tokens()
		ev = env
		ev.Type, ev.Data = fleet.TypeLLMCall, eventData(c)
		if _, err := r.p.Publish(ctx, ev); err != nil {
			return 0, err
		}
		ev = env
		ev.Type, ev.Data = fleet.TypeToolCall, eventData(fleet.ToolCall{Tool: a.tool, LatencyMS: float64(r.between(20, 400)), Status: "ok"})
		if _, err := r.p.Publish(ctx, ev); err != nil {
			return 0, err
		}
	}
	ev = env
	ev.Type, ev.Data = fleet.TypeRunCompleted, eventData(fleet.Outcome{DurationMS: float64(r.between(2_000, 20_000))})
	if _, err := r.p.Publish(ctx, ev); err != nil {
		return 0, err
	}
	ev = env
	ev.AgentID, ev.RunID = "", ""
	ev.Type, ev.Data = fleet.TypeMissionCompleted, eventData(fleet.Outcome{DurationMS: float64(r.between(3_000, 25_000))})
	seq, err := r.p.Publish(ctx, ev)
	if err != nil {
		return 0, err
	}
	if err := r.p.Ledger.Settle(ctx, dec.Reservation, cost); err != nil {
		return 0, err
	}
	r.missions++
	price := "$" + fourDecimals(cost)
	if _, ok := r.p.Pricing.Lookup(model); !ok {
		price = "unpriced"
	}
	fmt.Fprintf(r.out, "  %-10s %-17s %-8s %-7s %-20s %s %8s tok  %-10s reserved $%s\n", t.project, mission, t.team, user,
		model, plural(calls, "call"), formatThousands(tokens), price, estimate.Cents())
	return seq, nil
}

// foldSpend returns every project's total spend as the fold has it.
func foldSpend(ctx context.Context, p *rig.Pipeline) (map[string]fleet.Micros, error) {
	v, _, err := p.Hub.View(ctx, fleet.ScopeAll)
	if err != nil {
		return nil, err
	}
	out := map[string]fleet.Micros{}
	for id, pr := range v.Projects {
		out[id] = pr.SpendTotal
	}
	return out, nil
}

// report reads the run back three ways and builds the figures.
func report(ctx context.Context, p *rig.Pipeline, start, end time.Time, before, foldBefore map[string]fleet.Micros,
	budgets map[string]fleet.BudgetLimit) (Figures, error) {
	fig := Figures{LedgerUSD: map[string]fleet.Micros{}, FoldUSD: map[string]fleet.Micros{}, RollupUSD: map[string]fleet.Micros{},
		PricingAsOf: p.Pricing.AsOf, UnpricedModels: []string{}, Agree: true}
	foldAfter, err := foldSpend(ctx, p)
	if err != nil {
		return fig, err
	}
	models := map[string]*ModelCost{}
	mix := map[string]*ProviderMix{"local": {Kind: "local"}, "cloud": {Kind: "cloud"}}
	var allTokens int64
	for _, t := range tenants {
		r, err := p.Costs.Rollup(ctx, t.project, start, end)
		if err != nil {
			return fig, err
		}
		tot := r.Total()
		fig.ByProject = append(fig.ByProject, ProjectCost{ProjectID: t.project, CostUSD: tot.Cost, Tokens: tot.Tokens, Runs: tot.Runs, Calls: tot.Calls})
		fig.GrandTotalUSD += tot.Cost
		fig.RollupUSD[t.project] = tot.Cost
		fig.FoldUSD[t.project] = foldAfter[t.project] - foldBefore[t.project]
		st, err := p.Ledger.Budget(ctx, budgets[t.project].ID)
		if err != nil {
			return fig, err
		}
		fig.LedgerUSD[t.project] = st.Spent - before[t.project]
		if fig.LedgerUSD[t.project] != tot.Cost || fig.FoldUSD[t.project] != tot.Cost {
			fig.Agree = false
		}
		fig.UnpricedCalls += tot.Unpriced
		for _, m := range r.UnpricedModels() {
			fig.UnpricedModels = append(fig.UnpricedModels, m)
		}
		for _, g := range r.Groups(fleet.GroupModel) {
			mc := models[g.Key]
			if mc == nil {
				mc = &ModelCost{Model: g.Key, Provider: providerOf(p.Pricing, g.Key), Unpriced: g.Unpriced > 0}
				models[g.Key] = mc
			}
			mc.CostUSD += g.Cost
			mc.Tokens += g.Tokens
			mc.Calls += g.Calls
		}
		allTokens += tot.Tokens
		for _, g := range r.Groups(fleet.GroupProvider) {
			k := "cloud"
			if g.Key == fleet.ProviderLocal {
				k = "local"
			}
			mix[k].CostUSD += g.Cost
			mix[k].Tokens += g.Tokens
			mix[k].Calls += g.Calls
		}
		// The pre-flight: what the gate says now about one more mission of
		// the tenant's costliest kind.
		next := fleet.Micros(0)
		model := ""
		for _, a := range t.agents {
			if price, ok := p.Pricing.Lookup(a.model); ok {
				e := price.Cost(fleet.LLMCall{InputTokens: a.in[1], OutputTokens: a.out[1], CacheReadTokens: a.cacheRead[1],
					CacheWriteTokens: a.cacheWrite[1]}) * fleet.Micros(a.calls[1])
				if e > next {
					next, model = e, a.model
				}
			}
		}
		dec, err := p.Ledger.Preflight(ctx, fleet.BudgetRequest{ProjectID: t.project, TeamID: t.team, Model: model, Estimate: next})
		if err != nil {
			return fig, err
		}
		pf := PreflightResult{ProjectID: t.project, Budget: st.Budget.ID, LimitUSD: st.Budget.LimitUSD, SpentUSD: st.Spent,
			Pct: fleet.Pct(st.Committed(), st.Budget.LimitUSD), NextUSD: next, Decision: dec}
		if next > 0 && st.Budget.LimitUSD > st.Committed() {
			pf.RunwayTimes = int64((st.Budget.LimitUSD - st.Committed()) / next)
		}
		fig.Preflight = append(fig.Preflight, pf)
	}
	for i := range fig.ByProject {
		fig.ByProject[i].SharePct = fleet.Pct(fig.ByProject[i].CostUSD, fig.GrandTotalUSD)
	}
	for _, m := range models {
		m.SharePct = fleet.Pct(m.CostUSD, fig.GrandTotalUSD)
		fig.ByModel = append(fig.ByModel, *m)
	}
	sort.Slice(fig.ByModel, func(i, j int) bool {
		if fig.ByModel[i].CostUSD != fig.ByModel[j].CostUSD {
			return fig.ByModel[i].CostUSD > fig.ByModel[j].CostUSD
		}
		return fig.ByModel[i].Model < fig.ByModel[j].Model
	})
	for _, k := range []string{"cloud", "local"} {
		m := mix[k]
		m.TokensPct = fleet.Pct(fleet.Micros(m.Tokens), fleet.Micros(allTokens))
		fig.LocalVsCloud = append(fig.LocalVsCloud, *m)
	}
	sort.Strings(fig.UnpricedModels)
	return fig, nil
}

func providerOf(p *fleet.Pricing, model string) string {
	if price, ok := p.Lookup(model); ok {
		return price.Provider
	}
	return "unpriced"
}
