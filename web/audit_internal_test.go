package web

// This file is an internal test: it fuzzes withheldFigures, the decoder
// GET /api/v1/audit runs over every budget event it gives a project's
// token, with data no stored event could carry.

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
)

// FuzzWithheldFigures checks withheldFigures on any event data: it never
// panics; events other than budget.* and budgets other than global ones
// pass as they are; a global budget's data keeps only tenantBudgetFields,
// with their values, and says figures_withheld; data that is no JSON
// object is dropped.
func FuzzWithheldFigures(f *testing.F) {
	for _, seed := range []struct{ typ, data string }{
		{"budget.exceeded", `{"scope":"global","scope_id":"","period":"daily","limit_usd":0.370000,"spent_usd":0.246800,"action":"stop",` +
			`"resets_at":"2026-11-28T00:00:00Z","budget_id":"global._._.daily","reserved_usd":0.000000,"warn_pct":50,"window":"2026-11-27",` +
			`"estimate_usd":0.150000,"requested_model":"gpt-5","ref":"acme/m-1"}`},
		{"budget.warning", `{"scope":"project","scope_id":"acme","period":"monthly","limit_usd":5,"spent_usd":4.5,"action":"warn"}`},
		{"budget.throttled", `{"scope":"global","period":"daily","limit_usd":1,"spent_usd":1,"action":"throttle","model":"gpt-5-mini","pct":100}`},
		{"budget.exceeded", `not json`},
		{"budget.exceeded", `["scope","global"]`},
		{"budget.exceeded", `{"scope":7,"limit_usd":1}`},
		{"budget.exceeded", `{"scope":"global","scope":"project","limit_usd":1}`},
		{"auth.login.failed", `{"scope":"global","limit_usd":1}`},
		{"budget.exceeded", ``},
	} {
		f.Add(seed.typ, []byte(seed.data))
	}
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		in := fleet.Event{ID: "e-1", Type: typ, ProjectID: "acme", Data: bytes.Clone(data)}
		out := withheldFigures(in)
		if out.ID != in.ID || out.Type != in.Type || out.ProjectID != in.ProjectID {
			t.Fatalf("the envelope changed: %+v", out)
		}
		var obj map[string]json.RawMessage
		isObject := json.Unmarshal(data, &obj) == nil
		var scope string
		global := isObject && json.Unmarshal(obj["scope"], &scope) == nil && scope == fleet.BudgetScopeGlobal
		switch {
		case len(typ) < 7 || typ[:7] != "budget." || len(data) == 0 || isObject && !global:
			if !bytes.Equal(out.Data, data) {
				t.Fatalf("%s %s became %s; want it as it was", typ, data, out.Data)
			}
		case !isObject:
			if out.Data != nil {
				t.Fatalf("unreadable %s became %s; want it dropped", data, out.Data)
			}
		default:
			var kept map[string]json.RawMessage
			if err := json.Unmarshal(out.Data, &kept); err != nil {
				t.Fatalf("%s became %s: %v", data, out.Data, err)
			}
			if string(kept["figures_withheld"]) != "true" {
				t.Errorf("%s: no figures_withheld", out.Data)
			}
			for k, v := range kept {
				if k == "figures_withheld" {
					continue
				}
				if !tenantBudgetFields[k] {
					t.Errorf("%s kept %q", out.Data, k)
				}
				var a, b any
				if json.Unmarshal(v, &a) != nil || json.Unmarshal(obj[k], &b) != nil || !cmp.Equal(a, b) {
					t.Errorf("%s: %q is %s, was %s", out.Data, k, v, obj[k])
				}
			}
			for k := range obj {
				if _, ok := kept[k]; tenantBudgetFields[k] && !ok {
					t.Errorf("%s lost %q", out.Data, k)
				}
			}
		}
	})
}

// BenchmarkWithheldFigures measures what GET /api/v1/audit spends per
// event on a project token's behalf: a global budget's refusal (decoded,
// its figures dropped, encoded again) and a login event (passed through):
//
//	go test ./web -run '^$' -bench BenchmarkWithheldFigures -benchmem -cpu 1 -count 6
func BenchmarkWithheldFigures(b *testing.B) {
	for _, c := range []struct{ name, typ, data string }{
		{"global-budget", "budget.exceeded", `{"scope":"global","scope_id":"","period":"daily","limit_usd":0.370000,"spent_usd":0.246800,` +
			`"action":"stop","resets_at":"2026-11-28T00:00:00Z","budget_id":"global._._.daily","reserved_usd":0.000000,"warn_pct":50,` +
			`"window":"2026-11-27","estimate_usd":0.150000,"requested_model":"gpt-5","ref":"acme/m-1"}`},
		{"other", "auth.login.failed", `{"addr":"192.0.2.7","reason":"bad_credentials"}`},
	} {
		ev := fleet.Event{ID: "e-1", Type: c.typ, ProjectID: "acme", Data: json.RawMessage(c.data)}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				withheldFigures(ev)
			}
		})
	}
}
