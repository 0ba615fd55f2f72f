package telemetry

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sagewai/observatory/fleet"
)

// Attribute keys of the fleet metrics.
const (
	attrModel      = "model"
	attrTokenType  = "token_type"
	attrOutcome    = "outcome"
	attrStatus     = "status"
	attrType       = "type"
	attrScope      = "scope"
	attrPeriod     = "period"
	attrAction     = "action"
	attrTool       = "tool"
	attrAgent      = "agent"
	attrTeam       = "team"
	genAIOperation = "gen_ai.operation.name"
	genAIProvider  = "gen_ai.provider.name"
	genAIModel     = "gen_ai.request.model"
	genAITokenType = "gen_ai.token.type"
	errorType      = "error.type"
)

// Histogram buckets: the GenAI semantic conventions' advice for tokens and
// operation seconds; runs and lag on a wider seconds scale.
var (
	tokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	opSecondBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	runBuckets      = []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	lagBuckets      = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
)

// fleetObserver turns folded fleet events into metrics and, when traces
// are exported, spans. Observe runs on the hub goroutine only; the cost
// sums are read by the metrics collector under costMu.
type fleetObserver struct {
	spans *fleetSpans // nil while traces are off
	live  atomic.Pointer[func() bool]
	log   *slog.Logger     // business events from the stream (live ones only)
	now   func() time.Time // the end of the lag of live events

	// projects decides project labels (for the gauges too).
	projects *projectLabels

	// Owned by the hub goroutine.
	caps map[string]*projectCaps // by project label
	opts map[optKey]opts
	llm  map[[4]string]*llmOpts
	// coster attributes each llm.call to a team as the cost rollups do:
	// the event's own team, else its mission's (made on the first event,
	// with the fold's pricing).
	coster *fleet.Coster

	// The domain counters are exact tallies the observer keeps (under
	// costMu) and the collector reads: a checkpoint saves them at its seq
	// and a restart continues them (tallies.go).
	tokens, calls, unpriced, toolCalls  *tally
	runs, missions, events              *tally
	budgetEvents, budgetRejections      *tally
	tallies                             []*tally
	tokenUsage                          metric.Int64Histogram
	opDuration, runDuration, lagSeconds metric.Float64Histogram

	// costMu guards cost and costByAgent: exact micro-dollars by project
	// and model, and by project, agent and team, so the counters are the
	// fold's money to the micro-dollar, never a float sum.
	costMu      sync.Mutex
	cost        map[[2]string]fleet.Micros
	costByAgent map[[3]string]fleet.Micros
}

// optKey names one attribute set: the project and up to three more
// attributes (an empty key leaves one out).
type optKey struct {
	project                string
	k1, v1, k2, v2, k3, v3 string
}

// opts is one attribute set as the one-element option slices Add and
// Record take, so that a measurement allocates nothing.
type opts struct {
	set attribute.Set
	rec []metric.RecordOption
}

// businessEvents are the fleet events that are also business log records
// (DESIGN §7), logged as the hub folds them, live events only (a restart's
// replay logs nothing again). The server's own business events (logins,
// denials, budget decisions, projects, tokens) are logged where they
// happen.
var businessEvents = map[string]bool{
	fleet.TypeAgentCreated: true, fleet.TypeRunStarted: true, fleet.TypeRunCompleted: true, fleet.TypeRunFailed: true,
}

// newFleetObserver makes the observer's domain instruments on m and the
// hub's event lag, this replica's own figure, on own.
func newFleetObserver(m, own metric.Meter, spans *fleetSpans, log *slog.Logger, now func() time.Time) (*fleetObserver, error) {
	o := &fleetObserver{
		spans:       spans,
		log:         log,
		now:         now,
		projects:    newProjectLabels(),
		caps:        make(map[string]*projectCaps),
		opts:        make(map[optKey]opts),
		llm:         make(map[[4]string]*llmOpts),
		cost:        make(map[[2]string]fleet.Micros),
		costByAgent: make(map[[3]string]fleet.Micros),
	}
	var err error
	counter := func(dst **tally, name, unit, desc string) {
		if err == nil {
			var inst metric.Int64ObservableCounter
			inst, err = m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
			*dst = &tally{name: name, inst: inst, vals: map[attribute.Distinct]*tallyVal{}}
			o.tallies = append(o.tallies, *dst)
		}
	}
	counter(&o.tokens, "sagewai.llm.tokens", "{token}", "Tokens of llm.call events by project, model and kind (input excludes cache reads and writes).")
	counter(&o.calls, "sagewai.llm.calls", "{call}", "llm.call events by project, model and status.")
	counter(&o.unpriced, "sagewai.llm.unpriced_calls", "{call}", "llm.call events whose model is in no pricing table.")
	counter(&o.toolCalls, "sagewai.tool.calls", "{call}", "tool.call events by project, tool and status.")
	counter(&o.runs, "sagewai.agent.runs", "{run}", "Finished agent runs by project and outcome.")
	counter(&o.missions, "sagewai.missions", "{mission}", "Finished missions by project and outcome.")
	counter(&o.events, "sagewai.fleet.events", "{event}", "Fleet events folded, by project and type.")
	counter(&o.budgetEvents, "sagewai.budget.events", "{event}", "budget.* events by project, type, scope and action.")
	counter(&o.budgetRejections, "sagewai.budget.rejections", "{event}", "Work refused by a stop budget (budget.exceeded with action stop).")
	if err != nil {
		return nil, err
	}
	if o.tokenUsage, err = m.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens used per LLM call (GenAI semantic conventions; input includes cached tokens)."),
		metric.WithExplicitBucketBoundaries(tokenBuckets...)); err != nil {
		return nil, err
	}
	if o.opDuration, err = m.Float64Histogram("gen_ai.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of LLM calls as the worker measured them (GenAI semantic conventions)."),
		metric.WithExplicitBucketBoundaries(opSecondBuckets...)); err != nil {
		return nil, err
	}
	if o.runDuration, err = m.Float64Histogram("sagewai.agent.run.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of finished agent runs."),
		metric.WithExplicitBucketBoundaries(runBuckets...)); err != nil {
		return nil, err
	}
	if o.lagSeconds, err = own.Float64Histogram("sagewai.hub.event_lag", metric.WithUnit("s"),
		metric.WithDescription("Time from NATS storing an event to the hub folding it (live events only)."),
		metric.WithExplicitBucketBoundaries(lagBuckets...)); err != nil {
		return nil, err
	}
	costCounter, err := m.Float64ObservableCounter("sagewai.llm.cost_usd", metric.WithUnit("{USD}"),
		metric.WithDescription("Cost of llm.call events in USD, priced by the server like the fold (exact to the micro-dollar)."))
	if err != nil {
		return nil, err
	}
	costByAgent, err := m.Float64ObservableCounter("sagewai.llm.cost_by_agent_usd", metric.WithUnit("{USD}"),
		metric.WithDescription("Cost of llm.call events in USD by project, agent and team (the call's team, else its mission's)."))
	if err != nil {
		return nil, err
	}
	observables := []metric.Observable{costCounter, costByAgent}
	for _, t := range o.tallies {
		observables = append(observables, t.inst)
	}
	if _, err := m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		o.costMu.Lock()
		defer o.costMu.Unlock()
		for _, t := range o.tallies {
			for _, v := range t.vals {
				ob.ObserveInt64(t.inst, v.n, metric.WithAttributeSet(v.set))
			}
		}
		for k, v := range o.cost {
			ob.ObserveFloat64(costCounter, v.USD(), metric.WithAttributes(
				attribute.String(ProjectKey, k[0]), attribute.String(attrModel, k[1])))
		}
		for k, v := range o.costByAgent {
			ob.ObserveFloat64(costByAgent, v.USD(), metric.WithAttributes(
				attribute.String(ProjectKey, k[0]), attribute.String(attrAgent, k[1]), attribute.String(attrTeam, k[2])))
		}
		return nil
	}, observables...); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *fleetObserver) isLive() bool {
	if f := o.live.Load(); f != nil {
		return (*f)()
	}
	return true
}

// opt returns the options of the attribute set k, built the first time.
func (o *fleetObserver) opt(k optKey) opts {
	if v, ok := o.opts[k]; ok {
		return v
	}
	kvs := []attribute.KeyValue{attribute.String(ProjectKey, k.project)}
	for _, kv := range [...][2]string{{k.k1, k.v1}, {k.k2, k.v2}, {k.k3, k.v3}} {
		if kv[0] != "" {
			kvs = append(kvs, attribute.String(kv[0], kv[1]))
		}
	}
	set := attribute.NewSet(kvs...)
	v := opts{set: set, rec: []metric.RecordOption{metric.WithAttributeSet(set)}}
	o.opts[k] = v
	return v
}

func (o *fleetObserver) observe(ev fleet.Event, res fleet.Result, st *fleet.State) {
	if res != fleet.Applied && res != fleet.Unknown {
		return // duplicates and rejections are the hub's counts
	}
	ctx := context.Background()
	live := o.isLive()
	if o.coster == nil {
		o.coster = fleet.NewCoster(st.Pricing())
	}
	charge, _ := o.coster.Apply(time.Time{}, ev)
	project := o.projects.label(ev.ProjectID, st.Announced(ev.ProjectID))
	caps := o.caps[project]
	if caps == nil {
		caps = newProjectCaps()
		o.caps[project] = caps
	}
	typ := ev.Type
	if !fleet.Known(typ) {
		typ = labelUnknown
	}
	o.add(o.events, 1, o.opt(optKey{project: project, k1: attrType, v1: typ}).set)
	if live && businessEvents[ev.Type] && o.log != nil {
		o.log.Info(ev.Type, "event", ev.Type, "sagewai.project_id", ev.ProjectID, "event_id", ev.ID, "agent_id", ev.AgentID,
			"run_id", ev.RunID, "mission_id", ev.MissionID, "worker_id", ev.WorkerID)
	}
	if live {
		if lag := o.now().Sub(st.Clock()).Seconds(); lag >= 0 {
			o.lagSeconds.Record(ctx, lag)
		}
	}
	var call fleetCall
	switch ev.Type {
	case fleet.TypeLLMCall:
		var d fleet.LLMCall
		if json.Unmarshal(ev.Data, &d) != nil {
			return
		}
		call = o.llmCall(ctx, project, caps, caps.agents.value(ev.AgentID), caps.teams.value(charge.TeamID), d, st)
	case fleet.TypeToolCall:
		var d fleet.ToolCall
		if json.Unmarshal(ev.Data, &d) != nil {
			return
		}
		tool, status := caps.tools.value(d.Tool), statusLabel(d.Status)
		o.add(o.toolCalls, 1, o.opt(optKey{project: project, k1: attrTool, v1: tool, k2: attrStatus, v2: status}).set)
		call = fleetCall{tool: &d}
	case fleet.TypeRunCompleted, fleet.TypeRunFailed:
		var d fleet.Outcome
		_ = json.Unmarshal(ev.Data, &d)
		outcome := strings.TrimPrefix(ev.Type, "agent.run.")
		opt := o.opt(optKey{project: project, k1: attrOutcome, v1: outcome})
		o.add(o.runs, 1, opt.set)
		o.runDuration.Record(ctx, d.DurationMS/1000, opt.rec...)
		call = fleetCall{outcome: &d}
	case fleet.TypeMissionCompleted, fleet.TypeMissionFailed:
		var d fleet.Outcome
		_ = json.Unmarshal(ev.Data, &d)
		// Counted once, when the fold ends the mission: never a repeat,
		// never a mission already finished.
		ended := st.Effect().Finished
		if ended {
			outcome := strings.TrimPrefix(ev.Type, "mission.")
			o.add(o.missions, 1, o.opt(optKey{project: project, k1: attrOutcome, v1: outcome}).set)
		}
		call = fleetCall{outcome: &d, ended: ended}
	case fleet.TypeBudgetWarning, fleet.TypeBudgetExceeded, fleet.TypeBudgetThrottled:
		var d fleet.BudgetNotice
		if json.Unmarshal(ev.Data, &d) != nil {
			return
		}
		o.budget(ctx, project, ev.Type, d)
	case fleet.TypeRunStarted:
		var d fleet.RunStarted
		_ = json.Unmarshal(ev.Data, &d)
		call = fleetCall{run: &d}
	}
	if o.spans != nil {
		o.spans.observe(ev, call, live)
	}
}

// fleetCall is the decoded payload of an event the spans need, and what
// the server made of it.
type fleetCall struct {
	llm     *fleet.LLMCall
	cost    fleet.Micros
	priced  bool
	tool    *fleet.ToolCall
	outcome *fleet.Outcome
	run     *fleet.RunStarted
	// ended is true for the mission.completed or failed that ended its
	// mission (fleet.Effect.Finished).
	ended bool
}

// llmOpts are the attribute options of every series one llm.call touches,
// built once per project, model, provider and status. They are kept as
// the slices the instruments take, so a measurement allocates nothing.
type llmOpts struct {
	tokens                    [4]attribute.Set // input, output, cache_read, cache_write
	calls, unpriced           attribute.Set
	genIn, genOut, genLatency []metric.RecordOption
}

var tokenTypes = [4]string{"input", "output", "cache_read", "cache_write"}

func (o *fleetObserver) llmOptsFor(project, model, provider, status string) *llmOpts {
	k := [4]string{project, model, provider, status}
	if v, ok := o.llm[k]; ok {
		return v
	}
	pkv, mkv := attribute.String(ProjectKey, project), attribute.String(attrModel, model)
	add := attribute.NewSet
	rec := func(kvs ...attribute.KeyValue) []metric.RecordOption {
		return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
	}
	v := &llmOpts{
		calls:    add(pkv, mkv, attribute.String(attrStatus, status)),
		unpriced: add(pkv, mkv),
	}
	for i, t := range tokenTypes {
		v.tokens[i] = add(pkv, mkv, attribute.String(attrTokenType, t))
	}
	// GenAI semantic conventions: the model label is gen_ai.request.model,
	// and input tokens include cached ones.
	gen := []attribute.KeyValue{pkv, attribute.String(genAIOperation, operationChat), attribute.String(genAIProvider, provider),
		attribute.String(genAIModel, model)}
	v.genIn = rec(append(gen[:4:4], attribute.String(genAITokenType, "input"))...)
	v.genOut = rec(append(gen[:4:4], attribute.String(genAITokenType, "output"))...)
	if status == "ok" {
		v.genLatency = rec(gen...)
	} else {
		v.genLatency = rec(append(gen[:4:4], attribute.String(errorType, status))...)
	}
	o.llm[k] = v
	return v
}

func (o *fleetObserver) llmCall(ctx context.Context, project string, caps *projectCaps, agent, team string, d fleet.LLMCall, st *fleet.State) fleetCall {
	// The same price, and so the same money, as the fold's.
	price, priced := st.Pricing().Lookup(d.Model)
	var cost fleet.Micros
	if priced {
		cost = price.Cost(d)
	}
	model := caps.models.value(d.Model)
	opts := o.llmOptsFor(project, model, caps.providers.value(strings.ToLower(d.Provider)), statusLabel(d.Status))
	o.costMu.Lock()
	o.cost[[2]string{project, model}] += cost
	o.costByAgent[[3]string{project, agent, team}] += cost
	for i, n := range [4]int64{d.InputTokens, d.OutputTokens, d.CacheReadTokens, d.CacheWriteTokens} {
		if n > 0 {
			o.tokens.addLocked(n, opts.tokens[i])
		}
	}
	o.calls.addLocked(1, opts.calls)
	if !priced {
		o.unpriced.addLocked(1, opts.unpriced)
	}
	o.costMu.Unlock()
	o.tokenUsage.Record(ctx, d.InputTokens+d.CacheReadTokens+d.CacheWriteTokens, opts.genIn...)
	o.tokenUsage.Record(ctx, d.OutputTokens, opts.genOut...)
	o.opDuration.Record(ctx, d.LatencyMS/1000, opts.genLatency...)
	return fleetCall{llm: &d, cost: cost, priced: priced}
}

func (o *fleetObserver) budget(ctx context.Context, project, typ string, d fleet.BudgetNotice) {
	kind := strings.TrimPrefix(typ, "budget.")
	scope, action := budgetWord(d.Scope), budgetWord(d.Action)
	o.add(o.budgetEvents, 1, o.opt(optKey{project: project, k1: attrType, v1: kind, k2: attrScope, v2: scope,
		k3: attrAction, v3: action}).set)
	if typ == fleet.TypeBudgetExceeded && d.Action == fleet.ActionStop {
		o.add(o.budgetRejections, 1, o.opt(optKey{project: project, k1: attrScope, v1: scope}).set)
	}
}

// budgetWord keeps the fixed words of budgets (scopes, periods, actions)
// and folds anything else into "other".
func budgetWord(s string) string {
	switch s {
	case fleet.BudgetScopeUser, fleet.BudgetScopeTeam, fleet.BudgetScopeProject, fleet.BudgetScopeGlobal,
		fleet.PeriodDaily, fleet.PeriodMonthly, fleet.ActionWarn, fleet.ActionThrottle, fleet.ActionStop:
		return s
	case "":
		return labelUnknown
	}
	return labelOther
}

// statusLabel is "ok" for the statuses the fold counts as success, "error"
// for the rest: the worker's words are not a bounded set.
func statusLabel(s string) string {
	if s == "" || s == "ok" || s == "success" {
		return "ok"
	}
	return "error"
}
