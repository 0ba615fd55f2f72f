package fleet

import (
	"slices"
	"strconv"
	"strings"
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

// entityKey names one entity: a project's agent, mission, budget or record
// of a worker, or (project and id alike) a project row. In stale, project
// is empty and id is a key of the whole fleet's view.
type entityKey struct {
	c           coll
	project, id string
}

// Changes records what the fold touched since the last TakeChanges: which
// entities, which keys of the whole fleet's view may have gone, and how
// many ticker entries each scope gained.
type Changes struct {
	touched   map[entityKey]struct{}
	stale     map[entityKey]struct{}
	tickerAll int
	tickerFor map[string]int
}

func (c *Changes) reset() {
	c.touched = make(map[entityKey]struct{})
	c.stale = make(map[entityKey]struct{})
	c.tickerAll = 0
	c.tickerFor = make(map[string]int)
}

// Empty reports whether nothing changed.
func (c *Changes) Empty() bool { return len(c.touched) == 0 && len(c.stale) == 0 && c.tickerAll == 0 }

func (s *State) mark(c coll, project, id string) {
	s.ch.touched[entityKey{c, project, id}] = struct{}{}
}

// TakeChanges returns what changed since the previous call and starts a
// new record.
func (s *State) TakeChanges() *Changes {
	ch := s.ch
	s.ch.reset()
	s.takes++
	return &ch
}

// The whole fleet's view (scope ScopeAll) keys an agent or a mission by its
// id, unless another project uses the same id or the id holds a "/": then
// by "<project>/<id>" (no project id holds a "/"), which is also the id the
// entity carries in that view, and a mission's agent_id there is the key
// of its agent. Keys change when an id becomes shared or stops being: the
// whole fleet's diff then deletes the old key and sets the new one. A
// project's own scope always uses the ids as published.

func (s *State) useOf(c coll) map[string][]string {
	if c == collAgents {
		return s.agentUse
	}
	return s.missionUse
}

// wireKey is the key of project's agent or mission id in the whole
// fleet's view.
func (s *State) wireKey(c coll, project, id string) string {
	if len(s.useOf(c)[id]) > 1 || strings.Contains(id, "/") {
		return project + "/" + id
	}
	return id
}

// agentRef is how the whole fleet's view names agent id of project p in a
// mission: its key when p has it, else a key no agent has.
func (s *State) agentRef(p *projectRec, id string) string {
	if id == "" {
		return ""
	}
	if p.agents[id] == nil {
		return p.ID + "/" + id
	}
	return s.wireKey(collAgents, p.ID, id)
}

// addUse notes that project now uses id in c; an id that becomes shared
// changes the key of the project that had it alone.
func (s *State) addUse(c coll, project, id string) {
	use := s.useOf(c)
	ps := use[id]
	if len(ps) == 1 {
		s.rekey(c, ps[0], id)
	}
	use[id] = append(slices.Clip(ps), project)
}

// dropUse notes that project's entity id in c is gone: its key goes, and
// an id that stops being shared changes the key of the one left.
func (s *State) dropUse(c coll, project, id string) {
	use := s.useOf(c)
	ps := use[id]
	s.ch.stale[entityKey{c, "", s.wireKey(c, project, id)}] = struct{}{}
	if len(ps) == 2 {
		other := ps[0]
		if other == project {
			other = ps[1]
		}
		s.rekey(c, other, id)
	}
	ps = slices.DeleteFunc(slices.Clone(ps), func(q string) bool { return q == project })
	if len(ps) == 0 {
		delete(use, id)
	} else {
		use[id] = ps
	}
}

// rekey marks project's entity id in c, whose key in the whole fleet's view
// is about to change, and the key it had as stale.
func (s *State) rekey(c coll, project, id string) {
	s.ch.stale[entityKey{c, "", s.wireKey(c, project, id)}] = struct{}{}
	s.mark(c, project, id)
	if c == collAgents {
		s.markMissionsOf(s.projects[project], id)
	}
}

// markMissionsOf marks p's missions run by agent id, whose agent_id in the
// whole fleet's view follows the agent's key.
func (s *State) markMissionsOf(p *projectRec, id string) {
	if p == nil || strings.Contains(id, "/") {
		return // an id with a "/" is keyed "<project>/<id>" whatever happens
	}
	for mid, m := range p.missions {
		if m.AgentID == id {
			s.mark(collMissions, p.ID, mid)
		}
	}
}

// Delta returns what changed in scope according to ch, which must be the
// changes taken since the View or Delta the receiver last saw. The posture
// is always included; callers drop it when it equals the last one sent.
func (s *State) Delta(scope string, ch *Changes) Delta {
	var d Delta
	del := map[coll]map[string]struct{}{}
	gone := func(c coll, key string) {
		if del[c] == nil {
			del[c] = map[string]struct{}{}
		}
		del[c][key] = struct{}{}
	}
	all := scope == ScopeAll
	for k := range ch.touched {
		if !all && k.project != scope {
			continue
		}
		p := s.projects[k.project]
		if k.c == collProjects {
			if p == nil {
				gone(k.c, k.id)
			} else {
				put(&d.Set.Projects, k.id, p.view())
			}
			continue
		}
		if p == nil {
			p = &projectRec{} // projects are never forgotten; this is for safety
		}
		switch k.c {
		case collAgents:
			a := p.agents[k.id]
			switch {
			case a != nil && all:
				key := s.wireKey(k.c, k.project, k.id)
				put(&d.Set.Agents, key, s.agentIn(a, key))
			case a != nil:
				put(&d.Set.Agents, k.id, a.Agent)
			case !all:
				gone(k.c, k.id)
			}
		case collMissions:
			m := p.missions[k.id]
			switch {
			case m != nil && all:
				key := s.wireKey(k.c, k.project, k.id)
				put(&d.Set.Missions, key, s.missionIn(p, m, key))
			case m != nil:
				put(&d.Set.Missions, k.id, *m)
			case !all:
				gone(k.c, k.id)
			}
		case collWorkers:
			switch {
			case all && len(s.workerUse[k.id]) > 0:
				put(&d.Set.Workers, k.id, s.mergedWorker(k.id))
			case !all && p.workers[k.id] != nil:
				put(&d.Set.Workers, k.id, *p.workers[k.id])
			default:
				gone(k.c, k.id)
			}
		case collBudgets:
			if b := p.budgets[k.id]; b != nil {
				put((*map[string]Budget)(&d.Set.Budgets), k.id, b.seenBy(scope))
			} else {
				gone(k.c, k.id)
			}
		}
	}
	if all {
		// Keys the fleet's view may have held for entities now gone or
		// keyed otherwise: deleted unless set again.
		for k := range ch.stale {
			if !d.Set.has(k.c, k.id) {
				gone(k.c, k.id)
			}
		}
	}
	for c, keys := range del {
		if d.Del == nil {
			d.Del = make(map[string][]string)
		}
		ids := make([]string, 0, len(keys))
		for id := range keys {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		d.Del[collNames[c]] = ids
	}
	n := ch.tickerAll
	list := s.ticker
	if !all {
		n = ch.tickerFor[scope]
		list = nil
		if p := s.projects[scope]; p != nil {
			list = p.ticker
		}
	}
	if n > len(list) {
		n = len(list)
	}
	if n > 0 {
		d.Ticker = slices.Clone(list[len(list)-n:])
	}
	ps := s.Posture(scope)
	d.Posture = &ps
	return d
}

// has reports whether set holds key in collection c.
func (set *Set) has(c coll, key string) bool {
	var ok bool
	switch c {
	case collProjects:
		_, ok = set.Projects[key]
	case collAgents:
		_, ok = set.Agents[key]
	case collWorkers:
		_, ok = set.Workers[key]
	case collMissions:
		_, ok = set.Missions[key]
	case collBudgets:
		_, ok = set.Budgets[key]
	}
	return ok
}

// agentIn is a as the whole fleet's view shows it under key.
func (s *State) agentIn(a *agentRec, key string) Agent {
	v := a.Agent
	v.ID = key
	return v
}

// missionIn is p's mission m as the whole fleet's view shows it under key.
func (s *State) missionIn(p *projectRec, m *Mission, key string) Mission {
	v := *m
	v.ID = key
	v.AgentID = s.agentRef(p, m.AgentID)
	return v
}

// mergedWorker is worker id as the whole fleet sees it: one worker for all
// the projects that have a record of it (Projects lists them, sorted), its
// status the liveliest of theirs, and its other fields those of the lead
// record: the liveliest, then the last seen, then the first project's.
func (s *State) mergedWorker(id string) Worker {
	projects := s.workerUse[id]
	var lead *Worker
	for _, pid := range projects {
		w := s.projects[pid].workers[id]
		if lead == nil || leads(w, lead) {
			lead = w
		}
	}
	v := *lead
	v.Projects = projects
	return v
}

// leads reports whether a leads b in a merged worker.
func leads(a, b *Worker) bool {
	if ra, rb := liveness(a.Status), liveness(b.Status); ra != rb {
		return ra > rb
	}
	return a.LastSeen.After(b.LastSeen)
}

func liveness(status string) int {
	switch status {
	case WorkerOnline:
		return 2
	case WorkerStale:
		return 1
	}
	return 0
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
		for id, projects := range s.workerUse {
			ps.Workers++
			for _, pid := range projects {
				if s.projects[pid].workers[id].Status == WorkerOnline {
					ps.WorkersOnline++
					break
				}
			}
		}
	} else if p := s.projects[scope]; p != nil {
		add(p)
		ps.WorkersOnline = p.WorkersOnline
		ps.Workers = len(p.workers)
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
	if scope == ScopeAll {
		for id, p := range s.projects {
			v.Projects[id] = p.view()
			for aid, a := range p.agents {
				key := s.wireKey(collAgents, id, aid)
				v.Agents[key] = s.agentIn(a, key)
			}
			for mid, m := range p.missions {
				key := s.wireKey(collMissions, id, mid)
				v.Missions[key] = s.missionIn(p, m, key)
			}
			for bid, b := range p.budgets {
				v.Budgets[bid] = *b
			}
		}
		for id := range s.workerUse {
			v.Workers[id] = s.mergedWorker(id)
		}
		v.Ticker = slices.Clone(s.ticker)
	} else if p := s.projects[scope]; p != nil {
		v.Projects[scope] = p.view()
		for id, a := range p.agents {
			v.Agents[id] = a.Agent
		}
		for id, m := range p.missions {
			v.Missions[id] = *m
		}
		for id, w := range p.workers {
			v.Workers[id] = *w
		}
		for id, b := range p.budgets {
			v.Budgets[id] = b.seenBy(scope)
		}
		v.Ticker = slices.Clone(p.ticker)
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

// Size counts what the fold holds, for the bounds of Limits.
type Size struct {
	Projects          int `json:"projects"`
	AnnouncedProjects int `json:"announced_projects"`
	Agents            int `json:"agents"`
	Missions          int `json:"missions"`
	Workers           int `json:"workers"` // records: a worker serving two projects counts twice
	Budgets           int `json:"budgets"`
	OpenRuns          int `json:"open_runs"`
	FinishedMissions  int `json:"finished_missions"`
	EventIDs          int `json:"event_ids"` // remembered for dedupe
	// Largest is the most any one project holds of each per-project kind.
	Largest ProjectSize `json:"largest"`
}

// ProjectSize counts what one project holds.
type ProjectSize struct {
	Agents           int `json:"agents"`
	Missions         int `json:"missions"`
	Workers          int `json:"workers"`
	Budgets          int `json:"budgets"`
	OpenRuns         int `json:"open_runs"`
	FinishedMissions int `json:"finished_missions"`
}

// Size counts what the fold holds. It costs a walk over the projects.
func (s *State) Size() Size {
	z := Size{Projects: len(s.projects), AnnouncedProjects: s.announced, EventIDs: s.seen.len()}
	for _, p := range s.projects {
		ps := ProjectSize{Agents: len(p.agents), Missions: len(p.missions), Workers: len(p.workers), Budgets: len(p.budgets),
			OpenRuns: len(p.runs), FinishedMissions: p.finished.len()}
		z.Agents += ps.Agents
		z.Missions += ps.Missions
		z.Workers += ps.Workers
		z.Budgets += ps.Budgets
		z.OpenRuns += ps.OpenRuns
		z.FinishedMissions += ps.FinishedMissions
		l := &z.Largest
		l.Agents, l.Missions, l.Workers = max(l.Agents, ps.Agents), max(l.Missions, ps.Missions), max(l.Workers, ps.Workers)
		l.Budgets, l.OpenRuns = max(l.Budgets, ps.Budgets), max(l.OpenRuns, ps.OpenRuns)
		l.FinishedMissions = max(l.FinishedMissions, ps.FinishedMissions)
	}
	return z
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

func formatMS(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + "s"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
}
