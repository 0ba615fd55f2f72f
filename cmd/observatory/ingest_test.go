package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/ingest/ingesttest"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/stream/streamtest"
)

// postTraces sends an OTLP protobuf export to base's /v1/traces.
func postTraces(t *testing.T, base, token string, body []byte) {
	t.Helper()
	if err := ingesttest.PostExport(context.Background(), base, token, body); err != nil {
		t.Fatal(err)
	}
}

// projectToken mints an API token of project as the admin.
func projectToken(t *testing.T, c *live.Client, admin, project string) string {
	t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	if _, err := c.Do(context.Background(), admin, http.MethodPost, "/api/v1/projects/"+project+"/tokens",
		map[string]string{"name": "otel-exporter"}, http.StatusCreated, &out); err != nil {
		t.Fatal(err)
	}
	return out.Token
}

// projectCost reads sagewai_llm_cost_usd_total of project from /metrics.
func projectCost(t *testing.T, base, admin, project string) fleet.Micros {
	t.Helper()
	c, err := ingesttest.MeteredCost(context.Background(), base, admin, project)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestIngestedSpendIsBilledAndBudgeted runs serve, sends it an agent's
// GenAI spans over OTLP with a project token, and checks what a user of
// the bill and the budgets sees: the project's spend on /api/v1/fleet and
// in sagewai_llm_cost_usd_total is the pricing of the token counts to the
// micro-dollar, a re-sent export changes nothing, and once the ingested
// spend crosses the project's stop budget its missions are refused.
func TestIngestedSpendIsBilledAndBudgeted(t *testing.T) {
	s := startServe(t)
	admin := login(t, s.base, "admin", "admin")
	c := &live.Client{Base: s.base, HTTP: http.DefaultClient}
	ctx := context.Background()
	if _, err := c.Do(ctx, admin, http.MethodPost, "/api/v1/projects", map[string]string{"id": "acme", "name": "Acme"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, admin, http.MethodPost, "/api/v1/budgets", map[string]string{"scope": "project", "project_id": "acme",
		"period": "daily", "limit_usd": "0.05", "action": "stop"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	tok := projectToken(t, c, admin, "acme")
	mission := map[string]string{"title": "triage", "model": "gpt-5-mini", "estimate_usd": "0.001"}
	if _, err := c.Do(ctx, tok, http.MethodPost, "/api/v1/projects/acme/missions", mission, http.StatusCreated, nil); err != nil {
		t.Fatalf("a mission before any spend: %v", err)
	}

	// The agent's trace is stamped now: the budget's window is today's.
	tr := ingesttest.Trace{N: 1, Service: "support-bot", Agent: "triage", Model: "gpt-5-mini", Tool: "lookup_order",
		Calls: []ingesttest.Usage{{Input: 90_000, Output: 12_000, CacheRead: 30_000}, {Input: 40_000, Output: 9_000}}, Start: time.Now().UTC()}
	want := tr.Cost(fleet.DefaultPricing())
	if want <= 50_000 {
		t.Fatalf("the trace costs %d µ$: it must cross the $0.05 cap", want)
	}
	body := ingesttest.Protobuf(ingesttest.Request(tr))
	postTraces(t, s.base, tok, body)

	spend := func() fleet.Micros {
		_, snap := getFleet(t, s.base, tok, "acme")
		return snap.State.Projects["acme"].SpendTotal
	}
	streamtest.Eventually(t, 30*time.Second, func() bool { return spend() == want }, "the ingested spend never reached /api/v1/fleet")
	if got := projectCost(t, s.base, admin, "acme"); got != want {
		t.Errorf("sagewai_llm_cost_usd_total{acme} = %d µ$, want %d", got, want)
	}

	// The exporter retries the same export: folded once. An agent
	// registered after it is a barrier: FLEET is folded in order, so once
	// it is in the fold, so is the retry.
	postTraces(t, s.base, tok, body)
	if _, err := c.Do(ctx, admin, http.MethodPost, "/api/v1/projects/acme/agents",
		map[string]string{"id": "marker", "name": "marker", "role": "barrier", "model": "gpt-5-mini"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, 30*time.Second, func() bool {
		_, snap := getFleet(t, s.base, tok, "acme")
		_, ok := snap.State.Agents["marker"]
		return ok
	}, "the marker agent never reached the fold")
	if got := spend(); got != want {
		t.Errorf("spend after a re-sent export %d µ$, want %d", got, want)
	}
	if got := projectCost(t, s.base, admin, "acme"); got != want {
		t.Errorf("sagewai_llm_cost_usd_total{acme} after a re-sent export = %d µ$, want %d", got, want)
	}

	// The ledger charges the ingested spend: the next mission is refused.
	streamtest.Eventually(t, 30*time.Second, func() bool {
		var list struct {
			Budgets []struct {
				SpentUSD fleet.Micros `json:"spent_usd"`
			} `json:"budgets"`
		}
		_, err := c.Do(ctx, admin, http.MethodGet, "/api/v1/budgets?project=acme", nil, http.StatusOK, &list)
		return err == nil && len(list.Budgets) == 1 && list.Budgets[0].SpentUSD >= 50_000
	}, "the budget never saw the ingested spend")
	status, _ := c.Do(ctx, tok, http.MethodPost, "/api/v1/projects/acme/missions", mission, 0, nil)
	if status != http.StatusPaymentRequired {
		t.Errorf("a mission after ingested spend crossed the stop cap: %d, want 402", status)
	}
}
