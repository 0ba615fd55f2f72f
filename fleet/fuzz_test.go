package fleet_test

import (
	"encoding/json"
	"errors"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sagewai/observatory/fleet"
)

// FuzzDecodeEvent checks that no message, however malformed, panics the
// decoder or the fold, that an accepted event survives re-encoding
// unchanged, and that the state it leaves can still be sent (View) and
// saved (checkpoint).
func FuzzDecodeEvent(f *testing.F) {
	for i, m := range generated(1, 400) {
		if len(m.Body) < 4<<10 && i%2 == 0 {
			f.Add(m.Subject, m.Body)
		}
	}
	for _, body := range []string{
		`{"id":"01JD3Z9V6Q8Y1R6N6A7B2C3D4E","type":"llm.call","time":"2026-11-27T15:04:05.123456Z","project_id":"acme","team_id":"support","user_id":"u-42","worker_id":"w-07","agent_id":"acme-support-triager","mission_id":"m-1234","run_id":"r-1234","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","data":{"provider":"anthropic","model":"claude-sonnet-4-5","input_tokens":1,"output_tokens":2,"cache_read_tokens":3,"cache_write_tokens":4,"latency_ms":5,"status":"ok"}}`,
		`{"id":"q","type":"mission.queued","time":"2026-11-27T15:04:05Z","project_id":"acme","mission_id":"m","data":{"title":"t","priority":"high"}}`,
		`{"id":"q","type":"mission.queued","time":"2026-11-27T15:04:05+14:00","project_id":"acme","mission_id":"m","data":{"priority":1e3}}`,
		`{"id":"b","type":"budget.exceeded","time":"2026-11-27T15:04:05Z","project_id":"acme","data":{"scope":"project","scope_id":"acme","limit_usd":"10","spent_usd":12.5,"action":"stop"}}`,
		`{"id":"g","type":"budget.exceeded","time":"2026-11-27T15:04:05Z","project_id":"acme","data":{"scope":"global","period":"daily","limit_usd":0.37,"spent_usd":0.2468,"action":"stop","resets_at":"2026-11-28T00:00:00Z"}}`,
		`{"id":"g","type":"budget.warning","time":"2026-11-27T15:04:05Z","project_id":"acme","data":{"scope":"global","resets_at":"0000-01-01T00:00:00+01:00"}}`,
		`{"id":"x","type":"custom.thing","time":"2026-11-27T15:04:05Z","project_id":"acme","data":null}`,
		`{"id":"t","type":"tool.call","time":"2026-11-27T15:04:05Z","project_id":"acme","agent_id":"a","data":{"latency_ms":1e300}}`,
		`{"id":"t","type":"llm.call","time":"2026-11-27T15:04:05Z","project_id":"acme","agent_id":"a","data":{"model":"gpt-5","latency_ms":1.7e308}}`,
		`null`, `{}`, `[]`, ``,
	} {
		f.Add("", []byte(body))
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		ev, err := fleet.DecodeEvent(subject, body)
		if err != nil {
			if fleet.RejectReason(err) == "" || !errors.Is(err, fleet.ErrRejected) {
				t.Fatalf("DecodeEvent error %v carries no rejection reason", err)
			}
			return
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("an accepted event does not encode: %v", err)
		}
		if len(again) <= fleet.MaxEventSize { // escaping may grow it past the cap
			back, err := fleet.DecodeEvent(subject, again)
			if err != nil {
				t.Fatalf("an accepted event, re-encoded, is rejected: %v\nfirst:  %s\nagain: %s", err, body, again)
			}
			if diff := cmp.Diff(ev, back, cmpopts.IgnoreUnexported(fleet.Event{}), cmpopts.IgnoreFields(fleet.Event{}, "Data")); diff != "" {
				t.Fatalf("re-encoding changed the event (-first +again):\n%s", diff)
			}
			if diff := cmp.Diff(generic(t, ev.Data), generic(t, back.Data)); diff != "" {
				t.Fatalf("re-encoding changed the data (-first +again):\n%s", diff)
			}
		}

		s := fleet.NewState(nil)
		s.Apply(1, time.Time{}, ev)
		s.Apply(2, ev.Time.Add(time.Hour), ev) // a late duplicate
		s.Skip(3, ev.Time.Add(25*time.Hour))   // windows expire, the worker is forgotten
		for _, scope := range []string{fleet.ScopeAll, ev.ProjectID} {
			if _, err := json.Marshal(s.View(scope)); err != nil {
				t.Fatalf("after this event the %s snapshot cannot be encoded: %v", scope, err)
			}
			if _, err := json.Marshal(s.Delta(scope, s.TakeChanges())); err != nil {
				t.Fatalf("after this event the %s diff cannot be encoded: %v", scope, err)
			}
		}
		cp, err := s.MarshalCheckpoint()
		if err != nil {
			t.Fatalf("after this event the state cannot be checkpointed: %v", err)
		}
		if _, err := fleet.RestoreState(cp, nil); err != nil {
			t.Fatalf("the checkpoint after this event cannot be restored: %v", err)
		}
	})
}

func generic(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("data %q is not JSON: %v", raw, err)
	}
	return v
}

var plainDecimal = regexp.MustCompile(`^[+-]?([0-9]{1,12}\.?[0-9]*|\.[0-9]+)$`)

// FuzzParseUSD checks that ParseUSD never panics, that what it reads it
// writes back unchanged, and that a plain decimal is read exactly, rounded
// half away from zero at the micro-dollar (checked against math/big).
func FuzzParseUSD(f *testing.F) {
	for _, s := range []string{"0", "1", "12.5", "0.000125", "-0.0000005", "0.9999995", "999999999999.999999",
		".5", "1.", "+2.25", "1e-6", "2.5E2", "1e13", "abc", "", "-", "1.2.3", "0x10", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := fleet.ParseUSD(s)
		if err != nil {
			return
		}
		back, err := fleet.ParseUSD(m.String())
		if err != nil || back != m {
			t.Fatalf("ParseUSD(%q) = %d, but its String %q reads back as %d, %v", s, m, m.String(), back, err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%d): %v", m, err)
		}
		var j fleet.Micros
		if err := json.Unmarshal(b, &j); err != nil || j != m {
			t.Fatalf("JSON round trip of %d: %s gives %d, %v", m, b, j, err)
		}
		trimmed := strings.TrimSpace(s)
		if !plainDecimal.MatchString(trimmed) {
			return // exponent form goes through float64, approximately
		}
		want := exactMicros(trimmed)
		if want == nil {
			t.Fatalf("test oracle cannot read %q", trimmed)
		}
		if !want.IsInt64() || want.Int64() != int64(m) {
			t.Fatalf("ParseUSD(%q) = %d µ$, want %s µ$", s, m, want)
		}
	})
}

// exactMicros reads a plain decimal with math/big and rounds it half away
// from zero to micro-dollars.
func exactMicros(s string) *big.Int {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(s, "+-")
	if strings.HasPrefix(s, ".") {
		s = "0" + s
	}
	s = strings.TrimSuffix(s, ".")
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil
	}
	r.Mul(r, big.NewRat(1_000_000, 1))
	r.Add(r, big.NewRat(1, 2))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // floor, as r > 0
	if neg {
		n.Neg(n)
	}
	return n
}
