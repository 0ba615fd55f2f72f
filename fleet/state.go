package fleet

import (
	"container/list"
	"maps"
	"math"
	"slices"
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

// seenCap is how many event ids the fold remembers for dedupe.
const seenCap = 1 << 16

// State is the fleet as folded from the event stream. It is a pure,
// deterministic function of the sequence of (seq, stored time, event)
// applied to it: two States fed the same sequence are equal. State is not
// safe for concurrent use; one goroutine owns it.
//
// Each project's entities are its own: the same agent, mission or run id in
// two projects names two entities, and no event of one project changes
// another project's entities or figures. A worker that serves several
// projects has one record per project, fed by that project's events only;
// the whole fleet's view merges them (see View).
type State struct {
	pricing *Pricing

	seq   uint64
	clock time.Time // the newest stored time seen; windows and liveness use it
	// takes counts TakeChanges calls: what was marked changed since the
	// last one need not be marked again (budget gauges, on every call).
	takes uint64
	// nextSweep is the earliest clock at which a worker's liveness, an
	// agent's activity or an agent's memory can change (never later than
	// the true one): the fold sweeps as soon as the clock reaches it, so
	// that liveness is exact on every message, and not more often.
	nextSweep time.Time

	// staleAfter and offlineAfter are the liveness thresholds (StaleAfter
	// and OfflineAfter unless SetLiveness changed them); limits are the
	// bounds of SetLimits. Configuration, not state.
	staleAfter, offlineAfter time.Duration
	limits                   Limits

	projects  map[string]*projectRec
	announced int // projects announced by project.created

	// The projects that use each agent and mission id, and those with a
	// record of each worker id (sorted): the whole fleet's view keys an
	// agent or a mission by "<project>/<id>" while its id is used by more
	// than one project, and merges a worker's records.
	agentUse, missionUse, workerUse map[string][]string

	seen   fifoSet       // project/id of the events folded, newest seenCap
	ticker []TickerEntry // newest last, at most TickerSize

	counts Counts
	ch     Changes
	effect Effect
}

// Counts are the fold's own counters since it started from an empty state.
type Counts struct {
	Applied    int64 `json:"applied"`
	Duplicates int64 `json:"duplicates"`
	Unknown    int64 `json:"unknown"`
	// Rejected counts the messages not folded: invalid ones and, among
	// them, Limited, those refused by a bound of Limits.
	Rejected int64 `json:"rejected"`
	Limited  int64 `json:"limited"`
	Unpriced int64 `json:"unpriced"`
}

// projectRec is a project: its aggregate row and everything that is its own.
type projectRec struct {
	Project
	Win      window `json:"win"`
	SpendDay int64  `json:"spend_day"` // the UTC day (unix days) SpendToday belongs to
	// Announced is true once a project.created named the project.
	Announced bool `json:"announced,omitempty"`

	agents   map[string]*agentRec
	missions map[string]*Mission
	workers  map[string]*Worker // this project's record of each worker
	budgets  map[string]*Budget
	gauges   map[string]*gauge // by budget id: how its spend moves with calls
	gaugeSet []*gauge          // the same, to range over on each call
	runs     map[string]*openRun
	runOrder list.List // of *openRun, oldest first
	finished fifoSet   // ids of finished missions
	ticker   []TickerEntry
}

// agentRec is an agent and when an event last named it.
type agentRec struct {
	Agent
	// At is the stored time of the last event that named the agent; the
	// fold forgets it Limits.ForgetAgentsAfter later.
	At time.Time `json:"at"`
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

	elem *list.Element // in its project's runOrder
}

// NewState returns an empty fleet priced by p (nil means DefaultPricing).
func NewState(p *Pricing) *State {
	if p == nil {
		p = DefaultPricing()
	}
	s := &State{pricing: p, staleAfter: StaleAfter, offlineAfter: OfflineAfter, limits: DefaultLimits}
	s.projects = make(map[string]*projectRec)
	s.agentUse = make(map[string][]string)
	s.missionUse = make(map[string][]string)
	s.workerUse = make(map[string][]string)
	s.ch.reset()
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

// SetLimits sets the bounds of the fold (zero fields: DefaultLimits). Like
// the liveness thresholds they are configuration: not in checkpoints, the
// same on every replica. The next event and the next sweep apply them.
func (s *State) SetLimits(l Limits) {
	s.limits = l.WithDefaults()
	s.nextSweep = time.Time{}
}

// Limits returns the bounds SetLimits set.
func (s *State) Limits() Limits { return s.limits }

func cmpOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Seq returns the stream sequence of the last message folded or skipped.
func (s *State) Seq() uint64 { return s.seq }

// Clock returns the fold's notion of now: the newest stored time seen.
func (s *State) Clock() time.Time { return s.clock }

// Counts returns the fold's counters.
func (s *State) Counts() Counts { return s.counts }

// Effect returns what the last Apply did beyond its Result (zero after
// Skip and Tick).
func (s *State) Effect() Effect { return s.effect }

// Pricing returns the table the fold prices calls with.
func (s *State) Pricing() *Pricing { return s.pricing }

// Announced reports whether a project.created announced project.
func (s *State) Announced(project string) bool {
	p := s.projects[project]
	return p != nil && p.Announced
}

// Skip advances over a message that was rejected before the fold (bad JSON,
// oversize, ...): the sequence and the clock move, nothing else does.
func (s *State) Skip(seq uint64, at time.Time) {
	s.effect = Effect{}
	s.counts.Rejected++
	s.advance(seq, at)
}

// Tick advances over a clock tick (ClockSubject): the sequence and the
// clock move, so liveness and windows follow time when nothing else is
// published; nothing is counted.
func (s *State) Tick(seq uint64, at time.Time) {
	s.effect = Effect{}
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
// A zero at means the event's own time. Events that fail validation, and
// events that would make an entity past a bound of Limits, are counted as
// rejected and change nothing but seq and the clock; Effect says why.
func (s *State) Apply(seq uint64, at time.Time, ev Event) Result {
	s.effect = Effect{}
	if at.IsZero() {
		at = ev.Time
	}
	if ev.payload == nil {
		err := ev.Validate()
		if err == nil && Known(ev.Type) {
			ev.payload, err = decodePayload(&ev)
		}
		if err != nil {
			s.Skip(seq, at)
			s.effect.Reason = RejectReason(err)
			return Rejected
		}
	}
	s.advance(seq, at)
	// An event id is unique within its project: another project's event
	// of the same id is not a duplicate of it.
	key := ev.ProjectID + "/" + ev.ID
	if s.seen.has(key) {
		s.counts.Duplicates++
		return Duplicate
	}
	if r := s.refusal(&ev); r != "" {
		s.counts.Rejected++
		s.counts.Limited++
		s.effect.Reason = r
		return Rejected
	}
	s.seen.add(key, seenCap)

	// The event's own time, never later than the clock: a worker with a
	// fast clock cannot move the windows.
	t := ev.Time.UTC()
	if t.After(s.clock) {
		t = s.clock
	}
	p := s.project(ev.ProjectID)
	res := Applied
	// own is the ticker line the event's own project sees, when it differs
	// from the whole fleet's (a global budget's figures are withheld).
	level, text, own := "info", "", ""
	switch d := ev.payload.(type) {
	case *WorkerJoined:
		if w := s.worker(p, ev.WorkerID, at); w != nil {
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
			s.setWorkerStatus(p, w, WorkerOnline)
			text = "worker " + ev.WorkerID + " joined from " + d.Host
		}
	case *WorkerHeartbeat:
		if w := s.worker(p, ev.WorkerID, at); w != nil {
			w.State, w.ActiveMissions, w.Load = d.State, d.ActiveMissions, d.Load
		}
	case *WorkerLeft:
		if w := s.worker(p, ev.WorkerID, at); w != nil {
			w.LeftReason = d.Reason
			if w.LeftReason == "" {
				w.LeftReason = "left"
			}
			w.State = "left"
			s.setWorkerStatus(p, w, WorkerOffline)
			text = "worker " + ev.WorkerID + " left: " + w.LeftReason
			level = "warn"
		}
	case *AgentCreated:
		if a := s.agent(p, ev, at); a != nil {
			a.Name, a.Role, a.Model, a.Version, a.Description = d.Name, d.Role, d.Model, d.Version, d.Description
			a.Tools, a.Skills = cloneOrEmpty(d.Tools), cloneOrEmpty(d.Skills)
			if a.Name == "" {
				a.Name = a.ID
			}
			text = "agent " + a.Name + " created (" + a.Model + ")"
		}
	case *AgentStateChange:
		text = "agent " + ev.AgentID + " is " + orDash(d.State)
		if a := s.agent(p, ev, at); a != nil {
			text = "agent " + a.Name + " is " + orDash(d.State)
			a.State = d.State
			s.touchAgent(p, a) // the new state decides whether it is active
			if d.State == AgentError {
				level = "warn"
			}
		}
	case *MissionQueued:
		if m := s.mission(p, ev, t); m != nil {
			m.Title, m.Priority, m.Pool = d.Title, d.Priority, d.Pool
			if m.QueuedAt.IsZero() {
				m.QueuedAt = t
			}
			text = "mission " + ev.MissionID + " queued: " + d.Title
		}
	case nil:
		switch ev.Type {
		case TypeMissionRetrying:
			if m := s.mission(p, ev, t); m != nil {
				text = "mission " + ev.MissionID + " lost its lease; retrying"
				level = "warn"
			}
		case TypeProjectCreated:
			// The project row exists from here on, with zero figures.
			if !p.Announced {
				p.Announced = true
				s.announced++
			}
			text = "project " + ev.ProjectID + " created"
		case TypeMissionClaimed:
			if m := s.mission(p, ev, t); m != nil {
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
		if m := s.mission(p, ev, t); m != nil {
			m.Status = MissionRunningStatus
			m.Pct, m.Step = d.Pct, d.Step
		}
	case *Outcome:
		switch ev.Type {
		case TypeMissionCompleted, TypeMissionFailed:
			text = s.finishMission(p, ev, d)
			if ev.Type == TypeMissionFailed {
				level = "error"
				if s.effect.Finished {
					// Once per mission: a repeated failure changes nothing.
					p.Win.add(minuteOf(t), bucket{Errors: 1})
				}
			}
		case TypeRunCompleted, TypeRunFailed:
			text = s.finishRun(p, ev, d, t, at)
			if ev.Type == TypeRunFailed {
				level = "error"
				p.Win.add(minuteOf(t), bucket{Errors: 1})
			}
		}
	case *RunStarted:
		r := s.openRun(p, ev, t)
		if d.Model != "" {
			r.Model = d.Model
		}
		p.RunsTotal++
		p.Win.add(minuteOf(t), bucket{Runs: 1})
		if a := s.agent(p, ev, at); a != nil {
			a.RunID, a.MissionID = ev.RunID, ev.MissionID
			a.State = AgentThinking
			a.Runs++
		}
		if ev.MissionID != "" {
			if m := s.mission(p, ev, t); m != nil {
				m.Status, m.RunID, m.AgentID = MissionRunningStatus, ev.RunID, ev.AgentID
			}
		}
		text = "run " + ev.RunID + " started on " + orDash(d.Model)
	case *LLMCall:
		text, level = s.llmCall(p, ev, d, t, at)
	case *ToolCall:
		if a := s.agent(p, ev, at); a != nil {
			a.ToolCalls++
			a.LatencyMS = ewma(a.LatencyMS, d.LatencyMS, a.LLMCalls+a.ToolCalls)
			if !statusOK(d.Status) {
				a.CallErrors++
			}
		}
		if r := p.runs[ev.RunID]; r != nil {
			r.Calls++
		}
		if !statusOK(d.Status) {
			p.Win.add(minuteOf(t), bucket{Errors: 1})
			level = "warn"
		}
		text = "tool " + d.Tool + " " + orDash(d.Status)
	case *BudgetNotice:
		text, own, level = s.budget(p, ev, d, t)
	}
	s.markProject(p)
	if ev.Type != TypeWorkerHeartbeat && ev.Type != TypeBudgetStatus {
		s.appendTicker(p, seq, ev, t, level, text, own)
	}
	if res == Applied {
		s.counts.Applied++
	}
	return res
}

// refusal returns the bound of Limits that folding ev would pass, or "".
// It changes nothing: a refused event leaves the State as it was.
func (s *State) refusal(ev *Event) Reason {
	l := &s.limits
	p := s.projects[ev.ProjectID]
	announce := ev.Type == TypeProjectCreated
	switch {
	case p == nil && announce, p != nil && announce && !p.Announced:
		if s.announced >= l.AnnouncedProjects {
			return ReasonLimitProjects
		}
	case p == nil:
		if len(s.projects)-s.announced >= l.Projects {
			return ReasonLimitProjects
		}
	}
	if p == nil {
		p = &projectRec{} // a new project: every entity is new
	}
	switch ev.payload.(type) {
	case *WorkerJoined, *WorkerHeartbeat, *WorkerLeft:
		if ev.WorkerID != "" && p.workers[ev.WorkerID] == nil && len(p.workers) >= l.Workers {
			return ReasonLimitWorkers
		}
	case *BudgetNotice:
		if _, ok := p.budgets[budgetID(ev)]; !ok && len(p.budgets) >= l.Budgets {
			return ReasonLimitBudgets
		}
	}
	if namesAgent(ev) && ev.AgentID != "" && p.agents[ev.AgentID] == nil && len(p.agents) >= l.Agents {
		return ReasonLimitAgents
	}
	if makesMission(ev) && ev.MissionID != "" && p.missions[ev.MissionID] == nil && !p.finished.has(ev.MissionID) &&
		len(p.missions) >= l.Missions {
		return ReasonLimitMissions
	}
	return ""
}

// namesAgent reports whether ev is about the agent it names (and makes it
// when it is new).
func namesAgent(ev *Event) bool {
	switch ev.Type {
	case TypeAgentCreated, TypeAgentState, TypeRunStarted, TypeRunCompleted, TypeRunFailed, TypeLLMCall, TypeToolCall:
		return true
	}
	return false
}

// makesMission reports whether ev puts the mission it names in flight
// when it is neither in flight nor finished.
func makesMission(ev *Event) bool {
	switch ev.Type {
	case TypeMissionQueued, TypeMissionClaimed, TypeMissionProgress, TypeMissionRetrying, TypeRunStarted:
		return true
	}
	return false
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

func (s *State) llmCall(p *projectRec, ev Event, d *LLMCall, t, at time.Time) (string, string) {
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
	if len(p.gauges) > 0 && cost > 0 {
		s.budgetsCharge(p, s.seq, t, cost, ev.TeamID, ev.UserID)
	}
	if dayOf(t) == p.SpendDay {
		p.SpendToday += cost
	}
	b := bucket{Tokens: tokens}
	if !statusOK(d.Status) {
		b.Errors = 1
		level = "warn"
	}
	p.Win.add(minuteOf(t), b)
	if a := s.agent(p, ev, at); a != nil {
		a.LLMCalls++
		a.Tokens += tokens
		a.Spend += cost
		a.LatencyMS = ewma(a.LatencyMS, d.LatencyMS, a.LLMCalls+a.ToolCalls)
		if !statusOK(d.Status) {
			a.CallErrors++
		}
	}
	if ev.RunID != "" {
		r := s.openRun(p, ev, t)
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

// budgetID is the id of the budget a budget.* event reports on. It is keyed
// by project too: a team or user budget seen from two projects is two
// entries, so that an entry never moves between scopes.
func budgetID(ev *Event) string {
	d, _ := ev.payload.(*BudgetNotice)
	if d == nil {
		return ""
	}
	return ev.ProjectID + "/" + d.Scope + ":" + d.ScopeID + ":" + d.Period
}

// budget folds a budget.* notice into p's budgets. It returns the ticker
// line, the line p's own scope sees instead ("" for the same) and the
// level.
func (s *State) budget(p *projectRec, ev Event, d *BudgetNotice, t time.Time) (string, string, string) {
	id := budgetID(&ev)
	b := p.budgets[id]
	if b == nil {
		b = &Budget{ID: id}
		if p.budgets == nil {
			p.budgets = make(map[string]*Budget)
		}
		p.budgets[id] = b
	}
	b.ProjectID, b.Scope, b.ScopeID, b.Period = ev.ProjectID, d.Scope, d.ScopeID, d.Period
	b.LimitUSD, b.Action, b.Model, b.ResetsAt, b.UpdatedAt = d.LimitUSD, d.Action, d.Model, d.ResetsAt.UTC(), t
	b.SpentUSD = p.noticeGauge(b, d, ev.Type == TypeBudgetStatus)
	b.Pct = pct(b.SpentUSD, d.LimitUSD)
	switch ev.Type {
	case TypeBudgetWarning:
		b.Status = "warning"
	case TypeBudgetExceeded:
		b.Status = "exceeded"
	case TypeBudgetThrottled:
		b.Status = "throttled"
	case TypeBudgetStatus:
		b.Status = statusOf(b.Pct, d.WarnPct)
	}
	s.mark(collBudgets, p.ID, id)
	if d.Scope == "project" && d.ScopeID == ev.ProjectID {
		p.Budget = &BudgetStatus{LimitUSD: d.LimitUSD, SpentUSD: b.SpentUSD, Pct: b.Pct, Action: d.Action, Period: d.Period}
	}
	level := "warn"
	if ev.Type == TypeBudgetExceeded {
		level = "error"
	}
	text := "budget " + b.Status + ": " + d.Scope + " " + orDash(d.ScopeID) + " $" + d.SpentUSD.Cents() + " of $" + d.LimitUSD.Cents()
	var own string
	if d.Scope == BudgetScopeGlobal {
		own = withheldText(b.Status, d)
	}
	return text, own, level
}

func pct(spent, limit Micros) float64 {
	if limit <= 0 {
		return 0
	}
	return math.Round(float64(spent)/float64(limit)*1000) / 10
}

// finishMission ends a mission of p: the first outcome of a mission id in
// its project counts (Effect().Finished), later ones change nothing.
func (s *State) finishMission(p *projectRec, ev Event, d *Outcome) string {
	id := ev.MissionID
	if id == "" || p.finished.has(id) {
		return "mission " + id + " " + ev.Type[len("mission."):]
	}
	p.finished.add(id, s.limits.FinishedMissions)
	s.effect.Finished = true
	if p.missions[id] != nil {
		s.dropUse(collMissions, p.ID, id)
		delete(p.missions, id)
		p.MissionsInFlight--
		s.mark(collMissions, p.ID, id)
	}
	if ev.Type == TypeMissionCompleted {
		p.MissionsDone++
		return "mission " + id + " completed in " + formatMS(d.DurationMS)
	}
	p.MissionsFailed++
	return "mission " + id + " failed: " + orDash(d.Error)
}

func (s *State) finishRun(p *projectRec, ev Event, d *Outcome, t, at time.Time) string {
	r := p.runs[ev.RunID]
	if r == nil {
		r = &openRun{ID: ev.RunID, ProjectID: ev.ProjectID, AgentID: ev.AgentID, MissionID: ev.MissionID}
	} else {
		s.closeRun(p, r)
	}
	status := "completed"
	if ev.Type == TypeRunFailed {
		status = "failed"
	}
	sum := RunSummary{ID: ev.RunID, MissionID: r.MissionID, Model: r.Model, Status: status, Started: r.Started,
		Ended: t, DurationMS: d.DurationMS, Calls: r.Calls, Tokens: r.Tokens, Spend: r.Spend, Error: d.Error}
	if a := s.agentFor(p, ev.AgentID, at); a != nil {
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
		s.touchAgent(p, a)
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
		p = newProjectRec(id, s.clock)
		s.projects[id] = p
	}
	return p
}

func newProjectRec(id string, clock time.Time) *projectRec {
	return &projectRec{Project: Project{ID: id}, Win: window{Head: minuteOf(clock)}, SpendDay: dayOf(clock),
		agents: map[string]*agentRec{}, missions: map[string]*Mission{}, workers: map[string]*Worker{},
		budgets: map[string]*Budget{}, runs: map[string]*openRun{}}
}

func (s *State) markProject(p *projectRec) { s.mark(collProjects, p.ID, p.ID) }

// worker returns p's record of worker id, creating it, and refreshes its
// liveness to at.
func (s *State) worker(p *projectRec, id string, at time.Time) *Worker {
	if id == "" {
		return nil
	}
	w := p.workers[id]
	if w == nil {
		w = &Worker{ID: id, Projects: []string{p.ID}, State: "idle", Status: WorkerOnline}
		p.workers[id] = w
		p.WorkersOnline++
		s.workerUse[id] = insertSorted(s.workerUse[id], p.ID)
	}
	w.LastSeen = at.UTC()
	s.sweepBy(w.LastSeen.Add(s.staleAfter))
	if w.Status != WorkerOnline && w.LeftReason == "" {
		s.setWorkerStatus(p, w, WorkerOnline)
	}
	s.mark(collWorkers, p.ID, id)
	return w
}

func insertSorted(list []string, v string) []string {
	i, found := slices.BinarySearch(list, v)
	if found {
		return list
	}
	return slices.Insert(slices.Clip(list), i, v)
}

func (s *State) setWorkerStatus(p *projectRec, w *Worker, status string) {
	if w.Status == status {
		return
	}
	if w.Status == WorkerOnline {
		p.WorkersOnline--
	} else if status == WorkerOnline {
		p.WorkersOnline++
	}
	w.Status = status
	s.markProject(p)
	s.mark(collWorkers, p.ID, w.ID)
}

// agent returns p's agent of an event, creating it, and refreshes its
// liveness.
func (s *State) agent(p *projectRec, ev Event, at time.Time) *agentRec {
	a := s.agentFor(p, ev.AgentID, at)
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
	s.touchAgent(p, a)
	return a
}

// agentFor returns p's agent id, creating it, and notes that an event
// stored at at named it.
func (s *State) agentFor(p *projectRec, id string, at time.Time) *agentRec {
	if id == "" {
		return nil
	}
	a := p.agents[id]
	if a == nil {
		a = &agentRec{Agent: Agent{ID: id, ProjectID: p.ID, Name: id, State: AgentIdle, Tools: []string{}, Skills: []string{},
			RecentRuns: []RunSummary{}}}
		p.agents[id] = a
		p.Agents++
		s.addUse(collAgents, p.ID, id)
		s.markMissionsOf(p, id)
		s.mark(collAgents, p.ID, id)
	}
	a.At = at.UTC()
	s.sweepBy(a.At.Add(s.limits.ForgetAgentsAfter))
	return a
}

func (s *State) touchAgent(p *projectRec, a *agentRec) {
	active := a.State != AgentOffline && s.clock.Sub(a.LastSeen) < AgentActiveFor
	if active {
		s.sweepBy(a.LastSeen.Add(AgentActiveFor))
	}
	if active != a.Active {
		a.Active = active
		if active {
			p.ActiveAgents++
		} else {
			p.ActiveAgents--
		}
	}
	s.mark(collAgents, p.ID, a.ID)
}

// forgetAgent removes an agent no event has named for ForgetAgentsAfter.
func (s *State) forgetAgent(p *projectRec, a *agentRec) {
	s.dropUse(collAgents, p.ID, a.ID)
	delete(p.agents, a.ID)
	p.Agents--
	if a.Active {
		p.ActiveAgents--
	}
	s.mark(collAgents, p.ID, a.ID)
	s.markMissionsOf(p, a.ID)
	s.markProject(p)
}

// mission returns p's in-flight mission of an event, creating it, or nil
// if the mission has already finished.
func (s *State) mission(p *projectRec, ev Event, t time.Time) *Mission {
	id := ev.MissionID
	if id == "" || p.finished.has(id) {
		return nil
	}
	m := p.missions[id]
	if m == nil {
		m = &Mission{ID: id, ProjectID: p.ID, Status: MissionQueuedStatus}
		p.missions[id] = m
		p.MissionsInFlight++
		s.addUse(collMissions, p.ID, id)
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
	s.mark(collMissions, p.ID, id)
	return m
}

// openRun returns p's open run of an event, opening it. Past
// Limits.OpenRuns the project's oldest open run is dropped.
func (s *State) openRun(p *projectRec, ev Event, t time.Time) *openRun {
	r := p.runs[ev.RunID]
	if r == nil {
		r = &openRun{ID: ev.RunID, ProjectID: p.ID, AgentID: ev.AgentID, MissionID: ev.MissionID}
		s.keepRun(p, r)
	}
	if ev.Type == TypeRunStarted {
		r.Started = t
	}
	return r
}

// keepRun adds r to p's open runs, dropping the oldest past the bound.
func (s *State) keepRun(p *projectRec, r *openRun) {
	p.runs[r.ID] = r
	r.elem = p.runOrder.PushBack(r)
	for p.runOrder.Len() > s.limits.OpenRuns {
		s.closeRun(p, p.runOrder.Front().Value.(*openRun))
	}
}

func (s *State) closeRun(p *projectRec, r *openRun) {
	p.runOrder.Remove(r.elem)
	delete(p.runs, r.ID)
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
// activity, and forgetting long-gone workers and agents. It then sets
// nextSweep to the earliest time one of them can change again.
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
	for _, p := range s.projects {
		for id, w := range p.workers {
			age := s.clock.Sub(w.LastSeen)
			status := WorkerOnline
			switch {
			case w.LeftReason != "" || age >= s.offlineAfter:
				status = WorkerOffline
			case age >= s.staleAfter:
				status = WorkerStale
			}
			s.setWorkerStatus(p, w, status)
			if status == WorkerOffline && age >= ForgetWorkerFor {
				delete(p.workers, id)
				s.workerUse[id] = slices.DeleteFunc(slices.Clone(s.workerUse[id]), func(q string) bool { return q == p.ID })
				if len(s.workerUse[id]) == 0 {
					delete(s.workerUse, id)
				}
				s.mark(collWorkers, p.ID, id)
				continue
			}
			after(w.LastSeen.Add(s.staleAfter), w.LastSeen.Add(s.offlineAfter), w.LastSeen.Add(ForgetWorkerFor))
		}
		for _, a := range p.agents {
			forget := a.At.Add(s.limits.ForgetAgentsAfter)
			if !s.clock.Before(forget) {
				s.forgetAgent(p, a)
				continue
			}
			after(forget)
			if a.Active && s.clock.Sub(a.LastSeen) >= AgentActiveFor {
				a.Active = false
				p.ActiveAgents--
				s.markProject(p)
				s.mark(collAgents, p.ID, a.ID)
			}
			if a.Active {
				after(a.LastSeen.Add(AgentActiveFor))
			}
		}
	}
}

// appendTicker adds ev's line to the whole fleet's ticker and to p's, where
// own, when not empty, replaces text.
func (s *State) appendTicker(p *projectRec, seq uint64, ev Event, t time.Time, level, text, own string) {
	if text == "" {
		text = ev.Type
	}
	e := TickerEntry{Seq: seq, ID: ev.ID, Type: ev.Type, Time: t, ProjectID: ev.ProjectID,
		AgentID: ev.AgentID, MissionID: ev.MissionID, WorkerID: ev.WorkerID, Level: level, Text: text}
	s.ticker = pushTicker(s.ticker, e)
	if own != "" {
		e.Text = own
	}
	p.ticker = pushTicker(p.ticker, e)
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
