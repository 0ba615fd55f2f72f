package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ClockSubject is the FLEET subject of clock ticks: messages that carry no
// event and only let the fold's clock move on the stream's own time when
// nothing else is published, so that quiet workers turn stale and offline
// and windows decay. It is outside fleet.<project>.<type> (no project id
// starts with "_"). Servers publish one per ClockEvery with the message id
// ClockID(t), so the stream's dedupe keeps one per interval however many
// replicas publish.
const ClockSubject = "fleet._clock"

// ClockEvery is the interval of clock ticks.
const ClockEvery = 10 * time.Second

// ClockID is the message id of the tick of the interval of length every
// (ClockEvery when not positive) that holds t.
func ClockID(t time.Time, every time.Duration) string {
	if every <= 0 {
		every = ClockEvery
	}
	return "clock-" + strconv.FormatInt(t.UTC().Truncate(every).UnixMilli(), 10)
}

// MaxEventSize is the largest encoded event the fold accepts (DESIGN §4).
const MaxEventSize = 64 << 10

// Event types of DESIGN §4. Types not listed here are kept in the ticker and
// counted as unknown; they never stop the fold.
const (
	TypeWorkerJoined     = "worker.joined"
	TypeWorkerHeartbeat  = "worker.heartbeat"
	TypeWorkerLeft       = "worker.left"
	TypeAgentCreated     = "agent.created"
	TypeAgentState       = "agent.state"
	TypeMissionQueued    = "mission.queued"
	TypeMissionClaimed   = "mission.claimed"
	TypeMissionProgress  = "mission.progress"
	TypeMissionCompleted = "mission.completed"
	TypeMissionFailed    = "mission.failed"
	TypeMissionRetrying  = "mission.retrying"
	TypeRunStarted       = "agent.run.started"
	TypeRunCompleted     = "agent.run.completed"
	TypeRunFailed        = "agent.run.failed"
	TypeLLMCall          = "llm.call"
	TypeToolCall         = "tool.call"
	TypeBudgetWarning    = "budget.warning"
	TypeBudgetExceeded   = "budget.exceeded"
	TypeBudgetThrottled  = "budget.throttled"
	// TypeBudgetStatus is a budget's standing, published by the budget gate
	// every few seconds and whenever a budget is created or changed, so the
	// HUD shows every budget from the start, not from its first warning. It
	// never enters the ticker.
	TypeBudgetStatus   = "budget.status"
	TypeLoginSucceeded = "auth.login.succeeded"
	TypeLoginFailed    = "auth.login.failed"
	TypeCrossAccess    = "tenant.cross_access_denied"
	TypeProjectCreated = "project.created"
)

// Event is the envelope every worker and the server publish, one per NATS
// message. Data is kept raw and decoded by the fold according to Type.
type Event struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Time      time.Time       `json:"time"`
	ProjectID string          `json:"project_id"`
	TeamID    string          `json:"team_id,omitempty"`
	UserID    string          `json:"user_id,omitempty"`
	WorkerID  string          `json:"worker_id,omitempty"`
	AgentID   string          `json:"agent_id,omitempty"`
	MissionID string          `json:"mission_id,omitempty"`
	RunID     string          `json:"run_id,omitempty"`
	TraceID   string          `json:"trace_id,omitempty"`
	SpanID    string          `json:"span_id,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`

	// payload caches Data decoded by DecodeEvent, so the fold decodes it once.
	payload any
}

// Reason says why an event was rejected. Reasons are few and fixed so that
// they can label a metric.
type Reason string

// Rejection reasons.
const (
	ReasonBadJSON         Reason = "bad_json"
	ReasonOversize        Reason = "oversize"
	ReasonMissingField    Reason = "missing_field"
	ReasonBadProject      Reason = "bad_project_id"
	ReasonSubjectMismatch Reason = "subject_mismatch"
	ReasonBadField        Reason = "bad_field"
)

// Reasons lists every rejection reason, for pre-registering metric series.
var Reasons = []Reason{ReasonBadJSON, ReasonOversize, ReasonMissingField, ReasonBadProject, ReasonSubjectMismatch, ReasonBadField}

// RejectError is returned by DecodeEvent for an event the fold must not see.
type RejectError struct {
	Reason Reason
	Detail string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("event rejected: %s: %s", e.Reason, e.Detail)
}

// ErrRejected matches every *RejectError with errors.Is.
var ErrRejected = errors.New("event rejected")

// Is reports whether target is ErrRejected.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

func reject(r Reason, format string, args ...any) error {
	return &RejectError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// RejectReason returns the reason of a rejection error, or "" if err is not one.
func RejectReason(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// ValidProjectID reports whether id is a well-formed project id: what
// ^[a-z0-9][a-z0-9_-]{0,62}$ matches (a loop over the bytes, which the
// decoder runs on every event, is cheaper than the regular expression).
func ValidProjectID(id string) bool {
	if id == "" || len(id) > 63 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// maxIDLen bounds every id in the envelope; ids become map keys and DOM ids.
const maxIDLen = 128

// DecodeEvent parses one message body and validates it. subject, when not
// empty, is the NATS subject the message came on; its project segment must
// agree with the event's project_id, and its type segment with the type.
func DecodeEvent(subject string, body []byte) (Event, error) {
	var ev Event
	if len(body) > MaxEventSize {
		return ev, reject(ReasonOversize, "%d bytes > %d", len(body), MaxEventSize)
	}
	rest, err := decodeEnvelope(body, &ev)
	if err != nil {
		return Event{}, reject(ReasonBadJSON, "%v", err)
	}
	// What may follow the event is what a json.Decoder reading it left
	// behind and bytes.TrimSpace removes, as before the hand-written
	// reader: Unicode white space counts.
	if len(bytes.TrimSpace(rest)) > 0 {
		return Event{}, reject(ReasonBadJSON, "trailing data after the event")
	}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	p, err := decodePayload(&ev)
	if err != nil {
		return Event{}, err
	}
	ev.payload = p
	if subject != "" {
		p, t, ok := SplitSubject(subject)
		if !ok || p != ev.ProjectID || t != ev.Type {
			return Event{}, reject(ReasonSubjectMismatch, "subject %q carries project %q type %q", subject, ev.ProjectID, ev.Type)
		}
	}
	return ev, nil
}

// decodeEnvelope decodes the JSON value at the start of body into ev, as a
// json.Decoder does (an object, or null which leaves ev empty), and returns
// the bytes after it.
func decodeEnvelope(body []byte, ev *Event) ([]byte, error) {
	r := jsonReader{b: body}
	r.ws()
	var err error
	switch r.peek() {
	case '{':
		err = r.object(ev)
	case 'n':
		err = r.literal("null")
	default:
		// A malformed value is a syntax error, a well-formed one of
		// another kind a type error, as encoding/json reports them.
		start := r.i
		if err := r.skip(); err != nil {
			return nil, err
		}
		r.i = start
		return nil, r.typeError("an event")
	}
	return body[r.i:], err
}

// Validate checks the required fields and the shape of the ids.
func (ev *Event) Validate() error {
	switch {
	case ev.ID == "":
		return reject(ReasonMissingField, "id")
	case ev.Type == "":
		return reject(ReasonMissingField, "type")
	case ev.Time.IsZero():
		return reject(ReasonMissingField, "time")
	case ev.ProjectID == "":
		return reject(ReasonMissingField, "project_id")
	}
	if y := ev.Time.UTC().Year(); y < 0 || y > 9999 {
		return reject(ReasonBadField, "time %d is out of range", y)
	}
	if !ValidProjectID(ev.ProjectID) {
		return reject(ReasonBadProject, "%q", ev.ProjectID)
	}
	if !validType(ev.Type) {
		return reject(ReasonBadField, "type %q", ev.Type)
	}
	for _, f := range [...]struct{ name, v string }{
		{"id", ev.ID}, {"team_id", ev.TeamID}, {"user_id", ev.UserID}, {"worker_id", ev.WorkerID},
		{"agent_id", ev.AgentID}, {"mission_id", ev.MissionID}, {"run_id", ev.RunID},
		{"trace_id", ev.TraceID}, {"span_id", ev.SpanID},
	} {
		if len(f.v) > maxIDLen || hasControl(f.v) {
			return reject(ReasonBadField, "%s is too long or has control characters", f.name)
		}
	}
	if len(ev.Data) > 0 && ev.Data[0] != '{' && string(ev.Data) != "null" {
		return reject(ReasonBadField, "data must be an object")
	}
	return nil
}

// hasControl reports whether s holds a NUL, LF or CR byte.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\n' || c == '\r' {
			return true
		}
	}
	return false
}

// validType accepts dotted lower-case words, as used in subjects: at most
// 64 bytes of [a-z0-9_-] words joined by single dots.
func validType(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	dot := true // the previous byte was a dot, or there was none
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '.':
			if dot {
				return false
			}
			dot = true
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
			dot = false
		default:
			return false
		}
	}
	return !dot
}

// Subject returns the NATS subject an event is published on:
// fleet.<project_id>.<type>.
func Subject(ev Event) string { return "fleet." + ev.ProjectID + "." + ev.Type }

// SplitSubject splits fleet.<project>.<type...> into its project and type.
func SplitSubject(subject string) (project, typ string, ok bool) {
	rest, found := strings.CutPrefix(subject, "fleet.")
	if !found {
		return "", "", false
	}
	project, typ, ok = strings.Cut(rest, ".")
	return project, typ, ok && project != "" && typ != ""
}

// Known reports whether the fold understands t.
func Known(t string) bool {
	switch t {
	case TypeWorkerJoined, TypeWorkerHeartbeat, TypeWorkerLeft, TypeAgentCreated, TypeAgentState,
		TypeMissionQueued, TypeMissionClaimed, TypeMissionProgress, TypeMissionCompleted, TypeMissionFailed,
		TypeMissionRetrying, TypeRunStarted, TypeRunCompleted, TypeRunFailed, TypeLLMCall, TypeToolCall,
		TypeBudgetWarning, TypeBudgetExceeded, TypeBudgetThrottled, TypeBudgetStatus, TypeLoginSucceeded, TypeLoginFailed, TypeCrossAccess,
		TypeProjectCreated:
		return true
	}
	return false
}
