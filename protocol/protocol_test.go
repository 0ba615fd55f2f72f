package protocol_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/protocol"
)

func TestDecodeSubscribe(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     protocol.Subscribe
		wantErr  bool
		says     string // in the error's text, when set
	}{
		{"all", `{"op":"subscribe","scope":"*"}`, protocol.Subscribe{Op: "subscribe", Scope: "*"}, false, ""},
		{"project with resume", `{"op":"subscribe","scope":"acme","resume":{"epoch":"E","seq":1234}}`,
			protocol.Subscribe{Op: "subscribe", Scope: "acme", Resume: &protocol.Resume{Epoch: "E", Seq: 1234}}, false, ""},
		{"wrong op", `{"op":"unsubscribe","scope":"*"}`, protocol.Subscribe{}, true, ""},
		{"no scope", `{"op":"subscribe"}`, protocol.Subscribe{}, true, ""},
		{"bad scope", `{"op":"subscribe","scope":"ACME!"}`, protocol.Subscribe{}, true, ""},
		{"resume without epoch", `{"op":"subscribe","scope":"*","resume":{"seq":3}}`, protocol.Subscribe{}, true, ""},
		{"unknown field", `{"op":"subscribe","scope":"*","token":"x"}`, protocol.Subscribe{}, true, ""},
		{"trailing data", `{"op":"subscribe","scope":"*"} {}`, protocol.Subscribe{}, true, ""},
		{"not json", `subscribe *`, protocol.Subscribe{}, true, ""},
		{"negative seq", `{"op":"subscribe","scope":"*","resume":{"epoch":"E","seq":-1}}`, protocol.Subscribe{}, true, "resume.seq must be a whole number"},
		{"number scope", `{"op":"subscribe","scope":5}`, protocol.Subscribe{}, true, "scope must be a string"},
		{"resume not an object", `{"op":"subscribe","scope":"*","resume":"E"}`, protocol.Subscribe{}, true, "resume must be an object"},
		{"an array", `[1,2]`, protocol.Subscribe{}, true, "want a JSON object"},
		{"empty", ``, protocol.Subscribe{}, true, "empty or truncated frame"},
		{"named unknown field", `{"op":"subscribe","scope":"*","tokn":"x"}`, protocol.Subscribe{}, true, `unknown field "tokn"`},
		{"too large", `{"op":"subscribe","scope":"*","resume":{"epoch":"` + strings.Repeat("e", protocol.MaxClientFrame) + `","seq":1}}`, protocol.Subscribe{}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protocol.DecodeSubscribe([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, protocol.ErrBadFrame) {
					t.Fatalf("err = %v, want ErrBadFrame", err)
				}
				// The text reaches the client: the protocol's words only.
				for _, leak := range []string{"Go ", "unmarshal", "struct", "uint64", "json:"} {
					if strings.Contains(err.Error(), leak) {
						t.Errorf("error %q leaks %q", err, leak)
					}
				}
				if tc.says != "" && !strings.Contains(err.Error(), tc.says) {
					t.Errorf("error %q, want it to say %q", err, tc.says)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func FuzzDecodeSubscribe(f *testing.F) {
	for _, s := range []string{
		`{"op":"subscribe","scope":"*"}`,
		`{"op":"subscribe","scope":"acme","resume":{"epoch":"E","seq":1}}`,
		`{"op":"subscribe","scope":"a_b-c","resume":null}`,
		`{}`, `[]`, `null`, `{"op":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := protocol.DecodeSubscribe(b)
		if err != nil {
			if !errors.Is(err, protocol.ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		// An accepted frame is a valid subscribe that survives a round trip.
		if s.Op != protocol.OpSubscribe || s.Scope == "" {
			t.Fatalf("accepted %+v", s)
		}
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := protocol.DecodeSubscribe(again)
		if err != nil {
			t.Fatalf("re-encoded frame %s refused: %v", again, err)
		}
		if d := cmp.Diff(s, s2); d != "" {
			t.Fatalf("round trip changed the frame:\n%s", d)
		}
	})
}

func TestMirrorApply(t *testing.T) {
	var m protocol.Mirror
	steps := []struct {
		frame   string
		wantErr error
	}{
		{`{"op":"snapshot","scope":"acme","epoch":"E","seq":10,"state":{"posture":{"active_agents":1},"agents":{"a1":{"id":"a1","state":"idle"}},"missions":{"m1":{"id":"m1"}},"ticker":[]}}`, nil},
		{`{"op":"diff","scope":"acme","epoch":"E","prev":10,"seq":12,"set":{"agents":{"a1":{"id":"a1","state":"thinking"},"a2":{"id":"a2"}}},"del":{"missions":["m1"]},"posture":{"active_agents":2},"ticker":[{"seq":11},{"seq":12}]}`, nil},
		{`{"op":"diff","scope":"acme","epoch":"E","prev":11,"seq":13}`, protocol.ErrGap},
		{`{"op":"diff","scope":"acme","epoch":"F","prev":12,"seq":13}`, protocol.ErrGap},
	}
	for i, st := range steps {
		_, err := m.Apply([]byte(st.frame))
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("step %d: err = %v, want %v", i, err, st.wantErr)
		}
	}
	want := map[string]any{
		"posture":  map[string]any{"active_agents": 2.0},
		"agents":   map[string]any{"a1": map[string]any{"id": "a1", "state": "thinking"}, "a2": map[string]any{"id": "a2"}},
		"missions": map[string]any{},
		"ticker":   []any{map[string]any{"seq": 11.0}, map[string]any{"seq": 12.0}},
	}
	if d := cmp.Diff(want, m.State); d != "" {
		t.Errorf("state (-want +got):\n%s", d)
	}
	if m.Seq != 12 {
		t.Errorf("seq %d, want 12", m.Seq)
	}
	var se *protocol.ServerError
	if _, err := m.Apply([]byte(`{"op":"error","code":"forbidden","message":"no"}`)); !errors.As(err, &se) || se.Code != "forbidden" {
		t.Errorf("error frame: %v", err)
	}
}

func TestMirrorKeepsNewestTicker(t *testing.T) {
	var m protocol.Mirror
	if _, err := m.Apply([]byte(`{"op":"snapshot","scope":"*","epoch":"E","seq":0,"state":{"ticker":[]}}`)); err != nil {
		t.Fatal(err)
	}
	var entries []string
	for i := range protocol.TickerSize + 7 {
		entries = append(entries, `{"seq":1,"n":`+jsonInt(i)+`}`)
	}
	frame := `{"op":"diff","scope":"*","epoch":"E","prev":0,"seq":1,"ticker":[` + strings.Join(entries, ",") + `]}`
	if _, err := m.Apply([]byte(frame)); err != nil {
		t.Fatal(err)
	}
	tk := m.State["ticker"].([]any)
	if len(tk) != protocol.TickerSize {
		t.Fatalf("kept %d ticker entries, want %d", len(tk), protocol.TickerSize)
	}
	if first := tk[0].(map[string]any)["n"]; first != 7.0 {
		t.Errorf("oldest kept entry is n=%v, want 7", first)
	}
}

func jsonInt(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestCloseCodes(t *testing.T) {
	for code, want := range map[string]int{
		protocol.CodeUnauthorized: 4401, protocol.CodeForbidden: 4403,
		protocol.CodeBadRequest: 4400, protocol.CodeSlow: 4408, protocol.CodeGoingAway: 1001,
	} {
		if got := protocol.CloseCode(code); got != want {
			t.Errorf("CloseCode(%q) = %d, want %d", code, got, want)
		}
	}
}
