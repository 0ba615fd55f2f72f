package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/web"
)

func TestAdminBudgetGate(t *testing.T) {
	// The daily window the gate says the breach resets at: the midnight
	// after the test clock's day.
	day := fleettest.Epoch().UTC()
	resets := time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, time.UTC)
	stop := fleet.BudgetBreach{Scope: fleet.BudgetScopeUser, ScopeID: "u-broke", Period: fleet.PeriodDaily,
		LimitUSD: 1_000_000, SpentUSD: 1_020_000, Pct: 102, Action: fleet.ActionStop, ResetsAt: resets}
	gate := newTestGate(func(req fleet.BudgetRequest) (fleet.BudgetDecision, error) {
		switch {
		case req.UserID == "u-broke":
			return fleet.BudgetDecision{Allowed: false, Action: fleet.ActionStop, Breaches: []fleet.BudgetBreach{stop}}, nil
		case req.UserID == "u-gate-down":
			return fleet.BudgetDecision{}, errors.New("ledger unreachable")
		case req.UserID == "u-odd":
			return fleet.BudgetDecision{}, &fleet.BudgetError{Field: "user_id", Message: "the gate finds it odd"}
		case req.TeamID == "cheap":
			return fleet.BudgetDecision{Allowed: true, Action: fleet.ActionThrottle, Model: "claude-haiku-4-5",
				Reservation: "res-" + req.Ref}, nil
		default:
			return fleet.BudgetDecision{Allowed: true, Model: req.Model, Reservation: "res-" + req.Ref}, nil
		}
	})
	a := newAdminEnv(t, func(cfg *web.Config) { cfg.Budgets = gate })
	a.project(t, "acme")
	a.agent(t, "acme", "acme-triager", "claude-sonnet-4-5")

	t.Run("stop is 402 with the breaches and nothing queued", func(t *testing.T) {
		before, queued := a.lastSeqs(t), queuedCount(t, a)
		res := a.call(t, "POST", "/api/v1/projects/acme/missions", a.admin,
			`{"title":"x","model":"claude-opus-4-1","user_id":"u-broke","estimate_usd":"0.50"}`)
		if res.status != 402 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Details struct {
					Action   string               `json:"action"`
					Breaches []fleet.BudgetBreach `json:"breaches"`
				} `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(res.body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Error.Code != "budget_exceeded" || body.Error.Details.Action != "stop" {
			t.Errorf("error %+v", body.Error)
		}
		if diff := cmp.Diff([]fleet.BudgetBreach{stop}, body.Error.Details.Breaches); diff != "" {
			t.Errorf("breaches (-want +got):\n%s", diff)
		}
		want := "budget exceeded: user u-broke daily cap $1.00: $1.02 spent, $0.00 reserved; resets " + resets.Format(time.DateOnly) + " 00:00 UTC"
		if body.Error.Message != want {
			t.Errorf("message %q, want %q", body.Error.Message, want)
		}
		if diff := cmp.Diff(before, a.lastSeqs(t)); diff != "" {
			t.Errorf("a refused mission wrote (-before +after):\n%s", diff)
		}
		if n := queuedCount(t, a); n != queued {
			t.Errorf("%d missions queued, want %d", n, queued)
		}
		reserved, _, _ := gate.calls()
		last := reserved[len(reserved)-1]
		if last.ProjectID != "acme" || last.UserID != "u-broke" || last.Model != "claude-opus-4-1" || last.Estimate != 500_000 || last.Ref == "" {
			t.Errorf("the gate was asked %+v", last)
		}
	})

	t.Run("a gate that fails refuses with 503", func(t *testing.T) {
		before := a.lastSeqs(t)
		res := a.call(t, "POST", "/api/v1/projects/acme/missions", a.admin, `{"title":"x","model":"m","user_id":"u-gate-down"}`)
		if res.status != 503 || res.errorCode(t) != "unavailable" {
			t.Errorf("%d %s", res.status, res.body)
		}
		if diff := cmp.Diff(before, a.lastSeqs(t)); diff != "" {
			t.Errorf("wrote (-before +after):\n%s", diff)
		}
	})

	t.Run("a request the gate finds bad is 400", func(t *testing.T) {
		before := a.lastSeqs(t)
		res := a.call(t, "POST", "/api/v1/projects/acme/missions", a.admin, `{"title":"x","model":"m","user_id":"u-odd"}`)
		if res.status != 400 || res.errorCode(t) != "bad_request" {
			t.Errorf("%d %s", res.status, res.body)
		}
		if diff := cmp.Diff(before, a.lastSeqs(t)); diff != "" {
			t.Errorf("wrote (-before +after):\n%s", diff)
		}
	})

	t.Run("throttle swaps the model and the reservation rides with the mission", func(t *testing.T) {
		var m missionOut
		a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin,
			`{"title":"summarise","model":"claude-opus-4-1","team_id":"cheap","estimate_usd":2}`, 201, &m)
		wantBudget := &budgetOut{Action: "throttle", Throttled: true, Reservation: "res-" + m.ID}
		if m.Model != "claude-haiku-4-5" || m.RequestedModel != "claude-opus-4-1" || m.Reservation != "res-"+m.ID {
			t.Errorf("mission %+v", m)
		}
		if diff := cmp.Diff(wantBudget, m.Budget); diff != "" {
			t.Errorf("budget (-want +got):\n%s", diff)
		}
		q := lastQueued(t, a, "acme")
		var data map[string]any
		if err := json.Unmarshal(q.Data, &data); err != nil {
			t.Fatal(err)
		}
		wantData := map[string]any{"title": "summarise", "priority": "normal", "model": "claude-haiku-4-5",
			"requested_model": "claude-opus-4-1", "estimate_usd": 2.0, "reservation": "res-" + m.ID, "budget_action": "throttle"}
		if diff := cmp.Diff(wantData, data); diff != "" {
			t.Errorf("queued data (-want +got):\n%s", diff)
		}
		if _, ok := a.view(t, "acme", m.Seq).Missions[m.ID]; !ok {
			t.Error("the throttled mission is not in flight")
		}
	})

	t.Run("a run settles its reservation with the fold's cost", func(t *testing.T) {
		var r runOut
		a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager","user_id":"u-1","estimate_usd":1}`, 201, &r)
		if r.Reservation != "res-"+r.ID {
			t.Fatalf("run %+v", r)
		}
		call := fleet.LLMCall{Provider: "anthropic", Model: "claude-sonnet-4-5", InputTokens: 12_000, OutputTokens: 800,
			CacheReadTokens: 3000, Status: "ok"}
		publishCall(t, a, "acme", "acme-triager", r.ID, call)
		publishCall(t, a, "acme", "acme-triager", r.ID, call)
		var done struct {
			Budget settlementOut `json:"budget"`
		}
		a.must(t, "POST", "/api/v1/projects/acme/runs/"+r.ID+"/complete", a.admin, `{"status":"completed","duration_ms":900}`, 200, &done)
		price, _ := fleet.DefaultPricing().Lookup(call.Model)
		cost := 2 * price.Cost(call)
		if diff := cmp.Diff(settlementOut{Reservation: r.Reservation, Settled: true, CostUSD: &cost}, done.Budget); diff != "" {
			t.Errorf("settlement (-want +got):\n%s", diff)
		}
		if _, settled, _ := gate.calls(); settled[r.Reservation] != cost {
			t.Errorf("settled %v, want %s for %s", settled, cost, r.Reservation)
		}
	})

	t.Run("a failed run that spent nothing releases", func(t *testing.T) {
		var r runOut
		a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager"}`, 201, &r)
		var done struct {
			Budget settlementOut `json:"budget"`
		}
		a.must(t, "POST", "/api/v1/projects/acme/runs/"+r.ID+"/complete", a.admin, `{"status":"failed","duration_ms":3,"error":"boom"}`, 200, &done)
		zero := fleet.Micros(0)
		if diff := cmp.Diff(settlementOut{Reservation: r.Reservation, Settled: true, Released: true, CostUSD: &zero}, done.Budget); diff != "" {
			t.Errorf("settlement (-want +got):\n%s", diff)
		}
		if _, _, released := gate.calls(); len(released) == 0 || released[len(released)-1] != r.Reservation {
			t.Errorf("released %v, want %s last", released, r.Reservation)
		}
	})

	t.Run("a mission's runs ride on the mission's reservation", func(t *testing.T) {
		var m missionOut
		a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin, `{"title":"x","model":"claude-sonnet-4-5"}`, 201, &m)
		n, _, _ := gate.calls()
		var r runOut
		a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager","mission_id":"`+m.ID+`"}`, 201, &r)
		if after, _, _ := gate.calls(); len(after) != len(n) || r.Reservation != "" {
			t.Errorf("the mission's run asked the gate again (%d → %d calls), reservation %q", len(n), len(after), r.Reservation)
		}
	})

	// Last: it stops the hub.
	t.Run("without the fold the run ends and its reservation waits", func(t *testing.T) {
		var r runOut
		a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager"}`, 201, &r)
		a.nats.StopHub(t)
		_, settledBefore, releasedBefore := gate.calls()
		var done struct {
			Status string        `json:"status"`
			Budget settlementOut `json:"budget"`
		}
		a.must(t, "POST", "/api/v1/projects/acme/runs/"+r.ID+"/complete", a.admin, `{"status":"completed","duration_ms":1}`, 200, &done)
		if done.Status != "completed" || done.Budget.Settled || done.Budget.Error == "" || done.Budget.Reservation != r.Reservation {
			t.Errorf("completed without the fold: %+v", done)
		}
		if _, settled, released := gate.calls(); len(settled) != len(settledBefore) || len(released) != len(releasedBefore) {
			t.Error("the reservation was settled or released without knowing the cost")
		}
	})
}

func TestAdminNoBudgetGate(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	for range 3 {
		var m missionOut
		a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin,
			`{"title":"big","model":"claude-opus-4-1","user_id":"u-1","estimate_usd":1000000}`, 201, &m)
		if m.Budget != nil || m.Reservation != "" || m.Model != "claude-opus-4-1" {
			t.Errorf("without a gate: %+v", m)
		}
	}
}

// TestAdminUndo makes the FLEET publish fail after the other writes and
// checks that they are taken back.
func TestAdminUndo(t *testing.T) {
	gate := newTestGate(func(req fleet.BudgetRequest) (fleet.BudgetDecision, error) {
		return fleet.BudgetDecision{Allowed: true, Model: req.Model, Reservation: "res-" + req.Ref}, nil
	})
	a := newAdminEnv(t, func(cfg *web.Config) { cfg.Budgets = gate })
	a.project(t, "acme")
	a.agent(t, "acme", "acme-triager", "claude-haiku-4-5")
	ctx := context.Background()
	missing := func(st *stream.KVStore, key string) {
		t.Helper()
		if _, _, found, err := st.Get(ctx, key); err != nil || found {
			t.Errorf("%s: found %v, err %v; want it gone", key, found, err)
		}
	}
	fail := func(t *testing.T, typ, path, body string) {
		t.Helper()
		a.events.failOn(typ)
		defer a.events.failOn("")
		res := a.call(t, "POST", path, a.admin, body)
		if res.status != 500 || res.errorCode(t) != "internal" {
			t.Fatalf("%d %s, want 500", res.status, res.body)
		}
	}

	t.Run("project", func(t *testing.T) {
		fail(t, web.TypeProjectCreated, "/api/v1/projects", `{"id":"globex"}`)
		missing(a.reg.Records, "projects.globex")
		a.project(t, "globex") // the id is free again
	})
	t.Run("agent", func(t *testing.T) {
		fail(t, fleet.TypeAgentCreated, "/api/v1/projects/acme/agents", `{"id":"acme-bot","name":"b","model":"m"}`)
		missing(a.reg.Records, "agents.acme.acme-bot")
		missing(a.reg.Records, "agent-ids.acme-bot")
		a.agent(t, "acme", "acme-bot", "m")
	})
	t.Run("mission", func(t *testing.T) {
		queued := queuedCount(t, a)
		fail(t, fleet.TypeMissionQueued, "/api/v1/projects/acme/missions", `{"title":"x","model":"m"}`)
		reserved, _, released := gate.calls()
		ref := reserved[len(reserved)-1].Ref
		missing(a.reg.Work, "missions.acme."+ref)
		if n := queuedCount(t, a); n != queued {
			t.Errorf("%d missions queued, want %d: the failed one was not withdrawn", n, queued)
		}
		if diff := cmp.Diff([]string{"res-" + ref}, released); diff != "" {
			t.Errorf("released (-want +got):\n%s", diff)
		}
	})
	t.Run("run start", func(t *testing.T) {
		fail(t, fleet.TypeRunStarted, "/api/v1/projects/acme/runs", `{"agent_id":"acme-triager"}`)
		reserved, _, released := gate.calls()
		ref := reserved[len(reserved)-1].Ref
		missing(a.reg.Work, "runs.acme."+ref)
		if released[len(released)-1] != "res-"+ref {
			t.Errorf("released %v, want res-%s last", released, ref)
		}
	})
	t.Run("run end", func(t *testing.T) {
		var r runOut
		a.must(t, "POST", "/api/v1/projects/acme/runs", a.admin, `{"agent_id":"acme-triager"}`, 201, &r)
		fail(t, fleet.TypeRunCompleted, "/api/v1/projects/acme/runs/"+r.ID+"/complete", `{"status":"completed","duration_ms":1}`)
		// Still running: it can be completed now.
		a.must(t, "POST", "/api/v1/projects/acme/runs/"+r.ID+"/complete", a.admin, `{"status":"completed","duration_ms":1}`, 200, nil)
	})
}
