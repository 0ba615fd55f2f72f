package vmstack

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Jaeger v2, as the pipeline's trace store.
const (
	binJaeger = "jaeger"
	// JaegerModule and JaegerVersion are what the jaeger binary must be
	// built from: Jaeger v2 is the cmd/jaeger package of the module,
	// which keeps its v1 tags (v1.75.0 is Jaeger 2.12.0).
	JaegerModule  = "github.com/jaegertracing/jaeger"
	JaegerVersion = "v1.75.0"
	jaegerPackage = JaegerModule + "/cmd/jaeger"
	buildJaeger   = "make deps, or: GO=go scripts/build-jaeger.sh .cache/bin " + JaegerVersion
)

// Jaeger is a running Jaeger v2 all-in-one with in-memory storage: an
// OTLP/gRPC receiver and the query service (its HTTP APIs, /api/v3 among
// them).
type Jaeger struct {
	// URL is the query service's base URL (http://127.0.0.1:port), what
	// Grafana's Jaeger datasource points at.
	URL string
	// OTLPGRPC is the host:port of its OTLP/gRPC receiver.
	OTLPGRPC string

	proc *process
}

// jaegerConfig is the Jaeger v2 configuration (a Collector configuration
// with Jaeger's extensions): OTLP/gRPC in, spans into a memory store,
// which the query extension reads; all on loopback ports, and no metrics
// listener of its own.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%[1]d
    grpc:
      endpoint: 127.0.0.1:%[2]d
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%[3]d
      status:
        enabled: true
        path: /status

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%[4]d

processors:
  batch:
    timeout: 200ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// StartJaeger starts Jaeger v2 with in-memory storage on loopback ports,
// waits until its health check says it is ready, and stops it when t
// ends. A missing binary, or one not built from JaegerModule at
// JaegerVersion, fails t with the command that builds it.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	dir := t.TempDir()
	var j *Jaeger
	startWithPorts(t, binJaeger, 4, func(ports []int) (*process, string) {
		query, queryGRPC, health, otlp := ports[0], ports[1], ports[2], ports[3]
		config := filepath.Join(dir, "jaeger.yaml")
		if err := os.WriteFile(config, fmt.Appendf(nil, jaegerConfig, query, queryGRPC, health, otlp), 0o644); err != nil {
			t.Fatalf("vmstack: %v", err)
		}
		p := launch(t, binJaeger, bin, nil, "--config="+config)
		j = &Jaeger{URL: "http://" + loopback(query), OTLPGRPC: loopback(otlp), proc: p}
		return p, "http://" + loopback(health) + "/status"
	})
	// The health check answers once the extensions run; the query API
	// must answer too.
	deadline := time.Now().Add(startTimeout)
	for {
		if _, status, err := get(context.Background(), j.URL+"/api/v3/services"); err == nil && status == http.StatusOK {
			return j
		}
		j.proc.pause(t, deadline, "to answer /api/v3/services")
	}
}

// Log returns what Jaeger logged so far.
func (j *Jaeger) Log() string { return j.proc.Log() }

// jaegerBinary returns the path of the jaeger binary, failing t when it is
// missing or not the pinned version.
func jaegerBinary(t testing.TB) string {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		t.Fatalf("vmstack: %v", err)
	}
	p := filepath.Join(dir, binJaeger)
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("vmstack: %s is not at %s (%s=%q): run %s", binJaeger, p, EnvBinDir, os.Getenv(EnvBinDir), buildJaeger)
	}
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		t.Fatalf("vmstack: %s: no Go build information: %v: run %s", p, err, buildJaeger)
	}
	got := ""
	for _, d := range bi.Deps {
		if d.Path == JaegerModule {
			got = d.Version
		}
	}
	if bi.Main.Path == JaegerModule {
		got = bi.Main.Version
	}
	if bi.Path != jaegerPackage || got != JaegerVersion {
		t.Fatalf("vmstack: %s is %s of %s %q, want %s of %s %s: run %s", p, bi.Path, JaegerModule, got, jaegerPackage, JaegerModule, JaegerVersion, buildJaeger)
	}
	return p
}

// Span is a span as the trace store returns it.
type Span struct {
	TraceID, SpanID, ParentSpanID string // hex
	Name                          string
	Kind                          int // OTLP SpanKind: 1 internal, 2 server, 3 client
	Start, End                    time.Time
	// Attrs are the span's attributes, Resource its resource's, each
	// value as its text (numbers in decimal, booleans true/false).
	Attrs, Resource map[string]string
}

// Trace returns the spans of the trace with the hex id traceID (GET
// /api/v3/traces/{id}), and no error and no span when Jaeger has no such
// trace (yet).
func (j *Jaeger) Trace(ctx context.Context, traceID string) ([]Span, error) {
	b, status, err := get(ctx, j.URL+"/api/v3/traces/"+url.PathEscape(traceID))
	if err != nil {
		return nil, fmt.Errorf("jaeger trace %s: %w", traceID, err)
	}
	if status == http.StatusNotFound {
		return nil, nil
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("jaeger trace %s: status %d: %.300s", traceID, status, b)
	}
	return decodeSpans(b)
}

// FindTraces returns the spans of the traces of service (and operation,
// when not empty) that started in [from, to] (GET /api/v3/traces), at most
// limit traces.
func (j *Jaeger) FindTraces(ctx context.Context, service, operation string, from, to time.Time, limit int) ([]Span, error) {
	q := url.Values{
		"query.service_name":   {service},
		"query.start_time_min": {from.UTC().Format(time.RFC3339Nano)},
		"query.start_time_max": {to.UTC().Format(time.RFC3339Nano)},
		"query.num_traces":     {strconv.Itoa(limit)},
	}
	if operation != "" {
		q.Set("query.operation_name", operation)
	}
	b, status, err := get(ctx, j.URL+"/api/v3/traces?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("jaeger find traces: %w", err)
	}
	if status == http.StatusNotFound {
		return nil, nil // none found
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("jaeger find traces: status %d: %.300s", status, b)
	}
	return decodeSpans(b)
}

// otlpValue is an OTLP AnyValue in the OTLP/JSON encoding.
type otlpValue struct {
	String *string          `json:"stringValue"`
	Bool   *bool            `json:"boolValue"`
	Int    *json.RawMessage `json:"intValue"` // a string or a number
	Double *float64         `json:"doubleValue"`
}

func (v otlpValue) text() string {
	switch {
	case v.String != nil:
		return *v.String
	case v.Bool != nil:
		return strconv.FormatBool(*v.Bool)
	case v.Int != nil:
		var s string
		if json.Unmarshal(*v.Int, &s) == nil {
			return s
		}
		return string(*v.Int)
	case v.Double != nil:
		return strconv.FormatFloat(*v.Double, 'g', -1, 64)
	}
	return ""
}

type otlpKeyValue struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

func attrMap(kvs []otlpKeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.text()
	}
	return m
}

// decodeSpans decodes an /api/v3 answer: {"result": OTLP TracesData}.
func decodeSpans(b []byte) ([]Span, error) {
	var doc struct {
		Result struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []otlpKeyValue `json:"attributes"`
				} `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						TraceID      string         `json:"traceId"`
						SpanID       string         `json:"spanId"`
						ParentSpanID string         `json:"parentSpanId"`
						Name         string         `json:"name"`
						Kind         int            `json:"kind"`
						Start        string         `json:"startTimeUnixNano"`
						End          string         `json:"endTimeUnixNano"`
						Attributes   []otlpKeyValue `json:"attributes"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		} `json:"result"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("jaeger: %w: %.300s", err, b)
	}
	var out []Span
	for _, rs := range doc.Result.ResourceSpans {
		res := attrMap(rs.Resource.Attributes)
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out = append(out, Span{TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID, Name: s.Name, Kind: s.Kind,
					Start: unixNano(s.Start), End: unixNano(s.End), Attrs: attrMap(s.Attributes), Resource: res})
			}
		}
	}
	return out, nil
}

func unixNano(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Operations returns the span names (operations) Jaeger has of service.
func (j *Jaeger) Operations(ctx context.Context, service string) ([]string, error) {
	b, status, err := get(ctx, j.URL+"/api/v3/operations?"+url.Values{"service": {service}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("jaeger operations: %w", err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("jaeger operations: status %d: %.300s", status, b)
	}
	var out struct {
		Operations []struct {
			Name string `json:"name"`
		} `json:"operations"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("jaeger operations: %w", err)
	}
	names := make([]string, 0, len(out.Operations))
	for _, o := range out.Operations {
		names = append(names, o.Name)
	}
	return names, nil
}
