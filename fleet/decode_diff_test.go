package fleet_test

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
)

// These tests hold the hand-written decoder of DecodeEvent to the
// encoding/json decoder it replaced (fleet.DecodeEventRef): the same
// messages accepted, the same reason for each refused one, and the same
// envelope and payload for each accepted one. A difference would show as
// a message the hub counts under another reason, or a value the HUD
// shows differently, after an upgrade.

// exactly compares events field by field including the cached payload,
// floats by their bits (so -0 and 0 differ) and times by instant, offset
// and zone name.
var exactly = cmp.Options{
	cmp.AllowUnexported(fleet.Event{}),
	cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }),
	cmp.Comparer(func(a, b time.Time) bool {
		an, ao := a.Zone()
		bn, bo := b.Zone()
		return a.Equal(b) && an == bn && ao == bo && a.Location().String() == b.Location().String()
	}),
}

// sameAsRef fails t unless DecodeEvent and DecodeEventRef agree on
// (subject, body).
func sameAsRef(t *testing.T, subject string, body []byte) {
	t.Helper()
	want, wantErr := fleet.DecodeEventRef(subject, body)
	got, gotErr := fleet.DecodeEvent(subject, body)
	if (wantErr == nil) != (gotErr == nil) || fleet.RejectReason(wantErr) != fleet.RejectReason(gotErr) {
		t.Fatalf("subject %q body %q:\nencoding/json: %v\nnew decoder:   %v", subject, body, wantErr, gotErr)
	}
	if diff := cmp.Diff(want, got, exactly); diff != "" {
		t.Fatalf("subject %q body %q: the decoded events differ (-encoding/json +new):\n%s", subject, body, diff)
	}
}

// env is an llm.call envelope of project acme with the given members
// spliced in before data; data is the data member's value.
func env(members, data string) string {
	if members != "" {
		members += ","
	}
	return `{"id":"e1","type":"llm.call","time":"2026-11-27T15:04:05Z",` + members + `"project_id":"acme","data":` + data + `}`
}

// typed is an envelope of type typ with data.
func typed(typ, data string) string {
	return `{"id":"e1","type":"` + typ + `","time":"2026-11-27T15:04:05Z","project_id":"acme","data":` + data + `}`
}

// decoderCases are bodies where a decoder could easily part from
// encoding/json: key matching, repeated keys, null, strings, numbers,
// nesting, and what may surround the event.
var decoderCases = []string{
	// Keys: exact first, then case-insensitive with Unicode folding
	// (U+017F folds to S, U+212A to K), escaped keys, unknown keys.
	`{"ID":"x","Type":"llm.call","TIME":"2026-11-27T15:04:05Z","Project_Id":"acme"}`,
	env(`"ſpan_id":"s1","wor\u212aer_id":"w1","worKer_id":"w2"`, `{}`),
	env(`"\u0069d":"escaped","agent_\u0049D":"a1"`, `{}`),
	env(`"spanid":"x","span_id ":"y","span_ıd":"z","SPAN_ID":"upper"`, `{}`),
	env(`"payload":{"x":1},"Data":{"model":"m"}`, `{"MODEL":"gpt-5","moDel":"later","ſtatus":"ok","input_to\u212aens":5}`),
	env(`"unknown":{"a":[1,2,{"b":null}],"c":"\ud83d\ude00"},"more":[[[]]]`, `{"extra":[true,false,null,-1.5e-3]}`),
	// Repeated keys: the last wins; maps merge; slices are overwritten in
	// place, so a null element keeps what the first array put there.
	env(`"agent_id":"a1","agent_id":"a2","agent_id":null`, `{"model":"a","model":"b"}`),
	env(`"data":{"model":"first"}`, `{"status":"second"}`),
	typed("worker.joined", `{"labels":{"a":"1"},"labels":{"b":"2","a":null}}`),
	typed("worker.joined", `{"labels":{"a":"1"},"labels":null,"labels":{"b":"2"}}`),
	typed("worker.joined", `{"pools":["a","b","c"],"pools":["x"],"pools":[null,null,null,null]}`),
	typed("worker.joined", `{"pools":["a","b"],"pools":[],"pools":[null,null]}`),
	typed("worker.joined", `{"pools":["a","b"],"pools":null,"models":[],"labels":{}}`),
	typed("worker.joined", `{"pools":[1]}`),
	typed("worker.joined", `{"labels":{"a":1}}`),
	typed("worker.joined", `{"labels":["a"]}`),
	typed("worker.joined", `{"capacity":1.5}`),
	typed("worker.joined", `{"capacity":-9223372036854775808}`),
	typed("worker.joined", `{"capacity":9223372036854775808}`),
	typed("agent.created", `{"tools":"x"}`),
	typed("agent.created", `{"tools":{}}`),
	// Null leaves strings, numbers and times as they are.
	env(`"team_id":null,"time":null,"time":"2026-11-27T15:04:05Z"`, `{"provider":null,"input_tokens":null,"latency_ms":null}`),
	`{"id":"e1","type":"llm.call","time":"2026-11-27T15:04:05Z","time":null,"project_id":"acme"}`,
	`{"id":"e1","type":"llm.call","time":null,"project_id":"acme"}`,
	// Strings: escapes, surrogates, invalid UTF-8, control characters.
	env(`"team_id":"\/\b\f\n\r\t\"\\"`, `{}`),
	env(`"user_id":"\ud83d\ude00 \ud83d \ud83dA \ude00 \ud83d\ud83d\ude00 \u00e9\u0000"`, `{}`),
	env(`"user_id":"`+"\xff\xfe caf\xc3\xa9 \xc3"+`"`, `{}`),
	env(`"user_id":"`+"\xed\xa0\x80"+`"`, `{}`),
	env(`"user_id":"a`+"\x01"+`b"`, `{}`),
	env(`"user_id":"a\qb"`, `{}`),
	env(`"user_id":"a\u12"`, `{}`),
	env(`"user_id":"a\'b"`, `{}`),
	env(`"user_id":"`+"\x7f"+`"`, `{}`),
	env(`"team_id":7`, `{}`),
	env(`"team_id":true`, `{}`),
	env(`"team_id":["x"]`, `{}`),
	env(`"team_id":{"x":1}`, `{}`),
	// Times go through time.Time's own decoder, escapes and all.
	env(`"time":"2026\u002d11-27T15:04:05Z"`, `{}`),
	env(`"time":"2026-11-27T15:04:05+02:00"`, `{}`),
	env(`"time":"2026-11-27T15:04:05.123456789-00:00"`, `{}`),
	env(`"time":"2026-11-27 15:04:05Z"`, `{}`),
	env(`"time":1764255845`, `{}`),
	env(`"time":{}`, `{}`),
	// Numbers.
	env(``, `{"input_tokens":1e2}`),
	env(``, `{"input_tokens":1.0}`),
	env(``, `{"input_tokens":-0}`),
	env(``, `{"input_tokens":0}`),
	env(``, `{"input_tokens":999999999999999999}`),
	env(``, `{"input_tokens":9223372036854775807}`),
	env(``, `{"input_tokens":9223372036854775808}`),
	env(``, `{"input_tokens":"5"}`),
	env(``, `{"latency_ms":-0}`),
	env(``, `{"latency_ms":-0.0}`),
	env(``, `{"latency_ms":0.1}`),
	env(``, `{"latency_ms":123456789012345}`),
	env(``, `{"latency_ms":1234567890123456789}`),
	env(``, `{"latency_ms":1e400}`),
	env(``, `{"latency_ms":4.9e-324}`),
	env(``, `{"latency_ms":1e-400}`),
	env(``, `{"latency_ms":01}`),
	env(``, `{"latency_ms":1.}`),
	env(``, `{"latency_ms":.5}`),
	env(``, `{"latency_ms":-}`),
	env(``, `{"latency_ms":+1}`),
	env(``, `{"latency_ms":1e}`),
	env(``, `{"latency_ms":1E+2}`),
	env(``, `{"latency_ms":true}`),
	typed("mission.progress", `{"pct":100,"step":"x"}`),
	typed("mission.progress", `{"pct":100.0000000000000001}`),
	typed("mission.progress", `{"pct":"50"}`),
	typed("worker.heartbeat", `{"state":"busy","active_missions":2,"load":0.5}`),
	// Types with their own decoders: Priority, Micros, time, *uint64.
	typed("mission.queued", `{"priority":true}`),
	typed("mission.queued", `{"priority":{}}`),
	typed("mission.queued", `{"priority":[1]}`),
	typed("mission.queued", `{"priority":"\u0068igh","priority":null}`),
	typed("mission.queued", `{"priority":1e3,"estimate_usd":"1.5"}`),
	typed("mission.queued", `{"estimate_usd":1e-7}`),
	typed("mission.queued", `{"estimate_usd":"abc"}`),
	typed("mission.queued", `{"estimate_usd":{}}`),
	typed("mission.queued", `{"estimate_usd":null,"labels":{"gpu":""}}`),
	typed("budget.status", `{"through_seq":null}`),
	typed("budget.status", `{"through_seq":0,"through_seq":7}`),
	typed("budget.status", `{"through_seq":-1}`),
	typed("budget.status", `{"through_seq":1.5}`),
	typed("budget.status", `{"through_seq":18446744073709551615}`),
	typed("budget.status", `{"through_seq":18446744073709551616}`),
	typed("budget.status", `{"through_seq":"7"}`),
	typed("budget.status", `{"resets_at":"2026-11-28T00:00:00Z","limit_usd":10,"spent_usd":"12.5"}`),
	typed("budget.status", `{"resets_at":5}`),
	typed("custom.thing", `{"anything":[1,2,3]}`),
	typed("custom.thing", `[1,2,3]`),
	typed("custom.thing", `"text"`),
	// Data: null, absent, and not an object.
	env(``, `null`),
	`{"id":"e1","type":"llm.call","time":"2026-11-27T15:04:05Z","project_id":"acme"}`,
	env(``, `[]`),
	env(``, ` {}`),
	// Syntax.
	`{"id":"e1",}`,
	`{"id" "e1"}`,
	`{"id":"e1"`,
	`{'id':"e1"}`,
	`{"id":"e1"}}`,
	`{"id":"e1"} x`,
	`{"id":"e1"}]`,
	`{"id":tru}`,
	`{"id":nulll}`,
	`{"id":nul}`,
	`{,}`,
	`{"a":1 "b":2}`,
	`{"a":[1,]}`,
	`{"a":[1 2]}`,
	`{1:2}`,
	// What surrounds the event: JSON white space before it; after it,
	// anything bytes.TrimSpace removes (Unicode white space too).
	" \t\r\n" + env(``, `{}`) + " \t\r\n",
	env(``, `{}`) + "\u00a0\u2028\v\f\u0085",
	env(``, `{}`) + "\x00",
	"\f" + env(``, `{}`),
	"\ufeff" + env(``, `{}`),
	"\u00a0" + env(``, `{}`),
	// Other top-level values.
	`null`, `null` + "\u00a0", `null x`, `nul`, `[]`, `"event"`, `1`, `true`, `{}`, ``, ` `,
}

func TestDecodeEventMatchesEncodingJSON(t *testing.T) {
	for i, body := range decoderCases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			sameAsRef(t, "", []byte(body))
			sameAsRef(t, "fleet.acme.llm.call", []byte(body))
		})
	}
	t.Run("nesting", func(t *testing.T) {
		// encoding/json refuses more than 10,000 nested arrays and
		// objects; the event object is the first level.
		for _, depth := range []int{9998, 9999, 10000, 10001} {
			data := strings.Repeat("[", depth) + strings.Repeat("]", depth)
			sameAsRef(t, "", []byte(env(``, `{"x":`+data+`}`)))
			sameAsRef(t, "", []byte(env(`"unknown":`+data, `{}`)))
		}
	})
	t.Run("generated stream", func(t *testing.T) {
		for _, m := range generated(7, 2000) {
			sameAsRef(t, m.Subject, m.Body)
		}
	})
}

// TestDecoderCoversEveryField sends each field of each payload type, under
// its own name, in upper case, and with a value of every JSON kind, and
// requires the new decoder to agree with encoding/json; it also requires
// the plain value to arrive, so that a field added to a payload struct
// (or the envelope) and not taught to the decoder fails here.
func TestDecoderCoversEveryField(t *testing.T) {
	types := []string{fleet.TypeWorkerJoined, fleet.TypeWorkerHeartbeat, fleet.TypeWorkerLeft, fleet.TypeAgentCreated,
		fleet.TypeAgentState, fleet.TypeMissionQueued, fleet.TypeMissionProgress, fleet.TypeMissionCompleted,
		fleet.TypeRunStarted, fleet.TypeLLMCall, fleet.TypeToolCall, fleet.TypeBudgetStatus}
	kinds := []string{`null`, `true`, `"1"`, `1`, `-1`, `1.5`, `[]`, `["1"]`, `{}`, `{"k":"v"}`, `"2026-11-27T15:04:05Z"`}
	for _, typ := range types {
		p, err := fleet.DecodePayloadRef(&fleet.Event{Type: typ})
		if err != nil || p == nil {
			t.Fatalf("%s has no payload: %v", typ, err)
		}
		st := reflect.TypeOf(p).Elem()
		for i := range st.NumField() {
			f := st.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				t.Fatalf("%s.%s has no JSON name; the decoder expects every field to have one", st.Name(), f.Name)
			}
			if name != strings.ToLower(name) {
				t.Fatalf("%s.%s is named %q; the decoder's key folding expects lower-case names", st.Name(), f.Name, name)
			}
			t.Run(typ+"/"+name, func(t *testing.T) {
				for _, v := range kinds {
					for _, key := range []string{name, strings.ToUpper(name)} {
						sameAsRef(t, "", []byte(typed(typ, `{"`+key+`":`+v+`}`)))
					}
				}
				ev := fleet.Event{Type: typ, Data: []byte(`{"` + name + `":` + sampleJSON(t, f.Type) + `}`)}
				got, err := fleet.DecodePayload(&ev)
				if err != nil {
					t.Fatalf("a plain %s was refused: %v", name, err)
				}
				if reflect.ValueOf(got).Elem().Field(i).IsZero() {
					t.Errorf("%s = %s did not reach %s.%s", name, ev.Data, st.Name(), f.Name)
				}
			})
		}
	}
	ev := reflect.TypeOf(fleet.Event{})
	var members []string
	for i := range ev.NumField() {
		f := ev.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "data" {
			continue
		}
		members = append(members, `"`+name+`":`+sampleJSON(t, f.Type))
	}
	body := []byte(env(strings.Join(members, ","), `{}`))
	got, err := fleet.DecodeEvent("", body)
	if err != nil {
		t.Fatalf("an envelope with every member was refused: %v\n%s", err, body)
	}
	v := reflect.ValueOf(got)
	for i := range ev.NumField() {
		if f := ev.Field(i); f.IsExported() && v.Field(i).IsZero() {
			t.Errorf("envelope member of %s did not arrive from %s", f.Name, body)
		}
	}
	sameAsRef(t, "", body)
}

// sampleJSON is a valid, non-zero JSON value for a field of type t.
func sampleJSON(t *testing.T, typ reflect.Type) string {
	switch typ {
	case reflect.TypeOf(time.Time{}):
		return `"2026-11-27T15:04:05Z"`
	case reflect.TypeOf(fleet.Micros(0)):
		return `"1.25"`
	case reflect.TypeOf(fleet.Priority("")):
		return `"high"`
	}
	switch typ.Kind() {
	case reflect.String:
		return `"x"`
	case reflect.Int, reflect.Int64:
		return `7`
	case reflect.Float64:
		return `7.5`
	case reflect.Pointer:
		return sampleJSON(t, typ.Elem())
	case reflect.Uint64:
		return `7`
	case reflect.Slice:
		if typ.Elem().Kind() == reflect.String {
			return `["x"]`
		}
	case reflect.Map:
		return `{"k":"v"}`
	}
	t.Fatalf("no sample value for %v; teach sampleJSON and the decoder this type", typ)
	return ""
}

// FuzzDecodeEventMatchesEncodingJSON decodes arbitrary messages with both
// decoders and requires the same outcome.
func FuzzDecodeEventMatchesEncodingJSON(f *testing.F) {
	for i, m := range generated(3, 300) {
		if len(m.Body) < 4<<10 && i%3 == 0 {
			f.Add(m.Subject, m.Body)
		}
	}
	for _, body := range decoderCases {
		f.Add("fleet.acme.llm.call", []byte(body))
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		sameAsRef(t, subject, body)
	})
}

// FuzzDecodePayloadMatchesEncodingJSON decodes arbitrary data of each
// payload type with both decoders, the way State.Apply does for events
// built in code rather than decoded from a message (their data was never
// checked as JSON).
func FuzzDecodePayloadMatchesEncodingJSON(f *testing.F) {
	types := []string{fleet.TypeWorkerJoined, fleet.TypeWorkerHeartbeat, fleet.TypeWorkerLeft, fleet.TypeAgentCreated,
		fleet.TypeAgentState, fleet.TypeMissionQueued, fleet.TypeMissionProgress, fleet.TypeMissionCompleted,
		fleet.TypeRunStarted, fleet.TypeLLMCall, fleet.TypeToolCall, fleet.TypeBudgetStatus}
	for i, data := range []string{
		`{"provider":"anthropic","model":"m","input_tokens":1,"latency_ms":2}`,
		`{"labels":{"a":"1"},"pools":["p"]}`, `{"priority":"high","estimate_usd":"1.5"}`,
		`{"through_seq":7,"resets_at":"2026-11-28T00:00:00Z"}`, `{} x`, `{}{}`, `null`, ` {}`, `{"a":}`, `[`,
	} {
		f.Add(uint8(i), []byte(data))
	}
	f.Fuzz(func(t *testing.T, k uint8, data []byte) {
		typ := types[int(k)%len(types)]
		want, wantErr := fleet.DecodePayloadRef(&fleet.Event{Type: typ, Data: data})
		got, gotErr := fleet.DecodePayload(&fleet.Event{Type: typ, Data: data})
		if (wantErr == nil) != (gotErr == nil) || fleet.RejectReason(wantErr) != fleet.RejectReason(gotErr) {
			t.Fatalf("%s data %q:\nencoding/json: %v\nnew decoder:   %v", typ, data, wantErr, gotErr)
		}
		if diff := cmp.Diff(want, got, exactly); diff != "" {
			t.Fatalf("%s data %q: the payloads differ (-encoding/json +new):\n%s", typ, data, diff)
		}
	})
}

// FuzzValidatorsMatchRef holds the loops that replaced the project id's
// regular expression and the type's strings.Split to what those accepted.
func FuzzValidatorsMatchRef(f *testing.F) {
	for _, s := range []string{"", "a", "acme", "acme-eu_1", "-acme", "_a", "Acme", "a.b", "a..b", ".a", "a.", "llm.call",
		"agent.run.started", "a\xffb", "ä", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 32) + "b",
		"a\n", "a$", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := fleet.ValidProjectID(s), fleet.ValidProjectIDRef(s); got != want {
			t.Errorf("ValidProjectID(%q) = %v, the regular expression says %v", s, got, want)
		}
		if got, want := fleet.ValidType(s), fleet.ValidTypeRef(s); got != want {
			t.Errorf("validType(%q) = %v, before it was %v", s, got, want)
		}
	})
}

// TestDecodeEventRejectionNamesTheMember checks that a value of the wrong
// kind is reported with the member it was given for, which is what an
// operator reading the hub's rejection log looks for.
func TestDecodeEventRejectionNamesTheMember(t *testing.T) {
	tests := []struct {
		body string
		want fleet.Reason
		name string
	}{
		{env(`"team_id":7`, `{}`), fleet.ReasonBadJSON, `"team_id"`},
		{env(``, `{"input_tokens":1.5}`), fleet.ReasonBadField, `"input_tokens"`},
		{typed("worker.joined", `{"labels":{"gpu":true}}`), fleet.ReasonBadField, `"labels"`},
		{env(`"\u0074eam_id":[]`, `{}`), fleet.ReasonBadJSON, `"team_id"`},
	}
	for _, tt := range tests {
		_, err := fleet.DecodeEvent("", []byte(tt.body))
		if fleet.RejectReason(err) != tt.want || !strings.Contains(fmt.Sprint(err), tt.name) {
			t.Errorf("DecodeEvent(%s) = %v, want a %s rejection naming %s", tt.body, err, tt.want, tt.name)
		}
	}
}
