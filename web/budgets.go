package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web/auth"
)

// BudgetStore keeps the budgets and judges requests against them
// (budget.Ledger). Its errors: *fleet.BudgetError (bad input),
// fleet.ErrBudgetNotFound, fleet.ErrBudgetExists.
type BudgetStore interface {
	// Budgets lists the budgets of project ("" for all) with their
	// standing in the current window.
	Budgets(ctx context.Context, project string) ([]fleet.BudgetStanding, error)
	Budget(ctx context.Context, id string) (fleet.BudgetStanding, error)
	CreateBudget(ctx context.Context, b fleet.BudgetLimit) (fleet.BudgetStanding, error)
	UpdateBudget(ctx context.Context, b fleet.BudgetLimit) (fleet.BudgetStanding, error)
	DeleteBudget(ctx context.Context, id string) error
	// Preflight says what Reserve would decide now, holding nothing.
	Preflight(ctx context.Context, req fleet.BudgetRequest) (fleet.BudgetDecision, error)
}

// budgetRoutes registers /api/v1/budgets (DESIGN §6): anyone may read the
// budgets of the projects they see; only admins write them.
func (s *Server) budgetRoutes(api *echo.Group) {
	read := []echo.MiddlewareFunc{noStore, s.requireAuth, refuseEmbed}
	write := append(slices.Clip(read), adminOnly)
	api.GET("/budgets", s.listBudgets, read...)
	api.POST("/budgets", s.createBudget, write...)
	api.POST("/budgets/preflight", s.preflightBudget, read...)
	api.GET("/budgets/:id", s.getBudget, read...)
	api.PUT("/budgets/:id", s.updateBudget, write...)
	api.DELETE("/budgets/:id", s.deleteBudget, write...)
}

// budgetView is a budget and its standing in the current window, as the
// API shows it.
type budgetView struct {
	fleet.BudgetLimit
	Window      string       `json:"window"`
	ResetsAt    time.Time    `json:"resets_at"`
	SpentUSD    fleet.Micros `json:"spent_usd"`
	ReservedUSD fleet.Micros `json:"reserved_usd"`
	// Pct is spent plus reserved, in percent of the cap.
	Pct float64 `json:"pct"`
	// Status is "ok", "warning" (past the warn threshold) or "reached" (at
	// or past the cap).
	Status string `json:"status"`
}

func viewOf(st fleet.BudgetStanding) budgetView {
	v := budgetView{BudgetLimit: st.Budget, Window: st.Window.Key, ResetsAt: st.Window.End,
		SpentUSD: st.Spent, ReservedUSD: st.Reserved, Pct: fleet.Pct(st.Committed(), st.Budget.LimitUSD), Status: "ok"}
	switch {
	case st.Committed() >= st.Budget.LimitUSD:
		v.Status = "reached"
	case st.Verdict(0) != "":
		v.Status = "warning"
	}
	return v
}

// budgetRequest is the body of POST and PUT /api/v1/budgets.
type budgetRequest struct {
	Scope         string          `json:"scope"`
	ProjectID     string          `json:"project_id"`
	ScopeID       string          `json:"scope_id"`
	Period        string          `json:"period"`
	LimitUSD      json.RawMessage `json:"limit_usd"`
	WarnPct       *float64        `json:"warn_pct"`
	Action        string          `json:"action"`
	ThrottleModel string          `json:"throttle_model"`
}

func (r budgetRequest) limit() (fleet.BudgetLimit, error) {
	b := fleet.BudgetLimit{Scope: r.Scope, ProjectID: r.ProjectID, ScopeID: r.ScopeID, Period: r.Period,
		Action: r.Action, ThrottleModel: r.ThrottleModel}
	if len(r.LimitUSD) == 0 || string(r.LimitUSD) == "null" {
		return b, &Error{Code: CodeBadRequest, Message: "limit_usd is required: the cap in US dollars, e.g. 25 or \"25.00\"",
			Details: map[string]any{"field": "limit_usd"}}
	}
	limit, err := parseAmount("limit_usd", r.LimitUSD)
	if err != nil {
		return b, err
	}
	b.LimitUSD = limit
	if r.WarnPct != nil {
		if *r.WarnPct <= 0 {
			return b, &Error{Code: CodeBadRequest, Message: "warn_pct must be more than 0 and at most 100 (leave it out for 80)",
				Details: map[string]any{"field": "warn_pct"}}
		}
		b.WarnPct = *r.WarnPct
	}
	return b, nil
}

// budgetError turns a BudgetStore error into the answer.
func budgetError(err error) error {
	var be *fleet.BudgetError
	switch {
	case errors.As(err, &be):
		return &Error{Code: CodeBadRequest, Message: be.Message, Details: map[string]any{"field": be.Field}}
	case errors.Is(err, fleet.ErrBudgetNotFound):
		return errorf(CodeNotFound, "no such budget")
	case errors.Is(err, fleet.ErrBudgetExists):
		return errorf(CodeConflict, "a budget of that scope and period exists; change it with PUT /api/v1/budgets/{id}")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeUnavailable, Message: "the budget store did not answer in time", Err: err}
	}
	return &Error{Code: CodeInternal, Message: "the budget store failed", Err: err}
}

func (s *Server) budgetStore() (BudgetStore, error) {
	if s.cfg.BudgetStore == nil {
		return nil, unavailable("budgets")
	}
	return s.cfg.BudgetStore, nil
}

// mayRead reports whether cl may see budget b: admins all, a project's
// tokens that project's own (never the global ones).
func mayRead(cl auth.Claims, b fleet.BudgetLimit) bool {
	return cl.Role == auth.RoleAdmin || b.ProjectID != "" && b.ProjectID == cl.Project
}

// listBudgets is GET /api/v1/budgets[?project=acme]: the budgets with their
// standing now. A project token sees its own project's.
func (s *Server) listBudgets(c echo.Context) error {
	bs, err := s.budgetStore()
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	cl := claimsOf(c)
	project := c.QueryParam("project")
	switch {
	case project == "" && cl.Role != auth.RoleAdmin:
		project = cl.Project
	case project != "":
		if _, err := s.authorizeScope(ctx, cl, project, routeOf(c)); err != nil {
			return err
		}
	}
	setProject(c, project)
	list, err := bs.Budgets(ctx, project)
	if err != nil {
		return budgetError(err)
	}
	out := make([]budgetView, 0, len(list))
	for _, st := range list {
		out = append(out, viewOf(st))
	}
	return c.JSON(http.StatusOK, struct {
		Budgets []budgetView `json:"budgets"`
	}{out})
}

// getBudget is GET /api/v1/budgets/{id}.
func (s *Server) getBudget(c echo.Context) error {
	bs, err := s.budgetStore()
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !fleet.ValidBudgetID(id) {
		return errorf(CodeNotFound, "no such budget")
	}
	st, err := bs.Budget(c.Request().Context(), id)
	if err != nil {
		return budgetError(err)
	}
	if !mayRead(claimsOf(c), st.Budget) {
		return errorf(CodeNotFound, "no such budget") // not even whether it exists
	}
	setProject(c, st.Budget.ProjectID)
	return c.JSON(http.StatusOK, viewOf(st))
}

// createBudget is POST /api/v1/budgets: {scope, project_id, scope_id,
// period, limit_usd, warn_pct?, action, throttle_model?} → 201 and the
// budget. One budget per scope and period: 409 if it exists.
func (s *Server) createBudget(c echo.Context) error {
	bs, err := s.budgetStore()
	if err != nil {
		return err
	}
	var req budgetRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	b, err := req.limit()
	if err != nil {
		return err
	}
	st, err := bs.CreateBudget(c.Request().Context(), b)
	if err != nil {
		return budgetError(err)
	}
	setProject(c, st.Budget.ProjectID)
	c.Response().Header().Set("Location", "/api/v1/budgets/"+st.Budget.ID)
	return c.JSON(http.StatusCreated, viewOf(st))
}

// updateBudget is PUT /api/v1/budgets/{id}: a new cap, warn threshold,
// action or throttle model. The scope and period are the budget's
// identity: they may be left out, and must not differ. Spend so far in
// the current window is kept.
func (s *Server) updateBudget(c echo.Context) error {
	bs, err := s.budgetStore()
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !fleet.ValidBudgetID(id) {
		return errorf(CodeNotFound, "no such budget")
	}
	var req budgetRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	old, err := bs.Budget(ctx, id)
	if err != nil {
		return budgetError(err)
	}
	req.Scope = orDefault(req.Scope, old.Budget.Scope)
	req.ProjectID = orDefault(req.ProjectID, old.Budget.ProjectID)
	req.ScopeID = orDefault(req.ScopeID, old.Budget.ScopeID)
	req.Period = orDefault(req.Period, old.Budget.Period)
	b, err := req.limit()
	if err != nil {
		return err
	}
	if err := b.Normalize(); err != nil {
		return budgetError(err)
	}
	if b.ID != id {
		return errorf(CodeBadRequest, "scope, project_id, scope_id and period are the budget's identity (%s); "+
			"to change them, delete it and create another", id)
	}
	st, err := bs.UpdateBudget(ctx, b)
	if err != nil {
		return budgetError(err)
	}
	setProject(c, st.Budget.ProjectID)
	return c.JSON(http.StatusOK, viewOf(st))
}

// deleteBudget is DELETE /api/v1/budgets/{id} → 204. A budget created
// again later starts from zero.
func (s *Server) deleteBudget(c echo.Context) error {
	bs, err := s.budgetStore()
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !fleet.ValidBudgetID(id) {
		return errorf(CodeNotFound, "no such budget")
	}
	if err := bs.DeleteBudget(c.Request().Context(), id); err != nil {
		return budgetError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// preflightRequest is the body of POST /api/v1/budgets/preflight.
type preflightRequest struct {
	ProjectID   string          `json:"project_id"`
	TeamID      string          `json:"team_id"`
	UserID      string          `json:"user_id"`
	Model       string          `json:"model"`
	EstimateUSD json.RawMessage `json:"estimate_usd"` // parseAmount
}

// preflightBudget is POST /api/v1/budgets/preflight: what the gate would
// decide for work of that estimate now (allowed, the action, the model,
// the breaches), holding nothing. A refusal is an answer here, not an
// error: 200 with allowed false.
func (s *Server) preflightBudget(c echo.Context) error {
	bs, err := s.budgetStore()
	if err != nil {
		return err
	}
	var req preflightRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	estimate, err := parseAmount("estimate_usd", req.EstimateUSD)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	cl := claimsOf(c)
	if req.ProjectID == "" && cl.Role != auth.RoleAdmin {
		req.ProjectID = cl.Project
	}
	if !fleet.ValidProjectID(req.ProjectID) {
		return errorf(CodeBadRequest, "project_id %q is not a project id", req.ProjectID)
	}
	if _, err := s.authorizeScope(ctx, cl, req.ProjectID, routeOf(c)); err != nil {
		return err
	}
	setProject(c, req.ProjectID)
	br := fleet.BudgetRequest{ProjectID: req.ProjectID, TeamID: req.TeamID, UserID: req.UserID, Model: req.Model, Estimate: estimate}
	d, err := bs.Preflight(ctx, br)
	if err != nil {
		return budgetError(err)
	}
	return c.JSON(http.StatusOK, decisionView{
		Allowed: d.Allowed, Action: d.Action, Model: d.Model, Reservation: d.Reservation,
		Breaches: breachViews(cl, d.Breaches),
	})
}

// Tenants never see the figures of other projects or of global budgets
// (DESIGN §11.2). The gate's breaches are those of the budgets that apply
// to the work: its project's (project, team and user budgets), which the
// project's tokens see in full, and global ones, which apply to every
// project and sum every project's spend. A project token is told that a
// global cap applies, its period and action and when it resets, but not
// its cap, spend, reservations or percentage: those fields are left out.

// decisionView is a fleet.BudgetDecision as the API shows it to a caller.
type decisionView struct {
	Allowed     bool         `json:"allowed"`
	Action      string       `json:"action,omitempty"`
	Model       string       `json:"model,omitempty"`
	Reservation string       `json:"reservation,omitempty"`
	Breaches    []breachView `json:"breaches,omitempty"`
}

// breachView is a fleet.BudgetBreach as the API shows it to a caller: the
// same fields, the figures left out of a global budget's for a tenant.
type breachView struct {
	Scope    string        `json:"scope"`
	ScopeID  string        `json:"scope_id,omitempty"`
	Period   string        `json:"period"`
	LimitUSD *fleet.Micros `json:"limit_usd,omitempty"`
	SpentUSD *fleet.Micros `json:"spent_usd,omitempty"`
	Reserved *fleet.Micros `json:"reserved_usd,omitempty"`
	Pct      *float64      `json:"pct,omitempty"`
	Action   string        `json:"action"`
	ResetsAt time.Time     `json:"resets_at"`
}

// figuresHidden reports whether cl may not see breach b's figures.
func figuresHidden(cl auth.Claims, b fleet.BudgetBreach) bool {
	return cl.Role != auth.RoleAdmin && b.Scope == fleet.BudgetScopeGlobal
}

// breachViews returns the breaches as cl may see them (nil for none).
func breachViews(cl auth.Claims, bs []fleet.BudgetBreach) []breachView {
	if len(bs) == 0 {
		return nil
	}
	out := make([]breachView, len(bs))
	for i, b := range bs {
		out[i] = breachView{Scope: b.Scope, ScopeID: b.ScopeID, Period: b.Period, Action: b.Action, ResetsAt: b.ResetsAt}
		if !figuresHidden(cl, b) {
			out[i].LimitUSD, out[i].SpentUSD, out[i].Reserved, out[i].Pct = &b.LimitUSD, &b.SpentUSD, &b.Reserved, &b.Pct
		}
	}
	return out
}

// breachViewsOrEmpty is breachViews, an empty list rather than nil.
func breachViewsOrEmpty(cl auth.Claims, bs []fleet.BudgetBreach) []breachView {
	if v := breachViews(cl, bs); v != nil {
		return v
	}
	return []breachView{}
}

// refusal says which budget refused the work, as cl may see it: the
// first that says stop.
func refusal(cl auth.Claims, d fleet.BudgetDecision) string {
	for _, b := range d.Breaches {
		if b.Action != fleet.ActionStop {
			continue
		}
		if figuresHidden(cl, b) {
			return "budget exceeded: a global " + b.Period + " cap applies to every project; resets " +
				b.ResetsAt.UTC().Format("2006-01-02 15:04 UTC")
		}
		return "budget exceeded: " + fleet.BreachText(b)
	}
	return "budget exceeded"
}

// orDefault returns v, or def when v is empty.
func orDefault(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	return v
}
