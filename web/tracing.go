package web

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceRequests makes one server span per request, named by method and
// route template, continuing a W3C traceparent the client sent. Health
// probes get none. The span starts before the route resolves the project,
// as "global"; setProject sets the project once the route resolves it.
func (s *Server) traceRequests(next echo.HandlerFunc) echo.HandlerFunc {
	tracer := s.obs.tracer
	return func(c echo.Context) error {
		if isProbe(c) {
			return next(c)
		}
		r := c.Request()
		route, method := s.routeLabel(c), httpMethod(r.Method)
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", method),
				attribute.String("http.route", route),
				attribute.String("url.path", r.URL.Path),
				attribute.String("url.scheme", scheme),
				attribute.String("user_agent.original", r.UserAgent()),
				attribute.String(attrProject, projectGlobal),
			))
		defer span.End()
		c.SetRequest(r.WithContext(ctx))
		if err := next(c); err != nil {
			c.Error(err)
		}
		res := c.Response()
		span.SetAttributes(
			attribute.Int("http.response.status_code", res.Status),
			attribute.Int64("http.response.body.size", res.Size),
		)
		if res.Status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(res.Status))
		}
		return nil
	}
}

// markProject sets the project on the request's span as soon as the
// route has resolved it.
func markProject(c echo.Context, project string) {
	if span := trace.SpanFromContext(c.Request().Context()); span.IsRecording() {
		span.SetAttributes(attribute.String(attrProject, project))
	}
}

// traceAttrs are the trace_id and span_id of ctx's span for a log line,
// or empty attributes (which slog leaves out) when there is none.
func traceAttrs(ctx context.Context) (traceID, spanID slog.Attr) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return slog.Attr{}, slog.Attr{}
	}
	return slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())
}
