package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/web"
)

// budgetStep is one request of the budget example and what came of it.
type budgetStep struct {
	Step        int                  `json:"step"`
	Who         string               `json:"who"`
	Team        string               `json:"team"`
	Model       string               `json:"model"`
	EstimateUSD fleet.Micros         `json:"estimate_usd"`
	Status      int                  `json:"status"`
	Allowed     bool                 `json:"allowed"`
	Action      string               `json:"action"`
	RanOn       string               `json:"ran_on,omitempty"`
	SpentUSD    fleet.Micros         `json:"spent_usd"`
	Breaches    []fleet.BudgetBreach `json:"breaches"`
	Message     string               `json:"message,omitempty"`
	Budgets     []budgetLine         `json:"budgets_after"`
}

type budgetLine struct {
	ID       string       `json:"id"`
	Spent    fleet.Micros `json:"spent_usd"`
	Reserved fleet.Micros `json:"reserved_usd"`
	Limit    fleet.Micros `json:"limit_usd"`
	Pct      float64      `json:"pct"`
	Status   string       `json:"status"`
}

// budgetFigures is `observatory budget --json`.
type budgetFigures struct {
	Steps  []budgetStep `json:"steps"`
	Events []string     `json:"events"`
	// Refusals402 counts the refusals answered 402 budget_exceeded.
	Refusals402 int `json:"refusals_402"`
}

// budgetPlan is the example's script: who asks for what, and what the
// work then really spends (output tokens on the model it runs on).
var budgetPlan = []struct {
	who, team, model, story string
	estimate                fleet.Micros
	outTokens               int64
}{
	{"u-alice", "research", "gpt-5", "alice starts a mission, well within every cap", 500_000, 45_000},
	{"u-alice", "research", "gpt-5", "alice again: her $1.00 day crosses its 80 % warn threshold", 400_000, 38_000},
	{"u-alice", "research", "gpt-5", "alice once more: past her cap, but her budget only warns", 500_000, 47_000},
	{"u-bob", "research", "gpt-5", "bob, same team: the research team's $2.00 cap is reached, so the work is throttled to the cheaper model", 1_200_000, 100_000},
	{"u-carol", "support", "claude-sonnet-4-5", "carol, another team: the project's $3.00 stop cap has no room for her estimate", 1_600_000, 0},
	{"u-carol", "support", "claude-sonnet-4-5", "carol asks for less: it fits, past the project's warn threshold", 1_200_000, 40_000},
}

// budgetCmd runs `observatory budget`: per-user, per-team and per-project
// caps with warn, throttle and stop, step by step, every decision made by
// the real gate behind the real HTTP API (POST /api/v1/projects/{p}/missions).
func budgetCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("budget", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print only the figures, as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("budget: unexpected arguments %q", fs.Args())
	}
	out := stdout
	if *asJSON {
		out = io.Discard
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	p, err := startPipeline(ctx, "", fleet.DefaultPricing(), log)
	if err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	defer p.stop()
	api, err := startExampleServer(ctx, p, log)
	if err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	defer api.stop()

	fmt.Fprintf(out, "observatory budget: the gate behind %s, on a fresh NATS\n\n", api.base)
	if err := api.login(ctx); err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	if _, err := api.doWant(ctx, "POST", "/api/v1/projects", map[string]string{"id": "acme", "name": "Acme Labs"}, http.StatusCreated, nil); err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	caps := []map[string]any{
		{"scope": "user", "project_id": "acme", "scope_id": "u-alice", "period": "daily", "limit_usd": "1.00", "action": "warn"},
		{"scope": "team", "project_id": "acme", "scope_id": "research", "period": "daily", "limit_usd": "2.00", "action": "throttle", "throttle_model": "gpt-5-mini"},
		{"scope": "project", "project_id": "acme", "period": "daily", "limit_usd": "3.00", "action": "stop"},
	}
	fmt.Fprintln(out, "The caps (POST /api/v1/budgets)")
	for _, c := range caps {
		var b struct {
			ID            string
			LimitUSD      fleet.Micros `json:"limit_usd"`
			WarnPct       float64      `json:"warn_pct"`
			Action        string
			ThrottleModel string `json:"throttle_model"`
		}
		if _, err := api.doWant(ctx, "POST", "/api/v1/budgets", c, http.StatusCreated, &b); err != nil {
			return fmt.Errorf("budget: %w", err)
		}
		to := ""
		if b.ThrottleModel != "" {
			to = " to " + b.ThrottleModel
		}
		fmt.Fprintf(out, "  %-30s $%s a day, warn at %.0f %%, then %s%s\n", b.ID, b.LimitUSD.Cents(), b.WarnPct, b.Action, to)
	}

	var fig budgetFigures
	for i, s := range budgetPlan {
		step := budgetStep{Step: i + 1, Who: s.who, Team: s.team, Model: s.model, EstimateUSD: s.estimate, Breaches: []fleet.BudgetBreach{}}
		fmt.Fprintf(out, "\nStep %d  %s\n", step.Step, s.story)
		fmt.Fprintf(out, "  POST /api/v1/projects/acme/missions  user %s, team %s, %s, up to $%s\n", s.who, s.team, s.model, s.estimate.Cents())
		var created struct {
			ID     string
			Model  string
			Budget *struct {
				Action    string
				Throttled bool
				Breaches  []fleet.BudgetBreach
			}
		}
		status, err := api.do(ctx, "POST", "/api/v1/projects/acme/missions", map[string]any{
			"title": fmt.Sprintf("step %d", i+1), "team_id": s.team, "user_id": s.who, "model": s.model, "estimate_usd": s.estimate,
		}, &created)
		step.Status = status
		var refusal *apiError
		switch {
		case errors.As(err, &refusal) && status == http.StatusPaymentRequired:
			fig.Refusals402++
			step.Action, step.Message = refusal.Details.Action, refusal.Message
			if refusal.Details.Breaches != nil {
				step.Breaches = refusal.Details.Breaches
			}
			fmt.Fprintf(out, "  → 402 %s: %s\n", refusal.Code, refusal.Message)
		case err != nil:
			return fmt.Errorf("budget: step %d: %w", i+1, err)
		default:
			step.Allowed, step.RanOn = true, created.Model
			if created.Budget != nil {
				step.Action = created.Budget.Action
				if created.Budget.Breaches != nil {
					step.Breaches = created.Budget.Breaches
				}
			}
			fmt.Fprintf(out, "  → %d %s\n", status, decisionText(step.Action, created.Model, s.model))
			for _, b := range step.Breaches {
				fmt.Fprintf(out, "      %s says %s: %s\n", b.Scope+" "+b.ScopeID, b.Action, fleet.BreachText(b))
			}
			// The work runs and reports its calls; the ledger charges them.
			cost, err := api.work(ctx, created.ID, s.who, s.team, created.Model, s.outTokens)
			if err != nil {
				return fmt.Errorf("budget: step %d: %w", i+1, err)
			}
			step.SpentUSD = cost
			fmt.Fprintf(out, "  ran on %s and spent $%s\n", created.Model, cost.Cents())
		}
		if step.Budgets, err = api.standings(ctx); err != nil {
			return fmt.Errorf("budget: %w", err)
		}
		for _, b := range step.Budgets {
			fmt.Fprintf(out, "      %-30s $%s of $%s spent, $%s held  %s %5.1f %%  %s\n", b.ID, b.Spent.Cents(), b.Limit.Cents(),
				b.Reserved.Cents(), bar(b.Pct, 20), b.Pct, b.Status)
		}
		fig.Steps = append(fig.Steps, step)
	}

	// What the HUD showed: the budget events, once published and folded.
	if err := p.flushEvents(ctx); err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	v, _, err := p.hub.View(ctx, "acme")
	if err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	fmt.Fprintln(out, "\nThe ticker (budget events on AUDIT and FLEET, folded for the HUD)")
	fig.Events = []string{}
	for _, e := range v.Ticker {
		if strings.HasPrefix(e.Type, "budget.") {
			fig.Events = append(fig.Events, e.Type)
			fmt.Fprintf(out, "  %-17s %s\n", e.Type, e.Text)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(fig)
	}
	b, _ := json.Marshal(fig)
	fmt.Fprintf(out, "\nProof\n  %s\n\nalice was warned, bob was throttled to gpt-5-mini, carol was stopped with 402 and then fit; every decision came from the gate.\n", b)
	return nil
}

func decisionText(action, model, asked string) string {
	switch action {
	case "":
		return "allowed"
	case fleet.ActionWarn:
		return "allowed, with budget.warning"
	case fleet.ActionThrottle:
		return "allowed, throttled: runs on " + model + " instead of " + asked + " (budget.throttled)"
	}
	return action
}

// exampleServer is the real HTTP server on a loopback port, wired to the
// pipeline as `observatory serve` wires it, with an admin password made for
// this one run. The budget and fleet examples drive the admin API through it.
type exampleServer struct {
	p        *pipeline
	srv      *web.Server
	http     *http.Server
	client   *http.Client
	base     string
	password string
	token    string
}

func startExampleServer(ctx context.Context, p *pipeline, log *slog.Logger) (*exampleServer, error) {
	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	reg, err := stream.OpenRegistry(setup, p.js, stream.RegistryConfig{})
	if err != nil {
		return nil, err
	}
	key, err := signingKey(setup, p.js)
	if err != nil {
		return nil, err
	}
	password := randomHex(16)
	srv, err := web.New(web.Config{
		AdminPassword: password,
		BcryptCost:    4, // bcrypt.MinCost: the password lives for one run
		SigningKey:    key, Logger: log, Records: reg.Records, Work: reg.Work, Events: p.pub, Missions: reg.Missions,
		AuditLog: stream.NewAuditLog(p.js), Budgets: p.ledger, BudgetStore: p.ledger, Costs: p.costs,
	}, p.hub, p.pub)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &exampleServer{
		p: p, srv: srv, password: password, base: "http://" + ln.Addr().String(),
		http:   &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second},
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}},
	}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

func (s *exampleServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = s.http.Shutdown(ctx)
	s.client.CloseIdleConnections()
}

// apiError is an error answer of the API.
type apiError = live.APIError

// do sends a JSON request as the admin; a status other than 2xx is an
// *apiError.
func (s *exampleServer) do(ctx context.Context, method, path string, body, out any) (int, error) {
	return s.doWant(ctx, method, path, body, 0, out)
}

// doWant is do with the one status wanted (any 2xx for 0).
func (s *exampleServer) doWant(ctx context.Context, method, path string, body any, want int, out any) (int, error) {
	c := live.Client{Base: s.base, HTTP: s.client}
	return c.Do(ctx, s.token, method, path, body, want, out)
}

func (s *exampleServer) login(ctx context.Context) error {
	c := live.Client{Base: s.base, HTTP: s.client}
	tok, err := c.Login(ctx, "admin", s.password)
	if err != nil {
		return err
	}
	s.token = tok
	return nil
}

// standings reads GET /api/v1/budgets.
func (s *exampleServer) standings(ctx context.Context) ([]budgetLine, error) {
	var list struct {
		Budgets []struct {
			ID          string
			LimitUSD    fleet.Micros `json:"limit_usd"`
			SpentUSD    fleet.Micros `json:"spent_usd"`
			ReservedUSD fleet.Micros `json:"reserved_usd"`
			Pct         float64
			Status      string
		}
	}
	if _, err := s.doWant(ctx, "GET", "/api/v1/budgets?project=acme", nil, http.StatusOK, &list); err != nil {
		return nil, err
	}
	out := make([]budgetLine, 0, len(list.Budgets))
	for _, b := range list.Budgets {
		out = append(out, budgetLine{ID: b.ID, Spent: b.SpentUSD, Reserved: b.ReservedUSD, Limit: b.LimitUSD, Pct: b.Pct, Status: b.Status})
	}
	return out, nil
}

// work plays the worker of mission: a run with one call of out output
// tokens on model, then the mission's end, which releases what the
// reservation still holds. It waits until the ledger has charged it.
func (s *exampleServer) work(ctx context.Context, mission, user, team, model string, out int64) (fleet.Micros, error) {
	env := fleet.Event{ProjectID: "acme", TeamID: team, UserID: user, WorkerID: "w-example", AgentID: "acme-" + team + "-agent",
		MissionID: mission, RunID: "r-" + mission}
	c := fleet.LLMCall{Provider: providerOf(s.p.pricing, model), Model: model, InputTokens: 2_000, OutputTokens: out, LatencyMS: 900, Status: "ok"}
	var cost fleet.Micros
	if price, ok := s.p.pricing.Lookup(model); ok {
		cost = price.Cost(c)
	}
	var last uint64
	for _, ev := range []fleet.Event{
		{Type: fleet.TypeRunStarted, Data: eventData(fleet.RunStarted{Model: model})},
		{Type: fleet.TypeLLMCall, Data: eventData(c)},
		{Type: fleet.TypeRunCompleted, Data: eventData(fleet.Outcome{DurationMS: 4_200})},
		{Type: fleet.TypeMissionCompleted, Data: eventData(fleet.Outcome{DurationMS: 5_000})},
	} {
		e := env
		e.Type, e.Data, e.ID, e.Time = ev.Type, ev.Data, newEventID(), time.Now().UTC()
		seq, err := s.p.pub.Publish(ctx, e)
		if err != nil {
			return 0, err
		}
		last = seq
	}
	return cost, s.p.settle(ctx, last)
}
