package fleet

import (
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// DefaultWarnPct is the warn threshold of a budget that names none: a
// budget.warning once 80 % of its cap is spent or reserved.
const DefaultWarnPct = 80

// BudgetScopes lists the scopes a budget may have, most specific first: the
// order in which breaches are reported.
var BudgetScopes = []string{BudgetScopeUser, BudgetScopeTeam, BudgetScopeProject, BudgetScopeGlobal}

// BudgetPeriods lists the periods a cap may have.
var BudgetPeriods = []string{PeriodDaily, PeriodMonthly}

// BudgetActions lists what a budget may do at its cap, gentlest first.
var BudgetActions = []string{ActionWarn, ActionThrottle, ActionStop}

// BudgetLimit is one cap: at most LimitUSD per Period (UTC calendar day or
// month) for one scope, with a warn threshold and an action for when the cap
// is reached. User and team budgets belong to one project (tenants never
// share a team or a user); a project budget's ScopeID is its project; a
// global budget has neither.
type BudgetLimit struct {
	// ID is derived from the scope, project, scope id and period (BudgetID):
	// there is at most one budget per scope and period.
	ID        string `json:"id"`
	Scope     string `json:"scope"`
	ProjectID string `json:"project_id,omitempty"`
	ScopeID   string `json:"scope_id,omitempty"`
	Period    string `json:"period"`
	LimitUSD  Micros `json:"limit_usd"`
	// WarnPct is the share of the cap, in percent, from which a request is
	// allowed with a budget.warning (DefaultWarnPct when 0).
	WarnPct float64 `json:"warn_pct"`
	Action  string  `json:"action"`
	// ThrottleModel is the cheaper model work is routed to when a throttle
	// budget is at its cap.
	ThrottleModel string `json:"throttle_model,omitempty"`
	// Gen names this incarnation of the budget: a budget deleted and created
	// again gets a new one, and with it a ledger that starts at zero.
	Gen       string    `json:"gen,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// BudgetError is a budget or request that is not acceptable, with the field
// at fault. Its message is meant for the person who sent it.
type BudgetError struct {
	Field   string
	Message string
}

func (e *BudgetError) Error() string { return e.Field + ": " + e.Message }

// ErrBadBudget matches every *BudgetError with errors.Is.
var ErrBadBudget = errors.New("bad budget")

// Is reports whether target is ErrBadBudget.
func (e *BudgetError) Is(target error) bool { return target == ErrBadBudget }

func badBudget(field, format string, args ...any) error {
	return &BudgetError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Normalize checks b, fills in its defaults (warn threshold, a project
// budget's scope id) and sets its ID. It does not check that a throttle
// model is priced; that needs the pricing table (CheckThrottleModel).
func (b *BudgetLimit) Normalize() error {
	b.Scope = strings.TrimSpace(b.Scope)
	b.Period = strings.TrimSpace(b.Period)
	b.Action = strings.TrimSpace(b.Action)
	b.ThrottleModel = strings.TrimSpace(b.ThrottleModel)
	if !slices.Contains(BudgetScopes, b.Scope) {
		return badBudget("scope", "scope %q is unknown; use one of %s", b.Scope, strings.Join(BudgetScopes, ", "))
	}
	switch b.Scope {
	case BudgetScopeGlobal:
		if b.ProjectID != "" || b.ScopeID != "" {
			return badBudget("scope_id", "a global budget has no project_id or scope_id")
		}
	case BudgetScopeProject:
		if b.ProjectID == "" {
			b.ProjectID = b.ScopeID
		}
		if b.ScopeID == "" {
			b.ScopeID = b.ProjectID
		}
		if b.ScopeID != b.ProjectID {
			return badBudget("scope_id", "a project budget's scope_id is its project_id")
		}
		if !ValidProjectID(b.ProjectID) {
			return badBudget("project_id", "project_id %q is not a project id (lower-case letters, digits, - and _)", b.ProjectID)
		}
	default: // user, team
		if !ValidProjectID(b.ProjectID) {
			return badBudget("project_id", "a %s budget needs the project_id the %s belongs to", b.Scope, b.Scope)
		}
		if b.ScopeID == "" {
			return badBudget("scope_id", "a %s budget needs the %s id in scope_id", b.Scope, b.Scope)
		}
		if len(b.ScopeID) > maxIDLen || strings.ContainsAny(b.ScopeID, "\x00\n\r") {
			return badBudget("scope_id", "scope_id is longer than %d bytes or has control characters", maxIDLen)
		}
	}
	if !slices.Contains(BudgetPeriods, b.Period) {
		return badBudget("period", "period %q is unknown; use daily or monthly (UTC calendar day or month)", b.Period)
	}
	if b.LimitUSD <= 0 {
		return badBudget("limit_usd", "limit_usd must be more than 0, got %s", b.LimitUSD)
	}
	if b.LimitUSD >= maxMicros {
		return badBudget("limit_usd", "limit_usd is out of range")
	}
	if b.WarnPct == 0 {
		b.WarnPct = DefaultWarnPct
	}
	if !(b.WarnPct > 0 && b.WarnPct <= 100) {
		return badBudget("warn_pct", "warn_pct must be more than 0 and at most 100, got %v", b.WarnPct)
	}
	if !slices.Contains(BudgetActions, b.Action) {
		return badBudget("action", "action %q is unknown; use warn, throttle or stop", b.Action)
	}
	switch {
	case b.Action == ActionThrottle && b.ThrottleModel == "":
		return badBudget("throttle_model", "a throttle budget needs throttle_model, the cheaper model to route work to")
	case b.Action != ActionThrottle && b.ThrottleModel != "":
		return badBudget("throttle_model", "throttle_model is only for action throttle")
	case len(b.ThrottleModel) > maxIDLen:
		return badBudget("throttle_model", "throttle_model is longer than %d bytes", maxIDLen)
	}
	b.ID = BudgetID(b.Scope, b.ProjectID, b.ScopeID, b.Period)
	return nil
}

// CheckThrottleModel refuses a throttle model that p cannot price: work
// routed there would never be charged.
func (b *BudgetLimit) CheckThrottleModel(p *Pricing) error {
	if b.ThrottleModel == "" {
		return nil
	}
	if _, ok := p.Lookup(b.ThrottleModel); !ok {
		return badBudget("throttle_model", "throttle_model %q is not in the pricing table", b.ThrottleModel)
	}
	return nil
}

// Applies reports whether b covers req: the global budget covers everything,
// the others their project, team or user.
func (b *BudgetLimit) Applies(req BudgetRequest) bool {
	switch b.Scope {
	case BudgetScopeGlobal:
		return true
	case BudgetScopeProject:
		return b.ProjectID == req.ProjectID
	case BudgetScopeTeam:
		return b.ProjectID == req.ProjectID && req.TeamID != "" && b.ScopeID == req.TeamID
	case BudgetScopeUser:
		return b.ProjectID == req.ProjectID && req.UserID != "" && b.ScopeID == req.UserID
	}
	return false
}

// BudgetIDs returns the ids of every budget that could apply to req, one
// per scope and period, in the order breaches are reported.
func BudgetIDs(req BudgetRequest) []string {
	var ids []string
	add := func(scope, scopeID string) {
		project := req.ProjectID
		if scope == BudgetScopeGlobal {
			project = ""
		}
		for _, period := range BudgetPeriods {
			ids = append(ids, BudgetID(scope, project, scopeID, period))
		}
	}
	if req.UserID != "" {
		add(BudgetScopeUser, req.UserID)
	}
	if req.TeamID != "" {
		add(BudgetScopeTeam, req.TeamID)
	}
	add(BudgetScopeProject, req.ProjectID)
	add(BudgetScopeGlobal, "")
	return ids
}

// plainIDRE matches scope ids written as they are in a budget id; others
// are base64url-encoded behind a "=", which no plain id starts with.
var plainIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// BudgetID is the id of the budget of scope, project, scope id and period:
// "<scope>.<project>.<scope id>.<period>", e.g. "team.acme.support.daily"
// or "global._._.monthly". It is a valid NATS KV key and URL path segment.
func BudgetID(scope, project, scopeID, period string) string {
	if project == "" {
		project = "_"
	}
	return scope + "." + project + "." + keyToken(scopeID) + "." + period
}

// keyToken writes an id as one token of a KV key: as it is when it is
// plain, "=" and its base64url encoding otherwise, "_" when empty.
func keyToken(id string) string {
	switch {
	case id == "":
		return "_"
	case plainIDRE.MatchString(id):
		return id
	default:
		return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
	}
}

// KeyToken is keyToken for other packages that build KV keys from ids.
func KeyToken(id string) string { return keyToken(id) }

// ValidBudgetID reports whether id is well formed (it says nothing of
// whether such a budget exists).
func ValidBudgetID(id string) bool {
	parts := strings.Split(id, ".")
	if len(parts) != 4 || !slices.Contains(BudgetScopes, parts[0]) || !slices.Contains(BudgetPeriods, parts[3]) {
		return false
	}
	for _, p := range parts[1:3] {
		if p == "" || len(p) > 200 || strings.ContainsFunc(p, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '=')
		}) {
			return false
		}
	}
	return true
}

// Errors of the budget store and the gate.
var (
	ErrBudgetNotFound      = errors.New("no such budget")
	ErrBudgetExists        = errors.New("a budget of that scope and period exists")
	ErrReservationNotFound = errors.New("no such reservation")
)

// Reservation states.
const (
	ReservationHeld     = "held"
	ReservationSettled  = "settled"
	ReservationReleased = "released"
)

// BudgetReservation is what a reservation holds: Estimate on every budget
// entry listed, until it is settled, released or expires.
type BudgetReservation struct {
	ID        string        `json:"id"`
	Request   BudgetRequest `json:"request"`
	Action    string        `json:"action,omitempty"`
	Model     string        `json:"model,omitempty"`
	Estimate  Micros        `json:"estimate_usd"`
	Budgets   []string      `json:"budgets"`
	Entries   []string      `json:"entries"`
	CreatedAt time.Time     `json:"created_at"`
	ExpiresAt time.Time     `json:"expires_at"`
	State     string        `json:"state"`
	Actual    Micros        `json:"actual_usd,omitzero"`
	EndedAt   time.Time     `json:"ended_at,omitzero"`
}
