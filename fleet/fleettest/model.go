package fleettest

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// Model is a second statement of what the fold computes, written to be
// obviously right rather than fast: it never updates anything as events
// arrive. Given the whole list of messages folded so far, it recomputes
// every figure from that list, by plain scans and plain maps. Windows count
// the events whose time falls in the window, liveness compares each
// last-seen time with the clock, spend today adds up the calls of the
// clock's UTC day. Tests compare it with fleet.State (which keeps running
// sums, minute buckets, bounded memories and sweeps) on random streams, so
// that the fold is checked against the rules and not only against itself.
//
// The rules, as docs/design.md and docs/protocol.md state them and as the
// fold's own tests pin the details the docs leave open:
//
//   - The clock is the newest stored time seen; an event's time is its own,
//     but never later than the clock when it is folded.
//   - An event id is folded once; invalid messages are counted and change
//     nothing but the clock and the sequence; unknown types are counted and
//     kept in the ticker.
//   - runs_24h and tokens_24h count the runs started and the tokens of the
//     calls whose minute is one of the 1,440 whole minutes ending with the
//     clock's; errors_1h (failed runs, failed missions, failed calls) the
//     same over 60 minutes. Spend today is the cost of the calls of the
//     clock's UTC day.
//   - A worker is online while its last event is less than StaleAfter old,
//     stale until OfflineAfter, then offline; worker.left makes it offline
//     until it joins again; an offline worker silent for an hour is
//     forgotten. An agent is active while its last event is less than five
//     minutes old and it is not offline.
//   - Each project's agents, missions and runs are its own: the same id in
//     two projects names two entities, and no event of one project changes
//     anything of another's. A worker has one record per project, fed by
//     that project's events only. In the whole fleet's view an agent or a
//     mission is keyed "<project>/<id>" (and carries that id) while another
//     project has one of the same id or its id holds a "/", and a
//     mission's agent_id there is its agent's key ("<project>/<id>" when
//     the project has no such agent); a worker is one entry for all its
//     records: projects listed, the liveliest status, the other fields of
//     the liveliest record last seen (the first project's on a tie).
//   - A mission's first completed or failed in its project ends it; repeats
//     change nothing, and a failed mission counts one error.
//   - A budget notice about a global budget (which sums every project's
//     spend) shows its figures in the whole fleet's view only: in its
//     project's own scope the budget has no limit, spend or pct
//     (figures_withheld) and its ticker line says that a global cap of
//     that period and action applies, and when it resets.
//   - The bounds of fleet.Limits (Model.Limits): an event that would make
//     a project (not announced, or announced, by project.created), a
//     project's agent, mission in flight, worker record or budget past its
//     bound is rejected and changes nothing; a project's open runs past
//     OpenRuns drop the oldest opened; an agent no event named for
//     ForgetAgentsAfter is forgotten.
//
// The model remembers everything the limits do not bound: it has none of
// the fold's memory bounds (65,536 event ids for dedupe, FinishedMissions
// finished missions per project), so it agrees with the fold only on
// streams that stay within those. It assumes stored times never go back,
// as a stream's do.
type Model struct {
	// Pricing prices calls (nil: fleet.DefaultPricing()).
	Pricing *fleet.Pricing
	// StaleAfter and OfflineAfter are the liveness thresholds (zero: the
	// fleet defaults), as fleet.State.SetLiveness takes them.
	StaleAfter, OfflineAfter time.Duration
	// Limits are the bounds (zero fields: fleet.DefaultLimits), as
	// fleet.State.SetLimits takes them.
	Limits fleet.Limits
}

// defaultPricing is fleet.DefaultPricing, parsed once.
var defaultPricing = sync.OnceValue(fleet.DefaultPricing)

// Record is one stream message as the model reads it.
type Record struct {
	Seq uint64
	At  time.Time
	// Tick is true for a clock tick (fleet.ClockSubject).
	Tick bool
	// Event is the decoded event, when DecodeEvent accepted the message;
	// Err is why it did not.
	Event fleet.Event
	Err   error
	data  any
}

// Records decodes msgs for the model; message i has stream sequence i+1,
// as in Fold.
func Records(msgs []Msg) []Record {
	recs := make([]Record, len(msgs))
	for i, m := range msgs {
		recs[i] = RecordOf(uint64(i+1), m)
	}
	return recs
}

// RecordOf decodes one message at stream sequence seq.
func RecordOf(seq uint64, m Msg) Record {
	r := Record{Seq: seq, At: m.At}
	if m.Subject == fleet.ClockSubject {
		r.Tick = true
		return r
	}
	r.Event, r.Err = fleet.DecodeEvent(m.Subject, m.Body)
	if r.Err == nil {
		r.data = payloadOf(r.Event)
	}
	return r
}

// payloadOf decodes the data of an accepted event into the payload type
// of docs/design.md §4, or returns nil for a type that has none.
func payloadOf(ev fleet.Event) any {
	var p any
	switch ev.Type {
	case fleet.TypeWorkerJoined:
		p = new(fleet.WorkerJoined)
	case fleet.TypeWorkerHeartbeat:
		p = new(fleet.WorkerHeartbeat)
	case fleet.TypeWorkerLeft:
		p = new(fleet.WorkerLeft)
	case fleet.TypeAgentCreated:
		p = new(fleet.AgentCreated)
	case fleet.TypeAgentState:
		p = new(fleet.AgentStateChange)
	case fleet.TypeMissionQueued:
		p = new(fleet.MissionQueued)
	case fleet.TypeMissionProgress:
		p = new(fleet.MissionProgress)
	case fleet.TypeMissionCompleted, fleet.TypeMissionFailed, fleet.TypeRunCompleted, fleet.TypeRunFailed:
		p = new(fleet.Outcome)
	case fleet.TypeRunStarted:
		p = new(fleet.RunStarted)
	case fleet.TypeLLMCall:
		p = new(fleet.LLMCall)
	case fleet.TypeToolCall:
		p = new(fleet.ToolCall)
	case fleet.TypeBudgetWarning, fleet.TypeBudgetExceeded, fleet.TypeBudgetThrottled, fleet.TypeBudgetStatus:
		p = new(fleet.BudgetNotice)
	default:
		return nil
	}
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, p); err != nil {
			panic(fmt.Sprintf("fleettest: data of an accepted %s event: %v", ev.Type, err))
		}
	}
	return p
}

// folded is one event the fold takes in: valid, seen for the first time
// in its project, within the limits.
type folded struct {
	seq   uint64
	at    time.Time // stored time
	t     time.Time // the event's time, never after the clock when folded
	clock time.Time // the clock when it was folded
	ev    *fleet.Event
	data  any
	// text and level are its ticker line; own, when not empty, is the line
	// its project's own scope shows instead (a global budget's notice,
	// without its figures).
	text, level, own string
	// ended is true for the mission.completed or failed that ends its
	// mission (the first of that mission id in its project).
	ended bool
}

// key names an entity of a project: an agent, a mission, a run or the
// project's record of a worker.
type key struct{ project, id string }

// Derived is what the model makes of a list of records: everything a
// State shows, computed at once.
type Derived struct {
	model    Model
	seq      uint64
	clock    time.Time
	counts   fleet.Counts
	projects map[string]*fleet.Project
	agents   map[key]*fleet.Agent
	workers  map[key]*fleet.Worker
	missions map[key]*fleet.Mission
	budgets  map[string]*fleet.Budget
	// agentAt is when an event last named each agent (it is forgotten
	// Limits.ForgetAgentsAfter later).
	agentAt map[key]time.Time
	// ticker is every event the ticker shows, oldest first.
	ticker []*folded
	// windowed are the events that count in a window: their times, and
	// the window's length in minutes.
	windowed []windowed
}

type windowed struct {
	t       time.Time
	minutes int64
}

// Seq is the sequence of the last record.
func (d *Derived) Seq() uint64 { return d.seq }

// Clock is the newest stored time.
func (d *Derived) Clock() time.Time { return d.clock }

// Counts are the fold's counters.
func (d *Derived) Counts() fleet.Counts { return d.counts }

// Derive computes, from nothing but recs, what a State that folded them
// in order shows.
func (m Model) Derive(recs []Record) *Derived {
	if m.Pricing == nil {
		m.Pricing = defaultPricing()
	}
	if m.StaleAfter <= 0 {
		m.StaleAfter = fleet.StaleAfter
	}
	if m.OfflineAfter <= 0 {
		m.OfflineAfter = fleet.OfflineAfter
	}
	m.OfflineAfter = max(m.OfflineAfter, m.StaleAfter)
	m.Limits = m.Limits.WithDefaults()

	d := &Derived{
		model:    m,
		projects: map[string]*fleet.Project{}, agents: map[key]*fleet.Agent{}, workers: map[key]*fleet.Worker{},
		missions: map[key]*fleet.Mission{}, budgets: map[string]*fleet.Budget{}, agentAt: map[key]time.Time{},
	}
	buf := make([]folded, 0, len(recs))
	evs := make([]*folded, 0, len(recs))
	seen := make(map[key]bool, len(recs))
	room := newRoom(m)
	for i := range recs {
		r := &recs[i]
		d.seq = max(d.seq, r.Seq)
		if r.At.After(d.clock) {
			d.clock = r.At.UTC()
		}
		k := key{r.Event.ProjectID, r.Event.ID}
		switch {
		case r.Tick:
		case r.Err != nil:
			d.counts.Rejected++
		case seen[k]:
			d.counts.Duplicates++
		case !room.admits(&r.Event, r.data, r.At.UTC(), d.clock):
			d.counts.Rejected++
			d.counts.Limited++
		default:
			seen[k] = true
			t := r.Event.Time.UTC()
			if t.After(d.clock) {
				t = d.clock
			}
			buf = append(buf, folded{seq: r.Seq, at: r.At.UTC(), t: t, clock: d.clock, ev: &r.Event, data: r.data, level: "info"})
			evs = append(evs, &buf[len(buf)-1])
		}
	}
	for _, f := range evs {
		if fleet.Known(f.ev.Type) {
			d.counts.Applied++
		} else {
			d.counts.Unknown++
		}
		if _, ok := d.projects[f.ev.ProjectID]; !ok {
			d.projects[f.ev.ProjectID] = &fleet.Project{ID: f.ev.ProjectID}
		}
	}
	summaries := m.runs(evs)
	m.deriveAgents(d, evs, summaries)
	m.deriveWorkers(d, evs)
	m.deriveMissions(d, evs)
	m.deriveBudgets(d, evs)
	m.deriveGauges(d, evs)
	m.deriveProjects(d, evs)
	m.deriveTicker(d, evs)
	return d
}

// room decides, event by event, whether the limits let an event in: it
// knows which entities exist when the event comes, and nothing else.
type room struct {
	m         Model
	projects  map[string]bool // project → announced
	announced int
	agents    map[key]time.Time // when an event last named the agent
	missions  map[key]bool      // in flight
	finished  map[key]bool
	workers   map[key]*fleet.Worker // LastSeen and LeftReason only
	budgets   map[key]bool
	perAgents map[string]int
	perMiss   map[string]int
	perWork   map[string]int
	perBudget map[string]int
}

func newRoom(m Model) *room {
	return &room{m: m, projects: map[string]bool{}, agents: map[key]time.Time{}, missions: map[key]bool{},
		finished: map[key]bool{}, workers: map[key]*fleet.Worker{}, budgets: map[key]bool{},
		perAgents: map[string]int{}, perMiss: map[string]int{}, perWork: map[string]int{}, perBudget: map[string]int{}}
}

// agentTypes are the event types that concern the agent they name.
var agentTypes = map[string]bool{
	fleet.TypeAgentCreated: true, fleet.TypeAgentState: true, fleet.TypeRunStarted: true, fleet.TypeLLMCall: true,
	fleet.TypeToolCall: true, fleet.TypeRunCompleted: true, fleet.TypeRunFailed: true,
}

var workerTypes = map[string]bool{fleet.TypeWorkerJoined: true, fleet.TypeWorkerHeartbeat: true, fleet.TypeWorkerLeft: true}

var missionTypes = map[string]bool{
	fleet.TypeMissionQueued: true, fleet.TypeMissionClaimed: true, fleet.TypeMissionProgress: true,
	fleet.TypeMissionRetrying: true, fleet.TypeRunStarted: true,
}

// admits reports whether ev, stored at at and folded when the clock reads
// clock, fits the limits, and if so takes it in.
func (r *room) admits(ev *fleet.Event, data any, at, clock time.Time) bool {
	l := r.m.Limits
	// What the clock has forgotten by now.
	for k, last := range r.agents {
		if !clock.Before(last.Add(l.ForgetAgentsAfter)) {
			delete(r.agents, k)
			r.perAgents[k.project]--
		}
	}
	for k, w := range r.workers {
		if r.m.forgotten(w, clock) {
			delete(r.workers, k)
			r.perWork[k.project]--
		}
	}
	p := ev.ProjectID
	announced, exists := r.projects[p]
	switch {
	case ev.Type == fleet.TypeProjectCreated && !announced:
		if r.announced >= l.AnnouncedProjects {
			return false
		}
	case !exists && len(r.projects)-r.announced >= l.Projects:
		return false
	}
	agent, mission, worker := key{p, ev.AgentID}, key{p, ev.MissionID}, key{p, ev.WorkerID}
	_, hasAgent := r.agents[agent]
	newAgent := agentTypes[ev.Type] && ev.AgentID != "" && !hasAgent
	newMission := missionTypes[ev.Type] && ev.MissionID != "" && !r.missions[mission] && !r.finished[mission]
	newWorker := workerTypes[ev.Type] && ev.WorkerID != "" && r.workers[worker] == nil
	var budget key
	if n, ok := data.(*fleet.BudgetNotice); ok {
		budget = key{p, n.Scope + ":" + n.ScopeID + ":" + n.Period}
	}
	newBudget := budget.project != "" && !r.budgets[budget]
	switch {
	case newWorker && r.perWork[p] >= l.Workers,
		newBudget && r.perBudget[p] >= l.Budgets,
		newAgent && r.perAgents[p] >= l.Agents,
		newMission && r.perMiss[p] >= l.Missions:
		return false
	}
	// In: what it makes now exists.
	if ev.Type == fleet.TypeProjectCreated && !announced {
		r.announced++
		announced = true
	}
	r.projects[p] = announced
	if agentTypes[ev.Type] && ev.AgentID != "" {
		if newAgent {
			r.perAgents[p]++
		}
		r.agents[agent] = at
	}
	if newMission {
		r.missions[mission] = true
		r.perMiss[p]++
	}
	if (ev.Type == fleet.TypeMissionCompleted || ev.Type == fleet.TypeMissionFailed) && ev.MissionID != "" && !r.finished[mission] {
		r.finished[mission] = true
		if r.missions[mission] {
			delete(r.missions, mission)
			r.perMiss[p]--
		}
	}
	if workerTypes[ev.Type] && ev.WorkerID != "" {
		w := r.workers[worker]
		if w == nil {
			w = &fleet.Worker{}
			r.workers[worker] = w
			r.perWork[p]++
		}
		w.LastSeen = at
		switch x := data.(type) {
		case *fleet.WorkerJoined:
			w.LeftReason = ""
		case *fleet.WorkerLeft:
			w.LeftReason = dash(x.Reason)
		}
	}
	if newBudget {
		r.budgets[budget] = true
		r.perBudget[p]++
	}
	return true
}

// forgotten reports whether a worker record last seen at w.LastSeen, left
// or not, is forgotten once the clock reads now.
func (m Model) forgotten(w *fleet.Worker, now time.Time) bool {
	age := now.Sub(w.LastSeen)
	return age >= fleet.ForgetWorkerFor && (w.LeftReason != "" || age >= m.OfflineAfter)
}

// cost prices one call; ok is false for a model the table does not know.
func (m Model) cost(c *fleet.LLMCall) (fleet.Micros, bool) {
	price, ok := m.Pricing.Lookup(c.Model)
	if !ok {
		return 0, false
	}
	return price.Cost(*c), true
}

// minute is the whole minute of t since the Unix epoch.
func minute(t time.Time) int64 { return int64(math.Floor(float64(t.Unix()) / 60)) }

// within reports whether t falls in the n whole minutes that end with the
// clock's minute.
func within(t, clock time.Time, n int64) bool { return minute(t) > minute(clock)-n }

// sameUTCDay reports whether a and b are on the same UTC calendar day.
func sameUTCDay(a, b time.Time) bool {
	a, b = a.UTC(), b.UTC()
	return a.Year() == b.Year() && a.YearDay() == b.YearDay()
}

func callOK(status string) bool { return status == "" || status == "ok" || status == "success" }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func duration(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + "s"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
}

// runs works out, for every agent.run.completed or failed event, the
// summary of the run it ends: the events of that run id of its project
// since the run was opened (by its run.started or its first llm.call),
// unless the project opened more than Limits.OpenRuns other runs since
// and it was the oldest open (dropped, as if never opened). A finish that
// matches no open run of its project summarizes nothing but itself.
func (m Model) runs(evs []*folded) map[*folded]fleet.RunSummary {
	type open struct {
		mission       string
		model         string
		started       time.Time
		calls, tokens int64
		spend         fleet.Micros
	}
	opened := map[key]*open{}
	order := map[string][]string{} // project → its open run ids, oldest first
	drop := func(k key) {
		delete(opened, k)
		order[k.project] = slices.DeleteFunc(order[k.project], func(id string) bool { return id == k.id })
	}
	out := map[*folded]fleet.RunSummary{}
	for _, f := range evs {
		k := key{f.ev.ProjectID, f.ev.RunID}
		switch f.ev.Type {
		case fleet.TypeRunStarted, fleet.TypeLLMCall:
			if f.ev.Type == fleet.TypeLLMCall && f.ev.RunID == "" {
				continue // a call outside any run
			}
			r := opened[k]
			if r == nil {
				r = &open{mission: f.ev.MissionID}
				opened[k] = r
				order[k.project] = append(order[k.project], k.id)
				if ids := order[k.project]; len(ids) > m.Limits.OpenRuns {
					drop(key{k.project, ids[0]})
				}
			}
			if d, ok := f.data.(*fleet.RunStarted); ok {
				r.started = f.t
				if d.Model != "" {
					r.model = d.Model
				}
			}
			if c, ok := f.data.(*fleet.LLMCall); ok {
				cost, _ := m.cost(c)
				r.calls++
				r.tokens += c.Tokens()
				r.spend += cost
			}
		case fleet.TypeToolCall:
			if r := opened[k]; r != nil {
				r.calls++
			}
		case fleet.TypeRunCompleted, fleet.TypeRunFailed:
			o := f.data.(*fleet.Outcome)
			s := fleet.RunSummary{ID: k.id, MissionID: f.ev.MissionID, Status: "completed", Ended: f.t,
				DurationMS: o.DurationMS, Error: o.Error}
			if f.ev.Type == fleet.TypeRunFailed {
				s.Status = "failed"
			}
			if r := opened[k]; r != nil {
				s.MissionID, s.Model, s.Started, s.Calls, s.Tokens, s.Spend = r.mission, r.model, r.started, r.calls, r.tokens, r.spend
				drop(k)
			}
			out[f] = s
		}
	}
	return out
}

// ewma is the agent's latency average: the running mean of the first 20
// calls, then an exponential moving average (α = 0.05), rounded to 0.1 ms
// after every call.
func ewma(old, sample float64, n int64) float64 {
	alpha := 0.05
	if n < 20 && n > 0 {
		alpha = 1 / float64(n)
	}
	return math.Round((old+alpha*(sample-old))*10) / 10
}

func (m Model) deriveAgents(d *Derived, evs []*folded, summaries map[*folded]fleet.RunSummary) {
	byAgent := map[key][]*folded{}
	var ids []key
	for _, f := range evs {
		if f.ev.AgentID == "" || !agentTypes[f.ev.Type] {
			continue
		}
		k := key{f.ev.ProjectID, f.ev.AgentID}
		if _, ok := byAgent[k]; !ok {
			ids = append(ids, k)
		}
		byAgent[k] = append(byAgent[k], f)
	}
	forget := m.Limits.ForgetAgentsAfter
	for _, k := range ids {
		var a *fleet.Agent
		var at time.Time // when an event last named it
		for _, f := range byAgent[k] {
			if a != nil && !f.clock.Before(at.Add(forget)) {
				a = nil // forgotten before this event: it starts afresh
			}
			if a == nil {
				a = &fleet.Agent{ID: k.id, ProjectID: k.project, Name: k.id, State: fleet.AgentIdle,
					Tools: []string{}, Skills: []string{}, RecentRuns: []fleet.RunSummary{}}
			}
			at = f.at
			finish := f.ev.Type == fleet.TypeRunCompleted || f.ev.Type == fleet.TypeRunFailed
			if !finish {
				// Every event of the agent but a run's end says where and
				// when it was last seen, and wakes it from offline unless
				// it says so itself.
				if f.ev.WorkerID != "" {
					a.WorkerID = f.ev.WorkerID
				}
				a.LastSeen = f.at
				if a.State == fleet.AgentOffline && f.ev.Type != fleet.TypeAgentState {
					a.State = fleet.AgentIdle
				}
			}
			switch p := f.data.(type) {
			case *fleet.AgentCreated:
				a.Name, a.Role, a.Model, a.Version, a.Description = p.Name, p.Role, p.Model, p.Version, p.Description
				a.Tools, a.Skills = orEmpty(p.Tools), orEmpty(p.Skills)
				if a.Name == "" {
					a.Name = k.id
				}
				f.text = "agent " + a.Name + " created (" + a.Model + ")"
			case *fleet.AgentStateChange:
				f.text = "agent " + a.Name + " is " + dash(p.State)
				if p.State == fleet.AgentError {
					f.level = "warn"
				}
				a.State = p.State
			case *fleet.RunStarted:
				a.RunID, a.MissionID, a.State = f.ev.RunID, f.ev.MissionID, fleet.AgentThinking
				a.Runs++
			case *fleet.LLMCall:
				cost, _ := m.cost(p)
				a.LLMCalls++
				a.Tokens += p.Tokens()
				a.Spend += cost
				a.LatencyMS = ewma(a.LatencyMS, p.LatencyMS, a.LLMCalls+a.ToolCalls)
				if !callOK(p.Status) {
					a.CallErrors++
				}
			case *fleet.ToolCall:
				a.ToolCalls++
				a.LatencyMS = ewma(a.LatencyMS, p.LatencyMS, a.LLMCalls+a.ToolCalls)
				if !callOK(p.Status) {
					a.CallErrors++
				}
			case *fleet.Outcome:
				if f.ev.Type == fleet.TypeRunFailed {
					a.RunsFailed++
				}
				if a.RunID == f.ev.RunID {
					a.RunID, a.MissionID, a.State = "", "", fleet.AgentIdle
				}
				a.RecentRuns = append([]fleet.RunSummary{summaries[f]}, a.RecentRuns...)
				if len(a.RecentRuns) > fleet.RecentRunsPerAgent {
					a.RecentRuns = a.RecentRuns[:fleet.RecentRunsPerAgent]
				}
			}
		}
		if !d.clock.Before(at.Add(forget)) {
			continue // forgotten since
		}
		a.Active = a.State != fleet.AgentOffline && d.clock.Sub(a.LastSeen) < fleet.AgentActiveFor
		d.agents[k] = a
		d.agentAt[k] = at
	}
	// Lines of agent events that name no agent.
	for _, f := range evs {
		if f.ev.Type == fleet.TypeAgentState && f.text == "" {
			f.text = "agent " + f.ev.AgentID + " is " + dash(f.data.(*fleet.AgentStateChange).State)
		}
	}
}

func orEmpty(v []string) []string {
	if v == nil {
		return []string{}
	}
	return slices.Clone(v)
}

func (m Model) deriveWorkers(d *Derived, evs []*folded) {
	byWorker := map[key][]*folded{}
	var ids []key
	for _, f := range evs {
		if f.ev.WorkerID == "" || !workerTypes[f.ev.Type] {
			continue
		}
		k := key{f.ev.ProjectID, f.ev.WorkerID}
		if _, ok := byWorker[k]; !ok {
			ids = append(ids, k)
		}
		byWorker[k] = append(byWorker[k], f)
	}
	for _, k := range ids {
		var w *fleet.Worker
		for _, f := range byWorker[k] {
			if w != nil && m.forgotten(w, f.clock) {
				w = nil // forgotten before this event: it starts afresh
			}
			if w == nil {
				w = &fleet.Worker{ID: k.id, Projects: []string{k.project}, State: "idle"}
			}
			w.LastSeen = f.at
			switch p := f.data.(type) {
			case *fleet.WorkerJoined:
				w.Host, w.Version, w.Capacity = p.Host, p.Version, p.Capacity
				if p.Pools != nil {
					w.Pools = slices.Clone(p.Pools)
				}
				if p.Models != nil {
					w.Models = slices.Clone(p.Models)
				}
				if p.Labels != nil {
					w.Labels = make(map[string]string, len(p.Labels))
					for k, v := range p.Labels {
						w.Labels[k] = v
					}
				}
				w.JoinedAt, w.LeftReason, w.State = f.t, "", "idle"
				f.text = "worker " + k.id + " joined from " + p.Host
			case *fleet.WorkerHeartbeat:
				w.State, w.ActiveMissions, w.Load = p.State, p.ActiveMissions, p.Load
			case *fleet.WorkerLeft:
				w.LeftReason = p.Reason
				if w.LeftReason == "" {
					w.LeftReason = "left"
				}
				w.State = "left"
				f.text, f.level = "worker "+k.id+" left: "+w.LeftReason, "warn"
			}
		}
		if m.forgotten(w, d.clock) {
			continue
		}
		age := d.clock.Sub(w.LastSeen)
		switch {
		case w.LeftReason != "" || age >= m.OfflineAfter:
			w.Status = fleet.WorkerOffline
		case age >= m.StaleAfter:
			w.Status = fleet.WorkerStale
		default:
			w.Status = fleet.WorkerOnline
		}
		d.workers[k] = w
	}
}

func (m Model) deriveMissions(d *Derived, evs []*folded) {
	finished := map[key]bool{}
	for _, f := range evs {
		id := f.ev.MissionID
		k := key{f.ev.ProjectID, id}
		switch f.ev.Type {
		case fleet.TypeMissionCompleted, fleet.TypeMissionFailed:
			o := f.data.(*fleet.Outcome)
			verb := f.ev.Type[len("mission."):]
			f.text = "mission " + id + " " + verb
			if f.ev.Type == fleet.TypeMissionFailed {
				f.level = "error"
			}
			if id == "" || finished[k] {
				continue // finished already
			}
			finished[k] = true
			f.ended = true
			delete(d.missions, k)
			p := d.projects[f.ev.ProjectID]
			if f.ev.Type == fleet.TypeMissionCompleted {
				p.MissionsDone++
				f.text += " in " + duration(o.DurationMS)
			} else {
				p.MissionsFailed++
				f.text += ": " + dash(o.Error)
			}
			continue
		}
		if f.ev.Type == fleet.TypeMissionProgress {
			p := f.data.(*fleet.MissionProgress)
			f.text = "mission " + id + " at " + strconv.FormatFloat(p.Pct, 'f', 0, 64) + "%"
			if p.Step != "" {
				f.text += ": " + p.Step
			}
		}
		if !missionTypes[f.ev.Type] || id == "" || finished[k] {
			continue
		}
		mi := d.missions[k]
		if mi == nil {
			mi = &fleet.Mission{ID: id, ProjectID: f.ev.ProjectID, Status: fleet.MissionQueuedStatus}
			d.missions[k] = mi
		}
		setIf(&mi.TeamID, f.ev.TeamID)
		setIf(&mi.UserID, f.ev.UserID)
		setIf(&mi.WorkerID, f.ev.WorkerID)
		setIf(&mi.AgentID, f.ev.AgentID)
		if f.t.After(mi.UpdatedAt) {
			mi.UpdatedAt = f.t
		}
		switch f.ev.Type {
		case fleet.TypeMissionQueued:
			q := f.data.(*fleet.MissionQueued)
			mi.Title, mi.Priority, mi.Pool = q.Title, q.Priority, q.Pool
			if mi.QueuedAt.IsZero() {
				mi.QueuedAt = f.t
			}
			f.text = "mission " + id + " queued: " + q.Title
		case fleet.TypeMissionClaimed:
			mi.Status = fleet.MissionClaimedStatus
			mi.Attempts++
			f.text = "mission " + id + " claimed by " + f.ev.WorkerID
		case fleet.TypeMissionProgress:
			p := f.data.(*fleet.MissionProgress)
			mi.Status, mi.Pct, mi.Step = fleet.MissionRunningStatus, p.Pct, p.Step
		case fleet.TypeMissionRetrying:
			mi.Status, mi.WorkerID = fleet.MissionRetryingStatus, ""
			f.text, f.level = "mission "+id+" lost its lease; retrying", "warn"
		case fleet.TypeRunStarted:
			mi.Status, mi.RunID, mi.AgentID = fleet.MissionRunningStatus, f.ev.RunID, f.ev.AgentID
		}
	}
}

// setIf sets *dst to v unless v is empty: an event that omits an id
// leaves the one known.
func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

var budgetTypes = map[string]string{
	fleet.TypeBudgetWarning: "warning", fleet.TypeBudgetExceeded: "exceeded", fleet.TypeBudgetThrottled: "throttled",
	fleet.TypeBudgetStatus: "",
}

func (m Model) deriveBudgets(d *Derived, evs []*folded) {
	for _, f := range evs {
		status, ok := budgetTypes[f.ev.Type]
		if !ok {
			continue
		}
		n := f.data.(*fleet.BudgetNotice)
		b := &fleet.Budget{
			ID:        f.ev.ProjectID + "/" + n.Scope + ":" + n.ScopeID + ":" + n.Period,
			ProjectID: f.ev.ProjectID, Scope: n.Scope, ScopeID: n.ScopeID, Period: n.Period,
			LimitUSD: n.LimitUSD, SpentUSD: n.SpentUSD, Pct: fleet.Pct(n.SpentUSD, n.LimitUSD), Action: n.Action,
			Status: status, Model: n.Model, ResetsAt: n.ResetsAt.UTC(), UpdatedAt: f.t,
		}
		if f.ev.Type == fleet.TypeBudgetStatus {
			warn := n.WarnPct
			if warn <= 0 {
				warn = fleet.DefaultWarnPct
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
		d.budgets[b.ID] = b // the last word on each budget stands
		if n.Scope == fleet.BudgetScopeProject && n.ScopeID == f.ev.ProjectID {
			d.projects[f.ev.ProjectID].Budget = &fleet.BudgetStatus{LimitUSD: n.LimitUSD, SpentUSD: n.SpentUSD,
				Pct: b.Pct, Action: n.Action, Period: n.Period}
		}
		f.text = "budget " + b.Status + ": " + n.Scope + " " + dash(n.ScopeID) + " $" + n.SpentUSD.Cents() + " of $" + n.LimitUSD.Cents()
		if n.Scope == fleet.BudgetScopeGlobal {
			// A global budget sums every project's spend: its project sees
			// that the cap applies, never its figures.
			f.own = "budget " + b.Status + ": a global " + dash(n.Period) + " cap (" + dash(n.Action) + ") applies to every project"
			if !n.ResetsAt.IsZero() {
				f.own += "; resets " + n.ResetsAt.UTC().Format("2006-01-02 15:04 UTC")
			}
		}
		f.level = "warn"
		if f.ev.Type == fleet.TypeBudgetExceeded {
			f.level = "error"
		}
	}
}

// gaugeCharges is how many charges above a notice the fold keeps apart
// (fleet's gaugeCharges); older ones are summed and dropped at the next
// notice.
const gaugeCharges = 64

// deriveGauges moves each budget's spend with the calls folded after its
// last notice: a notice that says up to which seq its spend holds every
// charge (through_seq) starts a gauge; every priced call of the budget's
// project (of its team or user, as the call names them) adds to it, the
// calls above the notice's through_seq are added again after each
// notice, and a call past the window's end starts the next window at
// zero. The budget's spend is where its gauge ends.
func (m Model) deriveGauges(d *Derived, evs []*folded) {
	for id, b := range d.budgets {
		type charge struct {
			seq  uint64
			cost fleet.Micros
		}
		var (
			live                bool
			base, merged, spent fleet.Micros
			charges             []charge
			resets              time.Time
			status              bool
			warn                float64
		)
		for _, f := range evs {
			if f.ev.ProjectID != b.ProjectID {
				continue
			}
			switch x := f.data.(type) {
			case *fleet.BudgetNotice:
				if f.ev.ProjectID+"/"+x.Scope+":"+x.ScopeID+":"+x.Period != id {
					continue
				}
				resets = x.ResetsAt.UTC()
				status, warn = f.ev.Type == fleet.TypeBudgetStatus, x.WarnPct
				if x.ThroughSeq == nil {
					live, spent, charges, merged = false, x.SpentUSD, nil, 0
					continue
				}
				live, base, merged = true, x.SpentUSD, 0
				var keep []charge
				for _, c := range charges {
					if c.seq > *x.ThroughSeq {
						keep = append(keep, c)
					}
				}
				charges = keep
			case *fleet.LLMCall:
				cost, ok := m.cost(x)
				if !live || !ok || cost <= 0 {
					continue
				}
				switch {
				case b.Scope == fleet.BudgetScopeProject && b.ScopeID == b.ProjectID:
				case b.Scope == fleet.BudgetScopeTeam && f.ev.TeamID != "" && f.ev.TeamID == b.ScopeID:
				case b.Scope == fleet.BudgetScopeUser && f.ev.UserID != "" && f.ev.UserID == b.ScopeID:
				default:
					continue
				}
				if !resets.IsZero() {
					if !f.t.Before(resets) {
						w, err := fleet.WindowOf(b.Period, f.t)
						if err != nil {
							continue
						}
						base, merged, charges, resets = 0, 0, nil, w.End
					} else if w, err := fleet.WindowOf(b.Period, resets.Add(-time.Nanosecond)); err == nil && f.t.Before(w.Start) {
						continue
					}
				}
				charges = append(charges, charge{f.seq, cost})
				if len(charges) > gaugeCharges {
					merged += charges[0].cost
					charges = charges[1:]
				}
			default:
				continue
			}
			if live {
				spent = base + merged
				for _, c := range charges {
					spent += c.cost
				}
			}
		}
		if !live {
			continue
		}
		b.SpentUSD, b.ResetsAt = spent, resets
		b.Pct = fleet.Pct(spent, b.LimitUSD)
		if status {
			if warn <= 0 {
				warn = fleet.DefaultWarnPct
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
		if pb := d.projects[b.ProjectID].Budget; pb != nil && b.Scope == fleet.BudgetScopeProject && b.ScopeID == b.ProjectID && pb.Period == b.Period {
			pb.SpentUSD, pb.Pct = b.SpentUSD, b.Pct
		}
	}
}

// deriveProjects adds up each project's figures by scanning every event
// folded, then counts the entities derived before.
func (m Model) deriveProjects(d *Derived, evs []*folded) {
	for _, f := range evs {
		p := d.projects[f.ev.ProjectID]
		failed := false
		switch x := f.data.(type) {
		case *fleet.RunStarted:
			p.RunsTotal++
			d.windowed = append(d.windowed, windowed{f.t, 24 * 60})
			if within(f.t, d.clock, 24*60) {
				p.Runs24h++
			}
			f.text = "run " + f.ev.RunID + " started on " + dash(x.Model)
		case *fleet.LLMCall:
			cost, priced := m.cost(x)
			tokens := x.Tokens()
			p.TokensTotal += tokens
			p.SpendTotal += cost
			if sameUTCDay(f.t, d.clock) {
				p.SpendToday += cost
			}
			if within(f.t, d.clock, 24*60) {
				p.Tokens24h += tokens
			}
			d.windowed = append(d.windowed, windowed{f.t, 24 * 60})
			failed = !callOK(x.Status)
			f.text = x.Model + " " + strconv.FormatInt(tokens, 10) + " tok $" + cost.String()
			if failed {
				f.level = "warn"
			}
			if !priced {
				d.counts.Unpriced++
				p.UnpricedCalls++
				f.text, f.level = x.Model+" "+strconv.FormatInt(tokens, 10)+" tok (unpriced)", "warn"
			}
		case *fleet.ToolCall:
			failed = !callOK(x.Status)
			f.text = "tool " + x.Tool + " " + dash(x.Status)
			if failed {
				f.level = "warn"
			}
		case *fleet.Outcome:
			// A failed mission counts once: when it ends.
			failed = f.ev.Type == fleet.TypeMissionFailed && f.ended || f.ev.Type == fleet.TypeRunFailed
			switch f.ev.Type {
			case fleet.TypeRunCompleted:
				f.text = "run " + f.ev.RunID + " completed in " + duration(x.DurationMS)
			case fleet.TypeRunFailed:
				f.text, f.level = "run "+f.ev.RunID+" failed: "+dash(x.Error), "error"
			}
		case nil:
			switch {
			case !fleet.Known(f.ev.Type):
				p.UnknownEvents++
				f.text = "unknown event " + f.ev.Type
			case f.ev.Type == fleet.TypeProjectCreated:
				f.text = "project " + f.ev.ProjectID + " created"
			}
		}
		if failed {
			d.windowed = append(d.windowed, windowed{f.t, 60})
			if within(f.t, d.clock, 60) {
				p.Errors1h++
			}
		}
	}
	for _, a := range d.agents {
		p := d.projects[a.ProjectID]
		p.Agents++
		if a.Active {
			p.ActiveAgents++
		}
	}
	for _, mi := range d.missions {
		d.projects[mi.ProjectID].MissionsInFlight++
	}
	for k, w := range d.workers {
		if w.Status == fleet.WorkerOnline {
			d.projects[k.project].WorkersOnline++
		}
	}
}

// deriveTicker lists the events the ticker shows: all but heartbeats and
// budget standings, each with its line (the event's type when nothing
// more was said of it).
func (m Model) deriveTicker(d *Derived, evs []*folded) {
	d.ticker = make([]*folded, 0, len(evs))
	for _, f := range evs {
		if f.ev.Type == fleet.TypeWorkerHeartbeat || f.ev.Type == fleet.TypeBudgetStatus {
			continue
		}
		if f.text == "" {
			f.text = f.ev.Type
		}
		d.ticker = append(d.ticker, f)
	}
}

// Edges returns, in order, the instants after the clock at which what the
// model shows may change with no further event: a worker turns stale or
// offline or is forgotten, an agent stops being active or is forgotten, an
// event leaves its window (at the start of the minute after its last one),
// the UTC day ends. Tests move the clock to each of them, and to just
// before, where a fold that is off by an instant differs.
func (d *Derived) Edges() []time.Time {
	var out []time.Time
	add := func(t time.Time) {
		if t.After(d.clock) {
			out = append(out, t)
		}
	}
	for _, w := range d.workers {
		for _, after := range []time.Duration{d.model.StaleAfter, d.model.OfflineAfter, fleet.ForgetWorkerFor, max(fleet.ForgetWorkerFor, d.model.OfflineAfter)} {
			add(w.LastSeen.Add(after))
		}
	}
	for k, a := range d.agents {
		if a.Active {
			add(a.LastSeen.Add(fleet.AgentActiveFor))
		}
		add(d.agentAt[k].Add(d.model.Limits.ForgetAgentsAfter))
	}
	for _, e := range d.windowed {
		add(time.Unix((minute(e.t)+e.minutes)*60, 0).UTC())
	}
	c := d.clock
	add(time.Date(c.Year(), c.Month(), c.Day()+1, 0, 0, 0, 0, time.UTC))
	slices.SortFunc(out, time.Time.Compare)
	return slices.CompactFunc(out, time.Time.Equal)
}

// View is what scope (fleet.ScopeAll or a project id) sees.
func (d *Derived) View(scope string) fleet.View {
	v := fleet.View{Projects: map[string]fleet.Project{}, Agents: map[string]fleet.Agent{}, Workers: map[string]fleet.Worker{},
		Missions: map[string]fleet.Mission{}, Budgets: map[string]fleet.Budget{}, Ticker: []fleet.TickerEntry{}}
	all := scope == fleet.ScopeAll
	sees := func(project string) bool { return all || scope == project }
	var daily fleet.Micros
	for id, p := range d.projects {
		if !sees(id) {
			continue
		}
		v.Projects[id] = *p
		ps := &v.Posture
		ps.ActiveAgents += p.ActiveAgents
		ps.Agents += p.Agents
		ps.MissionsInFlight += p.MissionsInFlight
		ps.Runs24h += p.Runs24h
		ps.Tokens24h += p.Tokens24h
		ps.Errors1h += p.Errors1h
		ps.SpendToday += p.SpendToday
		ps.SpendTotal += p.SpendTotal
		ps.UnpricedCalls += p.UnpricedCalls
		if p.Budget != nil && p.Budget.Period == fleet.PeriodDaily {
			daily += p.Budget.LimitUSD
		}
		if !all {
			ps.WorkersOnline = p.WorkersOnline
		}
	}
	v.Posture.BudgetLimit, v.Posture.BudgetPct = daily, fleet.Pct(v.Posture.SpendToday, daily)
	// In the whole fleet's view, an id that more than one project uses (or
	// that holds a "/") is shown as <project>/<id>.
	agentUsers, missionUsers := map[string]int{}, map[string]int{}
	for k := range d.agents {
		agentUsers[k.id]++
	}
	for k := range d.missions {
		missionUsers[k.id]++
	}
	name := func(users map[string]int, k key) string {
		if all && (users[k.id] > 1 || strings.Contains(k.id, "/")) {
			return k.project + "/" + k.id
		}
		return k.id
	}
	for k, a := range d.agents {
		if sees(k.project) {
			c := *a
			c.ID = name(agentUsers, k)
			v.Agents[c.ID] = c
		}
	}
	for k, mi := range d.missions {
		if sees(k.project) {
			c := *mi
			c.ID = name(missionUsers, k)
			if all && c.AgentID != "" {
				if ak := (key{k.project, c.AgentID}); d.agents[ak] != nil {
					c.AgentID = name(agentUsers, ak)
				} else {
					c.AgentID = k.project + "/" + c.AgentID
				}
			}
			v.Missions[c.ID] = c
		}
	}
	// Workers: a project sees its own record; the fleet one entry per id.
	byID := map[string][]key{}
	for k := range d.workers {
		if sees(k.project) {
			byID[k.id] = append(byID[k.id], k)
		}
	}
	for id, ks := range byID {
		slices.SortFunc(ks, func(a, b key) int { return strings.Compare(a.project, b.project) })
		lead := d.workers[ks[0]]
		var projects []string
		online := false
		for _, k := range ks {
			w := d.workers[k]
			projects = append(projects, k.project)
			online = online || w.Status == fleet.WorkerOnline
			if rank(w.Status) > rank(lead.Status) || rank(w.Status) == rank(lead.Status) && w.LastSeen.After(lead.LastSeen) {
				lead = w
			}
		}
		c := *lead
		c.Projects = projects
		v.Workers[id] = c
		v.Posture.Workers++
		if all && online {
			v.Posture.WorkersOnline++
		}
	}
	for id, b := range d.budgets {
		if !sees(b.ProjectID) {
			continue
		}
		c := *b
		if !all && c.Scope == fleet.BudgetScopeGlobal {
			c.LimitUSD, c.SpentUSD, c.Pct, c.FiguresWithheld = 0, 0, 0, true
		}
		v.Budgets[id] = c
	}
	// The newest TickerSize entries of the scope, oldest first.
	for i := len(d.ticker) - 1; i >= 0 && len(v.Ticker) < fleet.TickerSize; i-- {
		if f := d.ticker[i]; sees(f.ev.ProjectID) {
			text := f.text
			if !all && f.own != "" {
				text = f.own
			}
			v.Ticker = append(v.Ticker, fleet.TickerEntry{Seq: f.seq, ID: f.ev.ID, Type: f.ev.Type, Time: f.t,
				ProjectID: f.ev.ProjectID, AgentID: f.ev.AgentID, MissionID: f.ev.MissionID, WorkerID: f.ev.WorkerID,
				Level: f.level, Text: text})
		}
	}
	slices.Reverse(v.Ticker)
	return v
}

// rank orders worker statuses from the liveliest.
func rank(status string) int {
	switch status {
	case fleet.WorkerOnline:
		return 2
	case fleet.WorkerStale:
		return 1
	}
	return 0
}

// Projects returns the ids of the projects seen, sorted.
func (d *Derived) Projects() []string {
	ids := make([]string, 0, len(d.projects))
	for id := range d.projects {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
