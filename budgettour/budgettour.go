package budgettour

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/rig"
)

// Step is one request of the tour and what came of it.
type Step struct {
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
	Budgets     []Line               `json:"budgets_after"`
}

// Line is one budget's standing after a step.
type Line struct {
	ID       string       `json:"id"`
	Spent    fleet.Micros `json:"spent_usd"`
	Reserved fleet.Micros `json:"reserved_usd"`
	Limit    fleet.Micros `json:"limit_usd"`
	Pct      float64      `json:"pct"`
	Status   string       `json:"status"`
}

// Figures is `observatory budget --json`.
type Figures struct {
	Steps  []Step   `json:"steps"`
	Events []string `json:"events"`
	// Refusals402 counts the refusals answered 402 budget_exceeded.
	Refusals402 int `json:"refusals_402"`
}

// plan is the tour's script: who asks for what, and what the work then
// really spends (output tokens on the model it runs on).
var plan = []struct {
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

// Config configures a tour. Zero values mean the defaults.
type Config struct {
	// Out receives the story, step by step (default: discard).
	Out io.Writer
	// Now is the tour's clock (default time.Now); see the package doc.
	Now func() time.Time
	// Logger receives the pipeline's and the server's logs (default: discard).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Run tells the tour on a fresh pipeline and returns its figures.
func Run(ctx context.Context, cfg Config) (Figures, error) {
	cfg.defaults()
	out := cfg.Out
	p, err := rig.Start(ctx, rig.Config{Logger: cfg.Logger, Now: cfg.Now})
	if err != nil {
		return Figures{}, err
	}
	defer p.Stop()
	api, err := rig.StartServer(ctx, p)
	if err != nil {
		return Figures{}, err
	}
	defer api.Stop()

	fmt.Fprintf(out, "observatory budget: the gate behind %s, on a fresh NATS\n\n", api.Base)
	if err := api.Login(ctx); err != nil {
		return Figures{}, err
	}
	if _, err := api.DoWant(ctx, "POST", "/api/v1/projects", map[string]string{"id": "acme", "name": "Acme Labs"}, http.StatusCreated, nil); err != nil {
		return Figures{}, err
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
		if _, err := api.DoWant(ctx, "POST", "/api/v1/budgets", c, http.StatusCreated, &b); err != nil {
			return Figures{}, err
		}
		to := ""
		if b.ThrottleModel != "" {
			to = " to " + b.ThrottleModel
		}
		fmt.Fprintf(out, "  %-30s $%s a day, warn at %.0f %%, then %s%s\n", b.ID, b.LimitUSD.Cents(), b.WarnPct, b.Action, to)
	}

	var fig Figures
	for i, s := range plan {
		step := Step{Step: i + 1, Who: s.who, Team: s.team, Model: s.model, EstimateUSD: s.estimate, Breaches: []fleet.BudgetBreach{}}
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
		status, err := api.Do(ctx, "POST", "/api/v1/projects/acme/missions", map[string]any{
			"title": fmt.Sprintf("step %d", i+1), "team_id": s.team, "user_id": s.who, "model": s.model, "estimate_usd": s.estimate,
		}, &created)
		step.Status = status
		var refusal *live.APIError
		switch {
		case errors.As(err, &refusal) && status == http.StatusPaymentRequired:
			fig.Refusals402++
			step.Action, step.Message = refusal.Details.Action, refusal.Message
			if refusal.Details.Breaches != nil {
				step.Breaches = refusal.Details.Breaches
			}
			fmt.Fprintf(out, "  → 402 %s: %s\n", refusal.Code, refusal.Message)
		case err != nil:
			return Figures{}, fmt.Errorf("step %d: %w", i+1, err)
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
			cost, err := work(ctx, p, created.ID, s.who, s.team, created.Model, s.outTokens)
			if err != nil {
				return Figures{}, fmt.Errorf("step %d: %w", i+1, err)
			}
			step.SpentUSD = cost
			fmt.Fprintf(out, "  ran on %s and spent $%s\n", created.Model, cost.Cents())
		}
		if step.Budgets, err = standings(ctx, api); err != nil {
			return Figures{}, err
		}
		for _, b := range step.Budgets {
			fmt.Fprintf(out, "      %-30s $%s of $%s spent, $%s held  %s %5.1f %%  %s\n", b.ID, b.Spent.Cents(), b.Limit.Cents(),
				b.Reserved.Cents(), bar(b.Pct, 20), b.Pct, b.Status)
		}
		fig.Steps = append(fig.Steps, step)
	}

	// What the HUD showed: the budget events, once published and folded.
	if err := p.Flush(ctx); err != nil {
		return Figures{}, err
	}
	v, _, err := p.Hub.View(ctx, "acme")
	if err != nil {
		return Figures{}, err
	}
	fmt.Fprintln(out, "\nThe ticker (budget events on AUDIT and FLEET, folded for the HUD)")
	fig.Events = []string{}
	for _, e := range v.Ticker {
		if strings.HasPrefix(e.Type, "budget.") {
			fig.Events = append(fig.Events, e.Type)
			fmt.Fprintf(out, "  %-17s %s\n", e.Type, e.Text)
		}
	}
	return fig, nil
}

// Print prints the proof block of a tour.
func Print(w io.Writer, fig Figures) {
	b, _ := json.Marshal(fig)
	fmt.Fprintf(w, "\nProof\n  %s\n\nalice was warned, bob was throttled to gpt-5-mini, carol was stopped with 402 and then fit; every decision came from the gate.\n", b)
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

// standings reads GET /api/v1/budgets.
func standings(ctx context.Context, api *rig.Server) ([]Line, error) {
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
	if _, err := api.DoWant(ctx, "GET", "/api/v1/budgets?project=acme", nil, http.StatusOK, &list); err != nil {
		return nil, err
	}
	out := make([]Line, 0, len(list.Budgets))
	for _, b := range list.Budgets {
		out = append(out, Line{ID: b.ID, Spent: b.SpentUSD, Reserved: b.ReservedUSD, Limit: b.LimitUSD, Pct: b.Pct, Status: b.Status})
	}
	return out, nil
}

// work plays the worker of mission: a run with one call of out output
// tokens on model, then the mission's end, which releases what the
// reservation still holds. It waits until the ledger has charged it.
func work(ctx context.Context, p *rig.Pipeline, mission, user, team, model string, out int64) (fleet.Micros, error) {
	env := fleet.Event{ProjectID: "acme", TeamID: team, UserID: user, WorkerID: "w-example", AgentID: "acme-" + team + "-agent",
		MissionID: mission, RunID: "r-" + mission}
	c := fleet.LLMCall{Provider: providerOf(p.Pricing, model), Model: model, InputTokens: 2_000, OutputTokens: out, LatencyMS: 900, Status: "ok"}
	var cost fleet.Micros
	if price, ok := p.Pricing.Lookup(model); ok {
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
		e.Type, e.Data = ev.Type, ev.Data
		seq, err := p.Publish(ctx, e)
		if err != nil {
			return 0, err
		}
		last = seq
	}
	return cost, p.Settle(ctx, last)
}

func eventData(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func providerOf(p *fleet.Pricing, model string) string {
	if price, ok := p.Lookup(model); ok {
		return price.Provider
	}
	return "unpriced"
}

// bar draws pct of width cells.
func bar(pct float64, width int) string {
	n := int(pct/100*float64(width) + 0.5)
	n = min(max(n, 0), width)
	return strings.Repeat("█", n) + strings.Repeat("░", width-n)
}
