package web

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
)

// CostStore answers cost rollups (stream.Costs): the llm.call events of a
// project whose time is in [from, to), priced as the fold prices them.
type CostStore interface {
	Rollup(ctx context.Context, project string, from, to time.Time) (*fleet.Rollup, error)
	Pricing() *fleet.Pricing
}

// Cost rollup limits.
const (
	// defaultCostWindow is the window of a rollup that names no from.
	defaultCostWindow = 24 * time.Hour
	// maxCostWindow bounds one rollup (FLEET keeps 7 days by default).
	maxCostWindow = 93 * 24 * time.Hour
)

// costGroups are the group_by values of the costs route.
var costGroups = []string{fleet.GroupModel, fleet.GroupAgent, fleet.GroupTeam, fleet.GroupUser, fleet.GroupProvider}

// costRoutes registers GET /api/v1/projects/{project}/costs.
func (s *Server) costRoutes(api *echo.Group) {
	api.GET("/projects/:project/costs", s.projectCosts, noStore, s.requireAuth, refuseEmbed)
}

// projectCosts is GET /api/v1/projects/{project}/costs?from=&to=&group_by=:
// the project's LLM spend in [from, to) (RFC 3339 times or YYYY-MM-DD
// dates, UTC; default the last 24 hours) grouped by model (default),
// agent, team, user or provider, costliest first, with the total, each
// group's share, and the unpriced models seen (counted, never charged).
func (s *Server) projectCosts(c echo.Context) error {
	if s.cfg.Costs == nil {
		return unavailable("cost rollups")
	}
	project := c.Param("project")
	if !fleet.ValidProjectID(project) {
		return errorf(CodeBadRequest, "%q is not a project id (%s)", project, "^[a-z0-9][a-z0-9_-]{0,62}$")
	}
	ctx := c.Request().Context()
	if _, err := s.authorizeScope(ctx, claimsOf(c), project, routeOf(c)); err != nil {
		return err
	}
	setProject(c, project)
	q := c.QueryParams()
	groupBy := q.Get("group_by")
	if groupBy == "" {
		groupBy = fleet.GroupModel
	}
	if !slices.Contains(costGroups, groupBy) {
		return errorf(CodeBadRequest, "group_by must be one of %s", strings.Join(costGroups, ", "))
	}
	now := s.cfg.Now().UTC()
	to, err := parseTimeParam("to", q.Get("to"), now)
	if err != nil {
		return err
	}
	from, err := parseTimeParam("from", q.Get("from"), to.Add(-defaultCostWindow))
	if err != nil {
		return err
	}
	switch {
	case !from.Before(to):
		return errorf(CodeBadRequest, "from (%s) must be before to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.Sub(from) > maxCostWindow:
		return errorf(CodeBadRequest, "the window from %s to %s is longer than %d days", from.Format(time.RFC3339),
			to.Format(time.RFC3339), int(maxCostWindow.Hours()/24))
	}
	r, err := s.cfg.Costs.Rollup(ctx, project, from, to)
	if err != nil {
		return &Error{Code: CodeUnavailable, Message: "the cost rollup failed", Err: err}
	}
	rep := r.Report(project, groupBy)
	rep.PricingAsOf = s.cfg.Costs.Pricing().AsOf
	return c.JSON(http.StatusOK, rep)
}

// parseTimeParam reads an RFC 3339 time or a YYYY-MM-DD date (its UTC
// midnight); empty gives def.
func parseTimeParam(name, v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, errorf(CodeBadRequest, "%s %q is neither an RFC 3339 time (2026-11-27T15:04:05Z) nor a date (2026-11-27)", name, v)
}
