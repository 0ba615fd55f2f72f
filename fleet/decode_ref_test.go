package fleet

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
)

// This file keeps the encoding/json decoder that DecodeEvent used before
// the hand-written reader (decode_json.go), as the reference the reader is
// fuzzed and benchmarked against. It is exported to the external tests
// only (a _test.go file of package fleet).

// DecodeEventRef is DecodeEvent as it was with encoding/json.
func DecodeEventRef(subject string, body []byte) (Event, error) {
	var ev Event
	if len(body) > MaxEventSize {
		return ev, reject(ReasonOversize, "%d bytes > %d", len(body), MaxEventSize)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ev); err != nil {
		return Event{}, reject(ReasonBadJSON, "%v", err)
	}
	if len(bytes.TrimSpace(body[dec.InputOffset():])) > 0 {
		return Event{}, reject(ReasonBadJSON, "trailing data after the event")
	}
	if err := validateRef(&ev); err != nil {
		return Event{}, err
	}
	p, err := DecodePayloadRef(&ev)
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

// DecodePayloadRef is decodePayload as it was with encoding/json.
func DecodePayloadRef(ev *Event) (any, error) {
	p := newPayload(ev.Type)
	if p == nil {
		return nil, nil
	}
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, p); err != nil {
			return nil, reject(ReasonBadField, "data of %s: %v", ev.Type, err)
		}
	}
	if err := checkPayload(p); err != nil {
		return nil, err
	}
	return p, nil
}

// DecodePayload is decodePayload, for the external tests.
func DecodePayload(ev *Event) (any, error) { return decodePayload(ev) }

// Payload returns the payload DecodeEvent cached in ev.
func (ev *Event) Payload() any { return ev.payload }

// validateRef is Event.Validate as it was with a regular expression and
// strings.Split.
func validateRef(ev *Event) error {
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
	if !ValidProjectIDRef(ev.ProjectID) {
		return reject(ReasonBadProject, "%q", ev.ProjectID)
	}
	if !validTypeRef(ev.Type) {
		return reject(ReasonBadField, "type %q", ev.Type)
	}
	for _, f := range [...]struct{ name, v string }{
		{"id", ev.ID}, {"team_id", ev.TeamID}, {"user_id", ev.UserID}, {"worker_id", ev.WorkerID},
		{"agent_id", ev.AgentID}, {"mission_id", ev.MissionID}, {"run_id", ev.RunID},
		{"trace_id", ev.TraceID}, {"span_id", ev.SpanID},
	} {
		if len(f.v) > maxIDLen || strings.ContainsAny(f.v, "\x00\n\r") {
			return reject(ReasonBadField, "%s is too long or has control characters", f.name)
		}
	}
	if len(ev.Data) > 0 && ev.Data[0] != '{' && string(ev.Data) != "null" {
		return reject(ReasonBadField, "data must be an object")
	}
	return nil
}

var projectRERef = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidProjectIDRef is ValidProjectID as it was, with a regular expression.
func ValidProjectIDRef(id string) bool { return projectRERef.MatchString(id) }

// ValidType is validType, for the external tests.
func ValidType(t string) bool { return validType(t) }

// validTypeRef is validType as it was, with strings.Split.
func validTypeRef(t string) bool {
	if len(t) > 64 {
		return false
	}
	for _, part := range strings.Split(t, ".") {
		if part == "" {
			return false
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return false
			}
		}
	}
	return true
}

// ValidTypeRef is validTypeRef, for the external tests.
func ValidTypeRef(t string) bool { return validTypeRef(t) }
