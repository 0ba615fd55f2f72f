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
	"testing"
)

// Logs is a running VictoriaLogs.
type Logs struct {
	// URL is its base URL, http://127.0.0.1:port.
	URL string

	proc *process
}

// StartLogs starts VictoriaLogs with an empty data directory and stops it
// when t ends.
func StartLogs(t testing.TB) *Logs {
	t.Helper()
	bin := binary(t, binLogs)
	dir := t.TempDir()
	p, base := startProcess(t, binLogs, bin,
		"-httpListenAddr=127.0.0.1:0",
		"-storageDataPath="+filepath.Join(dir, "data"),
	)
	return &Logs{URL: base, proc: p}
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
