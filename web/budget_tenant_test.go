package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/web/auth"
)

// TestTenantsNeverSeeGlobalBudgetFigures reproduces finding 8 of issue
// 12: globex spends $0.25, which counts against the global daily $0.30
// stop cap, and acme's token then asks for $0.10 of work. Its preflight,
// its 402 and its accepted mission's warning name the global cap that
// applies (scope, period, action, when it resets) but none of its
// figures: not the cap, not the fleet-wide spend, reservations or
// percentage. The admin sees them all, and acme sees its own budget's.
func TestTenantsNeverSeeGlobalBudgetFigures(t *testing.T) {
	nats, srvs := newBudgetServers(t, 1)
	s := srvs[0]
	acme := s.token(t, auth.RoleProject, "acme")
	s.must(t, "POST", "/api/v1/projects", s.admin, `{"id":"acme","name":"Acme"}`, http.StatusCreated, nil)
	s.must(t, "POST", "/api/v1/budgets", s.admin, `{"scope":"global","period":"daily","limit_usd":"0.30","warn_pct":50,"action":"stop"}`, http.StatusCreated, nil)
	s.must(t, "POST", "/api/v1/budgets", s.admin, `{"scope":"project","project_id":"acme","period":"daily","limit_usd":"0.40","warn_pct":1,"action":"warn"}`, http.StatusCreated, nil)
	// Another tenant's spend, stamped with the wall clock as NATS stores it.
	ev := fleettest.E{Type: fleet.TypeLLMCall, Time: time.Now(), ProjectID: "globex", AgentID: "globex-a",
		Data: fleet.LLMCall{Model: "gpt-5", OutputTokens: 25_000}}.Event() // $0.25
	seq, err := nats.Publisher.Publish(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	waitLedger(t, s.ledger, seq)

	// hidden checks that a body names the global breach without a figure.
	hidden := func(t *testing.T, what string, body []byte, breaches []map[string]any) {
		t.Helper()
		var global, own map[string]any
		for _, b := range breaches {
			switch b["scope"] {
			case "global":
				global = b
			case "project":
				own = b
			}
		}
		if global == nil {
			t.Fatalf("%s: no global breach in %s", what, body)
		}
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range global {
				if !yield(k) {
					return
				}
			}
		})
		if diff := cmp.Diff([]string{"action", "period", "resets_at", "scope"}, keys); diff != "" {
			t.Errorf("%s: the global breach shows (-want +got):\n%s", what, diff)
		}
		if own == nil || own["limit_usd"] == nil || own["spent_usd"] == nil {
			t.Errorf("%s: acme's own budget is not shown with its figures: %s", what, body)
		}
		for _, figure := range []string{"0.25", "0.30", "0.3 ", "$0.3", "250000", "300000", "83.3", "116.6"} {
			if strings.Contains(string(body), figure) {
				t.Errorf("%s: the body shows %q: %s", what, figure, body)
			}
		}
	}

	t.Run("preflight", func(t *testing.T) {
		res := s.call(t, "POST", "/api/v1/budgets/preflight", acme, `{"estimate_usd":"0.10"}`)
		var d struct {
			Allowed  bool
			Action   string
			Breaches []map[string]any
		}
		if err := json.Unmarshal(res.body, &d); err != nil || res.status != 200 {
			t.Fatalf("%d %s: %v", res.status, res.body, err)
		}
		if d.Allowed || d.Action != "stop" {
			t.Errorf("allowed %v, action %q: want the global stop", d.Allowed, d.Action)
		}
		hidden(t, "acme's preflight", res.body, d.Breaches)

		admin := s.call(t, "POST", "/api/v1/budgets/preflight", s.admin, `{"project_id":"acme","estimate_usd":"0.10"}`)
		var full fleet.BudgetDecision
		if err := json.Unmarshal(admin.body, &full); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(full.Breaches, func(b fleet.BudgetBreach) bool { return b.Scope == "global" })
		if i < 0 || full.Breaches[i].LimitUSD != 300_000 || full.Breaches[i].SpentUSD != 250_000 {
			t.Errorf("the admin's preflight: %s, want the global cap and spend", admin.body)
		}
	})
	t.Run("402", func(t *testing.T) {
		res := s.call(t, "POST", "/api/v1/projects/acme/missions", acme, `{"title":"triage","model":"gpt-5","estimate_usd":"0.10"}`)
		if res.status != http.StatusPaymentRequired {
			t.Fatalf("%d %s, want 402", res.status, res.body)
		}
		var e struct {
			Error struct {
				Code, Message string
				Details       struct{ Breaches []map[string]any }
			}
		}
		if err := json.Unmarshal(res.body, &e); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Error.Message, "a global daily cap applies") {
			t.Errorf("message %q, want it to name the global daily cap", e.Error.Message)
		}
		hidden(t, "acme's 402", res.body, e.Error.Details.Breaches)

		admin := s.call(t, "POST", "/api/v1/projects/acme/missions", s.admin, `{"title":"triage","model":"gpt-5","estimate_usd":"0.10"}`)
		if admin.status != http.StatusPaymentRequired || !strings.Contains(string(admin.body), "$0.30") {
			t.Errorf("the admin's 402: %d %s, want the global cap named", admin.status, admin.body)
		}
	})
	t.Run("an accepted mission's warning", func(t *testing.T) {
		res := s.call(t, "POST", "/api/v1/projects/acme/missions", acme, `{"title":"triage","model":"gpt-5","estimate_usd":"0.01"}`)
		if res.status != http.StatusCreated {
			t.Fatalf("%d %s, want 201", res.status, res.body)
		}
		var m struct {
			Budget struct{ Breaches []map[string]any }
		}
		if err := json.Unmarshal(res.body, &m); err != nil {
			t.Fatal(err)
		}
		hidden(t, "acme's mission", res.body, m.Budget.Breaches)
	})
}
