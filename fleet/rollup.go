package fleet

import (
	"sort"
	"time"
)

// Charge is one llm.call as money: its cost by the pricing table (the same
// Price.Cost the fold adds up), attributed to the project, team, user,
// agent, mission and run it belongs to.
type Charge struct {
	EventID string
	// Time is the event's time, never later than the stream's clock (the
	// fold's rule): it picks the budget window and the rollup window.
	Time      time.Time
	ProjectID string
	TeamID    string
	UserID    string
	AgentID   string
	MissionID string
	RunID     string
	Model     string
	Provider  string
	Tokens    int64
	Cost      Micros
	// Priced is false for a model the table does not price: such a call is
	// counted and reported, never charged.
	Priced bool
}

// Bounds of the Coster's memory.
const (
	costerSeenCap     = seenCap
	costerMissionsCap = 1 << 14
	costerRunsCap     = 1 << 14
)

type who struct{ team, user string }

// Coster turns the event stream into Charges exactly as the fold prices it:
// the same validation, the same dedupe by event id (within its project), the same clock (the
// newest stored time seen; an event's time is never later), the same
// Price.Cost per call, unpriced calls free. It also remembers each
// mission's team and user and each run's mission, so that a call that
// omits them is attributed to the mission's. A Coster is not safe for
// concurrent use.
type Coster struct {
	pricing *Pricing
	clock   time.Time
	seen    fifoSet

	missions     map[string]who
	missionOrder fifo
	runs         map[string]string // project/run → mission id
	runOrder     fifo
}

// NewCoster returns a Coster pricing calls by p (nil means DefaultPricing).
func NewCoster(p *Pricing) *Coster {
	if p == nil {
		p = DefaultPricing()
	}
	return &Coster{pricing: p, missions: make(map[string]who), runs: make(map[string]string)}
}

// Pricing returns the table the Coster prices calls with.
func (c *Coster) Pricing() *Pricing { return c.pricing }

// Apply takes one event stored at at (zero: the event's own time) and
// returns its Charge if it is an llm.call seen for the first time. Events
// of other types only teach it who runs which mission.
func (c *Coster) Apply(at time.Time, ev Event) (Charge, bool) {
	if at.IsZero() {
		at = ev.Time
	}
	if ev.payload == nil {
		if err := ev.Validate(); err != nil {
			return Charge{}, false
		}
		if Known(ev.Type) {
			p, err := decodePayload(&ev)
			if err != nil {
				return Charge{}, false
			}
			ev.payload = p
		}
	}
	if at.After(c.clock) {
		c.clock = at.UTC()
	}
	key := ev.ProjectID + "/" + ev.ID // an id is unique within its project
	if c.seen.has(key) {
		return Charge{}, false
	}
	c.seen.add(key, costerSeenCap)
	c.learn(ev)
	call, ok := ev.payload.(*LLMCall)
	if !ok {
		return Charge{}, false
	}
	t := ev.Time.UTC()
	if t.After(c.clock) {
		t = c.clock
	}
	ch := Charge{EventID: ev.ID, Time: t, ProjectID: ev.ProjectID, AgentID: ev.AgentID,
		MissionID: ev.MissionID, RunID: ev.RunID, Model: call.Model, Provider: call.Provider, Tokens: call.Tokens()}
	ch.TeamID, ch.UserID = c.Who(ev)
	if ch.MissionID == "" && ev.RunID != "" {
		ch.MissionID = c.runs[ev.ProjectID+"/"+ev.RunID] // the run's mission, as far as seen
	}
	if price, ok := c.pricing.Lookup(call.Model); ok {
		ch.Priced, ch.Cost = true, price.Cost(*call)
		if price.Provider != "" {
			ch.Provider = price.Provider
		}
	}
	return ch, true
}

// learn remembers the team and user of an event's mission, and the mission
// of its run.
func (c *Coster) learn(ev Event) {
	mission := ev.MissionID
	if mission == "" && ev.RunID != "" {
		mission = c.runs[ev.ProjectID+"/"+ev.RunID]
	}
	if ev.RunID != "" && ev.MissionID != "" {
		k := ev.ProjectID + "/" + ev.RunID
		if _, ok := c.runs[k]; !ok {
			c.runOrder.push(k, costerRunsCap, func(old string) { delete(c.runs, old) })
		}
		c.runs[k] = ev.MissionID
	}
	if mission == "" || ev.TeamID == "" && ev.UserID == "" {
		return
	}
	k := ev.ProjectID + "/" + mission
	w, ok := c.missions[k]
	if !ok {
		c.missionOrder.push(k, costerMissionsCap, func(old string) { delete(c.missions, old) })
	}
	if ev.TeamID != "" {
		w.team = ev.TeamID
	}
	if ev.UserID != "" {
		w.user = ev.UserID
	}
	c.missions[k] = w
}

// Who returns the team and user an event is attributed to: its own, else
// those of its mission (or its run's mission) as seen so far.
func (c *Coster) Who(ev Event) (team, user string) {
	team, user = ev.TeamID, ev.UserID
	if team != "" && user != "" {
		return team, user
	}
	mission := ev.MissionID
	if mission == "" && ev.RunID != "" {
		mission = c.runs[ev.ProjectID+"/"+ev.RunID]
	}
	if mission == "" {
		return team, user
	}
	w := c.missions[ev.ProjectID+"/"+mission]
	if team == "" {
		team = w.team
	}
	if user == "" {
		user = w.user
	}
	return team, user
}

// Group-by dimensions of a Rollup.
const (
	GroupProject  = "project"
	GroupTeam     = "team"
	GroupUser     = "user"
	GroupModel    = "model"
	GroupAgent    = "agent"
	GroupProvider = "provider"
)

// GroupDims lists every dimension a Rollup keeps.
var GroupDims = []string{GroupProject, GroupTeam, GroupUser, GroupModel, GroupAgent, GroupProvider}

// Unattributed is the group key of calls that carry no value for the
// dimension (a call with no team, no user or no agent).
const Unattributed = "(none)"

// ProviderLocal is the provider of models that run on the fleet's own
// hardware (priced at zero in the table).
const ProviderLocal = "local"

// CostGroup is the money of one group of calls.
type CostGroup struct {
	Key      string  `json:"key"`
	Cost     Micros  `json:"cost_usd"`
	Tokens   int64   `json:"tokens"`
	Calls    int64   `json:"calls"`
	Runs     int64   `json:"runs"`
	Unpriced int64   `json:"unpriced_calls"`
	SharePct float64 `json:"share_pct"` // of the rollup's total cost
}

type agg struct {
	CostGroup
	runs map[string]struct{}
}

func (a *agg) add(c Charge) {
	a.Calls++
	a.Tokens += c.Tokens
	a.Cost += c.Cost
	if !c.Priced {
		a.Unpriced++
	}
	if c.RunID != "" {
		if a.runs == nil {
			a.runs = make(map[string]struct{})
		}
		k := c.ProjectID + "/" + c.RunID
		if _, ok := a.runs[k]; !ok {
			a.runs[k] = struct{}{}
			a.Runs++
		}
	}
}

// Rollup adds up charges whose time is in [From, To) (a zero bound is
// open) by project, team, user, model, agent and provider. Its sums are
// sums of Micros: exact. A Rollup is not safe for concurrent use.
type Rollup struct {
	From, To time.Time

	total    agg
	groups   map[string]map[string]*agg
	unpriced map[string]struct{}
}

// NewRollup returns an empty rollup of the window [from, to).
func NewRollup(from, to time.Time) *Rollup {
	r := &Rollup{From: from, To: to, groups: make(map[string]map[string]*agg), unpriced: make(map[string]struct{})}
	for _, d := range GroupDims {
		r.groups[d] = make(map[string]*agg)
	}
	return r
}

// In reports whether t is in the rollup's window.
func (r *Rollup) In(t time.Time) bool {
	return (r.From.IsZero() || !t.Before(r.From)) && (r.To.IsZero() || t.Before(r.To))
}

// Add counts c if its time is in the window, and reports whether it did.
func (r *Rollup) Add(c Charge) bool {
	if !r.In(c.Time) {
		return false
	}
	r.total.add(c)
	if !c.Priced {
		r.unpriced[c.Model] = struct{}{}
	}
	for _, d := range GroupDims {
		k := c.key(d)
		a := r.groups[d][k]
		if a == nil {
			a = &agg{CostGroup: CostGroup{Key: k}}
			r.groups[d][k] = a
		}
		a.add(c)
	}
	return true
}

func (c Charge) key(dim string) string {
	var k string
	switch dim {
	case GroupProject:
		k = c.ProjectID
	case GroupTeam:
		k = c.TeamID
	case GroupUser:
		k = c.UserID
	case GroupModel:
		k = c.Model
	case GroupAgent:
		k = c.AgentID
	case GroupProvider:
		k = c.Provider
	}
	if k == "" {
		return Unattributed
	}
	return k
}

// Total is the sum of every call counted.
func (r *Rollup) Total() CostGroup {
	t := r.total.CostGroup
	t.Key = ""
	if t.Cost > 0 {
		t.SharePct = 100
	}
	return t
}

// Groups returns the groups of dimension dim, the costliest first (then by
// key), each with its share of the total cost. An unknown dim gives none.
func (r *Rollup) Groups(dim string) []CostGroup {
	m := r.groups[dim]
	out := make([]CostGroup, 0, len(m))
	for _, a := range m {
		g := a.CostGroup
		g.SharePct = Pct(g.Cost, r.total.Cost)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cost != out[j].Cost {
			return out[i].Cost > out[j].Cost
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Group returns the group of dimension dim with key k (zero if none).
func (r *Rollup) Group(dim, k string) CostGroup {
	if a := r.groups[dim][k]; a != nil {
		g := a.CostGroup
		g.SharePct = Pct(g.Cost, r.total.Cost)
		return g
	}
	return CostGroup{Key: k}
}

// UnpricedModels lists the models seen that the table does not price, sorted.
func (r *Rollup) UnpricedModels() []string {
	out := make([]string, 0, len(r.unpriced))
	for m := range r.unpriced {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// CostReport is a rollup of one project's calls over a window, grouped by
// one dimension: the body of GET /api/v1/projects/{project}/costs.
type CostReport struct {
	ProjectID      string      `json:"project_id"`
	From           time.Time   `json:"from"`
	To             time.Time   `json:"to"`
	GroupBy        string      `json:"group_by"`
	Total          CostGroup   `json:"total"`
	Groups         []CostGroup `json:"groups"`
	UnpricedModels []string    `json:"unpriced_models"`
	PricingAsOf    string      `json:"pricing_as_of,omitempty"`
}

// Report returns r's figures grouped by dim.
func (r *Rollup) Report(project, dim string) CostReport {
	return CostReport{ProjectID: project, From: r.From, To: r.To, GroupBy: dim, Total: r.Total(),
		Groups: r.Groups(dim), UnpricedModels: r.UnpricedModels()}
}
