package web

import (
	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/web/auth"
)

// requireMetricsToken guards GET /metrics on the main listener (DESIGN
// §11.2): the exposition names every tenant's ids, spend and budgets, so
// it needs Authorization: Bearer with an admin token (session or API) or
// a metrics token; cookies and URL tokens do not count. A missing or bad
// token is 401, a project or embed token 403. Without auth, /metrics is
// served only on its own listener (serve --metrics-addr).
func (s *Server) requireMetricsToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		cr := credentialOf(c.Request())
		if cr.from != fromBearer {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="observatory"`)
			return errorf(CodeUnauthorized, "/metrics needs Authorization: Bearer with an admin or a metrics token")
		}
		cl, err := s.verify(cr.token)
		if err != nil {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="observatory"`)
			return err
		}
		switch {
		case cl.Kind == auth.KindMetrics:
		case cl.Role == auth.RoleAdmin && (cl.Kind == auth.KindAPI || cl.Kind == auth.KindSession):
		default:
			return errorf(CodeForbidden, "/metrics is for admin and metrics tokens only")
		}
		c.Set(ctxClaims, cl)
		return next(c)
	}
}
