package web

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
)

// agentRecord is an agent as the registry keeps it.
type agentRecord struct {
	ID          string    `json:"id"`
	ProjectID   string    `json:"project_id"`
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	Model       string    `json:"model"`
	Version     string    `json:"version,omitempty"`
	Tools       []string  `json:"tools"`
	Skills      []string  `json:"skills"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
}

type agentRequest struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Role        string   `json:"role"`
	Model       string   `json:"model"`
	Version     string   `json:"version"`
	Tools       []string `json:"tools"`
	Skills      []string `json:"skills"`
	Description string   `json:"description"`
}

func (r *agentRequest) check() error {
	for _, err := range []error{
		checkMatch("id", r.ID, agentIDRE, false),
		checkText("name", r.Name, 200, true, false),
		checkText("role", r.Role, 100, false, false),
		checkMatch("model", r.Model, modelRE, true),
		checkText("version", r.Version, 64, false, false),
		checkList("tools", r.Tools, 64),
		checkList("skills", r.Skills, 64),
		checkText("description", r.Description, 2000, false, true),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// createAgent is POST /api/v1/projects/{project}/agents: {id?, name, role,
// model, version, tools[], skills[], description} → 201 and the agent,
// announced by agent.created on FLEET. Agent ids are unique across
// projects (the fold keys agents by id): a taken id is 409.
func (s *Server) createAgent(c echo.Context) error {
	if s.cfg.Events == nil {
		return unavailable("publishing to the fleet stream")
	}
	var req agentRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	p := tenantOf(c)
	now := s.cfg.Now().UTC()
	if req.ID == "" {
		req.ID = cmp.Or(slug(req.Name, 40), "agent") + "-" + strings.ToLower(fleet.NewID(now)[18:])
	}
	rec := agentRecord{
		ID: req.ID, ProjectID: p.ID, Name: req.Name, Role: req.Role, Model: req.Model, Version: req.Version,
		Tools: cloneOrEmpty(req.Tools), Skills: cloneOrEmpty(req.Skills), Description: req.Description,
		CreatedAt: now, CreatedBy: claimsOf(c).Subject,
	}
	ev, err := s.newEvent(fleet.TypeAgentCreated, p.ID, fleet.AgentCreated{
		Name: rec.Name, Role: rec.Role, Model: rec.Model, Version: rec.Version,
		Tools: rec.Tools, Skills: rec.Skills, Description: rec.Description,
	})
	if err != nil {
		return err
	}
	ev.AgentID = rec.ID
	if err := checkEvent(ev); err != nil {
		return err
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	st := s.cfg.Records
	claim, _ := json.Marshal(p.ID)
	claimRev, created, err := st.Create(ctx, agentClaimKey(rec.ID), claim)
	if err != nil {
		return storeError("claim agent id", err)
	}
	if !created {
		return errorf(CodeConflict, "agent id %q is taken", rec.ID)
	}
	u := undo{s: s}
	u.push("release agent id "+rec.ID, func(ctx context.Context) error { return st.Delete(ctx, agentClaimKey(rec.ID), claimRev) })
	rev, created, err := st.Create(ctx, agentKey(p.ID, rec.ID), value)
	if err == nil && !created {
		// Only a failed undo of an earlier create leaves a record behind
		// its claim.
		err = fmt.Errorf("agent %s has a record but no claim", rec.ID)
	}
	if err != nil {
		u.run(ctx, err)
		return storeError("create agent", err)
	}
	u.push("delete agent "+rec.ID, func(ctx context.Context) error { return st.Delete(ctx, agentKey(p.ID, rec.ID), rev) })
	seq, err := s.cfg.Events.Publish(ctx, ev)
	if err != nil {
		u.run(ctx, err)
		return publishError("publish agent.created", err)
	}
	return c.JSON(http.StatusCreated, struct {
		agentRecord
		Seq uint64 `json:"seq"`
	}{rec, seq})
}

// listAgents is GET /api/v1/projects/{project}/agents: the project's
// registered agents, newest first.
func (s *Server) listAgents(c echo.Context) error {
	limit, err := listLimit(c)
	if err != nil {
		return err
	}
	out, more, err := listRecords[agentRecord](c.Request().Context(), s.cfg.Records, agentPrefix(tenantOf(c).ID), time.Time{}, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"agents": out, "more": more})
}

func cloneOrEmpty(v []string) []string {
	if len(v) == 0 {
		return []string{}
	}
	return append([]string(nil), v...)
}
