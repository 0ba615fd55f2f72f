package fleet_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// llmBody is a valid llm.call body of project acme with fields overridden;
// a nil value removes the field. Keys under "data." change the data object.
func llmBody(t *testing.T, over map[string]any) []byte {
	t.Helper()
	data := map[string]any{"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 1200,
		"output_tokens": 300, "cache_read_tokens": 0, "cache_write_tokens": 0, "latency_ms": 850, "status": "ok"}
	env := map[string]any{"id": "01JD3Z9V6Q8Y1R6N6A7B2C3D4E", "type": "llm.call", "time": "2026-11-27T15:04:05.123456Z",
		"project_id": "acme", "team_id": "support", "user_id": "u-42", "worker_id": "w-07", "agent_id": "acme-support-triager",
		"run_id": "r-1234", "data": data}
	for k, v := range over {
		m, key := env, k
		if d, ok := strings.CutPrefix(k, "data."); ok {
			m, key = data, d
		}
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const llmSubject = "fleet.acme.llm.call"

func TestDecodeEventRejects(t *testing.T) {
	valid := string(llmBody(t, nil))
	tests := []struct {
		name    string
		subject string
		body    string
		want    fleet.Reason
	}{
		{"not JSON", llmSubject, "hello", fleet.ReasonBadJSON},
		{"truncated", llmSubject, valid[:len(valid)-1], fleet.ReasonBadJSON},
		{"empty body", llmSubject, "", fleet.ReasonBadJSON},
		{"an array", llmSubject, "[" + valid + "]", fleet.ReasonBadJSON},
		{"two events in one message", llmSubject, valid + valid, fleet.ReasonBadJSON},
		{"trailing garbage", llmSubject, valid + " x", fleet.ReasonBadJSON},
		{"trailing closing brace", llmSubject, valid + "}", fleet.ReasonBadJSON},
		{"trailing closing bracket", llmSubject, valid + "]", fleet.ReasonBadJSON},
		{"id is a number", llmSubject, string(llmBody(t, map[string]any{"id": 7})), fleet.ReasonBadJSON},
		{"time is not a time", llmSubject, string(llmBody(t, map[string]any{"time": "yesterday"})), fleet.ReasonBadJSON},
		{"over 64 KiB", llmSubject, string(llmBody(t, map[string]any{"data.note": strings.Repeat("x", 64<<10)})), fleet.ReasonOversize},
		{"no id", llmSubject, string(llmBody(t, map[string]any{"id": nil})), fleet.ReasonMissingField},
		{"empty id", llmSubject, string(llmBody(t, map[string]any{"id": ""})), fleet.ReasonMissingField},
		{"no type", llmSubject, string(llmBody(t, map[string]any{"type": nil})), fleet.ReasonMissingField},
		{"no time", llmSubject, string(llmBody(t, map[string]any{"time": nil})), fleet.ReasonMissingField},
		{"no project", llmSubject, string(llmBody(t, map[string]any{"project_id": nil})), fleet.ReasonMissingField},
		{"the JSON null", llmSubject, "null", fleet.ReasonMissingField},
		{"upper-case project", "fleet.Acme.llm.call", string(llmBody(t, map[string]any{"project_id": "Acme"})), fleet.ReasonBadProject},
		{"project starts with a dash", "fleet.-acme.llm.call", string(llmBody(t, map[string]any{"project_id": "-acme"})), fleet.ReasonBadProject},
		{"project of 64 characters", "", string(llmBody(t, map[string]any{"project_id": strings.Repeat("a", 64)})), fleet.ReasonBadProject},
		{"project with a dot", "", string(llmBody(t, map[string]any{"project_id": "acme.eu"})), fleet.ReasonBadProject},
		{"subject of another project", "fleet.globex.llm.call", valid, fleet.ReasonSubjectMismatch},
		{"subject of another type", "fleet.acme.tool.call", valid, fleet.ReasonSubjectMismatch},
		{"subject without a type", "fleet.acme", valid, fleet.ReasonSubjectMismatch},
		{"subject outside fleet", "audit.acme.llm.call", valid, fleet.ReasonSubjectMismatch},
		{"upper-case type", "", string(llmBody(t, map[string]any{"type": "LLM.call"})), fleet.ReasonBadField},
		{"empty type segment", "", string(llmBody(t, map[string]any{"type": "llm..call"})), fleet.ReasonBadField},
		{"id of 129 bytes", llmSubject, string(llmBody(t, map[string]any{"id": strings.Repeat("i", 129)})), fleet.ReasonBadField},
		{"agent id with a newline", llmSubject, string(llmBody(t, map[string]any{"agent_id": "a\nb"})), fleet.ReasonBadField},
		{"data is an array", llmSubject, string(llmBody(t, map[string]any{"data": []int{1}})), fleet.ReasonBadField},
		{"data is a string", llmSubject, string(llmBody(t, map[string]any{"data": "{}"})), fleet.ReasonBadField},
		{"negative input tokens", llmSubject, string(llmBody(t, map[string]any{"data.input_tokens": -1})), fleet.ReasonBadField},
		{"negative output tokens", llmSubject, string(llmBody(t, map[string]any{"data.output_tokens": -1})), fleet.ReasonBadField},
		{"negative cache reads", llmSubject, string(llmBody(t, map[string]any{"data.cache_read_tokens": -1})), fleet.ReasonBadField},
		{"negative cache writes", llmSubject, string(llmBody(t, map[string]any{"data.cache_write_tokens": -1})), fleet.ReasonBadField},
		{"tokens above the cap", llmSubject, string(llmBody(t, map[string]any{"data.input_tokens": fleet.MaxTokensPerKind + 1})), fleet.ReasonBadField},
		{"tokens as text", llmSubject, string(llmBody(t, map[string]any{"data.input_tokens": "many"})), fleet.ReasonBadField},
		{"fractional tokens", llmSubject, string(llmBody(t, map[string]any{"data.input_tokens": 1.5})), fleet.ReasonBadField},
		{"negative latency", llmSubject, string(llmBody(t, map[string]any{"data.latency_ms": -3})), fleet.ReasonBadField},
		{"latency over a week", llmSubject, string(llmBody(t, map[string]any{"data.latency_ms": 1.7e308})), fleet.ReasonBadField},
		{"tool latency over a week", "fleet.acme.tool.call",
			string(llmBody(t, map[string]any{"type": "tool.call", "data": map[string]any{"latency_ms": 1e12}})), fleet.ReasonBadField},
		{"negative duration", "fleet.acme.mission.completed",
			string(llmBody(t, map[string]any{"type": "mission.completed", "data": map[string]any{"duration_ms": -1}})), fleet.ReasonBadField},
		{"progress above 100 %", "fleet.acme.mission.progress",
			string(llmBody(t, map[string]any{"type": "mission.progress", "data": map[string]any{"pct": 101}})), fleet.ReasonBadField},
		{"negative progress", "fleet.acme.mission.progress",
			string(llmBody(t, map[string]any{"type": "mission.progress", "data": map[string]any{"pct": -1}})), fleet.ReasonBadField},
		{"priority is a boolean", "fleet.acme.mission.queued",
			string(llmBody(t, map[string]any{"type": "mission.queued", "data": map[string]any{"priority": true}})), fleet.ReasonBadField},
		{"time before year 0 in UTC", llmSubject, string(llmBody(t, map[string]any{"time": "0000-01-01T00:30:00+01:00"})), fleet.ReasonBadField},
		{"time after year 9999 in UTC", llmSubject, string(llmBody(t, map[string]any{"time": "9999-12-31T23:30:00-01:00"})), fleet.ReasonBadField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := fleet.DecodeEvent(tt.subject, []byte(tt.body))
			if err == nil {
				t.Fatalf("DecodeEvent accepted %.200s as %+v", tt.body, ev)
			}
			if got := fleet.RejectReason(err); got != tt.want {
				t.Errorf("reason = %q (%v), want %q", got, err, tt.want)
			}
			if !errors.Is(err, fleet.ErrRejected) {
				t.Errorf("errors.Is(%v, ErrRejected) = false", err)
			}
		})
	}
}

func TestDecodeEventAccepts(t *testing.T) {
	exactly64K := func() string {
		b := llmBody(t, map[string]any{"data.note": ""})
		return string(llmBody(t, map[string]any{"data.note": strings.Repeat("x", fleet.MaxEventSize-len(b))}))
	}()
	if len(exactly64K) != fleet.MaxEventSize {
		t.Fatalf("test body is %d bytes, want %d", len(exactly64K), fleet.MaxEventSize)
	}
	tests := []struct {
		name    string
		subject string
		body    string
	}{
		{"the DESIGN example", llmSubject, string(llmBody(t, nil))},
		{"no subject to check", "", string(llmBody(t, nil))},
		{"exactly 64 KiB", llmSubject, exactly64K},
		{"surrounding white space", llmSubject, "\n  " + string(llmBody(t, nil)) + " \r\n"},
		{"data null", llmSubject, string(llmBody(t, map[string]any{"data": json.RawMessage("null")}))},
		{"no data", llmSubject, string(llmBody(t, map[string]any{"data": nil}))},
		{"a time zone other than UTC", llmSubject, string(llmBody(t, map[string]any{"time": "2026-11-28T01:04:05+10:00"}))},
		{"a 63-character project", "", string(llmBody(t, map[string]any{"project_id": "a" + strings.Repeat("-", 62)}))},
		{"an id of 128 bytes", llmSubject, string(llmBody(t, map[string]any{"id": strings.Repeat("i", 128)}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := fleet.DecodeEvent(tt.subject, []byte(tt.body)); err != nil {
				t.Fatalf("DecodeEvent rejected it: %v", err)
			}
		})
	}
}

// ignorePayload compares events by their public fields.
var ignorePayload = cmpopts.IgnoreUnexported(fleet.Event{})

func TestDecodeEventIgnoresUnknownFields(t *testing.T) {
	plain, err := fleet.DecodeEvent(llmSubject, llmBody(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	extra, err := fleet.DecodeEvent(llmSubject, llmBody(t, map[string]any{
		"worker_build": "2026.11.3", "labels": map[string]any{"gpu": true}, "data.cost_usd": 999.5, "data.region": "eu"}))
	if err != nil {
		t.Fatalf("an event with unknown fields was rejected: %v", err)
	}
	if diff := cmp.Diff(plain, extra, ignorePayload, cmpopts.IgnoreFields(fleet.Event{}, "Data")); diff != "" {
		t.Errorf("unknown fields changed the envelope (-plain +extra):\n%s", diff)
	}
	// The worker's own cost_usd is ignored: the server prices the call.
	a, b := fleet.NewState(nil), fleet.NewState(nil)
	a.Apply(1, time.Time{}, plain)
	b.Apply(1, time.Time{}, extra)
	if got, want := b.View("acme").Projects["acme"].SpendTotal, a.View("acme").Projects["acme"].SpendTotal; got != want || got == 0 {
		t.Errorf("spend with a worker-sent cost_usd = %v, without = %v; want equal and non-zero", got, want)
	}
}

func TestDecodeEventAcceptsUnknownTypes(t *testing.T) {
	body := `{"id":"u1","type":"custom.thing","time":"2026-11-27T15:04:05Z","project_id":"acme","data":{"anything":[1,2,3]}}`
	ev, err := fleet.DecodeEvent("fleet.acme.custom.thing", []byte(body))
	if err != nil {
		t.Fatalf("an unknown type was rejected: %v", err)
	}
	s := fleet.NewState(nil)
	if res := s.Apply(1, time.Time{}, ev); res != fleet.Unknown {
		t.Errorf("Apply = %v, want Unknown", res)
	}
	v := s.View("acme")
	if got := s.Counts().Unknown; got != 1 {
		t.Errorf("Counts().Unknown = %d, want 1", got)
	}
	if got := v.Projects["acme"].UnknownEvents; got != 1 {
		t.Errorf("acme unknown_events = %d, want 1", got)
	}
	if len(v.Ticker) != 1 || v.Ticker[0].Type != "custom.thing" {
		t.Errorf("ticker = %+v, want the custom.thing event", v.Ticker)
	}
}

// TestServerEventsAreKnown checks that the server-emitted types of DESIGN §4
// are not counted as unknown.
func TestServerEventsAreKnown(t *testing.T) {
	for _, typ := range []string{fleet.TypeLoginSucceeded, fleet.TypeLoginFailed, fleet.TypeCrossAccess} {
		t.Run(typ, func(t *testing.T) {
			s := fleet.NewState(nil)
			ev := fleettest.E{Type: typ, Time: t0, ProjectID: "acme", UserID: "u-1"}.Event()
			if res := s.Apply(1, t0, ev); res != fleet.Applied {
				t.Errorf("Apply = %v, want Applied", res)
			}
			if c := s.Counts(); c.Unknown != 0 || c.Applied != 1 {
				t.Errorf("counts = %+v, want 1 applied and no unknown", c)
			}
			if got := s.View("acme").Projects["acme"].UnknownEvents; got != 0 {
				t.Errorf("acme unknown_events = %d, want 0", got)
			}
		})
	}
}

func TestDecodeEventPriority(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want fleet.Priority
	}{
		{"number", `3`, "3"},
		{"negative number", `-1`, "-1"},
		{"decimal number", `2.5`, "2.5"},
		{"string", `"high"`, "high"},
		{"numeric string", `"7"`, "7"},
		{"null", `null`, ""},
		{"absent", ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := `{"title":"refund"}`
			if tt.raw != "" {
				data = `{"title":"refund","priority":` + tt.raw + `}`
			}
			body := `{"id":"q1","type":"mission.queued","time":"2026-11-27T15:04:05Z","project_id":"acme","mission_id":"m-1","data":` + data + `}`
			ev, err := fleet.DecodeEvent("fleet.acme.mission.queued", []byte(body))
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			s := fleet.NewState(nil)
			s.Apply(1, time.Time{}, ev)
			m, ok := s.View("acme").Missions["m-1"]
			if !ok {
				t.Fatalf("mission m-1 not in flight")
			}
			if m.Priority != tt.want {
				t.Errorf("priority = %q, want %q", m.Priority, tt.want)
			}
		})
	}
}

func TestSplitSubject(t *testing.T) {
	tests := []struct {
		subject, project, typ string
		ok                    bool
	}{
		{"fleet.acme.agent.run.started", "acme", "agent.run.started", true},
		{"fleet.acme.llm.call", "acme", "llm.call", true},
		{"fleet.acme", "", "", false},
		{"fleet..llm.call", "", "", false},
		{"fleet.acme.", "", "", false},
		{"audit.acme.llm.call", "", "", false},
	}
	for _, tt := range tests {
		p, typ, ok := fleet.SplitSubject(tt.subject)
		if ok != tt.ok || ok && (p != tt.project || typ != tt.typ) {
			t.Errorf("SplitSubject(%q) = %q, %q, %v; want %q, %q, %v", tt.subject, p, typ, ok, tt.project, tt.typ, tt.ok)
		}
	}
	ev := fleettest.RunStarted("acme", "a1", "r1", "", "gpt-5", t0)
	if got := fleet.Subject(ev); got != "fleet.acme.agent.run.started" {
		t.Errorf("Subject = %q", got)
	}
}
