package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sagewai/observatory/fleet"
)

// FleetSource is what the fleet metrics read besides the events.
type FleetSource struct {
	// View returns the fold's state of a scope and the seq it stands at
	// (stream.Hub.View). The state gauges read View("*") once per
	// collection.
	View func(ctx context.Context, scope string) (fleet.View, uint64, error)
	// Live reports whether events folded now are new rather than the
	// replay of the stream at start (hub.Ready() == nil). Spans and the
	// lag histogram are made for live events only, so a restart does not
	// send every run of the last week again. Nil means always live.
	Live func() bool
	// Registered, when set, reports whether a project is in the admin
	// API's registry (stream.ProjectSet.Has). A registered project always
	// has its own sagewai_project_id label; see Telemetry's doc for the
	// others. It is called from the hub goroutine and from metric
	// collections, and must be fast and safe for concurrent use.
	Registered func(project string) bool
	// Budgets, when set, returns every budget with its standing in the
	// current window (budget.Ledger.Budgets with project ""): the budget
	// gauges then report the caps and spend the gate holds at each
	// collection, from the moment a budget exists. Nil: they report the
	// fold's budgets, as the last budget.* events left them.
	Budgets func(ctx context.Context) ([]fleet.BudgetStanding, error)
}

// viewTimeout bounds one read of the fold's state for the gauges.
const viewTimeout = 2 * time.Second

// fleetGauges reports the fold's current state at each collection: the
// fleet's workers and agents, missions and runs in flight, spend today and
// budgets.
// When the hub does not answer in time, the last state read is reported.
type fleetGauges struct {
	view    func(ctx context.Context, scope string) (fleet.View, uint64, error)
	budgets func(ctx context.Context) ([]fleet.BudgetStanding, error)

	// mu guards last, the last state read.
	mu   sync.Mutex
	last *fleet.View
}

func registerFleetGauges(m metric.Meter, src FleetSource, labels *projectLabels) error {
	g := &fleetGauges{view: src.View, budgets: src.Budgets}
	workers, err := m.Int64ObservableGauge("sagewai.fleet.workers", metric.WithUnit("{worker}"),
		metric.WithDescription("Workers by liveness: online, stale (no heartbeat for 30 s) or offline."))
	if err != nil {
		return err
	}
	agents, err := m.Int64ObservableGauge("sagewai.fleet.agents", metric.WithUnit("{agent}"),
		metric.WithDescription("Agents by project, active (an event within 5 min) or not."))
	if err != nil {
		return err
	}
	inFlight, err := m.Int64ObservableGauge("sagewai.missions.in_flight", metric.WithUnit("{mission}"),
		metric.WithDescription("Missions queued, claimed, running or retrying, by project."))
	if err != nil {
		return err
	}
	runs, err := m.Int64ObservableGauge("sagewai.agent.runs.in_flight", metric.WithUnit("{run}"),
		metric.WithDescription("Agent runs started and not yet finished, by project (agents in a run)."))
	if err != nil {
		return err
	}
	today, err := m.Float64ObservableGauge("sagewai.spend.today_usd", metric.WithUnit("{USD}"),
		metric.WithDescription("Spend of the current UTC day (the fold's clock) in USD, by project."))
	if err != nil {
		return err
	}
	limit, err := m.Float64ObservableGauge("sagewai.budget.limit_usd", metric.WithUnit("{USD}"),
		metric.WithDescription("Budget caps in USD, as the budget gate holds them (or as the last budget.* events reported them)."))
	if err != nil {
		return err
	}
	spent, err := m.Float64ObservableGauge("sagewai.budget.spent_usd", metric.WithUnit("{USD}"),
		metric.WithDescription("Spend against budgets in USD in their current window, as the budget gate holds it (or as the last budget.* events reported it)."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		v := g.read(ctx)
		if v == nil {
			return nil
		}
		byStatus := map[string]int64{fleet.WorkerOnline: 0, fleet.WorkerStale: 0, fleet.WorkerOffline: 0}
		for _, w := range v.Workers {
			byStatus[w.Status]++
		}
		for s, n := range byStatus {
			o.ObserveInt64(workers, n, metric.WithAttributes(attribute.String(attrStatus, s)))
		}
		// Per project label: projects without their own (past the pool)
		// are summed into "other".
		type row struct {
			running, active, idle, inFlight int64
			today                           fleet.Micros
		}
		rows := make(map[string]*row, len(v.Projects))
		label := func(project string) string { return labels.label(project, false) }
		for id, p := range v.Projects {
			r := rows[label(id)]
			if r == nil {
				r = &row{}
				rows[label(id)] = r
			}
			r.active += int64(p.ActiveAgents)
			r.idle += int64(p.Agents - p.ActiveAgents)
			r.inFlight += int64(p.MissionsInFlight)
			r.today += p.SpendToday
		}
		for _, a := range v.Agents {
			if r := rows[label(a.ProjectID)]; r != nil && a.RunID != "" {
				r.running++
			}
		}
		for id, r := range rows {
			pkv := attribute.String(ProjectKey, id)
			o.ObserveInt64(runs, r.running, metric.WithAttributes(pkv))
			o.ObserveInt64(agents, r.active, metric.WithAttributes(pkv, attribute.Bool("active", true)))
			o.ObserveInt64(agents, r.idle, metric.WithAttributes(pkv, attribute.Bool("active", false)))
			o.ObserveInt64(inFlight, r.inFlight, metric.WithAttributes(pkv))
			o.ObserveFloat64(today, r.today.USD(), metric.WithAttributes(pkv))
		}
		for _, b := range budgetSeries(g.readBudgets(ctx, v.Budgets), label) {
			o.ObserveFloat64(limit, b.limit.USD(), metric.WithAttributeSet(b.attrs))
			o.ObserveFloat64(spent, b.spent.USD(), metric.WithAttributeSet(b.attrs))
		}
		return nil
	}, workers, agents, inFlight, runs, today, limit, spent)
	return err
}

func (g *fleetGauges) read(ctx context.Context) *fleet.View {
	ctx, cancel := context.WithTimeout(ctx, viewTimeout)
	defer cancel()
	v, _, err := g.view(ctx, fleet.ScopeAll)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.last = &v
	}
	return g.last
}

// readBudgets returns the gate's budgets with their standing now, or the
// fold's when there is no gate or it does not answer in time.
func (g *fleetGauges) readBudgets(ctx context.Context, fold map[string]fleet.Budget) map[string]fleet.Budget {
	if g.budgets == nil {
		return fold
	}
	ctx, cancel := context.WithTimeout(ctx, viewTimeout)
	defer cancel()
	list, err := g.budgets(ctx)
	if err != nil {
		return fold
	}
	out := make(map[string]fleet.Budget, len(list))
	for _, st := range list {
		b := st.Budget
		out[b.ID] = fleet.Budget{ID: b.ID, ProjectID: b.ProjectID, Scope: b.Scope, ScopeID: b.ScopeID, Period: b.Period,
			LimitUSD: b.LimitUSD, SpentUSD: st.Spent, Action: b.Action}
	}
	return out
}

type budgetSeriesValue struct {
	attrs        attribute.Set
	limit, spent fleet.Micros
}

// budgetSeries sums budgets into series labelled by project (as label
// names it), scope, period and team (the scope id of team budgets only):
// user budgets of a project are summed, as a user id is never a label.
func budgetSeries(bs map[string]fleet.Budget, label func(project string) string) []budgetSeriesValue {
	type key struct{ project, scope, period, team string }
	sums := map[key]*budgetSeriesValue{}
	for _, b := range bs {
		k := key{label(b.ProjectID), budgetWord(b.Scope), budgetWord(b.Period), ""}
		if b.Scope == fleet.BudgetScopeTeam {
			k.team = clean(b.ScopeID)
		}
		s := sums[k]
		if s == nil {
			s = &budgetSeriesValue{attrs: attribute.NewSet(attribute.String(ProjectKey, k.project),
				attribute.String(attrScope, k.scope), attribute.String(attrPeriod, k.period), attribute.String("team", k.team))}
			sums[k] = s
		}
		s.limit += b.LimitUSD
		s.spent += b.SpentUSD
	}
	out := make([]budgetSeriesValue, 0, len(sums))
	for _, s := range sums {
		out = append(out, *s)
	}
	return out
}
