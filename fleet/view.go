package fleet

import (
	"slices"
	"strconv"
)

type coll uint8

const (
	collProjects coll = iota
	collAgents
	collWorkers
	collMissions
	collBudgets
)

var collNames = [...]string{"projects", "agents", "workers", "missions", "budgets"}

type entityKey struct {
	c  coll
	id string
}

// Changes records what the fold touched since the last TakeChanges: which
// entities (with the projects they belonged to, for deletions) and how many
// ticker entries each scope gained.
type Changes struct {
	touched   map[entityKey][]string
	tickerAll int
	tickerFor map[string]int
}

func (c *Changes) reset() {
	c.touched = make(map[entityKey][]string)
	c.tickerAll = 0
	c.tickerFor = make(map[string]int)
}

// Empty reports whether nothing changed.
func (c *Changes) Empty() bool { return len(c.touched) == 0 && c.tickerAll == 0 }

func (s *State) mark(c coll, id string, projects ...string) {
	k := entityKey{c, id}
	old, ok := s.ch.touched[k]
	if !ok {
		s.ch.touched[k] = projects
		return
	}
	for _, p := range projects {
		if !slices.Contains(old, p) {
			old = append(slices.Clip(old), p)
		}
	}
	s.ch.touched[k] = old
}

// TakeChanges returns what changed since the previous call and starts a
// new record.
func (s *State) TakeChanges() *Changes {
	ch := s.ch
	s.ch.reset()
	return &ch
}

func inScope(scope string, projects []string) bool {
	return scope == ScopeAll || slices.Contains(projects, scope)
}

// Delta returns what changed in scope according to ch, which must be the
// changes taken since the View or Delta the receiver last saw. The posture
// is always included; callers drop it when it equals the last one sent.
func (s *State) Delta(scope string, ch *Changes) Delta {
	var d Delta
	for k, projects := range ch.touched {
		present, visible := s.entity(k, scope, &d.Set)
		switch {
		case present && visible:
		case inScope(scope, projects):
			// Gone, or no longer in scope (a worker forgotten and seen again
			// for other projects within one tick): the client drops it.
			if d.Del == nil {
				d.Del = make(map[string][]string)
			}
			d.Del[collNames[k.c]] = append(d.Del[collNames[k.c]], k.id)
		}
	}
	for _, ids := range d.Del {
		slices.Sort(ids)
	}
	n := ch.tickerAll
	list := s.ticker
	if scope != ScopeAll {
		n = ch.tickerFor[scope]
		list = s.tickerFor[scope]
	}
	if n > len(list) {
		n = len(list)
	}
	if n > 0 {
		d.Ticker = slices.Clone(list[len(list)-n:])
	}
	p := s.Posture(scope)
	d.Posture = &p
	return d
}

// entity copies entity k into set if it exists and scope can see it.
func (s *State) entity(k entityKey, scope string, set *Set) (present, visible bool) {
	switch k.c {
	case collProjects:
		p := s.projects[k.id]
		if p == nil {
			return false, false
		}
		if scope != ScopeAll && scope != p.ID {
			return true, false
		}
		put(&set.Projects, k.id, p.view())
	case collAgents:
		a := s.agents[k.id]
		if a == nil {
			return false, false
		}
		if !inScope(scope, []string{a.ProjectID}) {
			return true, false
		}
		put(&set.Agents, k.id, *a)
	case collWorkers:
		w := s.workers[k.id]
		if w == nil {
			return false, false
		}
		if !inScope(scope, w.Projects) {
			return true, false
		}
		put(&set.Workers, k.id, workerIn(w, scope))
	case collMissions:
		m := s.missions[k.id]
		if m == nil {
			return false, false
		}
		if !inScope(scope, []string{m.ProjectID}) {
			return true, false
		}
		put(&set.Missions, k.id, *m)
	case collBudgets:
		b := s.budgets[k.id]
		if b == nil {
			return false, false
		}
		if !inScope(scope, []string{b.ProjectID}) {
			return true, false
		}
		put(&set.Budgets, k.id, *b)
	}
	return true, true
}

// workerIn is w as scope sees it: a tenant sees only its own project in the
// list of projects a shared worker serves.
func workerIn(w *Worker, scope string) Worker {
	c := *w
	if scope != ScopeAll {
		c.Projects = []string{scope}
	}
	return c
}

func put[T any](m *map[string]T, id string, v T) {
	if *m == nil {
		*m = make(map[string]T)
	}
	(*m)[id] = v
}

func (p *projectRec) view() Project {
	v := p.Project
	v.Runs24h = p.Win.Sum24.Runs
	v.Tokens24h = p.Win.Sum24.Tokens
	v.Errors1h = p.Win.Sum1.Errors
	if p.Budget != nil {
		b := *p.Budget
		v.Budget = &b
	}
	return v
}

// Posture sums the headline figures of scope.
func (s *State) Posture(scope string) Posture {
	var ps Posture
	add := func(p *projectRec) {
		v := p.view()
		ps.ActiveAgents += v.ActiveAgents
		ps.Agents += v.Agents
		ps.MissionsInFlight += v.MissionsInFlight
		ps.Runs24h += v.Runs24h
		ps.Tokens24h += v.Tokens24h
		ps.Errors1h += v.Errors1h
		ps.SpendToday += v.SpendToday
		ps.SpendTotal += v.SpendTotal
		ps.UnpricedCalls += v.UnpricedCalls
		// Spend today is measured against daily caps only.
		if v.Budget != nil && v.Budget.Period == "daily" {
			ps.BudgetLimit += v.Budget.LimitUSD
		}
	}
	if scope == ScopeAll {
		for _, p := range s.projects {
			add(p)
		}
		for _, w := range s.workers {
			ps.Workers++
			if w.Status == WorkerOnline {
				ps.WorkersOnline++
			}
		}
	} else {
		if p := s.projects[scope]; p != nil {
			add(p)
			ps.WorkersOnline = p.WorkersOnline
		}
		for _, w := range s.workers {
			if slices.Contains(w.Projects, scope) {
				ps.Workers++
			}
		}
	}
	ps.BudgetPct = pct(ps.SpendToday, ps.BudgetLimit)
	return ps
}

// View returns everything scope sees. The result shares nothing mutable
// with the State.
func (s *State) View(scope string) View {
	v := View{
		Posture:  s.Posture(scope),
		Projects: map[string]Project{},
		Agents:   map[string]Agent{},
		Workers:  map[string]Worker{},
		Missions: map[string]Mission{},
		Budgets:  map[string]Budget{},
	}
	for id, p := range s.projects {
		if scope == ScopeAll || scope == id {
			v.Projects[id] = p.view()
		}
	}
	for id, a := range s.agents {
		if inScope(scope, []string{a.ProjectID}) {
			v.Agents[id] = *a
		}
	}
	for id, w := range s.workers {
		if inScope(scope, w.Projects) {
			v.Workers[id] = workerIn(w, scope)
		}
	}
	for id, m := range s.missions {
		if inScope(scope, []string{m.ProjectID}) {
			v.Missions[id] = *m
		}
	}
	for id, b := range s.budgets {
		if inScope(scope, []string{b.ProjectID}) {
			v.Budgets[id] = *b
		}
	}
	if scope == ScopeAll {
		v.Ticker = slices.Clone(s.ticker)
	} else {
		v.Ticker = slices.Clone(s.tickerFor[scope])
	}
	if v.Ticker == nil {
		v.Ticker = []TickerEntry{}
	}
	return v
}

// Projects returns the ids of all projects the fold has seen, sorted.
func (s *State) Projects() []string {
	ids := make([]string, 0, len(s.projects))
	for id := range s.projects {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

func formatMS(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + "s"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
}
