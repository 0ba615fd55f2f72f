package web

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// projectGlobal is the project of requests that are about no one project
// (logins, probes, scope "*").
const projectGlobal = "global"

// ctxProject is the echo.Context key of the project a request is about, as
// the access log reports it.
const ctxProject = "observatory.project"

// setProject records the project a request is about: the scope's
// project, or projectGlobal for none and for "*".
func setProject(c echo.Context, scope string) {
	p := projectOrGlobal(scope)
	c.Set(ctxProject, p)
	markProject(c, p)
}

func projectOrGlobal(scope string) string {
	if scope == "" || scope == "*" {
		return projectGlobal
	}
	return scope
}

func projectOf(c echo.Context) string {
	if p, ok := c.Get(ctxProject).(string); ok {
		return p
	}
	return projectGlobal
}

// routeOf returns the route template of c, never the raw path.
func routeOf(c echo.Context) string {
	if r := c.Path(); r != "" {
		return r
	}
	return "unmatched"
}

// isProbe reports whether c is a health probe or a metrics scrape: never
// logged, traced or timed (a scraper would otherwise fill the logs and the
// request panels with itself every few seconds).
func isProbe(c echo.Context) bool {
	r := c.Path()
	return r == "/healthz" || r == "/readyz" || r == "/metrics"
}

// accessLog logs one structured line per request, after the response (for
// /ws, after the connection ends): method, route template, status,
// duration, project, and the ids of the request's span when it has one.
// Tokens never appear: only the route template is logged, not the path or
// the query. Errors are handed to the error handler here, so that the
// status logged is the status sent.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if isProbe(c) {
			return next(c)
		}
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelWarn
		}
		ctx := c.Request().Context()
		traceID, spanID := traceAttrs(ctx)
		s.log.LogAttrs(ctx, level, "http request",
			slog.String("event", "http.request"),
			slog.String("method", c.Request().Method),
			slog.String("route", routeOf(c)),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.Int64("bytes", c.Response().Size),
			slog.String("sagewai.project_id", projectOf(c)),
			traceID, spanID,
		)
		return nil
	}
}

// recoverPanic turns a panic into a 500 in the usual JSON shape; the error
// handler logs it once, with its stack.
func (s *Server) recoverPanic() echo.MiddlewareFunc {
	return middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			return &Error{Code: CodeInternal, Message: "internal error", Err: &panicError{err: err, stack: stack}}
		},
	})
}

// panicError is a recovered panic and the stack where it happened.
type panicError struct {
	err   error
	stack []byte
}

func (e *panicError) Error() string { return "panic: " + e.err.Error() }
func (e *panicError) Unwrap() error { return e.err }

// securityHeaders sets headers every response carries. Referrer-Policy
// no-referrer keeps ?embed_token= URLs out of other sites' logs.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		return next(c)
	}
}

// noStore keeps API answers (tokens among them) out of caches.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		return next(c)
	}
}

// limitBody refuses bodies over MaxBodyBytes with 413 too_large: at once
// when Content-Length says so, else when the handler reads past the limit.
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		limit := s.cfg.MaxBodyBytes
		otlp := s.cfg.Traces != nil && c.Path() == "/v1/traces"
		if otlp {
			// OTLP exports are batches of spans: their own bound, on the
			// wire as decompressed, refused and counted by the ingester
			// (ingest.ReadBody) once the caller is known.
			limit = s.cfg.Traces.MaxBodyBytes()
		}
		if r.ContentLength > limit && !otlp {
			return errorf(CodeTooLarge, "request body exceeds %d bytes", limit)
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
		}
		return next(c)
	}
}
