package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
)

// readAudit is GET /api/v1/audit?project=&type=&from=&to=&limit=: audit
// events from the AUDIT stream, oldest first, the first limit of them
// stored in [from, to]. An admin sees every project (or the one named); a
// project token its own, and asking for another is 403 and audited as
// tenant.cross_access_denied.
func (s *Server) readAudit(c echo.Context) error {
	ctx := c.Request().Context()
	scope, err := s.authorizeScope(ctx, claimsOf(c), c.QueryParam("project"), routeOf(c))
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
	return c.JSON(http.StatusOK, map[string]any{"events": events, "more": more})
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
