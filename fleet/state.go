package fleet

import (
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// ScopeAll is the scope of the whole fleet (admins only).
const ScopeAll = "*"

// Result says what Apply did with an event.
type Result int

// Results of Apply.
const (
	Applied   Result = iota // folded
	Duplicate               // an event id already folded; ignored
	Unknown                 // an unknown type: counted and kept in the ticker
	Rejected                // invalid: not folded (see DecodeEvent)
	Ticked                  // a clock tick: only the sequence and the clock moved
)

// Bounds of the fold's memory.
const (
	seenCap     = 1 << 16 // event ids remembered for dedupe
	finishedCap = 1 << 14 // finished mission ids remembered, so late events don't revive them
	openRunsCap = 1 << 14 // runs in progress tracked for the dossier
)

// State is the fleet as folded from the event stream. It is a pure,
// deterministic function of the sequence of (seq, stored time, event)
// applied to it: two States fed the same sequence are equal. State is not
// safe for concurrent use; one goroutine owns it.
type State struct {
	pricing *Pricing

	seq   uint64
	clock time.Time // the newest stored time seen; windows and liveness use it
	// nextSweep is the earliest clock at which a worker's liveness or an
	// agent's activity can change (never later than the true one): the
	// fold sweeps as soon as the clock reaches it, so that liveness is
	// exact on every message, and not more often.
	nextSweep time.Time

	// staleAfter and offlineAfter are the liveness thresholds (StaleAfter
	// and OfflineAfter unless SetLiveness changed them).
	staleAfter, offlineAfter time.Duration

	agents   map[string]*Agent
	workers  map[string]*Worker
	missions map[string]*Mission
	projects map[string]*projectRec
	budgets  map[string]*Budget
	runs     map[string]*openRun
	runOrder fifo

	seen     fifoSet
	finished fifoSet

	ticker    []TickerEntry            // newest last, at most TickerSize
	tickerFor map[string][]TickerEntry // per project

	counts Counts
	ch     Changes
}

// Counts are the fold's own counters since it started from an empty state.
type Counts struct {
	Applied    int64 `json:"applied"`
	Duplicates int64 `json:"duplicates"`
	Unknown    int64 `json:"unknown"`
	Rejected   int64 `json:"rejected"`
	Unpriced   int64 `json:"unpriced"`
}

type projectRec struct {
	Project
	Win      window `json:"win"`
	SpendDay int64  `json:"spend_day"` // the UTC day (unix days) SpendToday belongs to
}

type openRun struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	AgentID   string    `json:"agent_id"`
	MissionID string    `json:"mission_id,omitempty"`
	Model     string    `json:"model,omitempty"`
	Started   time.Time `json:"started,omitzero"`
	Calls     int64     `json:"calls"`
	Tokens    int64     `json:"tokens"`
	Spend     Micros    `json:"spend"`
}

// NewState returns an empty fleet priced by p (nil means DefaultPricing).
func NewState(p *Pricing) *State {
	if p == nil {
		p = DefaultPricing()
	}
	s := &State{pricing: p, staleAfter: StaleAfter, offlineAfter: OfflineAfter}
	s.init()
	return s
}

// SetLiveness sets how long after its last event a worker is stale and
// offline; zero keeps the DESIGN defaults (StaleAfter, OfflineAfter).
// Tests use short ones. The thresholds are configuration, not state: they
// are not in checkpoints, and replicas must agree on them to fold alike.
// The next sweep applies them.
func (s *State) SetLiveness(stale, offline time.Duration) {
	s.staleAfter, s.offlineAfter = cmpOr(stale, StaleAfter), cmpOr(offline, OfflineAfter)
	if s.offlineAfter < s.staleAfter {
		s.offlineAfter = s.staleAfter
	}
	s.nextSweep = time.Time{}
}

// Liveness returns the thresholds SetLiveness set.
func (s *State) Liveness() (stale, offline time.Duration) { return s.staleAfter, s.offlineAfter }

func cmpOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (s *State) init() {
	s.agents = make(map[string]*Agent)
	s.workers = make(map[string]*Worker)
	s.missions = make(map[string]*Mission)
	s.projects = make(map[string]*projectRec)
	s.budgets = make(map[string]*Budget)
	s.runs = make(map[string]*openRun)
	s.tickerFor = make(map[string][]TickerEntry)
	s.seen.init(seenCap)
	s.finished.init(finishedCap)
	s.runOrder.init(openRunsCap)
	s.ch.reset()
}

// Seq returns the stream sequence of the last message folded or skipped.
func (s *State) Seq() uint64 { return s.seq }

// Clock returns the fold's notion of now: the newest stored time seen.
func (s *State) Clock() time.Time { return s.clock }

// Counts returns the fold's counters.
func (s *State) Counts() Counts { return s.counts }

// Pricing returns the table the fold prices calls with.
func (s *State) Pricing() *Pricing { return s.pricing }

// Skip advances over a message that was rejected before the fold (bad JSON,
// oversize, ...): the sequence and the clock move, nothing else does.
func (s *State) Skip(seq uint64, at time.Time) {
	s.counts.Rejected++
	s.advance(seq, at)
}

// Tick advances over a clock tick (ClockSubject): the sequence and the
// clock move, so liveness and windows follow time when nothing else is
// published; nothing is counted.
func (s *State) Tick(seq uint64, at time.Time) {
	s.advance(seq, at)
}

func (s *State) advance(seq uint64, at time.Time) {
	if seq > s.seq {
		s.seq = seq
	}
	if at.After(s.clock) {
		oldMin := minuteOf(s.clock)
		oldDay := dayOf(s.clock)
		s.clock = at.UTC()
		if m := minuteOf(s.clock); m != oldMin {
			for _, p := range s.projects {
				if p.Win.advance(m) {
					s.markProject(p)
				}
			}
		}
		if d := dayOf(s.clock); d != oldDay {
			for _, p := range s.projects {
				if p.SpendDay != d && p.SpendToday != 0 {
					p.SpendToday = 0
					s.markProject(p)
				}
				p.SpendDay = d
			}
		}
		if !s.clock.Before(s.nextSweep) {
			s.sweep()
		}
	}
}

func dayOf(t time.Time) int64 { return int64(math.Floor(float64(t.Unix()) / 86400)) }

// Apply folds one event taken from stream position seq and stored at at.
// A zero at means the event's own time. Events that fail validation are
// counted as rejected and change nothing but seq and the clock.
func (s *State) Apply(seq uint64, at time.Time, ev Event) Result {
	if at.IsZero() {
		at = ev.Time
	}
	if ev.payload == nil && Known(ev.Type) {
		if err := ev.Validate(); err != nil {
			s.Skip(seq, at)
			return Rejected
		}
		p, err := decodePayload(&ev)
		if err != nil {
			s.Skip(seq, at)
			return Rejected
		}
		ev.payload = p
	} else if ev.payload == nil {
		if err := ev.Validate(); err != nil {
			s.Skip(seq, at)
			return Rejected
		}
	}
	s.advance(seq, at)
	if s.seen.has(ev.ID) {
		s.counts.Duplicates++
		return Duplicate
	}
	s.seen.add(ev.ID)

	// The event's own time, never later than the clock: a worker with a
	// fast clock cannot move the windows.
	t := ev.Time.UTC()
	if t.After(s.clock) {
		t = s.clock
	}
	p := s.project(ev.ProjectID)
	res := Applied
	level, text := "info", ""
	switch d := ev.payload.(type) {
	case *WorkerJoined:
		w := s.worker(ev.WorkerID, ev.ProjectID, at)
		if w != nil {
			w.Host, w.Version, w.Capacity = d.Host, d.Version, d.Capacity
			if d.Pools != nil {
				w.Pools = slices.Clone(d.Pools)
			}
			if d.Models != nil {
				w.Models = slices.Clone(d.Models)
			}
			if d.Labels != nil {
				w.Labels = maps.Clone(d.Labels)
			}
			w.JoinedAt, w.LeftReason = t, ""
			w.State = "idle"
			s.setWorkerStatus(w, WorkerOnline)
			text = "worker " + ev.WorkerID + " joined from " + d.Host
		}
	case *WorkerHeartbeat:
		if w := s.worker(ev.WorkerID, ev.ProjectID, at); w != nil {
			w.State, w.ActiveMissions, w.Load = d.State, d.ActiveMissions, d.Load
		}
	case *WorkerLeft:
		if w := s.worker(ev.WorkerID, ev.ProjectID, at); w != nil {
			w.LeftReason = d.Reason
			if w.LeftReason == "" {
				w.LeftReason = "left"
			}
			w.State = "left"
			s.setWorkerStatus(w, WorkerOffline)
			text = "worker " + ev.WorkerID + " left: " + w.LeftReason
			level = "warn"
		}
	case *AgentCreated:
		a := s.agent(ev, at)
		if a != nil {
			a.Name, a.Role, a.Model, a.Version, a.Description = d.Name, d.Role, d.Model, d.Version, d.Description
			a.Tools, a.Skills = cloneOrEmpty(d.Tools), cloneOrEmpty(d.Skills)
			if a.Name == "" {
				a.Name = a.ID
			}
			text = "agent " + a.Name + " created (" + a.Model + ")"
		}
	case *AgentStateChange:
		text = "agent " + ev.AgentID + " is " + orDash(d.State)
		if a := s.agent(ev, at); a != nil {
			text = "agent " + a.Name + " is " + orDash(d.State)
			a.State = d.State
			s.touchAgent(a, ev.ProjectID) // the new state decides whether it is active
			if d.State == AgentError {
				level = "warn"
			}
		}
	case *MissionQueued:
		if m := s.mission(ev, t); m != nil {
			m.Title, m.Priority, m.Pool = d.Title, d.Priority, d.Pool
			if m.QueuedAt.IsZero() {
				m.QueuedAt = t
			}
			text = "mission " + ev.MissionID + " queued: " + d.Title
		}
	case nil:
		switch ev.Type {
		case TypeMissionRetrying:
			if m := s.mission(ev, t); m != nil {
				text = "mission " + ev.MissionID + " lost its lease; retrying"
				level = "warn"
			}
		case TypeProjectCreated:
			// The project row exists from here on, with zero figures.
			text = "project " + ev.ProjectID + " created"
		case TypeMissionClaimed:
			if m := s.mission(ev, t); m != nil {
				m.Status = MissionClaimedStatus
				m.Attempts++
				text = "mission " + ev.MissionID + " claimed by " + ev.WorkerID
			}
		default:
			if !Known(ev.Type) {
				res = Unknown
				s.counts.Unknown++
				p.UnknownEvents++
				text = "unknown event " + ev.Type
			}
		}
	case *MissionProgress:
		text = "mission " + ev.MissionID + " at " + strconv.FormatFloat(d.Pct, 'f', 0, 64) + "%"
		if d.Step != "" {
			text += ": " + d.Step
		}
		if m := s.mission(ev, t); m != nil {
			m.Status = MissionRunningStatus
			m.Pct, m.Step = d.Pct, d.Step
		}
	case *Outcome:
		switch ev.Type {
		case TypeMissionCompleted, TypeMissionFailed:
			text = s.finishMission(ev, p, d, t)
			if ev.Type == TypeMissionFailed {
				level = "error"
				p.Win.add(minuteOf(t), bucket{Errors: 1})
			}
		case TypeRunCompleted, TypeRunFailed:
			text = s.finishRun(ev, p, d, t)
			if ev.Type == TypeRunFailed {
				level = "error"
				p.Win.add(minuteOf(t), bucket{Errors: 1})
			}
		}
	case *RunStarted:
		r := s.openRun(ev, t)
		if d.Model != "" {
			r.Model = d.Model
		}
		p.RunsTotal++
		p.Win.add(minuteOf(t), bucket{Runs: 1})
		if a := s.agent(ev, at); a != nil {
			a.RunID, a.MissionID = ev.RunID, ev.MissionID
			a.State = AgentThinking
			a.Runs++
		}
		if ev.MissionID != "" {
			if m := s.mission(ev, t); m != nil {
				m.Status, m.RunID, m.AgentID = MissionRunningStatus, ev.RunID, ev.AgentID
			}
		}
		text = "run " + ev.RunID + " started on " + orDash(d.Model)
	case *LLMCall:
		text, level = s.llmCall(ev, p, d, t, at)
	case *ToolCall:
		if a := s.agent(ev, at); a != nil {
			a.ToolCalls++
			a.LatencyMS = ewma(a.LatencyMS, d.LatencyMS, a.LLMCalls+a.ToolCalls)
			if !statusOK(d.Status) {
				a.CallErrors++
			}
		}
		if r := s.runs[ev.RunID]; r != nil && r.ProjectID == ev.ProjectID {
			r.Calls++ // another tenant's run of the same id is not this call's
		}
		if !statusOK(d.Status) {
			p.Win.add(minuteOf(t), bucket{Errors: 1})
			level = "warn"
		}
		text = "tool " + d.Tool + " " + orDash(d.Status)
	case *BudgetNotice:
		text, level = s.budget(ev, p, d, t)
	}
	s.markProject(p)
	if ev.Type != TypeWorkerHeartbeat && ev.Type != TypeBudgetStatus {
		s.appendTicker(seq, ev, t, level, text)
	}
	if res == Applied {
		s.counts.Applied++
	}
	return res
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cloneOrEmpty(v []string) []string {
	if v == nil {
		return []string{}
	}
	return slices.Clone(v)
}

// ewma is a running mean over the first 20 samples, then an exponential
// moving average, rounded to 0.1 ms so that it prints short.
func ewma(old, sample float64, n int64) float64 {
	alpha := 0.05
	if n < 20 && n > 0 {
		alpha = 1 / float64(n)
	}
	v := old + alpha*(sample-old)
	return math.Round(v*10) / 10
}

func (s *State) llmCall(ev Event, p *projectRec, d *LLMCall, t, at time.Time) (string, string) {
	price, ok := s.pricing.Lookup(d.Model)
	var cost Micros
	level := "info"
	if ok {
		cost = price.Cost(*d)
	} else {
		s.counts.Unpriced++
		p.UnpricedCalls++
		level = "warn"
	}
	tokens := d.Tokens()
	p.TokensTotal += tokens
	p.SpendTotal += cost
	if dayOf(t) == p.SpendDay {
		p.SpendToday += cost
	}
	b := bucket{Tokens: tokens}
	if !statusOK(d.Status) {
		b.Errors = 1
		level = "warn"
	}
	p.Win.add(minuteOf(t), b)
	if a := s.agent(ev, at); a != nil {
		a.LLMCalls++
		a.Tokens += tokens
		a.Spend += cost
		a.LatencyMS = ewma(a.LatencyMS, d.LatencyMS, a.LLMCalls+a.ToolCalls)
		if !statusOK(d.Status) {
			a.CallErrors++
		}
	}
	if ev.RunID != "" {
		r := s.openRun(ev, t)
		r.Calls++
		r.Tokens += tokens
		r.Spend += cost
	}
	text := d.Model + " " + formatInt(tokens) + " tok $" + cost.String()
	if !ok {
		text = d.Model + " " + formatInt(tokens) + " tok (unpriced)"
	}
	return text, level
}

func (s *State) budget(ev Event, p *projectRec, d *BudgetNotice, t time.Time) (string, string) {
	// Keyed by project too: a team or user budget seen from two projects is
	// two entries, so that an entry never moves between scopes.
	id := ev.ProjectID + "/" + d.Scope + ":" + d.ScopeID + ":" + d.Period
	b := s.budgets[id]
	if b == nil {
		b = &Budget{ID: id}
		s.budgets[id] = b
	}
	b.ProjectID, b.Scope, b.ScopeID, b.Period = ev.ProjectID, d.Scope, d.ScopeID, d.Period
	b.LimitUSD, b.SpentUSD, b.Action, b.Model, b.UpdatedAt = d.LimitUSD, d.SpentUSD, d.Action, d.Model, t
	b.Pct = pct(d.SpentUSD, d.LimitUSD)
	switch ev.Type {
	case TypeBudgetWarning:
		b.Status = "warning"
	case TypeBudgetExceeded:
		b.Status = "exceeded"
	case TypeBudgetThrottled:
		b.Status = "throttled"
	case TypeBudgetStatus:
		warn := d.WarnPct
		if warn <= 0 {
			warn = DefaultWarnPct
		}
		switch {
		case b.Pct >= 100:
			b.Status = "reached"
		case b.Pct >= warn:
			b.Status = "warning"
		default:
			b.Status = "ok"
		}
	}
	s.mark(collBudgets, id, ev.ProjectID)
	if d.Scope == "project" && d.ScopeID == ev.ProjectID {
		p.Budget = &BudgetStatus{LimitUSD: d.LimitUSD, SpentUSD: d.SpentUSD, Pct: b.Pct, Action: d.Action, Period: d.Period}
	}
	level := "warn"
	if ev.Type == TypeBudgetExceeded {
		level = "error"
	}
	return "budget " + b.Status + ": " + d.Scope + " " + orDash(d.ScopeID) + " $" + d.SpentUSD.Cents() + " of $" + d.LimitUSD.Cents(), level
}

func pct(spent, limit Micros) float64 {
	if limit <= 0 {
		return 0
	}
	return math.Round(float64(spent)/float64(limit)*1000) / 10
}

func (s *State) finishMission(ev Event, p *projectRec, d *Outcome, t time.Time) string {
	m := s.missions[ev.MissionID]
	if ev.MissionID == "" || s.finished.has(ev.MissionID) || m != nil && m.ProjectID != ev.ProjectID {
		// Already finished, or another project's mission: tenants never
		// finish each other's missions.
		return "mission " + ev.MissionID + " " + ev.Type[len("mission."):]
	}
	s.finished.add(ev.MissionID)
	if m != nil {
		delete(s.missions, ev.MissionID)
		p.MissionsInFlight--
		s.mark(collMissions, ev.MissionID, m.ProjectID)
	}
	if ev.Type == TypeMissionCompleted {
		p.MissionsDone++
		return "mission " + ev.MissionID + " completed in " + formatMS(d.DurationMS)
	}
	p.MissionsFailed++
	return "mission " + ev.MissionID + " failed: " + orDash(d.Error)
}

func (s *State) finishRun(ev Event, p *projectRec, d *Outcome, t time.Time) string {
	r := s.runs[ev.RunID]
	if r == nil || r.ProjectID != ev.ProjectID {
		r = &openRun{ID: ev.RunID, ProjectID: ev.ProjectID, AgentID: ev.AgentID, MissionID: ev.MissionID}
	} else {
		delete(s.runs, ev.RunID)
	}
	status := "completed"
	if ev.Type == TypeRunFailed {
		status = "failed"
	}
	sum := RunSummary{ID: ev.RunID, MissionID: r.MissionID, Model: r.Model, Status: status, Started: r.Started,
		Ended: t, DurationMS: d.DurationMS, Calls: r.Calls, Tokens: r.Tokens, Spend: r.Spend, Error: d.Error}
	if a := s.agentFor(ev.AgentID, ev.ProjectID); a != nil {
		if ev.Type == TypeRunFailed {
			a.RunsFailed++
		}
		if a.RunID == ev.RunID {
			a.RunID, a.MissionID = "", ""
			a.State = AgentIdle
		}
		runs := append([]RunSummary{sum}, a.RecentRuns...)
		if len(runs) > RecentRunsPerAgent {
			runs = runs[:RecentRunsPerAgent]
		}
		a.RecentRuns = runs
		s.touchAgent(a, ev.ProjectID)
	}
	if ev.Type == TypeRunFailed {
		return "run " + ev.RunID + " failed: " + orDash(d.Error)
	}
	return "run " + ev.RunID + " completed in " + formatMS(d.DurationMS)
}

// project returns the aggregate row of id, creating it.
func (s *State) project(id string) *projectRec {
	p := s.projects[id]
	if p == nil {
		p = &projectRec{Project: Project{ID: id}, Win: window{Head: minuteOf(s.clock)}, SpendDay: dayOf(s.clock)}
		s.projects[id] = p
	}
	return p
}

func (s *State) markProject(p *projectRec) { s.mark(collProjects, p.ID, p.ID) }

// worker returns the worker of an event, creating it, and records that it
// serves project. It refreshes the worker's liveness to at.
func (s *State) worker(id, project string, at time.Time) *Worker {
	if id == "" {
		return nil
	}
	w := s.workers[id]
	if w == nil {
		w = &Worker{ID: id, Projects: []string{}, State: "idle", Status: WorkerOnline}
		s.workers[id] = w
		s.project(project).WorkersOnline++
		w.Projects = []string{project}
	} else if !slices.Contains(w.Projects, project) {
		ps := append(slices.Clone(w.Projects), project)
		sort.Strings(ps)
		w.Projects = ps
		if w.Status == WorkerOnline {
			s.project(project).WorkersOnline++
		}
	}
	w.LastSeen = at.UTC()
	s.sweepBy(w.LastSeen.Add(s.staleAfter))
	if w.Status != WorkerOnline && w.LeftReason == "" {
		s.setWorkerStatus(w, WorkerOnline)
	}
	s.mark(collWorkers, id, w.Projects...)
	return w
}

func (s *State) setWorkerStatus(w *Worker, status string) {
	if w.Status == status {
		return
	}
	delta := 0
	if w.Status == WorkerOnline {
		delta = -1
	} else if status == WorkerOnline {
		delta = 1
	}
	w.Status = status
	for _, id := range w.Projects {
		p := s.project(id)
		p.WorkersOnline += delta
		s.markProject(p)
	}
	s.mark(collWorkers, w.ID, w.Projects...)
}

// agent returns the agent of an event, creating it, and refreshes its liveness.
func (s *State) agent(ev Event, at time.Time) *Agent {
	a := s.agentFor(ev.AgentID, ev.ProjectID)
	if a == nil {
		return nil
	}
	if ev.WorkerID != "" {
		a.WorkerID = ev.WorkerID
	}
	a.LastSeen = at.UTC()
	if a.State == AgentOffline && ev.Type != TypeAgentState {
		a.State = AgentIdle
	}
	s.touchAgent(a, ev.ProjectID)
	return a
}

// agentFor returns agent id of project, creating it. An agent id used by
// another project is refused: tenants never share an agent.
func (s *State) agentFor(id, project string) *Agent {
	if id == "" {
		return nil
	}
	a := s.agents[id]
	if a == nil {
		a = &Agent{ID: id, ProjectID: project, Name: id, State: AgentIdle, Tools: []string{}, Skills: []string{}, RecentRuns: []RunSummary{}}
		s.agents[id] = a
		s.project(project).Agents++
	}
	if a.ProjectID != project {
		return nil
	}
	return a
}

func (s *State) touchAgent(a *Agent, project string) {
	active := a.State != AgentOffline && s.clock.Sub(a.LastSeen) < AgentActiveFor
	if active {
		s.sweepBy(a.LastSeen.Add(AgentActiveFor))
	}
	if active != a.Active {
		a.Active = active
		p := s.project(project)
		if active {
			p.ActiveAgents++
		} else {
			p.ActiveAgents--
		}
	}
	s.mark(collAgents, a.ID, a.ProjectID)
}

// mission returns the in-flight mission of an event, creating it, or nil if
// the mission has already finished.
func (s *State) mission(ev Event, t time.Time) *Mission {
	if ev.MissionID == "" || s.finished.has(ev.MissionID) {
		return nil
	}
	m := s.missions[ev.MissionID]
	if m == nil {
		m = &Mission{ID: ev.MissionID, ProjectID: ev.ProjectID, Status: MissionQueuedStatus}
		s.missions[ev.MissionID] = m
		s.project(ev.ProjectID).MissionsInFlight++
	}
	if m.ProjectID != ev.ProjectID {
		return nil
	}
	if ev.TeamID != "" {
		m.TeamID = ev.TeamID
	}
	if ev.UserID != "" {
		m.UserID = ev.UserID
	}
	if ev.WorkerID != "" {
		m.WorkerID = ev.WorkerID
	}
	if ev.AgentID != "" {
		m.AgentID = ev.AgentID
	}
	if ev.Type == TypeMissionRetrying {
		m.Status = MissionRetryingStatus
		m.WorkerID = ""
	}
	if t.After(m.UpdatedAt) {
		m.UpdatedAt = t
	}
	s.mark(collMissions, m.ID, m.ProjectID)
	return m
}

func (s *State) openRun(ev Event, t time.Time) *openRun {
	r := s.runs[ev.RunID]
	if r != nil && r.ProjectID != ev.ProjectID {
		// Another project's run with the same id: tenants never share a
		// run, so this event's figures go to a run nobody keeps.
		r = &openRun{ID: ev.RunID, ProjectID: ev.ProjectID, AgentID: ev.AgentID, MissionID: ev.MissionID}
	}
	if r == nil {
		r = &openRun{ID: ev.RunID, ProjectID: ev.ProjectID, AgentID: ev.AgentID, MissionID: ev.MissionID}
		s.runs[ev.RunID] = r
		if evicted, ok := s.runOrder.push(ev.RunID); ok {
			delete(s.runs, evicted)
		}
	}
	if ev.Type == TypeRunStarted {
		r.Started = t
	}
	return r
}

// neverSweep stands for no deadline at all: later than any stored time.
var neverSweep = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// sweepBy makes the fold sweep once the clock reaches t, if not earlier.
func (s *State) sweepBy(t time.Time) {
	if t.Before(s.nextSweep) {
		s.nextSweep = t
	}
}

// sweep re-derives what depends on the clock alone: worker liveness, agent
// activity and forgetting long-gone workers. It then sets nextSweep to the
// earliest time one of them can change again.
func (s *State) sweep() {
	s.nextSweep = neverSweep
	// after schedules the next sweep at the earliest of ts still to come.
	after := func(ts ...time.Time) {
		for _, t := range ts {
			if t.After(s.clock) {
				s.sweepBy(t)
			}
		}
	}
	for id, w := range s.workers {
		age := s.clock.Sub(w.LastSeen)
		status := WorkerOnline
		switch {
		case w.LeftReason != "" || age >= s.offlineAfter:
			status = WorkerOffline
		case age >= s.staleAfter:
			status = WorkerStale
		}
		s.setWorkerStatus(w, status)
		if status == WorkerOffline && age >= ForgetWorkerFor {
			delete(s.workers, id)
			s.mark(collWorkers, id, w.Projects...)
			continue
		}
		after(w.LastSeen.Add(s.staleAfter), w.LastSeen.Add(s.offlineAfter), w.LastSeen.Add(ForgetWorkerFor))
	}
	for _, a := range s.agents {
		if a.Active && s.clock.Sub(a.LastSeen) >= AgentActiveFor {
			a.Active = false
			p := s.project(a.ProjectID)
			p.ActiveAgents--
			s.markProject(p)
			s.mark(collAgents, a.ID, a.ProjectID)
		}
		if a.Active {
			after(a.LastSeen.Add(AgentActiveFor))
		}
	}
}

func (s *State) appendTicker(seq uint64, ev Event, t time.Time, level, text string) {
	if text == "" {
		text = ev.Type
	}
	e := TickerEntry{Seq: seq, ID: ev.ID, Type: ev.Type, Time: t, ProjectID: ev.ProjectID,
		AgentID: ev.AgentID, MissionID: ev.MissionID, WorkerID: ev.WorkerID, Level: level, Text: text}
	s.ticker = pushTicker(s.ticker, e)
	s.tickerFor[ev.ProjectID] = pushTicker(s.tickerFor[ev.ProjectID], e)
	s.ch.tickerAll++
	s.ch.tickerFor[ev.ProjectID]++
}

func pushTicker(list []TickerEntry, e TickerEntry) []TickerEntry {
	if len(list) >= TickerSize {
		copy(list, list[1:])
		list[len(list)-1] = e
		return list
	}
	return append(list, e)
}
