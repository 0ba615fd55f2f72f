// Package telemetry is Observatory's OpenTelemetry set-up and the fleet
// stream's metrics and spans (DESIGN §7).
//
// Setup builds, from Options and the standard OTEL_* variables (read only
// through the getenv it is given):
//
//   - a MeterProvider whose only reader is the OpenTelemetry Prometheus
//     exporter on a private prometheus.Registry, served by MetricsHandler
//     at GET /metrics (scraped, never pushed);
//   - a TracerProvider that stamps sagewai.project_id on every span when it
//     starts (from the context: ContextWithProject, or the baggage member
//     of that name; "global" when none) and exports OTLP/HTTP protobuf only
//     when OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
//     or OTEL_TRACES_EXPORTER=otlp ask for it (OTEL_TRACES_EXPORTER=none and
//     OTEL_SDK_DISABLED=true turn it off); with traces off, spans are not
//     recorded at all but still get ids, for the trace_id of log lines;
//   - a LoggerProvider exporting OTLP/HTTP log records likewise (logs
//     variables; VictoriaLogs takes them at /insert/opentelemetry/v1/logs);
//   - a slog.Logger writing JSON lines, and OTLP log records when
//     configured, with trace_id and span_id from the context's span and
//     sagewai.project_id added where a record lacks them;
//   - the fleet observer: ObserveFleet is the hub's HubConfig.Observe hook
//     and turns folded events into the domain and GenAI metrics and, when
//     traces are exported, into spans (mission → run → chat/execute_tool);
//     WatchFleet adds gauges read from the fold's state at each scrape.
//
// Label values are bounded so that no tenant can crowd another out of its
// series. A project registered in the admin API's registry
// (FleetSource.Registered) or announced on FLEET by project.created always
// has its own sagewai_project_id label; projects neither registered nor
// announced share a pool of 100 labels, first come, then "other". Within
// a project, the values its events choose (models, providers, tools,
// agents, teams) are bounded per project (50, 20, 100, 200 and 50): one
// project's junk fills its own room only. Missions are counted when the
// fold ends them (fleet.Effect), once, and only in their own project.
//
// The package takes the current time from Options.Now (time.Now by
// default), the one clock of its time decisions: the spacing of export
// error lines, the hub's event lag and the observed time of OTLP log
// records.
//
// Each exported signal has its own bounded queue: enqueueing never blocks,
// a full queue drops and counts, and the sagewai_otel_* metrics report
// exported, dropped and queued items and failed exports, at zero while a
// signal is off. Setup sets no OpenTelemetry globals. docs/metrics.md lists
// every metric family.
//
// The OTLP exporters still read some OTEL_* variables from the process
// environment themselves (certificates, compression); the endpoint,
// headers and timeout are always the ones read through getenv.
//
// telemetry imports fleet, the OpenTelemetry API and SDK, its OTLP and
// Prometheus exporters and the Prometheus client. Only cmd calls Setup;
// other packages take the providers and the logger as plain values.
//
// # Concurrency
//
// Every method of Telemetry is safe for concurrent use, except that
// ObserveFleet must only be called from one goroutine at a time (the hub
// goroutine, which owns the fleet observer's label bounds, attribute cache
// and the open runs of the fleet spans). The metric callbacks run on the
// collecting goroutine (a /metrics request): they read the exact cost sums
// under a mutex, atomic pipeline counters, and the fold's state through
// FleetSource.View, which asks the hub and waits at most two seconds.
//
// Each exported signal has one goroutine, started by Setup and owned by
// Telemetry: it moves items from the queue to the exporter in batches.
// Shutdown stops it after exporting what is queued, cutting the export in
// progress when its context ends; ForceFlush waits until the queue is
// empty. Nothing in the request or fold path ever waits for an export.
package telemetry
