package vmstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// LogsConfig configures StartLogs. Zero values mean the defaults.
type LogsConfig struct {
	// Addr is the host:port to listen on (default 127.0.0.1:0, a free
	// port). A fixed one lets a test start VictoriaLogs again where a
	// client already sends, after stopping it.
	Addr string
}

// Logs is a running VictoriaLogs.
type Logs struct {
	// URL is its base URL, http://127.0.0.1:port.
	URL string

	proc *process
}

// StartLogs starts VictoriaLogs with an empty data directory and stops it
// when t ends.
func StartLogs(t testing.TB, cfg LogsConfig) *Logs {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	bin := binary(t, binLogs)
	dir := t.TempDir()
	p, base := startProcess(t, binLogs, bin,
		"-httpListenAddr="+cfg.Addr,
		"-storageDataPath="+filepath.Join(dir, "data"),
	)
	return &Logs{URL: base, proc: p}
}

// Addr is the host:port VictoriaLogs listens on.
func (l *Logs) Addr() string { return strings.TrimPrefix(l.URL, "http://") }

// Stop stops VictoriaLogs now (SIGTERM), as an outage of the log store
// would; the end of the test then does nothing more.
func (l *Logs) Stop(t testing.TB) {
	t.Helper()
	l.proc.stop(t)
}

// OTLPLogsURL is where OTLP/HTTP log records go (protobuf only), the value
// for OTEL_EXPORTER_OTLP_LOGS_ENDPOINT.
func (l *Logs) OTLPLogsURL() string { return l.URL + "/insert/opentelemetry/v1/logs" }

// Log returns what VictoriaLogs logged so far.
func (l *Logs) Log() string { return l.proc.Log() }

// Query runs the LogsQL query q (POST /select/logsql/query) and returns
// the entries it selects, at most limit of them when limit > 0, each as
// its fields. Stats pipes return one entry per result row.
func (l *Logs) Query(ctx context.Context, q string, limit int) ([]map[string]string, error) {
	form := url.Values{"query": {q}}
	if limit > 0 {
		form.Set("limit", fmt.Sprint(limit))
	}
	b, status, err := post(ctx, l.URL+"/select/logsql/query", form)
	if err != nil {
		return nil, fmt.Errorf("logsql %q: %w", q, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("logsql %q: status %d: %.500s", q, status, b)
	}
	var out []map[string]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e map[string]string
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("logsql %q: entry %.200s: %w", q, line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("logsql %q: %w", q, err)
	}
	return out, nil
}
