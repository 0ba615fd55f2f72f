package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrGap is returned by Mirror.Apply for a diff that does not start where
// the mirror stands (another epoch, or prev != the mirror's seq).
var ErrGap = errors.New("diff does not follow the last frame")

// ErrPatch is returned by Mirror.Apply for an observatory.v2 diff that
// patches or unsets fields of an entity the mirror does not hold.
var ErrPatch = errors.New("diff patches an entity the state lacks")

// Mirror is a subscriber's copy of one scope's state, kept as plain JSON
// values so that it depends on nothing but the wire.
type Mirror struct {
	// Protocol is the subprotocol the frames come in: Subprotocol (or
	// empty) or SubprotocolV2. It decides what a diff's posture means.
	Protocol string
	Scope    string
	Epoch    string
	Seq      uint64
	State    map[string]any
	// Frames counts the snapshots and diffs applied.
	Snapshots, Diffs int
}

type frameHead struct {
	Op    string `json:"op"`
	Scope string `json:"scope"`
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
	Prev  uint64 `json:"prev"`
	Code  string `json:"code"`
	Msg   string `json:"message"`
}

// ServerError is an error frame received from the server.
type ServerError struct{ Code, Message string }

func (e *ServerError) Error() string { return "server: " + e.Code + ": " + e.Message }

// Apply applies one server frame. A snapshot replaces the state; a diff must
// follow the last frame, and in observatory.v2 patch only entities the
// state holds (else ErrPatch, and nothing changes). It returns the frame's
// op.
func (m *Mirror) Apply(frame []byte) (string, error) {
	var h frameHead
	if err := json.Unmarshal(frame, &h); err != nil {
		return "", fmt.Errorf("mirror: decode frame: %w", err)
	}
	switch h.Op {
	case OpSnapshot:
		var f struct {
			State map[string]any `json:"state"`
		}
		if err := json.Unmarshal(frame, &f); err != nil {
			return h.Op, fmt.Errorf("mirror: decode snapshot: %w", err)
		}
		m.Scope, m.Epoch, m.Seq, m.State = h.Scope, h.Epoch, h.Seq, f.State
		m.Snapshots++
		return h.Op, nil
	case OpDiff:
		if m.State == nil || h.Epoch != m.Epoch || h.Prev != m.Seq {
			return h.Op, fmt.Errorf("mirror: diff %d→%d of epoch %q at %d of %q: %w", h.Prev, h.Seq, h.Epoch, m.Seq, m.Epoch, ErrGap)
		}
		var f struct {
			Set     map[string]map[string]any            `json:"set"`
			Patch   map[string]map[string]map[string]any `json:"patch"`
			Unset   map[string]map[string][]string       `json:"unset"`
			Del     map[string][]string                  `json:"del"`
			Posture map[string]any                       `json:"posture"`
			Ticker  []any                                `json:"ticker"`
		}
		if err := json.Unmarshal(frame, &f); err != nil {
			return h.Op, fmt.Errorf("mirror: decode diff: %w", err)
		}
		if m.Protocol != SubprotocolV2 {
			// v1 has no field patches: members of that name are not
			// the protocol's, and are ignored like any unknown member.
			f.Patch, f.Unset = nil, nil
		}
		// A patch or unset names entities the state (or this frame's set)
		// holds; checked before anything changes, so that a refused frame
		// leaves the mirror as it was.
		target := func(coll, id string) bool {
			if v, ok := f.Set[coll][id]; ok {
				_, obj := v.(map[string]any)
				return obj
			}
			c, _ := m.State[coll].(map[string]any)
			_, obj := c[id].(map[string]any)
			return obj
		}
		for coll, entries := range f.Patch {
			for id := range entries {
				if !target(coll, id) {
					return h.Op, fmt.Errorf("mirror: patch of %s %q: %w", coll, id, ErrPatch)
				}
			}
		}
		for coll, entries := range f.Unset {
			for id := range entries {
				if !target(coll, id) {
					return h.Op, fmt.Errorf("mirror: unset of %s %q: %w", coll, id, ErrPatch)
				}
			}
		}
		for coll, entries := range f.Set {
			c, _ := m.State[coll].(map[string]any)
			if c == nil {
				c = map[string]any{}
				m.State[coll] = c
			}
			for id, v := range entries {
				c[id] = v
			}
		}
		for coll, entries := range f.Patch {
			c := m.State[coll].(map[string]any) // target checked it
			for id, fields := range entries {
				e := c[id].(map[string]any)
				for k, v := range fields {
					e[k] = v
				}
			}
		}
		for coll, entries := range f.Unset {
			c := m.State[coll].(map[string]any)
			for id, names := range entries {
				e := c[id].(map[string]any)
				for _, k := range names {
					delete(e, k)
				}
			}
		}
		for coll, ids := range f.Del {
			if c, ok := m.State[coll].(map[string]any); ok {
				for _, id := range ids {
					delete(c, id)
				}
			}
		}
		if f.Posture != nil {
			// v1 sends the whole posture; v2 its changed fields.
			if old, ok := m.State["posture"].(map[string]any); ok && m.Protocol == SubprotocolV2 {
				for k, v := range f.Posture {
					old[k] = v
				}
			} else {
				m.State["posture"] = f.Posture
			}
		}
		if len(f.Ticker) > 0 {
			t, _ := m.State["ticker"].([]any)
			t = append(t, f.Ticker...)
			if len(t) > TickerSize {
				t = t[len(t)-TickerSize:]
			}
			m.State["ticker"] = t
		}
		m.Seq = h.Seq
		m.Diffs++
		return h.Op, nil
	case OpError:
		return h.Op, &ServerError{Code: h.Code, Message: h.Msg}
	default:
		return h.Op, fmt.Errorf("mirror: unknown op %q", h.Op)
	}
}

// JSON returns the mirrored state encoded canonically (sorted keys), for
// comparing with the server's.
func (m *Mirror) JSON() []byte {
	b, _ := json.Marshal(m.State)
	return b
}
