package web_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

func newTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, rec
}

// attrs returns a span's attributes as strings.
func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

func TestServerSpans(t *testing.T) {
	tp, rec := newTracer(t)
	e := newEnv(t, func(c *web.Config) { c.TracerProvider = tp })
	admin := bearer(e.adminToken(t))
	e.do(t, http.MethodGet, "/api/v1/fleet?scope=acme", "", admin)
	e.do(t, http.MethodGet, "/api/v1/fleet?scope=acme", "", bearer(e.token(t, auth.RoleProject, "globex")))
	e.do(t, http.MethodGet, "/nope/12345", "", nil)
	for range 10 {
		e.do(t, http.MethodGet, "/healthz", "", nil)
		e.do(t, http.MethodGet, "/readyz", "", nil)
	}
	e.hub.mu.Lock()
	e.hub.panicOnSnap = true
	e.hub.mu.Unlock()
	e.do(t, http.MethodGet, "/api/v1/fleet?scope=initech", "", admin)

	type got struct {
		Name, Kind, Route, Status, Project string
		Error                              bool
	}
	var spans []got
	for _, s := range rec.Ended() {
		a := attrs(s)
		spans = append(spans, got{s.Name(), s.SpanKind().String(), a["http.route"], a["http.response.status_code"],
			a["sagewai.project_id"], s.Status().Code.String() == "Error"})
		if a["url.path"] == "" || a["http.request.method"] == "" {
			t.Errorf("span %s lacks url.path or http.request.method: %v", s.Name(), a)
		}
	}
	want := []got{
		{"GET /api/v1/fleet", "server", "/api/v1/fleet", "200", "acme", false},
		{"GET /api/v1/fleet", "server", "/api/v1/fleet", "403", "globex", false},
		{"GET unmatched", "server", "unmatched", "404", "global", false},
		{"GET /api/v1/fleet", "server", "/api/v1/fleet", "500", "initech", true},
	}
	if diff := cmp.Diff(want, spans); diff != "" {
		t.Errorf("server spans, none for probes (-want +got):\n%s", diff)
	}

	// The access log line of each request carries its span's ids.
	ids := map[string]string{}
	for _, s := range rec.Ended() {
		ids[s.SpanContext().TraceID().String()] = s.SpanContext().SpanID().String()
	}
	n := 0
	for _, l := range e.logs.lines(t) {
		if l["event"] != "http.request" {
			continue
		}
		n++
		tid, _ := l["trace_id"].(string)
		if sid, ok := ids[tid]; !ok || l["span_id"] != sid {
			t.Errorf("access line %v: trace_id/span_id match no span", l)
		}
	}
	if n != len(want) {
		t.Errorf("%d access lines, want %d", n, len(want))
	}
}

func TestServerSpanContinuesTheCallersTrace(t *testing.T) {
	tp, rec := newTracer(t)
	e := newEnv(t, func(c *web.Config) { c.TracerProvider = tp })
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := bearer(e.adminToken(t))
	h.Set("traceparent", parent)
	e.do(t, http.MethodGet, "/api/v1/fleet?scope=acme", "", h)
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	wantTrace, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	wantParent, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	if s.SpanContext().TraceID() != wantTrace || s.Parent().SpanID() != wantParent || !s.Parent().IsRemote() {
		t.Errorf("span %s under %s, want trace %s under %s", s.SpanContext().TraceID(), s.Parent().SpanID(), wantTrace, wantParent)
	}
}
