package web

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web/auth"
)

// Mission priorities, lowest first.
var priorities = []string{"low", "normal", "high", "urgent"}

// missionFinished is the status the mission list gives a mission the fold
// has seen queued and no longer holds in flight.
const missionFinished = "finished"

// missionRecord is a mission as the work bucket keeps it.
type missionRecord struct {
	ID        string `json:"id"`
	ProjectID string `json:"project_id"`
	Title     string `json:"title"`
	Priority  string `json:"priority"`
	TeamID    string `json:"team_id,omitempty"`
	UserID    string `json:"user_id,omitempty"`
	// AgentID, when set, is the registered agent of the project that runs
	// the mission.
	AgentID string `json:"agent_id,omitempty"`
	// Model is the model the mission runs on; RequestedModel, when set, is
	// the one asked for, which a budget throttle replaced.
	Model          string       `json:"model"`
	RequestedModel string       `json:"requested_model,omitempty"`
	EstimateUSD    fleet.Micros `json:"estimate_usd"`
	// Pool is the worker pool it was queued for ("default" when none was
	// named); Labels are the labels a worker must offer to run it.
	Pool   string            `json:"pool"`
	Labels map[string]string `json:"labels,omitempty"`
	// Reservation names the budget reservation the dispatcher settles or
	// releases when the mission ends.
	Reservation string    `json:"reservation,omitempty"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	// Seq is the FLEET sequence of the mission's mission.queued event.
	Seq uint64 `json:"seq,omitempty"`
}

// budgetOutcome is what the budget gate said about a mission or run.
type budgetOutcome struct {
	Action      string       `json:"action,omitempty"`
	Throttled   bool         `json:"throttled"`
	Reservation string       `json:"reservation,omitempty"`
	Breaches    []breachView `json:"breaches,omitempty"`
}

type missionRequest struct {
	Title       string          `json:"title"`
	Priority    string          `json:"priority"`
	TeamID      string          `json:"team_id"`
	UserID      string          `json:"user_id"`
	AgentID     string          `json:"agent_id"`
	Model       string          `json:"model"`
	EstimateUSD json.RawMessage `json:"estimate_usd"` // parseEstimate
	// Pool is optional (the default pool); Labels are optional, an object
	// or a list (parseLabels).
	Pool   string          `json:"pool"`
	Labels json.RawMessage `json:"labels"`

	estimate fleet.Micros
	labels   map[string]string
}

func (r *missionRequest) check() error {
	pool, err := checkPool("pool", r.Pool)
	if err != nil {
		return err
	}
	r.Pool = pool
	if r.labels, err = parseLabels("labels", r.Labels); err != nil {
		return err
	}
	if r.estimate, err = parseEstimate(r.EstimateUSD); err != nil {
		return err
	}
	for _, err := range []error{
		checkText("title", r.Title, 200, true, false),
		checkMatch("team_id", r.TeamID, tagIDRE, false),
		checkMatch("user_id", r.UserID, tagIDRE, false),
		checkMatch("agent_id", r.AgentID, agentIDRE, false),
		checkMatch("model", r.Model, modelRE, true),
	} {
		if err != nil {
			return err
		}
	}
	if r.Priority == "" {
		r.Priority = "normal"
	}
	if !slices.Contains(priorities, r.Priority) {
		return errorf(CodeBadRequest, "priority must be one of %s", strings.Join(priorities, ", "))
	}
	return nil
}

// parseEstimate reads the optional estimate_usd of a mission or run: an
// amount of US dollars, not negative; absent or null is 0.
func parseEstimate(raw json.RawMessage) (fleet.Micros, error) {
	m, err := parseAmount("estimate_usd", raw)
	if err == nil && m < 0 {
		err = fieldError("estimate_usd", "estimate_usd must not be negative")
	}
	return m, err
}

// createMission is POST /api/v1/projects/{project}/missions: {title,
// priority, team_id, user_id, agent_id?, model, estimate_usd?, pool?,
// labels?} → 201 and the mission, queued on missions.<project> (the
// default pool) or missions.<project>.<pool>.
// The budget gate decides first: a stop is 402 budget_exceeded with the
// breaches and nothing is written; a throttle swaps the model. Then the
// mission is recorded, enqueued on MISSIONS and announced by
// mission.queued on FLEET, in that order; a failure undoes what was done
// (and releases the reservation).
func (s *Server) createMission(c echo.Context) error {
	if s.cfg.Work == nil || s.cfg.Missions == nil || s.cfg.Events == nil {
		return unavailable("the mission queue")
	}
	var req missionRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := tenantOf(c)
	if req.AgentID != "" {
		found, _, err := getRecord(ctx, s.cfg.Records, agentKey(p.ID, req.AgentID), &agentRecord{})
		if err != nil {
			return err
		}
		if !found {
			return errorf(CodeNotFound, "agent %q not found in project %q", req.AgentID, p.ID)
		}
	}
	now := s.cfg.Now().UTC()
	rec := missionRecord{
		ID: newWorkID("m", now), ProjectID: p.ID, Title: req.Title, Priority: req.Priority,
		TeamID: req.TeamID, UserID: req.UserID, AgentID: req.AgentID, Model: req.Model, EstimateUSD: req.estimate,
		Pool: cmpOr(req.Pool, defaultPool), Labels: req.labels,
		Status: fleet.MissionQueuedStatus, CreatedAt: now, CreatedBy: claimsOf(c).Subject,
	}
	u := undo{s: s}
	budget, err := s.reserve(ctx, claimsOf(c), &u, fleet.BudgetRequest{
		ProjectID: p.ID, TeamID: rec.TeamID, UserID: rec.UserID, Model: rec.Model, Estimate: rec.EstimateUSD, Ref: rec.ID,
	}, &rec.Model, &rec.RequestedModel)
	if err != nil {
		return err
	}
	if budget != nil {
		rec.Reservation = budget.Reservation
	}
	ev, err := s.newEvent(fleet.TypeMissionQueued, p.ID, fleet.MissionQueued{
		Title: rec.Title, Priority: fleet.Priority(rec.Priority), Model: rec.Model, RequestedModel: rec.RequestedModel,
		EstimateUSD: rec.EstimateUSD, Reservation: rec.Reservation, BudgetAction: budgetAction(budget),
		Pool: req.Pool, Labels: req.labels,
	})
	if err == nil {
		ev.MissionID, ev.TeamID, ev.UserID, ev.AgentID = rec.ID, rec.TeamID, rec.UserID, rec.AgentID
		err = checkEvent(ev)
	}
	if err != nil {
		u.run(ctx, err)
		return err
	}
	key := missionKey(p.ID, rec.ID)
	rev, err := u.createWork(ctx, key, "mission", rec.ID, rec)
	if err != nil {
		return err
	}
	qseq, err := s.cfg.Missions.Enqueue(ctx, ev)
	if err != nil {
		u.run(ctx, err)
		return &Error{Code: CodeInternal, Message: "enqueueing the mission failed; nothing was written", Err: err}
	}
	u.push("withdraw mission "+rec.ID, func(ctx context.Context) error { return s.cfg.Missions.Withdraw(ctx, qseq) })
	seq, err := s.cfg.Events.Publish(ctx, ev)
	if err != nil {
		u.run(ctx, err)
		return publishError("publish mission.queued", err)
	}
	// The sequence lets the list tell a finished mission from one the fold
	// has not seen yet. Losing this write costs only that.
	rec.Seq = seq
	value, err := json.Marshal(rec)
	if err == nil {
		_, _, err = s.cfg.Work.Update(context.WithoutCancel(ctx), key, value, rev)
	}
	if err != nil {
		s.log.WarnContext(ctx, "recording the mission's sequence failed", "event", "admin.mission.seq", "mission_id", rec.ID, "error", err.Error())
	}
	return c.JSON(http.StatusCreated, struct {
		missionRecord
		Budget *budgetOutcome `json:"budget,omitempty"`
	}{rec, budget})
}

// listMissions is GET /api/v1/projects/{project}/missions: the missions in
// flight as the fold holds them, and the missions recently created through
// this API (newest first) with their live status, or "finished" once the
// fold has let them go.
func (s *Server) listMissions(c echo.Context) error {
	if s.cfg.Work == nil {
		return unavailable("the mission registry")
	}
	limit, err := listLimit(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := tenantOf(c)
	view, seq, err := s.view(ctx, p.ID)
	if err != nil {
		return &Error{Code: CodeUnavailable, Message: "fleet state unavailable", Err: err}
	}
	inFlight := make([]fleet.Mission, 0, len(view.Missions))
	for _, m := range view.Missions {
		inFlight = append(inFlight, m)
	}
	slices.SortFunc(inFlight, func(a, b fleet.Mission) int {
		if c := a.QueuedAt.Compare(b.QueuedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(inFlight) > limit {
		inFlight = inFlight[:limit]
	}
	recent, more, err := listRecords[missionRecord](ctx, s.cfg.Work, missionPrefix(p.ID), time.Time{}, limit)
	if err != nil {
		return err
	}
	for i, r := range recent {
		if m, ok := view.Missions[r.ID]; ok {
			recent[i].Status = m.Status
		} else if r.Seq != 0 && seq >= r.Seq {
			recent[i].Status = missionFinished
		}
	}
	return c.JSON(http.StatusOK, map[string]any{
		"in_flight": inFlight, "in_flight_total": len(view.Missions),
		"recent": recent, "more": more, "seq": seq,
	})
}

// reserve asks the budget gate for req. Without a gate it allows
// everything and returns nil. A refusal is 402 budget_exceeded with the
// breaches (as cl may see them: breachViews); a throttle sets *model to
// the cheaper one and *requested to the one asked for. A reservation is
// pushed on u, to be released if a later step fails.
func (s *Server) reserve(ctx context.Context, cl auth.Claims, u *undo, req fleet.BudgetRequest, model, requested *string) (*budgetOutcome, error) {
	if s.cfg.Budgets == nil {
		return nil, nil
	}
	d, err := s.cfg.Budgets.Reserve(ctx, req)
	switch {
	case errors.Is(err, fleet.ErrBadBudget):
		return nil, &Error{Code: CodeBadRequest, Message: err.Error(), Err: err}
	case err != nil:
		// Fail closed: work the gate could not judge does not start.
		return nil, &Error{Code: CodeUnavailable, Message: "the budget gate is unavailable; nothing was started", Err: err}
	}
	out := &budgetOutcome{Action: d.Action, Reservation: d.Reservation, Breaches: breachViews(cl, d.Breaches)}
	if d.Reservation != "" {
		u.push("release reservation "+d.Reservation, func(ctx context.Context) error { return s.cfg.Budgets.Release(ctx, d.Reservation) })
	}
	if !d.Allowed {
		u.run(ctx, fmt.Errorf("refused by the budget gate"))
		return nil, &Error{Code: CodeBudgetExceeded, Message: refusal(cl, d), Details: map[string]any{
			"action": cmp.Or(d.Action, fleet.ActionStop), "breaches": breachViewsOrEmpty(cl, d.Breaches),
		}}
	}
	if d.Model != "" && d.Model != req.Model {
		*model, *requested = d.Model, req.Model
		out.Throttled = true
	}
	return out, nil
}

func budgetAction(b *budgetOutcome) string {
	if b == nil {
		return ""
	}
	return b.Action
}
