package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web/auth"
)

// readAudit is GET /api/v1/audit?project=&type=&from=&to=&limit=: audit
// events from the AUDIT stream, oldest first, the first limit of them
// stored in [from, to]. An admin sees every project (or the one named); a
// project token its own, and asking for another is 403 and audited as
// tenant.cross_access_denied. A project token never sees a global budget's
// figures (withheldFigures).
func (s *Server) readAudit(c echo.Context) error {
	ctx := c.Request().Context()
	cl := claimsOf(c)
	scope, err := s.authorizeScope(ctx, cl, c.QueryParam("project"), routeOf(c))
	if err != nil {
		return err
	}
	setProject(c, scope)
	if s.cfg.AuditLog == nil {
		return unavailable("the audit log")
	}
	typ := c.QueryParam("type")
	if typ != "" && !validEventType(typ) {
		return errorf(CodeBadRequest, "type %q is not an event type (dotted lower-case words)", typ)
	}
	from, err := queryTime(c, "from")
	if err != nil {
		return err
	}
	to, err := queryTime(c, "to")
	if err != nil {
		return err
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return errorf(CodeBadRequest, "to is before from")
	}
	limit, err := listLimit(c)
	if err != nil {
		return err
	}
	project := scope
	if project == fleet.ScopeAll {
		project = ""
	}
	events, err := s.cfg.AuditLog.Read(ctx, project, typ, from, to, limit+1)
	if err != nil {
		return &Error{Code: CodeUnavailable, Message: "reading the audit log failed", Err: err}
	}
	more := len(events) > limit
	if more {
		events = events[:limit]
	}
	if events == nil {
		events = []fleet.Event{}
	}
	if cl.Role != auth.RoleAdmin {
		for i := range events {
			events[i] = withheldFigures(events[i])
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"events": events, "more": more})
}

// tenantBudgetFields are the data fields of a budget.* event about a global
// budget that a project's token may read: which cap it is, what it does,
// its window and when it resets, and the project's own request (estimate,
// model, reference). Anything else, above all the cap, the fleet-wide
// spend, the reservations and the warn threshold, is withheld; a field the
// gate adds later is withheld until it is listed here.
var tenantBudgetFields = map[string]bool{
	"scope": true, "scope_id": true, "period": true, "action": true, "model": true,
	"budget_id": true, "window": true, "resets_at": true,
	"estimate_usd": true, "requested_model": true, "ref": true,
}

// withheldFigures returns ev as a project's token may read it. Tenants
// never see the figures of global budgets (DESIGN §11.2): the budget gate
// records a global budget's warning, throttle or refusal under the project
// whose work reached it, with the cap and the spend of every project, and
// the project's token gets that record with only tenantBudgetFields and
// "figures_withheld": true in its data. Other events are returned as they
// are.
func withheldFigures(ev fleet.Event) fleet.Event {
	if !strings.HasPrefix(ev.Type, "budget.") || len(ev.Data) == 0 {
		return ev
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		ev.Data = nil // unreadable: nothing of it can be vouched for
		return ev
	}
	var scope string
	if json.Unmarshal(data["scope"], &scope) != nil || scope != fleet.BudgetScopeGlobal {
		return ev
	}
	kept := map[string]json.RawMessage{"figures_withheld": json.RawMessage("true")}
	for k, v := range data {
		if tenantBudgetFields[k] {
			kept[k] = v
		}
	}
	ev.Data, _ = json.Marshal(kept)
	return ev
}

// queryTime reads an RFC 3339 time from the query; absent is zero.
func queryTime(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errorf(CodeBadRequest, "%s must be an RFC 3339 time such as 2026-11-27T15:04:05Z", name)
	}
	return t, nil
}

// validEventType reports whether t is dot-separated lower-case words, as
// event types are.
func validEventType(t string) bool {
	if len(t) > 64 {
		return false
	}
	for _, part := range strings.Split(t, ".") {
		if part == "" || strings.ContainsFunc(part, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-')
		}) {
			return false
		}
	}
	return true
}
