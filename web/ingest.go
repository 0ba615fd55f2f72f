package web

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/ingest"
	"github.com/sagewai/observatory/web/auth"
)

// TraceIngester folds OTLP trace exports (ingest.Ingester).
type TraceIngester interface {
	// Export reads one export and answers its response body and type.
	Export(ctx context.Context, caller ingest.Caller, contentType, encoding string, body io.Reader) ([]byte, string, ingest.Result, error)
	// MaxBodyBytes bounds an export, decompressed.
	MaxBodyBytes() int64
}

// ingestRoutes adds POST /v1/traces, OTLP/HTTP's path, beside /api/v1:
// exporters append it to the endpoint they are given.
func (s *Server) ingestRoutes(e *echo.Echo) {
	e.POST("/v1/traces", s.ingestTraces, noStore, s.requireAuth)
}

// ingestTraces is POST /v1/traces (DESIGN §11.4). A project token's spans
// are its project's; an admin token's resources name theirs. Resources
// naming a project the token may not write are refused (in
// partial_success) and audited as tenant.cross_access_denied.
func (s *Server) ingestTraces(c echo.Context) error {
	if s.cfg.Traces == nil {
		return unavailable("OTLP ingest")
	}
	cl := claimsOf(c)
	if cl.Role != auth.RoleAdmin && cl.Role != auth.RoleProject {
		return errorf(CodeForbidden, "OTLP ingest takes a project or an admin token")
	}
	r := c.Request()
	ctx := r.Context()
	caller := ingest.Caller{Project: cl.Project, Admin: cl.Role == auth.RoleAdmin, Subject: cl.Subject, Exists: s.projectExists}
	body, typ, res, err := s.cfg.Traces.Export(ctx, caller, r.Header.Get(echo.HeaderContentType), r.Header.Get(echo.HeaderContentEncoding), r.Body)
	for _, p := range res.Denied {
		s.publishAudit(ctx, fleet.TypeCrossAccess, cl.Project, cl.Subject, map[string]string{
			"subject": cl.Subject, "scope": p, "route": routeOf(c),
		})
	}
	if err != nil {
		var ie *ingest.Error
		if !errors.As(err, &ie) {
			return &Error{Code: CodeInternal, Message: "the export could not be answered", Err: err}
		}
		code := CodeBadRequest
		switch ie.Reason {
		case ingest.TooLarge:
			code = CodeTooLarge
		case ingest.BadContentType:
			code = CodeUnsupportedMediaType
		case ingest.Unavailable:
			// 503 is what OTLP exporters retry; the events' ids make the
			// retry fold once.
			c.Response().Header().Set("Retry-After", "1")
			code = CodeUnavailable
		}
		return &Error{Code: code, Message: ie.Msg, Err: ie.Err}
	}
	return c.Blob(http.StatusOK, typ, body)
}

// projectExists looks a project up in the registry.
func (s *Server) projectExists(ctx context.Context, id string) (bool, error) {
	_, found, err := s.projectRecord(ctx, id)
	return found, err
}
