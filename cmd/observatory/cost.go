package main

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
)

// loadPricing reads the pricing table of --pricing, or returns the
// embedded one for an empty path.
func loadPricing(path string) (*fleet.Pricing, error) {
	if path == "" {
		return fleet.DefaultPricing(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--pricing: %w", err)
	}
	p, err := fleet.ParsePricing(b)
	if err != nil {
		return nil, fmt.Errorf("--pricing %s: %w", path, err)
	}
	return p, nil
}

// pipeline is the real thing, small: NATS (embedded in a temporary
// directory, or an existing one), the streams, a hub folding FLEET, the
// budget ledger and cost rollups. The cost and budget examples run on it.
type pipeline struct {
	ns      *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	pub     *stream.Publisher
	hub     *stream.Hub
	ledger  *budget.Ledger
	costs   *stream.Costs
	pricing *fleet.Pricing
	dir     string

	cancel context.CancelFunc
	g      *errgroup.Group
}

// startPipeline starts the pipeline; stop ends it.
func startPipeline(ctx context.Context, natsURL string, pricing *fleet.Pricing, log *slog.Logger) (*pipeline, error) {
	p := &pipeline{pricing: pricing}
	if natsURL == "" {
		dir, err := os.MkdirTemp("", "observatory-example-")
		if err != nil {
			return nil, err
		}
		p.dir = dir
		if p.ns, err = stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0", SyncAlways: true}); err != nil {
			p.stop()
			return nil, err
		}
	}
	var err error
	if p.nc, err = stream.Connect(natsURL, p.ns, "observatory-example"); err != nil {
		p.stop()
		return nil, err
	}
	if p.js, err = jetstream.New(p.nc); err != nil {
		p.stop()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := stream.EnsureStreams(setup, p.js, stream.StreamsConfig{}); err != nil {
		p.stop()
		return nil, err
	}
	p.pub = stream.NewPublisher(p.js)
	p.hub = stream.NewHub(p.js, stream.HubConfig{Tick: 20 * time.Millisecond, Pricing: pricing, Logger: log})
	if p.ledger, err = budget.NewLedger(setup, p.js, budget.Config{Pricing: pricing, Auditor: p.pub, Logger: log, EventEvery: -1}); err != nil {
		p.stop()
		return nil, err
	}
	p.costs = stream.NewCosts(p.js, pricing)
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = rcancel
	p.g, rctx = errgroup.WithContext(rctx)
	p.g.Go(func() error { return p.hub.Run(rctx) })
	p.g.Go(func() error { return p.ledger.Run(rctx) })
	deadline := time.Now().Add(20 * time.Second)
	for p.hub.Ready() != nil || p.ledger.Ready() != nil {
		if time.Now().After(deadline) {
			p.stop()
			return nil, errors.New("the hub or the ledger did not get ready in 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, nil
}

// stop ends the pipeline and removes its temporary directory.
func (p *pipeline) stop() {
	if p.cancel != nil {
		p.cancel()
		_ = p.g.Wait()
	}
	if p.nc != nil {
		drain(p.nc)
	}
	if p.ns != nil {
		p.ns.Shutdown()
		p.ns.WaitForShutdown()
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// settle waits until the fold and the ledger have taken in FLEET up to seq.
func (p *pipeline) settle(ctx context.Context, seq uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for p.hub.Stats().Seq < seq {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the fold did not reach seq %d: %w", seq, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return p.ledger.WaitSeq(ctx, seq)
}

// flushEvents waits until the ledger has published the budget events it
// queued and the fold has taken in FLEET up to its end.
func (p *pipeline) flushEvents(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		st := p.ledger.Stats()
		if st.Events+st.EventErrors >= st.EventsQueued {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("budget events not published: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	s, err := p.js.Stream(ctx, stream.FleetStream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	for p.hub.Stats().Seq < info.State.LastSeq {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the fold did not reach seq %d: %w", info.State.LastSeq, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// ensureBudget creates b unless its scope and period have a budget
// already, and returns the one in force.
func (p *pipeline) ensureBudget(ctx context.Context, b fleet.BudgetLimit) (fleet.BudgetStanding, error) {
	st, err := p.ledger.CreateBudget(ctx, b)
	if errors.Is(err, fleet.ErrBudgetExists) {
		if err := b.Normalize(); err != nil {
			return fleet.BudgetStanding{}, err
		}
		return p.ledger.Budget(ctx, b.ID)
	}
	return st, err
}

// ---- observatory cost ----

// costTenant is one tenant of the cost example.
type costTenant struct {
	project, team, story string
	users                []string
	agents               []costAgent
	budget               fleet.BudgetLimit
}

// costAgent is an agent and the shape of its calls.
type costAgent struct {
	id, role, model, provider string
	calls                     [2]int   // min, max LLM calls per run
	in, out, cacheRead        [2]int64 // token ranges per call
	cacheWrite                [2]int64
	tool                      string
}

var costTenants = []costTenant{
	{project: "northwind", team: "support", story: "customer support on Anthropic models",
		users: []string{"u-ana", "u-ben", "u-chen"},
		agents: []costAgent{
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
		agents: []costAgent{
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

// costFigures is `observatory cost --json`.
type costFigures struct {
	ByProject     []projectCost     `json:"by_project"`
	ByModel       []modelCost       `json:"by_model"`
	GrandTotalUSD fleet.Micros      `json:"grand_total_usd"`
	LocalVsCloud  []providerMix     `json:"local_vs_cloud"`
	Preflight     []preflightResult `json:"preflight"`
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

type projectCost struct {
	ProjectID string       `json:"project_id"`
	CostUSD   fleet.Micros `json:"cost_usd"`
	Tokens    int64        `json:"tokens"`
	Runs      int64        `json:"runs"`
	Calls     int64        `json:"calls"`
	SharePct  float64      `json:"share_pct"`
}

type modelCost struct {
	Model    string       `json:"model"`
	Provider string       `json:"provider"`
	CostUSD  fleet.Micros `json:"cost_usd"`
	Tokens   int64        `json:"tokens"`
	Calls    int64        `json:"calls"`
	Unpriced bool         `json:"unpriced,omitempty"`
	SharePct float64      `json:"share_pct"`
}

type providerMix struct {
	Kind      string       `json:"kind"` // local or cloud
	CostUSD   fleet.Micros `json:"cost_usd"`
	Tokens    int64        `json:"tokens"`
	Calls     int64        `json:"calls"`
	TokensPct float64      `json:"tokens_pct"`
}

type preflightResult struct {
	ProjectID   string               `json:"project_id"`
	Budget      string               `json:"budget"`
	LimitUSD    fleet.Micros         `json:"limit_usd"`
	SpentUSD    fleet.Micros         `json:"spent_usd"`
	Pct         float64              `json:"pct"`
	NextUSD     fleet.Micros         `json:"next_mission_usd"`
	Decision    fleet.BudgetDecision `json:"decision"`
	RunwayTimes int64                `json:"missions_left"`
}

// costCmd runs `observatory cost`: cost-tagged work for two tenants through
// the real pipeline, then where the money went.
func costCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	natsURL := fs.String("nats-url", env("OBSERVATORY_NATS_URL", ""), "run against this NATS (a running server's) instead of an embedded one in a temporary directory (env OBSERVATORY_NATS_URL)")
	pricingFile := fs.String("pricing", env("OBSERVATORY_PRICING", ""), "a pricing table to use instead of the embedded one (env OBSERVATORY_PRICING)")
	missions := fs.Int("missions", envInt(getenv, "OBSERVATORY_COST_MISSIONS", 12), "missions per tenant (env OBSERVATORY_COST_MISSIONS)")
	seed := fs.Uint64("seed", uint64(envInt(getenv, "OBSERVATORY_COST_SEED", 34)), "seed of the workload (env OBSERVATORY_COST_SEED)")
	asJSON := fs.Bool("json", false, "print only the figures, as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *missions < 1 || *missions > 10_000 {
		return fmt.Errorf("cost: want --missions between 1 and 10000 and no arguments")
	}
	pricing, err := loadPricing(*pricingFile)
	if err != nil {
		return fmt.Errorf("cost: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	p, err := startPipeline(ctx, *natsURL, pricing, log)
	if err != nil {
		return fmt.Errorf("cost: %w", err)
	}
	defer p.stop()
	out := stdout
	if *asJSON {
		out = io.Discard
	}
	fmt.Fprintf(out, "observatory cost: %d missions for each of %d tenants, priced by the table of %s\n\n", *missions, len(costTenants), pricing.AsOf)

	// Before: the budgets, and what the fold and the ledger already hold
	// (nothing, unless this runs against a live server).
	before := map[string]fleet.Micros{}
	foldBefore, err := foldSpend(ctx, p)
	if err != nil {
		return fmt.Errorf("cost: %w", err)
	}
	budgets := map[string]fleet.BudgetLimit{}
	for _, t := range costTenants {
		st, err := p.ensureBudget(ctx, t.budget)
		if err != nil {
			return fmt.Errorf("cost: budget of %s: %w", t.project, err)
		}
		budgets[t.project], before[t.project] = st.Budget, st.Spent
	}
	start := time.Now().UTC()

	rng := rand.New(rand.NewPCG(*seed, 0xc05))
	run := costRun{p: p, rng: rng, out: out, worker: "w-cost-" + strings.ToLower(start.Format("150405"))}
	fmt.Fprintln(out, "Run trace")
	var last uint64
	for _, t := range costTenants {
		if last, err = run.setup(ctx, t); err != nil {
			return fmt.Errorf("cost: %w", err)
		}
	}
	for i := range *missions {
		for _, t := range costTenants {
			seq, err := run.mission(ctx, t, i)
			if err != nil {
				return fmt.Errorf("cost: %w", err)
			}
			last = max(last, seq)
		}
	}
	if err := p.settle(ctx, last); err != nil {
		return fmt.Errorf("cost: %w", err)
	}
	end := time.Now().UTC().Add(time.Millisecond)

	fig, err := costReport(ctx, p, start, end, before, foldBefore, budgets)
	if err != nil {
		return fmt.Errorf("cost: %w", err)
	}
	fig.Missions = run.missions
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(fig); err != nil {
			return err
		}
	} else {
		printCost(out, fig)
	}
	if !fig.Agree {
		return errors.New("cost: the ledger, the fold and the rollup disagree")
	}
	return nil
}

// costRun publishes the example's events as a fleet would.
type costRun struct {
	p        *pipeline
	rng      *rand.Rand
	out      io.Writer
	worker   string
	missions int
}

func (r *costRun) publish(ctx context.Context, ev fleet.Event) (uint64, error) {
	ev.ID = newEventID()
	ev.Time = time.Now().UTC()
	return r.p.pub.Publish(ctx, ev)
}

func eventData(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// setup announces the tenant's worker and agents.
func (r *costRun) setup(ctx context.Context, t costTenant) (uint64, error) {
	seq, err := r.publish(ctx, fleet.Event{Type: fleet.TypeWorkerJoined, ProjectID: t.project, WorkerID: r.worker + "-" + t.project,
		Data: eventData(fleet.WorkerJoined{Host: "cost-example", Version: "example", Capacity: 4})})
	if err != nil {
		return 0, err
	}
	for _, a := range t.agents {
		if seq, err = r.publish(ctx, fleet.Event{Type: fleet.TypeAgentCreated, ProjectID: t.project, TeamID: t.team, AgentID: a.id,
			Data: eventData(fleet.AgentCreated{Name: a.id, Role: a.role, Model: a.model, Version: "1", Tools: []string{a.tool}, Skills: []string{}})}); err != nil {
			return 0, err
		}
	}
	return seq, nil
}

func (r *costRun) between(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + r.rng.Int64N(hi-lo+1)
}

// mission runs one mission of tenant t: reserve its estimated maximum,
// publish its run and calls, settle. It returns the last sequence.
func (r *costRun) mission(ctx context.Context, t costTenant, i int) (uint64, error) {
	a := t.agents[i%len(t.agents)] // every agent works, in turn
	user := t.users[r.rng.IntN(len(t.users))]
	mission := fmt.Sprintf("m-%s-%03d", t.project, i+1)
	runID := fmt.Sprintf("r-%s-%03d", t.project, i+1)
	worker := r.worker + "-" + t.project
	calls := int(r.between(int64(a.calls[0]), int64(a.calls[1])))
	// The estimate is the most the plan can cost: every call at the top of
	// its ranges.
	var estimate fleet.Micros
	if price, ok := r.p.pricing.Lookup(a.model); ok {
		estimate = price.Cost(fleet.LLMCall{InputTokens: a.in[1], OutputTokens: a.out[1], CacheReadTokens: a.cacheRead[1],
			CacheWriteTokens: a.cacheWrite[1]}) * fleet.Micros(a.calls[1])
	}
	dec, err := r.p.ledger.Reserve(ctx, fleet.BudgetRequest{ProjectID: t.project, TeamID: t.team, UserID: user,
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
	if _, err := r.publish(ctx, ev); err != nil {
		return 0, err
	}
	ev = env
	ev.Type = fleet.TypeMissionClaimed
	if _, err := r.publish(ctx, ev); err != nil {
		return 0, err
	}
	env.AgentID, env.RunID = a.id, runID
	ev = env
	ev.Type, ev.Data = fleet.TypeRunStarted, eventData(fleet.RunStarted{Model: model})
	if _, err := r.publish(ctx, ev); err != nil {
		return 0, err
	}
	var cost fleet.Micros
	var tokens int64
	for range calls {
		c := fleet.LLMCall{Provider: a.provider, Model: model, InputTokens: r.between(a.in[0], a.in[1]),
			OutputTokens: r.between(a.out[0], a.out[1]), CacheReadTokens: r.between(a.cacheRead[0], a.cacheRead[1]),
			CacheWriteTokens: r.between(a.cacheWrite[0], a.cacheWrite[1]), LatencyMS: float64(r.between(300, 4_000)), Status: "ok"}
		if price, ok := r.p.pricing.Lookup(c.Model); ok {
			cost += price.Cost(c)
		}
		tokens += c.Tokens()
		ev = env
		ev.Type, ev.Data = fleet.TypeLLMCall, eventData(c)
		if _, err := r.publish(ctx, ev); err != nil {
			return 0, err
		}
		ev = env
		ev.Type, ev.Data = fleet.TypeToolCall, eventData(fleet.ToolCall{Tool: a.tool, LatencyMS: float64(r.between(20, 400)), Status: "ok"})
		if _, err := r.publish(ctx, ev); err != nil {
			return 0, err
		}
	}
	ev = env
	ev.Type, ev.Data = fleet.TypeRunCompleted, eventData(fleet.Outcome{DurationMS: float64(r.between(2_000, 20_000))})
	if _, err := r.publish(ctx, ev); err != nil {
		return 0, err
	}
	ev = env
	ev.AgentID, ev.RunID = "", ""
	ev.Type, ev.Data = fleet.TypeMissionCompleted, eventData(fleet.Outcome{DurationMS: float64(r.between(3_000, 25_000))})
	seq, err := r.publish(ctx, ev)
	if err != nil {
		return 0, err
	}
	if err := r.p.ledger.Settle(ctx, dec.Reservation, cost); err != nil {
		return 0, err
	}
	r.missions++
	price := "$" + fourDecimals(cost)
	if _, ok := r.p.pricing.Lookup(model); !ok {
		price = "unpriced"
	}
	fmt.Fprintf(r.out, "  %-10s %-17s %-8s %-7s %-20s %s %8s tok  %-10s reserved $%s\n", t.project, mission, t.team, user,
		model, plural(calls, "call"), formatThousands(tokens), price, estimate.Cents())
	return seq, nil
}

// foldSpend returns every project's total spend as the fold has it.
func foldSpend(ctx context.Context, p *pipeline) (map[string]fleet.Micros, error) {
	v, _, err := p.hub.View(ctx, fleet.ScopeAll)
	if err != nil {
		return nil, err
	}
	out := map[string]fleet.Micros{}
	for id, pr := range v.Projects {
		out[id] = pr.SpendTotal
	}
	return out, nil
}

// costReport reads the run back three ways and builds the figures.
func costReport(ctx context.Context, p *pipeline, start, end time.Time, before, foldBefore map[string]fleet.Micros,
	budgets map[string]fleet.BudgetLimit) (costFigures, error) {
	fig := costFigures{LedgerUSD: map[string]fleet.Micros{}, FoldUSD: map[string]fleet.Micros{}, RollupUSD: map[string]fleet.Micros{},
		PricingAsOf: p.pricing.AsOf, UnpricedModels: []string{}, Agree: true}
	foldAfter, err := foldSpend(ctx, p)
	if err != nil {
		return fig, err
	}
	models := map[string]*modelCost{}
	mix := map[string]*providerMix{"local": {Kind: "local"}, "cloud": {Kind: "cloud"}}
	var allTokens int64
	for _, t := range costTenants {
		r, err := p.costs.Rollup(ctx, t.project, start, end)
		if err != nil {
			return fig, err
		}
		tot := r.Total()
		fig.ByProject = append(fig.ByProject, projectCost{ProjectID: t.project, CostUSD: tot.Cost, Tokens: tot.Tokens, Runs: tot.Runs, Calls: tot.Calls})
		fig.GrandTotalUSD += tot.Cost
		fig.RollupUSD[t.project] = tot.Cost
		fig.FoldUSD[t.project] = foldAfter[t.project] - foldBefore[t.project]
		st, err := p.ledger.Budget(ctx, budgets[t.project].ID)
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
				mc = &modelCost{Model: g.Key, Provider: providerOf(p.pricing, g.Key), Unpriced: g.Unpriced > 0}
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
			if price, ok := p.pricing.Lookup(a.model); ok {
				e := price.Cost(fleet.LLMCall{InputTokens: a.in[1], OutputTokens: a.out[1], CacheReadTokens: a.cacheRead[1],
					CacheWriteTokens: a.cacheWrite[1]}) * fleet.Micros(a.calls[1])
				if e > next {
					next, model = e, a.model
				}
			}
		}
		dec, err := p.ledger.Preflight(ctx, fleet.BudgetRequest{ProjectID: t.project, TeamID: t.team, Model: model, Estimate: next})
		if err != nil {
			return fig, err
		}
		pf := preflightResult{ProjectID: t.project, Budget: st.Budget.ID, LimitUSD: st.Budget.LimitUSD, SpentUSD: st.Spent,
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

// printCost prints the rollups, the pre-flight and the proof, and ends with
// the one line a CFO reads.
func printCost(w io.Writer, f costFigures) {
	fmt.Fprintln(w, "\nPer project")
	for _, p := range f.ByProject {
		fmt.Fprintf(w, "  %-10s %10s  %s %5.1f %%  %10s tok  %3d runs\n", p.ProjectID, "$"+p.CostUSD.Cents(), bar(p.SharePct, 24), p.SharePct,
			formatThousands(p.Tokens), p.Runs)
	}
	fmt.Fprintf(w, "  %-10s %10s\n", "total", "$"+f.GrandTotalUSD.Cents())
	fmt.Fprintln(w, "\nPer model")
	for _, m := range f.ByModel {
		note := ""
		if m.Unpriced {
			note = "  unpriced: counted, never charged"
		}
		fmt.Fprintf(w, "  %-22s %-11s %10s  %s %5.1f %%  %10s tok  %3d calls%s\n", m.Model, m.Provider, "$"+m.CostUSD.Cents(), bar(m.SharePct, 16),
			m.SharePct, formatThousands(m.Tokens), m.Calls, note)
	}
	fmt.Fprintln(w, "\nLocal versus cloud")
	for _, m := range f.LocalVsCloud {
		fmt.Fprintf(w, "  %-6s %10s  %10s tok (%5.1f %% of tokens)  %3d calls\n", m.Kind, "$"+m.CostUSD.Cents(), formatThousands(m.Tokens), m.TokensPct, m.Calls)
	}
	fmt.Fprintln(w, "\nBudget pre-flight (one more mission of each tenant's costliest kind)")
	for _, p := range f.Preflight {
		verdict := "allowed"
		switch {
		case !p.Decision.Allowed:
			verdict = "refused: " + fleet.BreachText(p.Decision.Breaches[0])
		case p.Decision.Action == fleet.ActionThrottle:
			verdict = "allowed, throttled to " + p.Decision.Model
		case p.Decision.Action == fleet.ActionWarn:
			verdict = "allowed, with a warning"
		}
		fmt.Fprintf(w, "  %-10s %s: $%s of $%s (%.1f %%); next mission up to $%s: %s; room for %d more\n", p.ProjectID, p.Budget,
			p.SpentUSD.Cents(), p.LimitUSD.Cents(), p.Pct, p.NextUSD.Cents(), verdict, p.RunwayTimes)
	}
	fmt.Fprintln(w, "\nProof: the same money counted three ways")
	for _, p := range f.ByProject {
		fmt.Fprintf(w, "  %-10s ledger $%s  fold $%s  rollup $%s\n", p.ProjectID, f.LedgerUSD[p.ProjectID], f.FoldUSD[p.ProjectID], f.RollupUSD[p.ProjectID])
	}
	if len(f.UnpricedModels) > 0 {
		fmt.Fprintf(w, "  unpriced   %d calls of %s: counted, never charged\n", f.UnpricedCalls, strings.Join(f.UnpricedModels, ", "))
	}
	if f.Agree {
		fmt.Fprintln(w, "  agree: yes, to the micro-dollar")
	} else {
		fmt.Fprintln(w, "  agree: NO")
	}
	b, _ := json.Marshal(f)
	fmt.Fprintf(w, "  %s\n\n", b)
	spent := make([]projectSpend, 0, len(f.ByProject))
	for _, p := range f.ByProject {
		spent = append(spent, projectSpend{p.ProjectID, p.CostUSD})
	}
	fmt.Fprintln(w, cfoLine(spent))
}

// projectSpend is what one project spent.
type projectSpend struct {
	project string
	spent   fleet.Micros
}

// cfoLine is the line the CFO reads: "Project A spent $X.XX, Project B
// spent $Y.YY this run."
func cfoLine(spent []projectSpend) string {
	parts := make([]string, 0, len(spent))
	for _, p := range spent {
		parts = append(parts, fmt.Sprintf("Project %s spent $%s", p.project, p.spent.Cents()))
	}
	return strings.Join(parts, ", ") + " this run."
}

// bar draws pct of width cells.
func bar(pct float64, width int) string {
	n := int(pct/100*float64(width) + 0.5)
	n = min(max(n, 0), width)
	return strings.Repeat("█", n) + strings.Repeat("░", width-n)
}

// formatThousands writes n with thousands separators.
func formatThousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + formatThousands(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// plural writes n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun + " "
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// envInt returns the env twin of an integer flag, or def.
func envInt(getenv func(string) string, name string, def int) int {
	if v, err := strconv.Atoi(strings.TrimSpace(getenv(name))); err == nil && v >= 0 {
		return v
	}
	return def
}

// fourDecimals writes m in dollars to a hundredth of a cent.
func fourDecimals(m fleet.Micros) string {
	s := m.String()
	return s[:len(s)-2]
}

// newEventID returns a unique event id.
func newEventID() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return fmt.Sprintf("ev-%x", b)
}
