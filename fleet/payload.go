package fleet

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// Payloads of the known event types (DESIGN §4). Unknown fields are ignored.
// Each has a field method in decode_fields.go that tells the decoder where
// its JSON members go: a field added here must be added there too
// (TestDecoderCoversEveryField fails until it is).

// WorkerJoined is the data of worker.joined.
type WorkerJoined struct {
	Host     string   `json:"host"`
	Version  string   `json:"version"`
	Capacity int      `json:"capacity"`
	Pools    []string `json:"pools,omitempty"`
	// Models are the models the worker serves (none: every model); Labels
	// are what it offers to missions that require labels.
	Models []string          `json:"models,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// WorkerHeartbeat is the data of worker.heartbeat.
type WorkerHeartbeat struct {
	State          string  `json:"state"`
	ActiveMissions int     `json:"active_missions"`
	Load           float64 `json:"load"`
}

// WorkerLeft is the data of worker.left.
type WorkerLeft struct {
	Reason string `json:"reason"`
}

// AgentCreated is the data of agent.created.
type AgentCreated struct {
	Name        string   `json:"name"`
	Role        string   `json:"role"`
	Model       string   `json:"model"`
	Version     string   `json:"version"`
	Tools       []string `json:"tools"`
	Skills      []string `json:"skills"`
	Description string   `json:"description"`
}

// AgentStateChange is the data of agent.state.
type AgentStateChange struct {
	State string `json:"state"`
}

// MissionQueued is the data of mission.queued: what the admin API publishes
// on FLEET and enqueues on MISSIONS, with everything a worker needs to run
// the mission.
type MissionQueued struct {
	Title    string   `json:"title"`
	Priority Priority `json:"priority"`
	// Model is the model the mission runs on; RequestedModel, when set, is
	// the one asked for, which a budget throttle replaced.
	Model          string `json:"model"`
	RequestedModel string `json:"requested_model,omitempty"`
	EstimateUSD    Micros `json:"estimate_usd"`
	// Reservation names the budget reservation to settle or release when
	// the mission ends; BudgetAction is what the budget gate said.
	Reservation  string `json:"reservation,omitempty"`
	BudgetAction string `json:"budget_action,omitempty"`
	// Pool is the worker pool the mission was queued for (empty: the
	// default pool); the MISSIONS subject is what routes it, this is for
	// display. Labels are the labels a worker must offer to run it: each
	// key with that value, or with any value where the value is empty.
	Pool   string            `json:"pool,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// MissionProgress is the data of mission.progress.
type MissionProgress struct {
	Pct  float64 `json:"pct"`
	Step string  `json:"step"`
}

// Outcome is the data of mission.completed/failed and agent.run.completed/failed.
type Outcome struct {
	DurationMS float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
}

// RunStarted is the data of agent.run.started.
type RunStarted struct {
	Model string `json:"model"`
}

// LLMCall is the data of llm.call. InputTokens excludes cache reads and
// cache writes (Anthropic style). Any cost a worker sends is ignored: the
// server prices the call from its own table.
type LLMCall struct {
	Provider         string  `json:"provider"`
	Model            string  `json:"model"`
	InputTokens      int64   `json:"input_tokens"`
	OutputTokens     int64   `json:"output_tokens"`
	CacheReadTokens  int64   `json:"cache_read_tokens"`
	CacheWriteTokens int64   `json:"cache_write_tokens"`
	LatencyMS        float64 `json:"latency_ms"`
	Status           string  `json:"status"`
}

// Tokens is the sum of all four token kinds.
func (c LLMCall) Tokens() int64 {
	return c.InputTokens + c.OutputTokens + c.CacheReadTokens + c.CacheWriteTokens
}

// ToolCall is the data of tool.call.
type ToolCall struct {
	Tool      string  `json:"tool"`
	LatencyMS float64 `json:"latency_ms"`
	Status    string  `json:"status"`
}

// BudgetNotice is the data of the server-emitted budget.* events.
type BudgetNotice struct {
	Scope    string `json:"scope"`    // user, team, project or global
	ScopeID  string `json:"scope_id"` // the user, team or project id; "" for global
	Period   string `json:"period"`   // daily or monthly
	LimitUSD Micros `json:"limit_usd"`
	SpentUSD Micros `json:"spent_usd"`
	Action   string `json:"action"` // warn, throttle or stop
	Model    string `json:"model,omitempty"`
	// WarnPct is the budget's warn threshold in percent (0: DefaultWarnPct).
	WarnPct float64 `json:"warn_pct,omitempty"`
	// ResetsAt is the end of the budget's current period window, when its
	// spend starts again from zero (absent: not reported).
	ResetsAt time.Time `json:"resets_at,omitzero"`
	// ThroughSeq is the FLEET sequence up to which SpentUSD holds every
	// charge: the last llm.call the ledger charged to this budget's
	// window (0: none yet). The fold adds the calls it folds above it, so
	// that its gauge moves with each call and equals what the ledger has
	// charged at the same seq. Absent (an older server, or marks of
	// another FLEET lineage): SpentUSD stands as it is until the next
	// notice.
	ThroughSeq *uint64 `json:"through_seq,omitempty"`
}

// Priority accepts a JSON number or string and keeps it as text.
type Priority string

// UnmarshalJSON implements json.Unmarshaler.
func (p *Priority) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = Priority(s)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*p = Priority(n.String())
	return nil
}

// statusOK reports whether a call status counts as a success.
func statusOK(s string) bool { return s == "" || s == "ok" || s == "success" }

// decodePayload decodes ev.Data into the payload of a known type, or returns
// nil for an unknown one.
func decodePayload(ev *Event) (any, error) {
	p := newPayload(ev.Type)
	if p == nil {
		return nil, nil
	}
	if len(ev.Data) > 0 {
		if err := decodeJSON(ev.Data, p); err != nil {
			return nil, reject(ReasonBadField, "data of %s: %v", ev.Type, err)
		}
	}
	if err := checkPayload(p); err != nil {
		return nil, err
	}
	return p, nil
}

// newPayload returns a zero payload of type t, or nil when t has none the
// fold reads.
func newPayload(t string) jsonFields {
	switch t {
	case TypeWorkerJoined:
		return new(WorkerJoined)
	case TypeWorkerHeartbeat:
		return new(WorkerHeartbeat)
	case TypeWorkerLeft:
		return new(WorkerLeft)
	case TypeAgentCreated:
		return new(AgentCreated)
	case TypeAgentState:
		return new(AgentStateChange)
	case TypeMissionQueued:
		return new(MissionQueued)
	case TypeMissionProgress:
		return new(MissionProgress)
	case TypeMissionCompleted, TypeMissionFailed, TypeRunCompleted, TypeRunFailed:
		return new(Outcome)
	case TypeRunStarted:
		return new(RunStarted)
	case TypeLLMCall:
		return new(LLMCall)
	case TypeToolCall:
		return new(ToolCall)
	case TypeBudgetWarning, TypeBudgetExceeded, TypeBudgetThrottled, TypeBudgetStatus:
		return new(BudgetNotice)
	}
	return nil
}

// maxLatencyMS bounds the latency of one call (a week): the agent's latency
// average must stay a finite number that JSON can carry.
const maxLatencyMS = 7 * 24 * 3600 * 1000

func checkPayload(p any) error {
	switch v := p.(type) {
	case *LLMCall:
		if v.InputTokens < 0 || v.OutputTokens < 0 || v.CacheReadTokens < 0 || v.CacheWriteTokens < 0 {
			return reject(ReasonBadField, "negative token count")
		}
		if v.InputTokens > MaxTokensPerKind || v.OutputTokens > MaxTokensPerKind ||
			v.CacheReadTokens > MaxTokensPerKind || v.CacheWriteTokens > MaxTokensPerKind {
			return reject(ReasonBadField, "token count above %d", MaxTokensPerKind)
		}
		if v.LatencyMS < 0 || v.LatencyMS > maxLatencyMS {
			return reject(ReasonBadField, "latency out of range")
		}
	case *ToolCall:
		if v.LatencyMS < 0 || v.LatencyMS > maxLatencyMS {
			return reject(ReasonBadField, "latency out of range")
		}
	case *Outcome:
		if v.DurationMS < 0 {
			return reject(ReasonBadField, "negative duration")
		}
	case *BudgetNotice:
		// A time JSON cannot carry would make every frame and checkpoint
		// fail to encode.
		if y := v.ResetsAt.UTC().Year(); !v.ResetsAt.IsZero() && (y < 0 || y > 9999) {
			return reject(ReasonBadField, "resets_at %d is out of range", y)
		}
	case *MissionProgress:
		if v.Pct < 0 || v.Pct > 100 {
			return reject(ReasonBadField, "pct %s out of 0..100", strconv.FormatFloat(v.Pct, 'g', -1, 64))
		}
	}
	return nil
}
