package fleet

import "time"

// Agent states (agent.state data.state).
const (
	AgentIdle     = "idle"
	AgentThinking = "thinking"
	AgentToolCall = "tool_call"
	AgentWaiting  = "waiting"
	AgentError    = "error"
	AgentOffline  = "offline"
)

// Worker liveness, derived from the time of its last event (DESIGN §9).
const (
	WorkerOnline  = "online"
	WorkerStale   = "stale"
	WorkerOffline = "offline"
)

// Mission statuses while in flight. Finished missions leave the fold's
// in-flight set.
const (
	MissionQueuedStatus   = "queued"
	MissionClaimedStatus  = "claimed"
	MissionRunningStatus  = "running"
	MissionRetryingStatus = "retrying"
)

// Liveness thresholds of DESIGN §9 (State.SetLiveness changes them for a
// State, for tests), and how long an agent stays active after its last
// event.
const (
	StaleAfter         = 30 * time.Second
	OfflineAfter       = 2 * time.Minute
	AgentActiveFor     = 5 * time.Minute
	ForgetWorkerFor    = time.Hour
	TickerSize         = 50
	RecentRunsPerAgent = 5
)

// Agent is one agent as the fold sees it. Values of Agent are copies; the
// slices in them are never modified in place.
type Agent struct {
	ID          string       `json:"id"`
	ProjectID   string       `json:"project_id"`
	Name        string       `json:"name"`
	Role        string       `json:"role"`
	Model       string       `json:"model"`
	Version     string       `json:"version,omitempty"`
	Description string       `json:"description,omitempty"`
	Tools       []string     `json:"tools"`
	Skills      []string     `json:"skills"`
	State       string       `json:"state"`
	Active      bool         `json:"active"`
	WorkerID    string       `json:"worker_id,omitempty"`
	MissionID   string       `json:"mission_id,omitempty"`
	RunID       string       `json:"run_id,omitempty"`
	Runs        int64        `json:"runs"`
	RunsFailed  int64        `json:"runs_failed"`
	LLMCalls    int64        `json:"llm_calls"`
	ToolCalls   int64        `json:"tool_calls"`
	CallErrors  int64        `json:"call_errors"`
	LatencyMS   float64      `json:"latency_ms"`
	Tokens      int64        `json:"tokens"`
	Spend       Micros       `json:"spend_usd"`
	LastSeen    time.Time    `json:"last_seen"`
	RecentRuns  []RunSummary `json:"recent_runs"`
}

// RunSummary is one finished run in an agent's dossier.
type RunSummary struct {
	ID         string    `json:"id"`
	MissionID  string    `json:"mission_id,omitempty"`
	Model      string    `json:"model,omitempty"`
	Status     string    `json:"status"` // completed or failed
	Started    time.Time `json:"started,omitzero"`
	Ended      time.Time `json:"ended"`
	DurationMS float64   `json:"duration_ms"`
	Calls      int64     `json:"calls"`
	Tokens     int64     `json:"tokens"`
	Spend      Micros    `json:"spend_usd"`
	Error      string    `json:"error,omitempty"`
}

// Worker is one worker process.
type Worker struct {
	ID             string            `json:"id"`
	Host           string            `json:"host,omitempty"`
	Version        string            `json:"version,omitempty"`
	Capacity       int               `json:"capacity"`
	Pools          []string          `json:"pools,omitempty"`
	Models         []string          `json:"models,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Projects       []string          `json:"projects"`
	State          string            `json:"state"`
	Status         string            `json:"status"`
	ActiveMissions int               `json:"active_missions"`
	Load           float64           `json:"load"`
	JoinedAt       time.Time         `json:"joined_at,omitzero"`
	LastSeen       time.Time         `json:"last_seen"`
	LeftReason     string            `json:"left_reason,omitempty"`
}

// Mission is a mission in flight.
type Mission struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	TeamID    string    `json:"team_id,omitempty"`
	UserID    string    `json:"user_id,omitempty"`
	Title     string    `json:"title"`
	Priority  Priority  `json:"priority,omitempty"`
	Pool      string    `json:"pool,omitempty"`
	Status    string    `json:"status"`
	WorkerID  string    `json:"worker_id,omitempty"`
	AgentID   string    `json:"agent_id,omitempty"`
	RunID     string    `json:"run_id,omitempty"`
	Pct       float64   `json:"pct"`
	Step      string    `json:"step,omitempty"`
	Attempts  int       `json:"attempts"`
	QueuedAt  time.Time `json:"queued_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}

// BudgetStatus is the budget summary shown on a project.
type BudgetStatus struct {
	LimitUSD Micros  `json:"limit_usd"`
	SpentUSD Micros  `json:"spent_usd"`
	Pct      float64 `json:"pct"`
	Action   string  `json:"action"`
	Period   string  `json:"period,omitempty"`
}

// Budget is the last known standing of one budget scope, from budget.* events.
type Budget struct {
	ID        string `json:"id"` // project/scope:scope_id:period
	ProjectID string `json:"project_id"`
	Scope     string `json:"scope"`
	ScopeID   string `json:"scope_id,omitempty"`
	Period    string `json:"period,omitempty"`
	// LimitUSD, SpentUSD and Pct are the budget's figures. A project's
	// scope never sees those of a global budget, which sum every project's
	// spend: there they are zero, FiguresWithheld is true, and the JSON of
	// the view or diff has no limit_usd, spent_usd or pct at all
	// (BudgetMap).
	LimitUSD  Micros    `json:"limit_usd"`
	SpentUSD  Micros    `json:"spent_usd"`
	Pct       float64   `json:"pct"`
	Action    string    `json:"action"`
	Status    string    `json:"status"` // warning, exceeded, throttled; or ok, warning, reached from budget.status
	Model     string    `json:"model,omitempty"`
	ResetsAt  time.Time `json:"resets_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
	// FiguresWithheld is true in a project's scope for a global budget.
	FiguresWithheld bool `json:"figures_withheld,omitempty"`
}

// Project is the per-project aggregate row.
type Project struct {
	ID               string        `json:"id"`
	Agents           int           `json:"agents"`
	ActiveAgents     int           `json:"active_agents"`
	WorkersOnline    int           `json:"workers_online"`
	MissionsInFlight int           `json:"missions_in_flight"`
	Runs24h          int64         `json:"runs_24h"`
	Tokens24h        int64         `json:"tokens_24h"`
	Errors1h         int64         `json:"errors_1h"`
	SpendToday       Micros        `json:"spend_today_usd"`
	SpendTotal       Micros        `json:"spend_total_usd"`
	TokensTotal      int64         `json:"tokens_total"`
	RunsTotal        int64         `json:"runs_total"`
	MissionsDone     int64         `json:"missions_completed"`
	MissionsFailed   int64         `json:"missions_failed"`
	UnpricedCalls    int64         `json:"unpriced_calls"`
	UnknownEvents    int64         `json:"unknown_events"`
	Budget           *BudgetStatus `json:"budget,omitempty"`
}

// Posture is the headline figures of a scope: the whole fleet, or one project.
// Posture is comparable, so a change is detected with ==.
type Posture struct {
	ActiveAgents     int     `json:"active_agents"`
	Agents           int     `json:"agents"`
	WorkersOnline    int     `json:"workers_online"`
	Workers          int     `json:"workers"`
	MissionsInFlight int     `json:"missions_in_flight"`
	Runs24h          int64   `json:"runs_24h"`
	Tokens24h        int64   `json:"tokens_24h"`
	Errors1h         int64   `json:"errors_1h"`
	SpendToday       Micros  `json:"spend_today_usd"`
	SpendTotal       Micros  `json:"spend_total_usd"`
	BudgetLimit      Micros  `json:"budget_limit_usd"`
	BudgetPct        float64 `json:"budget_pct"`
	UnpricedCalls    int64   `json:"unpriced_calls"`
}

// TickerEntry is one event as shown in the ticker.
type TickerEntry struct {
	Seq       uint64    `json:"seq"`
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	ProjectID string    `json:"project_id"`
	AgentID   string    `json:"agent_id,omitempty"`
	MissionID string    `json:"mission_id,omitempty"`
	WorkerID  string    `json:"worker_id,omitempty"`
	Level     string    `json:"level"` // info, warn or error
	Text      string    `json:"text"`
}

// View is everything a scope sees: the "state" of a snapshot frame.
type View struct {
	Posture  Posture            `json:"posture"`
	Projects map[string]Project `json:"projects"`
	Agents   map[string]Agent   `json:"agents"`
	Workers  map[string]Worker  `json:"workers"`
	Missions map[string]Mission `json:"missions"`
	Budgets  BudgetMap          `json:"budgets"`
	Ticker   []TickerEntry      `json:"ticker"`
}

// Collections names the keyed collections of a View, as used in diffs.
var Collections = []string{"projects", "agents", "workers", "missions", "budgets"}

// Set is the whole new value of each changed entity, by collection.
type Set struct {
	Projects map[string]Project `json:"projects,omitempty"`
	Agents   map[string]Agent   `json:"agents,omitempty"`
	Workers  map[string]Worker  `json:"workers,omitempty"`
	Missions map[string]Mission `json:"missions,omitempty"`
	Budgets  BudgetMap          `json:"budgets,omitempty"`
}

// Delta is what changed in one scope between two frames. Applying it to
// the scope's View at the earlier frame gives the View at the later one.
type Delta struct {
	Set     Set                 `json:"set,omitzero"`
	Del     map[string][]string `json:"del,omitempty"`
	Posture *Posture            `json:"posture,omitempty"`
	Ticker  []TickerEntry       `json:"ticker,omitempty"`
}

// Empty reports whether d changes nothing.
func (d *Delta) Empty() bool {
	return len(d.Set.Projects) == 0 && len(d.Set.Agents) == 0 && len(d.Set.Workers) == 0 &&
		len(d.Set.Missions) == 0 && len(d.Set.Budgets) == 0 && len(d.Del) == 0 &&
		d.Posture == nil && len(d.Ticker) == 0
}
