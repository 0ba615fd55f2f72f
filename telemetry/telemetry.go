package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagewai/observatory/fleet"
)

// fleetScope is the instrumentation scope of the spans and log records
// made from fleet events: what Handoff gates.
const fleetScope = "github.com/sagewai/observatory/fleet"

// ScopeName is the instrumentation scope of what this package makes.
const ScopeName = "github.com/sagewai/observatory/telemetry"

// Options configure Setup. Zero values mean the defaults given.
type Options struct {
	// ServiceName is service.name ("observatory"); OTEL_SERVICE_NAME wins.
	ServiceName string
	// ServiceVersion is service.version ("" leaves it out).
	ServiceVersion string
	// LogOutput receives the log lines (os.Stdout).
	LogOutput io.Writer
	// LogFormat is how the lines are written: LogFormatJSON (the
	// default, what log collectors parse) or LogFormatText (slog's
	// key=value lines, for people reading a file). OTLP log records are
	// the same whatever the format.
	LogFormat string
	// LogLevel is the lowest level logged (slog.LevelInfo).
	LogLevel slog.Leveler
	// MaxOpenRuns bounds the runs and missions remembered between their
	// start and end for spans (16384 each).
	MaxOpenRuns int
	// ShutdownTimeout bounds Shutdown when its context has no deadline (5 s).
	ShutdownTimeout time.Duration
	// SharedExport says several replicas fold one stream: what is derived
	// from it (the fold's domain metrics, the spans and business log
	// records of fleet events) is exported only while Handoff leads, as
	// the exporter lease decides. False: this process exports it all.
	SharedExport bool
	// Now is the clock of what the package decides by the current time:
	// how far apart export error lines are, the hub's event lag (from the
	// time NATS stored an event, on its wall clock, to now) and the
	// observed time of OTLP log records (time.Now). Spans and slog records
	// take their times from the OpenTelemetry SDK and from slog.
	Now func() time.Time
}

// The formats of Options.LogFormat.
const (
	LogFormatJSON = "json"
	LogFormatText = "text"
)

// Telemetry is the process's OpenTelemetry set-up: metrics through the
// Prometheus exporter on a private registry, traces and logs over
// OTLP/HTTP when the OTEL_* variables ask for them, the slog logger, and
// the fleet stream's metrics and spans.
type Telemetry struct {
	meters   *sdkmetric.MeterProvider
	tracers  *sdktrace.TracerProvider
	loggers  *sdklog.LoggerProvider // nil while OTLP logs are off
	registry *prometheus.Registry
	metrics  http.Handler
	// derived is the provider of the fold's domain metrics, on their own
	// registry so that /metrics serves them only while handoff leads.
	derived  *sdkmetric.MeterProvider
	handoff  *Handoff // nil unless Options.SharedExport
	logger   *slog.Logger
	errLog   *slog.Logger // lines only: export errors never feed the export
	fleet    *fleetObserver
	spans    pipelineStats
	logs     pipelineStats
	traceURL string
	logURL   string
	timeout  time.Duration
	now      func() time.Time

	// errMu guards lastErr, when each signal last logged an export error.
	errMu   sync.Mutex
	lastErr map[string]time.Time

	watchOnce sync.Once
}

// exportErrorEvery is the least time between two logged export errors of
// one signal; the failures metric counts every one.
const exportErrorEvery = 30 * time.Second

// Setup builds the telemetry of the process from opts and the standard
// OTEL_* variables read through getenv (see readExportConfig). It sets no
// OpenTelemetry globals: callers pass the providers on. With no OTLP
// variable set nothing is sent anywhere and nothing ever blocks; /metrics
// (MetricsHandler) always works. The caller must call Shutdown.
func Setup(ctx context.Context, getenv func(string) string, opts Options) (*Telemetry, error) {
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stdout
	}
	switch opts.LogFormat {
	case "", LogFormatJSON, LogFormatText:
	default:
		return nil, fmt.Errorf("telemetry: log format %q: want %s or %s", opts.LogFormat, LogFormatJSON, LogFormatText)
	}
	if opts.MaxOpenRuns <= 0 {
		opts.MaxOpenRuns = defaultMaxOpenRuns
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &Telemetry{registry: prometheus.NewRegistry(), timeout: opts.ShutdownTimeout, lastErr: map[string]time.Time{}, now: opts.Now}
	if t.timeout <= 0 {
		t.timeout = 5 * time.Second
	}
	res, err := newResource(getenv, opts)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	traceCfg, err := readExportConfig(getenv, signalTraces)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	logCfg, err := readExportConfig(getenv, signalLogs)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	sampler, err := readSampler(getenv)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}

	exp, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	// No exemplars: the Prometheus text format does not carry them, and
	// recording them costs every request an allocation or more.
	t.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	derivedReg := prometheus.NewRegistry()
	dexp, err := otelprom.New(otelprom.WithRegisterer(derivedReg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	t.derived = sdkmetric.NewMeterProvider(sdkmetric.WithReader(dexp), sdkmetric.WithResource(res),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	if opts.SharedExport {
		t.handoff = newHandoff(0)
	}
	t.metrics = promhttp.HandlerFor(prometheus.Gatherers{t.registry, leadGatherer{derivedReg, t.handoff}}, promhttp.HandlerOpts{})
	t.errLog = slog.New(newLineHandler(opts, nil))

	if traceCfg.URL == "" {
		// Nothing would receive them: spans are not recorded, but still
		// get ids, so that log lines of one request share a trace id.
		sampler = sdktrace.NeverSample()
	}
	tpOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res), sdktrace.WithIDGenerator(idGenerator{}), sdktrace.WithSampler(sampler),
		sdktrace.WithSpanProcessor(projectStamper{}),
	}
	if traceCfg.URL != "" {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(traceCfg.URL),
			otlptracehttp.WithHeaders(traceCfg.Headers), otlptracehttp.WithTimeout(traceCfg.Timeout))
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp traces: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(newSpanQueue(exp, traceCfg.Batch, &t.spans, t.exportError(signalTraces), t.handoff)))
		t.traceURL = traceCfg.URL
	}
	t.tracers = sdktrace.NewTracerProvider(tpOpts...)

	var otelLogger, fleetLogger otellog.Logger
	if logCfg.URL != "" {
		exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(logCfg.URL),
			otlploghttp.WithHeaders(logCfg.Headers), otlploghttp.WithTimeout(logCfg.Timeout))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("telemetry: otlp logs: %w", err), t.tracers.Shutdown(ctx))
		}
		t.loggers = sdklog.NewLoggerProvider(sdklog.WithResource(res),
			sdklog.WithProcessor(newLogQueue(exp, logCfg.Batch, &t.logs, t.exportError(signalLogs), t.handoff)))
		otelLogger = t.loggers.Logger("github.com/sagewai/observatory")
		fleetLogger = t.loggers.Logger(fleetScope)
		t.logURL = logCfg.URL
	}
	t.logger = slog.New(newLineHandler(opts, otelLogger))
	// The business records of fleet events: their lines are written by
	// the exporting replica only, their OTLP records go through handoff.
	fleetLines := newLineHandler(opts, fleetLogger)
	if t.handoff != nil {
		fleetLines.lineIf = t.handoff.Leading
	}

	meter := t.meters.Meter(ScopeName)
	var spans *fleetSpans
	if t.traceURL != "" {
		spans = newFleetSpans(t.tracers.Tracer(fleetScope), opts.MaxOpenRuns, opts.MaxOpenRuns)
	}
	if t.fleet, err = newFleetObserver(t.derived.Meter(ScopeName), meter, spans, slog.New(fleetLines), opts.Now); err == nil {
		err = t.registerPipelineMetrics(meter, spans)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry: metrics: %w", err), t.Shutdown(ctx))
	}
	return t, nil
}

// newLineHandler is newLogHandler with the lines in opts.LogFormat: the
// text format swaps slog's text handler in for the JSON one, and the rest
// (trace and project ids, the OTLP records) is the same.
func newLineHandler(opts Options, otel otellog.Logger) *logHandler {
	h := newLogHandler(opts.LogOutput, opts.LogLevel, otel, opts.Now)
	if opts.LogFormat == LogFormatText {
		h.json = slog.NewTextHandler(opts.LogOutput, &slog.HandlerOptions{Level: h.level})
	}
	return h
}

func newResource(getenv func(string) string, opts Options) (*resource.Resource, error) {
	attrs, err := readResourceAttrs(getenv)
	if err != nil {
		return nil, err
	}
	if _, ok := attrs["service.name"]; !ok {
		attrs["service.name"] = cmpOr(opts.ServiceName, "observatory")
	}
	if _, ok := attrs["service.version"]; !ok && opts.ServiceVersion != "" {
		attrs["service.version"] = opts.ServiceVersion
	}
	if _, ok := attrs["service.instance.id"]; !ok {
		host, _ := os.Hostname()
		attrs["service.instance.id"] = host + "-" + strconv.Itoa(os.Getpid())
	}
	attrs["telemetry.sdk.name"] = "opentelemetry"
	attrs["telemetry.sdk.language"] = "go"
	attrs["telemetry.sdk.version"] = otel.Version()
	kvs := make([]attribute.KeyValue, 0, len(attrs))
	for k, v := range attrs {
		kvs = append(kvs, attribute.String(k, v))
	}
	return resource.NewSchemaless(kvs...), nil
}

// readSampler reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// (default parentbased_always_on). Sampling decides for root spans; spans
// made from the fleet stream follow their run, which is always recorded.
func readSampler(getenv func(string) string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		s := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
		if s == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in [0, 1]", s)
		}
		return f, nil
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))); v {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if v == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q is not supported", v)
	}
}

// exportError logs a signal's export errors, at most one line per
// exportErrorEvery (on Options.Now), to the log lines only.
func (t *Telemetry) exportError(signal string) func(error) {
	return func(err error) {
		now := t.now()
		t.errMu.Lock()
		quiet := now.Sub(t.lastErr[signal]) < exportErrorEvery
		if !quiet {
			t.lastErr[signal] = now
		}
		t.errMu.Unlock()
		if !quiet {
			t.errLog.Warn("otlp export failed", "event", "otel.export.failed", "signal", signal, "error", err.Error())
		}
	}
}

// registerPipelineMetrics registers the OTel pipeline health metrics: they
// exist, at zero, while a signal is off.
func (t *Telemetry) registerPipelineMetrics(m metric.Meter, spans *fleetSpans) error {
	var err error
	cnt := func(name, unit, desc string) metric.Int64ObservableCounter {
		if err != nil {
			return nil
		}
		var c metric.Int64ObservableCounter
		c, err = m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		if err != nil {
			return nil
		}
		var g metric.Int64ObservableGauge
		g, err = m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return g
	}
	spansExported := cnt("sagewai.otel.spans.exported", "{span}", "Spans the OTLP receiver accepted.")
	spansDropped := cnt("sagewai.otel.spans.dropped", "{span}", "Spans dropped: the queue was full, or their export failed.")
	spansQueued := gauge("sagewai.otel.spans.queued", "{span}", "Spans waiting in the export queue.")
	logsExported := cnt("sagewai.otel.log_records.exported", "{record}", "Log records the OTLP receiver accepted.")
	logsDropped := cnt("sagewai.otel.log_records.dropped", "{record}", "Log records dropped: the queue was full, or their export failed.")
	logsQueued := gauge("sagewai.otel.log_records.queued", "{record}", "Log records waiting in the export queue.")
	failures := cnt("sagewai.otel.export.failures", "{export}", "Failed OTLP export calls, by signal.")
	openRuns := gauge("sagewai.trace.open_runs", "{run}", "Runs started and not yet finished that the fleet spans remember (bounded).")
	if err != nil {
		return err
	}
	queueFull := metric.WithAttributes(attribute.String("reason", "queue_full"))
	exportFailed := metric.WithAttributes(attribute.String("reason", "export_failed"))
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range []struct {
			signal            string
			st                *pipelineStats
			exported, dropped metric.Int64ObservableCounter
			queued            metric.Int64ObservableGauge
		}{{signalTraces, &t.spans, spansExported, spansDropped, spansQueued}, {signalLogs, &t.logs, logsExported, logsDropped, logsQueued}} {
			o.ObserveInt64(s.exported, s.st.exported.Load())
			o.ObserveInt64(s.dropped, s.st.queueFull.Load(), queueFull)
			o.ObserveInt64(s.dropped, s.st.exportFailed.Load(), exportFailed)
			var q int64
			if s.st.queued != nil {
				q = int64(s.st.queued())
			}
			o.ObserveInt64(s.queued, q)
			o.ObserveInt64(failures, s.st.failures.Load(), metric.WithAttributes(attribute.String("signal", s.signal)))
		}
		var n int64
		if spans != nil {
			n = spans.openRuns.Load()
		}
		o.ObserveInt64(openRuns, n)
		return nil
	}, spansExported, spansDropped, spansQueued, logsExported, logsDropped, logsQueued, failures, openRuns)
	return err
}

// MeterProvider is the provider of every metric served on /metrics.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meters }

// TracerProvider is the provider of every span. Spans are recorded and
// exported only when OTLP traces are configured; otherwise they are not
// recorded but still get ids, for the trace_id and span_id of the logs.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracers }

// Logger returns the process's logger: lines to Options.LogOutput,
// and OTLP log records when configured.
func (t *Telemetry) Logger() *slog.Logger { return t.logger }

// MetricsHandler serves the Prometheus exposition of every metric (GET /metrics).
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// TracesURL and LogsURL are where OTLP traces and logs go; "" when off.
func (t *Telemetry) TracesURL() string { return t.traceURL }

// LogsURL is where OTLP log records go; "" when off.
func (t *Telemetry) LogsURL() string { return t.logURL }

// ObserveFleet turns one folded event into metrics and spans. It is the
// hub's HubConfig.Observe and must be called from the hub goroutine only.
func (t *Telemetry) ObserveFleet(ev fleet.Event, res fleet.Result, st *fleet.State) {
	if t.handoff != nil {
		t.handoff.seq.Store(st.Seq())
	}
	t.fleet.observe(ev, res, st)
}

// Handoff is the gate of the derived export (nil unless
// Options.SharedExport): the exporter lease drives it.
func (t *Telemetry) Handoff() *Handoff { return t.handoff }

// WatchFleet connects the fleet metrics to the fold: the state gauges read
// src.View at each collection, src.Live gates spans and src.Registered
// names the projects that always have their own label. Call it once,
// before the hub runs; later calls do nothing.
func (t *Telemetry) WatchFleet(src FleetSource) error {
	err := errors.New("telemetry: WatchFleet called twice")
	t.watchOnce.Do(func() {
		err = nil
		if src.Live != nil {
			t.fleet.live.Store(&src.Live)
		}
		if src.Registered != nil {
			t.fleet.projects.registered.Store(&src.Registered)
		}
		if src.View != nil {
			err = registerFleetGauges(t.derived.Meter(ScopeName), src, t.fleet.projects)
		}
	})
	return err
}

// ForceFlush exports the queued spans and log records now.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	err := t.tracers.ForceFlush(ctx)
	if t.loggers != nil {
		err = errors.Join(err, t.loggers.ForceFlush(ctx))
	}
	return err
}

// Shutdown flushes and stops the providers: what is still queued is
// exported until ctx ends (or ShutdownTimeout, when ctx has no deadline).
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.timeout)
		defer cancel()
	}
	var errs []error
	if t.tracers != nil {
		errs = append(errs, t.tracers.Shutdown(ctx))
	}
	if t.loggers != nil {
		errs = append(errs, t.loggers.Shutdown(ctx))
	}
	if t.meters != nil {
		errs = append(errs, t.meters.Shutdown(ctx))
	}
	if t.derived != nil {
		errs = append(errs, t.derived.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
