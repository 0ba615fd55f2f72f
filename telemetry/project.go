package telemetry

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ProjectKey is the attribute every span and log record carries: the
// project (tenant) it is about, or ProjectGlobal. The Prometheus exporter
// writes it as the label sagewai_project_id.
const ProjectKey = "sagewai.project_id"

type projectCtxKey struct{}

// ContextWithProject returns ctx carrying project, for the spans and log
// records made under it. Other packages, which do not import telemetry,
// reach the same result with an OpenTelemetry baggage member named
// ProjectKey.
func ContextWithProject(ctx context.Context, project string) context.Context {
	return context.WithValue(ctx, projectCtxKey{}, project)
}

// ProjectFromContext returns the project ctx carries: the one
// ContextWithProject set, else the baggage member ProjectKey, else
// ProjectGlobal.
func ProjectFromContext(ctx context.Context) string {
	if p, ok := ctx.Value(projectCtxKey{}).(string); ok && p != "" {
		return p
	}
	if p := baggage.FromContext(ctx).Member(ProjectKey).Value(); p != "" {
		return p
	}
	return ProjectGlobal
}

// projectStamper is the SpanProcessor that sets ProjectKey on every span
// when it starts, from the context it starts in. Who learns the project
// later (an HTTP server span, once the route has resolved the tenant)
// sets the attribute again; the last value wins.
type projectStamper struct{}

var _ sdktrace.SpanProcessor = projectStamper{}

func (projectStamper) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	s.SetAttributes(attribute.String(ProjectKey, ProjectFromContext(ctx)))
}
func (projectStamper) OnEnd(sdktrace.ReadOnlySpan)      {}
func (projectStamper) Shutdown(context.Context) error   { return nil }
func (projectStamper) ForceFlush(context.Context) error { return nil }

// fixedIDs are the ids a span started under withIDs gets: spans made from
// the fleet stream have ids derived from the run, mission or event they
// stand for, so that a child can name its parent before the parent span
// exists, and a replay gives the same ids.
type fixedIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

type idsCtxKey struct{}

func withIDs(ctx context.Context, t trace.TraceID, s trace.SpanID) context.Context {
	return context.WithValue(ctx, idsCtxKey{}, fixedIDs{t, s})
}

// idGenerator gives the ids withIDs set, and random ones otherwise.
type idGenerator struct{}

var _ sdktrace.IDGenerator = idGenerator{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if f, ok := ctx.Value(idsCtxKey{}).(fixedIDs); ok && f.trace.IsValid() && f.span.IsValid() {
		return f.trace, f.span
	}
	var t trace.TraceID
	binary.BigEndian.PutUint64(t[:8], rand.Uint64())
	binary.BigEndian.PutUint64(t[8:], rand.Uint64()|1)
	return t, randomSpanID()
}

func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if f, ok := ctx.Value(idsCtxKey{}).(fixedIDs); ok && f.span.IsValid() {
		return f.span
	}
	return randomSpanID()
}

func randomSpanID() trace.SpanID {
	var s trace.SpanID
	binary.BigEndian.PutUint64(s[:], rand.Uint64()|1)
	return s
}

// hashIDs derives a trace id and a span id from parts, never zero. The
// ids look random (SHA-256), as ratio samplers and backends expect.
func hashIDs(parts ...string) (trace.TraceID, trace.SpanID) {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var t trace.TraceID
	var s trace.SpanID
	copy(t[:], sum[:16])
	copy(s[:], sum[16:24])
	if !t.IsValid() {
		t[15] = 1
	}
	if !s.IsValid() {
		s[7] = 1
	}
	return t, s
}
