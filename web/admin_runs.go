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
)

// Run statuses.
const (
	runRunning   = "running"
	runCompleted = "completed"
	runFailed    = "failed"
)

// maxRunDurationMS bounds duration_ms (30 days).
const maxRunDurationMS = 30 * 24 * 3600 * 1000

// runRecord is a run as the work bucket keeps it. Calls, Tokens and
// SpendUSD are the fold's figures, filled in by the list.
type runRecord struct {
	ID             string       `json:"id"`
	ProjectID      string       `json:"project_id"`
	AgentID        string       `json:"agent_id"`
	MissionID      string       `json:"mission_id,omitempty"`
	TeamID         string       `json:"team_id,omitempty"`
	UserID         string       `json:"user_id,omitempty"`
	Model          string       `json:"model"`
	RequestedModel string       `json:"requested_model,omitempty"`
	EstimateUSD    fleet.Micros `json:"estimate_usd"`
	Reservation    string       `json:"reservation,omitempty"`
	Status         string       `json:"status"`
	StartedAt      time.Time    `json:"started_at,omitzero"`
	EndedAt        time.Time    `json:"ended_at,omitzero"`
	DurationMS     float64      `json:"duration_ms,omitempty"`
	Error          string       `json:"error,omitempty"`
	CreatedBy      string       `json:"created_by,omitempty"`

	Calls    int64         `json:"calls,omitempty"`
	Tokens   int64         `json:"tokens,omitempty"`
	SpendUSD *fleet.Micros `json:"spend_usd,omitempty"`
}

type runRequest struct {
	AgentID     string          `json:"agent_id"`
	MissionID   string          `json:"mission_id"`
	Model       string          `json:"model"`
	TeamID      string          `json:"team_id"`
	UserID      string          `json:"user_id"`
	EstimateUSD json.RawMessage `json:"estimate_usd"` // parseEstimate

	estimate fleet.Micros
}

func (r *runRequest) check() error {
	var err error
	if r.estimate, err = parseEstimate(r.EstimateUSD); err != nil {
		return err
	}
	for _, err := range []error{
		checkMatch("agent_id", r.AgentID, agentIDRE, true),
		checkMatch("mission_id", r.MissionID, agentIDRE, false),
		checkMatch("model", r.Model, modelRE, false),
		checkMatch("team_id", r.TeamID, tagIDRE, false),
		checkMatch("user_id", r.UserID, tagIDRE, false),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// createRun is POST /api/v1/projects/{project}/runs: {agent_id,
// mission_id?, model?, team_id?, user_id?, estimate_usd?} → 201 and the
// run, announced by agent.run.started. The agent must be registered in the
// project, and the mission, if named, created there; the model defaults
// to the mission's, else the agent's. A run outside a mission passes the
// budget gate itself; a mission's runs are covered by its reservation.
func (s *Server) createRun(c echo.Context) error {
	if s.cfg.Work == nil || s.cfg.Events == nil {
		return unavailable("the run registry")
	}
	var req runRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := tenantOf(c)
	var agent agentRecord
	found, _, err := getRecord(ctx, s.cfg.Records, agentKey(p.ID, req.AgentID), &agent)
	if err != nil {
		return err
	}
	if !found {
		return errorf(CodeNotFound, "agent %q not found in project %q", req.AgentID, p.ID)
	}
	now := s.cfg.Now().UTC()
	rec := runRecord{
		ID: newWorkID("r", now), ProjectID: p.ID, AgentID: agent.ID, MissionID: req.MissionID,
		TeamID: req.TeamID, UserID: req.UserID, Model: cmp.Or(req.Model, agent.Model),
		EstimateUSD: req.estimate, Status: runRunning, StartedAt: now, CreatedBy: claimsOf(c).Subject,
	}
	if req.MissionID != "" {
		var m missionRecord
		found, _, err := getRecord(ctx, s.cfg.Work, missionKey(p.ID, req.MissionID), &m)
		if err != nil {
			return err
		}
		if !found {
			return errorf(CodeNotFound, "mission %q not found in project %q", req.MissionID, p.ID)
		}
		rec.TeamID, rec.UserID = cmp.Or(rec.TeamID, m.TeamID), cmp.Or(rec.UserID, m.UserID)
		rec.Model = cmp.Or(req.Model, m.Model)
	}
	u := undo{s: s}
	var budget *budgetOutcome
	if rec.MissionID == "" {
		budget, err = s.reserve(ctx, claimsOf(c), &u, fleet.BudgetRequest{
			ProjectID: p.ID, TeamID: rec.TeamID, UserID: rec.UserID, Model: rec.Model, Estimate: rec.EstimateUSD, Ref: rec.ID,
		}, &rec.Model, &rec.RequestedModel)
		if err != nil {
			return err
		}
		if budget != nil {
			rec.Reservation = budget.Reservation
		}
	}
	ev, err := s.newEvent(fleet.TypeRunStarted, p.ID, fleet.RunStarted{Model: rec.Model})
	if err == nil {
		ev.AgentID, ev.MissionID, ev.RunID, ev.TeamID, ev.UserID = rec.AgentID, rec.MissionID, rec.ID, rec.TeamID, rec.UserID
		err = checkEvent(ev)
	}
	if err != nil {
		u.run(ctx, err)
		return err
	}
	if _, err := u.createWork(ctx, runKey(p.ID, rec.ID), "run", rec.ID, rec); err != nil {
		return err
	}
	seq, err := s.cfg.Events.Publish(ctx, ev)
	if err != nil {
		u.run(ctx, err)
		return publishError("publish agent.run.started", err)
	}
	return c.JSON(http.StatusCreated, struct {
		runRecord
		Seq    uint64         `json:"seq"`
		Budget *budgetOutcome `json:"budget,omitempty"`
	}{rec, seq, budget})
}

type runCompletion struct {
	Status     string   `json:"status"`
	DurationMS *float64 `json:"duration_ms"`
	Error      string   `json:"error"`
}

func (r *runCompletion) check() error {
	switch r.Status {
	case runCompleted, runFailed:
	case "":
		return errorf(CodeBadRequest, "status is required")
	default:
		return errorf(CodeBadRequest, "status must be %q or %q", runCompleted, runFailed)
	}
	if r.DurationMS == nil {
		return errorf(CodeBadRequest, "duration_ms is required")
	}
	if d := *r.DurationMS; !(d >= 0 && d <= maxRunDurationMS) {
		return errorf(CodeBadRequest, "duration_ms must be from 0 to %d", maxRunDurationMS)
	}
	if r.Error != "" && r.Status != runFailed {
		return errorf(CodeBadRequest, "error is for failed runs only")
	}
	return checkText("error", r.Error, 1000, false, true)
}

// settlement says what became of a run's reservation.
type settlement struct {
	Reservation string `json:"reservation"`
	// Settled is true once the reservation was settled with CostUSD, or
	// released (Released) because nothing was spent.
	Settled  bool          `json:"settled"`
	Released bool          `json:"released,omitempty"`
	CostUSD  *fleet.Micros `json:"cost_usd,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// completeRun is POST /api/v1/projects/{project}/runs/{run}/complete:
// {status: completed|failed, duration_ms, error?} → 200 and the run,
// announced by agent.run.completed or agent.run.failed. A run ends once:
// again is 409. If the run holds a reservation, it is settled with the
// run's cost as the fold priced it (released when a failed run spent
// nothing); the answer says how that went.
func (s *Server) completeRun(c echo.Context) error {
	if s.cfg.Work == nil || s.cfg.Events == nil {
		return unavailable("the run registry")
	}
	p := tenantOf(c)
	id := c.Param("run")
	if !agentIDRE.MatchString(id) {
		return errorf(CodeNotFound, "run %q not found in project %q", id, p.ID)
	}
	var req runCompletion
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	key := runKey(p.ID, id)
	old, rev, found, err := s.cfg.Work.Get(ctx, key)
	if err != nil {
		return storeError("get run", err)
	}
	var rec runRecord
	if found {
		if err := json.Unmarshal(old, &rec); err != nil {
			return storeError("decode run", err)
		}
	}
	if !found {
		return errorf(CodeNotFound, "run %q not found in project %q", id, p.ID)
	}
	if rec.Status != runRunning {
		return errorf(CodeConflict, "run %q has already %s", id, rec.Status)
	}
	typ := fleet.TypeRunCompleted
	if req.Status == runFailed {
		typ = fleet.TypeRunFailed
	}
	ev, err := s.newEvent(typ, p.ID, fleet.Outcome{DurationMS: *req.DurationMS, Error: req.Error})
	if err != nil {
		return err
	}
	ev.AgentID, ev.MissionID, ev.RunID, ev.TeamID, ev.UserID = rec.AgentID, rec.MissionID, rec.ID, rec.TeamID, rec.UserID
	if err := checkEvent(ev); err != nil {
		return err
	}
	rec.Status, rec.EndedAt, rec.DurationMS, rec.Error = req.Status, ev.Time, *req.DurationMS, req.Error
	value, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	newRev, ok, err := s.cfg.Work.Update(ctx, key, value, rev)
	if err != nil {
		return storeError("update run", err)
	}
	if !ok {
		return errorf(CodeConflict, "run %q was ended by another request", id)
	}
	seq, err := s.cfg.Events.Publish(ctx, ev)
	if err != nil {
		u := undo{s: s}
		u.push("reopen run "+id, func(ctx context.Context) error {
			_, ok, err := s.cfg.Work.Update(ctx, key, old, newRev)
			if err == nil && !ok {
				err = fmt.Errorf("the run changed meanwhile")
			}
			return err
		})
		u.run(ctx, err)
		return publishError("publish "+typ, err)
	}
	var st *settlement
	if rec.Reservation != "" && s.cfg.Budgets != nil {
		st = s.settle(ctx, rec, seq)
	}
	return c.JSON(http.StatusOK, struct {
		runRecord
		Seq    uint64      `json:"seq"`
		Budget *settlement `json:"budget,omitempty"`
	}{rec, seq, st})
}

// settle settles rec's reservation with the cost the fold gave the run once
// it folded the run's end (at seq), or releases it when a failed run spent
// nothing. If the fold cannot say in time, the reservation is left as it
// is (the gate's expiry reclaims it) and the answer says so.
func (s *Server) settle(ctx context.Context, rec runRecord, seq uint64) *settlement {
	st := &settlement{Reservation: rec.Reservation}
	ctx = context.WithoutCancel(ctx)
	attrs := []any{"event", "admin.run.settle", "sagewai.project_id", rec.ProjectID, "run_id", rec.ID, "reservation", rec.Reservation}
	view, err := s.viewAt(ctx, rec.ProjectID, seq)
	if err != nil {
		// The cause itself is for the log, not the client.
		st.Error = "the run's cost is not known yet: the fleet state is unavailable; the reservation is left to the gate's expiry"
		if errors.Is(err, errFoldBehind) {
			st.Error = "the run's cost is not known yet: the fold did not reach the run's end in time; the reservation is left to the gate's expiry"
		}
		s.log.WarnContext(ctx, "run reservation left unsettled", append(attrs, "error", err.Error())...)
		return st
	}
	cost, ok := runCost(view, rec.AgentID, rec.ID)
	if !ok {
		st.Error = "the fold does not know the run's cost"
		s.log.WarnContext(ctx, "run reservation left unsettled", append(attrs, "error", st.Error)...)
		return st
	}
	st.CostUSD = &cost
	if rec.Status == runFailed && cost == 0 {
		err = s.cfg.Budgets.Release(ctx, rec.Reservation)
		st.Released = err == nil
	} else {
		err = s.cfg.Budgets.Settle(ctx, rec.Reservation, cost)
	}
	if err != nil {
		st.Error = "the budget gate failed; the reservation is left to its expiry"
		s.log.ErrorContext(ctx, "settling a run's reservation failed", append(attrs, "error", err.Error())...)
		return st
	}
	st.Settled = true
	return st
}

// runCost finds a finished run among its agent's recent runs in v.
func runCost(v fleet.View, agentID, runID string) (fleet.Micros, bool) {
	for _, r := range v.Agents[agentID].RecentRuns {
		if r.ID == runID {
			return r.Spend, true
		}
	}
	return 0, false
}

// listRuns is GET /api/v1/projects/{project}/runs: recent runs, newest
// first: those started through this API, with what the fold measured of
// them, and the other finished runs the fold keeps for the project's
// agents (RecentRunsPerAgent each).
func (s *Server) listRuns(c echo.Context) error {
	if s.cfg.Work == nil {
		return unavailable("the run registry")
	}
	limit, err := listLimit(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := tenantOf(c)
	view, _, err := s.view(ctx, p.ID)
	if err != nil {
		return &Error{Code: CodeUnavailable, Message: "fleet state unavailable", Err: err}
	}
	runs, more, err := listRecords[runRecord](ctx, s.cfg.Work, runPrefix(p.ID), time.Time{}, limit)
	if err != nil {
		return err
	}
	type folded struct {
		agent string
		sum   fleet.RunSummary
	}
	byID := map[string]folded{}
	for _, a := range view.Agents {
		for _, r := range a.RecentRuns {
			byID[r.ID] = folded{a.ID, r}
		}
	}
	for i := range runs {
		if f, ok := byID[runs[i].ID]; ok {
			fillFromFold(&runs[i], f.sum)
			delete(byID, runs[i].ID)
		}
	}
	for _, f := range byID {
		r := runRecord{ID: f.sum.ID, ProjectID: p.ID, AgentID: f.agent, MissionID: f.sum.MissionID, Model: f.sum.Model,
			Status: f.sum.Status, StartedAt: f.sum.Started, EndedAt: f.sum.Ended, DurationMS: f.sum.DurationMS, Error: f.sum.Error}
		fillFromFold(&r, f.sum)
		runs = append(runs, r)
	}
	slices.SortStableFunc(runs, func(a, b runRecord) int {
		if c := runTime(b).Compare(runTime(a)); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	if len(runs) > limit {
		runs, more = runs[:limit], true
	}
	return c.JSON(http.StatusOK, map[string]any{"runs": runs, "more": more})
}

func fillFromFold(r *runRecord, sum fleet.RunSummary) {
	spend := sum.Spend
	r.Calls, r.Tokens, r.SpendUSD = sum.Calls, sum.Tokens, &spend
}

func runTime(r runRecord) time.Time {
	if !r.StartedAt.IsZero() {
		return r.StartedAt
	}
	return r.EndedAt
}
