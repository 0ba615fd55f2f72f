// Package vmstack runs real VictoriaMetrics, VictoriaLogs and vmalert
// processes for tests, on loopback, each with its own temporary data
// directory, and holds the end-to-end pipeline test of issues 7 and 11
// (TestPipelineEndToEnd): a real `observatory demo` scraped by
// VictoriaMetrics, logging to VictoriaLogs over OTLP, watched by vmalert
// with the rules of package dashboards, and the alert drills: faults made
// to happen for real (a NATS and a log store going down under a second
// observatory, budgets at and near their caps, a worker host killed, /ws
// subscribers that stop reading, more missions in flight than that second
// observatory's fold is bounded to), each of which must fire its alerts
// and let them end. VictoriaMetrics scrapes both observatories' main
// listeners with a metrics token; the worker host's workers enroll with an
// enrollment key and run on the NATS credentials enrollment gives them, as
// workers on other machines do (the demo's NATS refuses anonymous clients).
//
// TestPipelineCollector (issue 16) runs the trace and log path of the
// compose stack: `observatory demo` exporting OTLP to an OpenTelemetry
// Collector that runs the shipped dashboards/otel-collector/config.yaml
// itself (StartCollector sets the endpoints it reads from the
// environment), which sends log records to VictoriaLogs and spans to
// Jaeger v2 (StartJaeger: all-in-one, in-memory storage, configured by a
// file in the test's temporary directory). It fetches a demo mission's
// trace by id through Jaeger's query API (Jaeger.Trace) and proves the
// Collector's filter with probes sent by a raw OTLP client.
//
// The binaries are the pinned releases `make deps` builds into
// .cache/bin (victoria-metrics v1.151.0, victoria-logs v1.52.1, vmalert
// v1.151.0; jaeger from github.com/jaegertracing/jaeger v1.75.0 by
// scripts/build-jaeger.sh; otelcol-observatory from
// dashboards/otel-collector/builder.yaml by scripts/build-otelcol.sh). The
// directory is OBSERVATORY_VM_BIN when set (the Makefile exports it), else
// .cache/bin under the repository root. A missing binary, or one whose Go
// build information names another module version (for the Collector: one
// not built from the manifest as it is now), fails the test with the
// command that builds it; it never skips.
//
// StartMetrics, StartLogs and StartAlerter each start one process, wait
// until its /health answers, and register its stop with t.Cleanup
// (Logs.Stop stops VictoriaLogs earlier, as an outage; StartLogs with the
// same LogsConfig.Addr starts it again where its clients send). Each
// listens on 127.0.0.1 port 0 and the harness reads the port the process
// chose from its "started server at" log line, so there is no window in
// which another process could take a port picked in advance. The
// Collector and Jaeger cannot say which port they chose: they get loopback
// ports picked free just before, and are started again on new ones (three
// tries) should one be taken meanwhile. The query
// helpers (Metrics.Query, Metrics.QueryMatrix, Logs.Query, Alerter.Alerts,
// Alerter.Groups) speak the servers' HTTP APIs and return errors rather
// than failing the test, so that callers can poll them until a condition
// holds. WithTimeFilter limits a board's LogsQL query to a recent window,
// as Grafana does with the board's range.
//
// vmalert takes one datasource, so rules on metrics and rules on logs
// (groups of type vlogs) need one vmalert each: one reading
// VictoriaMetrics, one reading VictoriaLogs. Both write their alert state
// (the ALERTS series) back to VictoriaMetrics.
//
// vmstack imports only the standard library. Its test also imports the
// repository's dashboards, fleet (and fleettest), live, protocol, stream
// and worker packages, the NATS server (a NATS it can stop and start) and
// client, and coder/websocket, builds cmd/observatory, and runs its own
// binary again as a worker host (TestMain).
//
// # Concurrency
//
// Every process belongs to the test that started it: its stop (SIGTERM,
// then SIGKILL after five seconds) runs in t.Cleanup, before the test's
// temporary directories are removed. Each process has one goroutine,
// started with it, that waits for it to exit and records how. The query
// methods are safe for concurrent use; they hold no state besides an
// http.Client.
package vmstack
