package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sagewai/observatory/fleet"
)

// Subprotocol is observatory.v1, the first version of the protocol: a
// diff's set carries whole entities.
const Subprotocol = "observatory.v1"

// SubprotocolV2 is observatory.v2: snapshots as in v1; a diff sends whole
// only the entities its clients do not hold yet (set), and for the others
// the top-level fields whose value changed (patch) or went (unset); its
// posture holds only the posture's changed fields.
const SubprotocolV2 = "observatory.v2"

// Subprotocols are the versions a server speaks, the one it prefers
// first: a client offering both gets v2.
var Subprotocols = []string{SubprotocolV2, Subprotocol}

// Known reports whether sp is a version of the protocol.
func Known(sp string) bool { return sp == Subprotocol || sp == SubprotocolV2 }

// Frame ops.
const (
	OpSubscribe = "subscribe"
	OpSnapshot  = "snapshot"
	OpDiff      = "diff"
	OpError     = "error"
)

// Error codes of error frames, and the close codes that follow them.
const (
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeBadRequest   = "bad_request"
	CodeSlow         = "slow"
	// CodeGoingAway closes a connection without an error frame, with the
	// standard close code 1001, when the server shuts down.
	CodeGoingAway = "going_away"

	CloseBadRequest   = 4400
	CloseUnauthorized = 4401
	CloseForbidden    = 4403
	CloseSlow         = 4408
	CloseGoingAway    = 1001
)

// CloseCode returns the close code that follows an error frame of code.
func CloseCode(code string) int {
	switch code {
	case CodeUnauthorized:
		return CloseUnauthorized
	case CodeForbidden:
		return CloseForbidden
	case CodeSlow:
		return CloseSlow
	case CodeGoingAway:
		return CloseGoingAway
	default:
		return CloseBadRequest
	}
}

// MaxClientFrame bounds a client frame; anything larger is a bad request.
const MaxClientFrame = 4 << 10

// TickerSize is how many ticker entries a client keeps (the newest).
const TickerSize = fleet.TickerSize

// Resume asks to continue a stream from the frame a client last applied.
type Resume struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// Subscribe is the client's subscribe frame.
type Subscribe struct {
	Op     string  `json:"op"`
	Scope  string  `json:"scope"`
	Resume *Resume `json:"resume,omitempty"`
	// Protocol is the subprotocol the connection speaks, set by the
	// transport after the handshake, never read from the frame; empty
	// means Subprotocol (v1).
	Protocol string `json:"-"`
}

// ErrBadFrame is wrapped by every error DecodeSubscribe returns.
var ErrBadFrame = errors.New("bad client frame")

// frameError says what is wrong with a client frame in the protocol's
// words: the field and what it must be, never a Go type.
func frameError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not JSON (at byte %d)", se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return "want a JSON object"
		}
		switch field {
		case "resume":
			return "resume must be an object {\"epoch\",\"seq\"}"
		case "resume.seq":
			return "resume.seq must be a whole number"
		}
		return field + " must be a string"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "empty or truncated frame"
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + name
	}
	return "not a subscribe frame"
}

// DecodeSubscribe parses and validates a client frame.
func DecodeSubscribe(b []byte) (Subscribe, error) {
	var s Subscribe
	if len(b) > MaxClientFrame {
		return s, fmt.Errorf("%w: %d bytes > %d", ErrBadFrame, len(b), MaxClientFrame)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Subscribe{}, fmt.Errorf("%w: %s", ErrBadFrame, frameError(err))
	}
	if dec.More() {
		return Subscribe{}, fmt.Errorf("%w: trailing data", ErrBadFrame)
	}
	if s.Op != OpSubscribe {
		return Subscribe{}, fmt.Errorf("%w: op %q, want %q", ErrBadFrame, s.Op, OpSubscribe)
	}
	if s.Scope != fleet.ScopeAll && !fleet.ValidProjectID(s.Scope) {
		return Subscribe{}, fmt.Errorf("%w: scope %q is neither \"*\" nor a project id", ErrBadFrame, s.Scope)
	}
	if s.Resume != nil && (s.Resume.Epoch == "" || len(s.Resume.Epoch) > 64) {
		return Subscribe{}, fmt.Errorf("%w: resume needs an epoch", ErrBadFrame)
	}
	return s, nil
}

// Snapshot is the whole state of a scope at seq.
type Snapshot struct {
	Op    string     `json:"op"`
	Scope string     `json:"scope"`
	Epoch string     `json:"epoch"`
	Seq   uint64     `json:"seq"`
	State fleet.View `json:"state"`
}

// Diff turns the state of a scope at Prev into the state at Seq.
type Diff struct {
	Op    string `json:"op"`
	Scope string `json:"scope"`
	Epoch string `json:"epoch"`
	Prev  uint64 `json:"prev"`
	Seq   uint64 `json:"seq"`
	fleet.Delta
}

// Error is sent before the server closes a connection.
type Error struct {
	Op      string `json:"op"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// EncodeError returns an error frame.
func EncodeError(code, message string) []byte {
	b, _ := json.Marshal(Error{Op: OpError, Code: code, Message: message})
	return b
}

// Subscriber is what the hub needs from one subscriber. The hub calls these
// from its own goroutine; they must not block.
type Subscriber interface {
	// Send queues frame; false means the queue is full and nothing was queued.
	Send(frame []byte) bool
	// Reset drops every queued frame and queues frame instead. The hub uses
	// it for the first frame of every subscription and for a fresh snapshot
	// to a subscriber that fell behind.
	Reset(frame []byte)
	// Close ends the subscription: the connection sends an error frame of
	// code with message and closes with the matching close code.
	Close(code, message string)
}
