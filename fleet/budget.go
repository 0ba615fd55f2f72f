package fleet

import "time"

// Budget scopes, periods and actions (DESIGN §10).
const (
	BudgetScopeUser    = "user"
	BudgetScopeTeam    = "team"
	BudgetScopeProject = "project"
	BudgetScopeGlobal  = "global"

	PeriodDaily   = "daily"
	PeriodMonthly = "monthly"

	ActionWarn     = "warn"
	ActionThrottle = "throttle"
	ActionStop     = "stop"
)

// BudgetRequest asks the budget gate whether work may start, and reserves
// its estimated maximum cost on every budget that applies.
type BudgetRequest struct {
	ProjectID string `json:"project_id"`
	TeamID    string `json:"team_id,omitempty"`
	UserID    string `json:"user_id,omitempty"`
	Model     string `json:"model,omitempty"`
	// Estimate is the most the work may cost; it is reserved until settled.
	Estimate Micros `json:"estimate_usd"`
	// Ref names the work (a mission or run id), for the ledger and the audit.
	Ref string `json:"ref,omitempty"`
}

// BudgetBreach is one budget that a request reaches (warn threshold or cap).
type BudgetBreach struct {
	Scope    string    `json:"scope"`
	ScopeID  string    `json:"scope_id,omitempty"`
	Period   string    `json:"period"`
	LimitUSD Micros    `json:"limit_usd"`
	SpentUSD Micros    `json:"spent_usd"`
	Reserved Micros    `json:"reserved_usd"`
	Pct      float64   `json:"pct"`
	Action   string    `json:"action"` // what this budget says: warn, throttle or stop
	ResetsAt time.Time `json:"resets_at"`
}

// BudgetDecision is the gate's answer. The harshest action of every budget
// that applies wins.
type BudgetDecision struct {
	// Allowed is false only for stop.
	Allowed bool `json:"allowed"`
	// Action is "" when every budget is within its warn threshold, else the
	// harshest of warn, throttle and stop.
	Action string `json:"action,omitempty"`
	// Model is the model the work must run on: the requested one, or the
	// cheaper one a throttle names.
	Model string `json:"model,omitempty"`
	// Reservation identifies what was reserved, to settle or release; empty
	// when nothing was (refused, or no budget applies).
	Reservation string         `json:"reservation,omitempty"`
	Breaches    []BudgetBreach `json:"breaches,omitempty"`
}
