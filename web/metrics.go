package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagewai/observatory/fleet"
)

// Metric attribute keys; the Prometheus exporter writes them with
// underscores (http_route, sagewai_project_id).
const (
	attrMethod     = "http.method"
	attrRoute      = "http.route"
	attrStatusCode = "http.status_code"
	attrProject    = "sagewai.project_id"
)

// routeUnmatched is the route label of requests that matched no route:
// never the raw path, which may carry ids.
const routeUnmatched = "unmatched"

// maxMetricSeries bounds the distinct attribute sets of the HTTP
// histograms; past it, a new project is counted as "other".
const maxMetricSeries = 10_000

// Histogram buckets: the OpenTelemetry defaults for milliseconds, and
// powers of 4 from 64 B to 16 MiB for sizes.
var (
	durationBuckets = []float64{0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000}
	sizeBuckets     = []float64{0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216}
)

// observability is the server's instrumentation: metrics when
// Config.MeterProvider is set, spans when Config.TracerProvider is.
type observability struct {
	metrics *httpMetrics // nil: no HTTP metrics
	tracer  trace.Tracer // nil: no spans

	// routes are the route templates registered, read once after New.
	routesOnce sync.Once
	routes     map[string]bool
}

// httpMetrics are the HTTP server metrics of DESIGN §7 and the counters of
// logins and cross-tenant denials.
type httpMetrics struct {
	duration          metric.Float64Histogram
	active            metric.Int64UpDownCounter
	reqSize, respSize metric.Int64Histogram
	logins, denials   metric.Int64Counter

	// optsMu guards opts, the options of each label set.
	optsMu sync.RWMutex
	opts   map[seriesKey]seriesOpts
}

// seriesOpts is one label set as the one-element option slices Add and
// Record take, so that a measurement allocates nothing.
type seriesOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

type seriesKey struct {
	method, route, project string
	status                 int
}

func newHTTPMetrics(mp metric.MeterProvider) (*httpMetrics, error) {
	m := mp.Meter("github.com/sagewai/observatory/web")
	h := &httpMetrics{opts: make(map[seriesKey]seriesOpts)}
	var err error
	if h.duration, err = m.Float64Histogram("http.server.duration", metric.WithUnit("ms"),
		metric.WithDescription("Duration of HTTP requests (without /ws and health probes)."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if h.active, err = m.Int64UpDownCounter("http.server.active_requests", metric.WithUnit("{request}"),
		metric.WithDescription("HTTP requests being served.")); err != nil {
		return nil, err
	}
	if h.reqSize, err = m.Int64Histogram("http.server.request.size", metric.WithUnit("By"),
		metric.WithDescription("Size of HTTP request bodies."), metric.WithExplicitBucketBoundaries(sizeBuckets...)); err != nil {
		return nil, err
	}
	if h.respSize, err = m.Int64Histogram("http.server.response.size", metric.WithUnit("By"),
		metric.WithDescription("Size of HTTP response bodies."), metric.WithExplicitBucketBoundaries(sizeBuckets...)); err != nil {
		return nil, err
	}
	if h.logins, err = m.Int64Counter("sagewai.auth.logins", metric.WithUnit("{login}"),
		metric.WithDescription("Logins by result (succeeded, failed) and reason of failure.")); err != nil {
		return nil, err
	}
	if h.denials, err = m.Int64Counter("sagewai.tenant.cross_access_denied", metric.WithUnit("{request}"),
		metric.WithDescription("Requests refused because a project token asked for another project, by the token's project and route.")); err != nil {
		return nil, err
	}
	return h, nil
}

func newObservability(cfg Config) (*observability, error) {
	t := &observability{}
	if cfg.MeterProvider != nil {
		m, err := newHTTPMetrics(cfg.MeterProvider)
		if err != nil {
			return nil, err
		}
		t.metrics = m
	}
	if cfg.TracerProvider != nil {
		t.tracer = cfg.TracerProvider.Tracer("github.com/sagewai/observatory/web")
	}
	return t, nil
}

// telemetryMiddleware returns the instrumentation, outermost first: the
// server span, then the metrics. Both sit outside the access log, so that
// the log line carries the span's ids and the metrics see the status sent.
func (s *Server) telemetryMiddleware() []echo.MiddlewareFunc {
	var mw []echo.MiddlewareFunc
	if s.obs.tracer != nil {
		mw = append(mw, s.traceRequests)
	}
	if s.obs.metrics != nil {
		mw = append(mw, s.measureRequests)
	}
	return mw
}

// routeLabel is the route template c matched, or "unmatched".
func (s *Server) routeLabel(c echo.Context) string {
	if p := c.Path(); s.knownRoute(p) {
		return p
	}
	return routeUnmatched
}

// knownRoute reports whether p is the template of a registered route.
func (s *Server) knownRoute(p string) bool {
	s.obs.routesOnce.Do(func() {
		s.obs.routes = map[string]bool{}
		for _, r := range s.echo.Routes() {
			s.obs.routes[r.Path] = true
		}
	})
	return p != "" && s.obs.routes[p]
}

// httpMethod bounds the method label: a known method, or "_OTHER".
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// measureRequests records the HTTP metrics of a request once it is
// answered. Its project is the one the route resolved (setProject), else
// "global". /ws (a connection's whole life) and health probes stay out
// of the duration histogram.
func (s *Server) measureRequests(next echo.HandlerFunc) echo.HandlerFunc {
	m := s.obs.metrics
	return func(c echo.Context) error {
		r := c.Request()
		route, method := s.routeLabel(c), httpMethod(r.Method)
		active := m.opt(seriesKey{method: method, route: route})
		m.active.Add(r.Context(), 1, active.add...)
		var body *countingBody
		if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		elapsed := time.Since(start)
		m.active.Add(r.Context(), -1, active.add...)
		ctx := c.Request().Context() // with the server span, for exemplars
		res := c.Response()
		opt := m.opt(seriesKey{method: method, route: route, status: res.Status, project: projectOf(c)})
		if route != "/ws" && !isProbe(c) {
			m.duration.Record(ctx, float64(elapsed)/float64(time.Millisecond), opt.rec...)
		}
		size := r.ContentLength
		if body != nil {
			size = body.n
		}
		m.reqSize.Record(ctx, max(size, 0), opt.rec...)
		m.respSize.Record(ctx, max(res.Size, 0), opt.rec...)
		return nil
	}
}

// opt returns the options of the label set k: method and route only when
// status is 0 (active requests), else all four labels.
func (m *httpMetrics) opt(k seriesKey) seriesOpts {
	m.optsMu.RLock()
	v, ok := m.opts[k]
	full := len(m.opts) >= maxMetricSeries
	m.optsMu.RUnlock()
	if ok {
		return v
	}
	if full && k.status != 0 {
		k.project = "other"
	}
	kvs := []attribute.KeyValue{attribute.String(attrMethod, k.method), attribute.String(attrRoute, k.route)}
	if k.status != 0 {
		kvs = append(kvs, attribute.Int(attrStatusCode, k.status), attribute.String(attrProject, k.project))
	}
	m.optsMu.Lock()
	defer m.optsMu.Unlock()
	if v, ok := m.opts[k]; ok {
		return v
	}
	set := metric.WithAttributeSet(attribute.NewSet(kvs...))
	v = seriesOpts{add: []metric.AddOption{set}, rec: []metric.RecordOption{set}}
	m.opts[k] = v
	return v
}

// countingBody counts the bytes read from a body of unknown length.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// countingAuditor counts the server-emitted events that have a metric
// (logins, cross-tenant denials) on their way to the AUDIT stream: every
// place web emits them goes through it.
type countingAuditor struct {
	Auditor
	s *Server
}

func (a countingAuditor) Audit(ctx context.Context, ev fleet.Event) error {
	a.s.countAudit(ctx, ev)
	return a.Auditor.Audit(ctx, ev)
}

func (s *Server) countAudit(ctx context.Context, ev fleet.Event) {
	m := s.obs.metrics
	switch ev.Type {
	case fleet.TypeLoginSucceeded:
		m.logins.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "succeeded")))
	case fleet.TypeLoginFailed:
		var d struct{ Reason string }
		_ = json.Unmarshal(ev.Data, &d)
		reason := d.Reason
		if reason != "bad_credentials" && reason != "too_many_attempts" {
			reason = "other"
		}
		m.logins.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "failed"), attribute.String("reason", reason)))
	case fleet.TypeCrossAccess:
		var d struct{ Route string }
		_ = json.Unmarshal(ev.Data, &d)
		route := d.Route
		if !s.knownRoute(route) {
			route = routeUnmatched
		}
		m.denials.Add(ctx, 1, metric.WithAttributes(attribute.String(attrProject, ev.ProjectID), attribute.String(attrRoute, route)))
	}
}
