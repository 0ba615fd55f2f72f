package telemetry

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Signals exported over OTLP.
const (
	signalTraces = "traces"
	signalLogs   = "logs"
)

// exportConfig is where one signal goes, from the standard OTEL_* variables.
type exportConfig struct {
	// URL is the full OTLP/HTTP URL; "" means the signal is not exported.
	URL     string
	Headers map[string]string
	Timeout time.Duration
	Batch   batchConfig
}

// batchConfig shapes a signal's export queue.
type batchConfig struct {
	QueueSize     int
	BatchSize     int
	Delay         time.Duration
	ExportTimeout time.Duration
}

// Defaults of the OpenTelemetry specification.
var (
	defaultSpanBatch = batchConfig{QueueSize: 2048, BatchSize: 512, Delay: 5 * time.Second, ExportTimeout: 30 * time.Second}
	defaultLogBatch  = batchConfig{QueueSize: 2048, BatchSize: 512, Delay: time.Second, ExportTimeout: 30 * time.Second}
)

const (
	defaultOTLPTimeout  = 10 * time.Second
	defaultOTLPEndpoint = "http://localhost:4318"
)

// readExportConfig reads the variables of one signal:
//
//   - OTEL_SDK_DISABLED=true, or OTEL_<SIGNAL>_EXPORTER=none: not exported;
//   - OTEL_<SIGNAL>_EXPORTER: "otlp" or unset; anything else is an error;
//   - OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT, used as it is, else
//     OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/<signal>; with neither set the
//     signal is exported only if OTEL_<SIGNAL>_EXPORTER=otlp says so, to the
//     specification's default http://localhost:4318;
//   - OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL: http/protobuf only;
//   - OTEL_EXPORTER_OTLP_[<SIGNAL>_]HEADERS and _TIMEOUT (milliseconds);
//   - the batch variables OTEL_BSP_* (traces) or OTEL_BLRP_* (logs).
func readExportConfig(getenv func(string) string, signal string) (exportConfig, error) {
	env := func(k string) string { return strings.TrimSpace(getenv(k)) }
	up := strings.ToUpper(signal)
	var cfg exportConfig
	if strings.EqualFold(env("OTEL_SDK_DISABLED"), "true") {
		return cfg, nil
	}
	explicit := false
	switch v := strings.ToLower(env("OTEL_" + up + "_EXPORTER")); v {
	case "":
	case "otlp":
		explicit = true
	case "none":
		return cfg, nil
	default:
		return cfg, fmt.Errorf("OTEL_%s_EXPORTER=%q: only otlp and none are supported", up, v)
	}
	proto := env("OTEL_EXPORTER_OTLP_" + up + "_PROTOCOL")
	if proto == "" {
		proto = env("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto != "" && proto != "http/protobuf" {
		return cfg, fmt.Errorf("OTLP protocol %q: only http/protobuf is supported", proto)
	}
	u := env("OTEL_EXPORTER_OTLP_" + up + "_ENDPOINT")
	if u == "" {
		base := env("OTEL_EXPORTER_OTLP_ENDPOINT")
		if base == "" {
			if !explicit {
				return cfg, nil
			}
			base = defaultOTLPEndpoint
		}
		u = strings.TrimRight(base, "/") + "/v1/" + signal
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return cfg, fmt.Errorf("OTLP %s endpoint %q: want an http:// or https:// URL", signal, u)
	}
	cfg.URL = u
	cfg.Headers = map[string]string{}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_" + up + "_HEADERS"} {
		if err := parseHeaders(env(k), cfg.Headers); err != nil {
			return cfg, fmt.Errorf("%s: %w", k, err)
		}
	}
	cfg.Timeout = defaultOTLPTimeout
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_" + up + "_TIMEOUT"} {
		if err := envMillis(env, k, &cfg.Timeout); err != nil {
			return cfg, err
		}
	}
	prefix, b := "OTEL_BSP_", defaultSpanBatch
	if signal == signalLogs {
		prefix, b = "OTEL_BLRP_", defaultLogBatch
	}
	for _, v := range []struct {
		key string
		dst *int
	}{{"MAX_QUEUE_SIZE", &b.QueueSize}, {"MAX_EXPORT_BATCH_SIZE", &b.BatchSize}} {
		if s := env(prefix + v.key); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return cfg, fmt.Errorf("%s%s=%q: want a positive integer", prefix, v.key, s)
			}
			*v.dst = n
		}
	}
	if err := envMillis(env, prefix+"SCHEDULE_DELAY", &b.Delay); err != nil {
		return cfg, err
	}
	if err := envMillis(env, prefix+"EXPORT_TIMEOUT", &b.ExportTimeout); err != nil {
		return cfg, err
	}
	b.BatchSize = min(b.BatchSize, b.QueueSize)
	cfg.Batch = b
	return cfg, nil
}

func envMillis(env func(string) string, key string, dst *time.Duration) error {
	s := env(key)
	if s == "" {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return fmt.Errorf("%s=%q: want a positive number of milliseconds", key, s)
	}
	*dst = time.Duration(n) * time.Millisecond
	return nil
}

// parseHeaders reads the W3C-baggage-like list k1=v1,k2=v2 with
// percent-encoded values into dst.
func parseHeaders(s string, dst map[string]string) error {
	if s == "" {
		return nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return fmt.Errorf("header %q: want key=value", kv)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("header %q: %w", k, err)
		}
		dst[k] = val
	}
	return nil
}

// readResourceAttrs reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func readResourceAttrs(getenv func(string) string) (map[string]string, error) {
	out := map[string]string{}
	if err := parseHeaders(strings.TrimSpace(getenv("OTEL_RESOURCE_ATTRIBUTES")), out); err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	if s := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); s != "" {
		out["service.name"] = s
	}
	return out, nil
}
