package vmstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MetricsConfig configures StartMetrics. Zero values mean the defaults.
type MetricsConfig struct {
	// Job is the scrape job's name (default "observatory").
	Job string
	// Targets are the host:port addresses whose GET /metrics the job
	// scrapes.
	Targets []string
	// BearerToken, when set, is sent with the job's scrapes
	// (Authorization: Bearer): an observatory's /metrics wants an admin
	// or a metrics token.
	BearerToken string
	// ScrapeInterval is the scrape_interval of every job (default 2s,
	// short for tests).
	ScrapeInterval time.Duration
	// Jobs are further scrape jobs, each with its own targets, so that
	// queries can tell their series apart by the job label.
	Jobs []ScrapeJob
}

// ScrapeJob is one more scrape job of MetricsConfig.
type ScrapeJob struct {
	Name    string
	Targets []string
	// BearerToken is MetricsConfig.BearerToken for this job.
	BearerToken string
	// Interval is the job's scrape_interval and scrape_timeout (default
	// MetricsConfig.ScrapeInterval), longer for a target whose /metrics
	// may take seconds.
	Interval time.Duration
}

// DefaultScrapeInterval is the scrape interval of StartMetrics.
const DefaultScrapeInterval = 2 * time.Second

// LatencyOffset is VictoriaMetrics' -search.latencyOffset here: instant
// queries see samples up to this old (the default, 30 s, is too slow for
// tests). vmalert's -rule.evalDelay matches it.
const LatencyOffset = time.Second

// Metrics is a running single-node VictoriaMetrics.
type Metrics struct {
	// URL is its base URL, http://127.0.0.1:port.
	URL string
	// Job and ScrapeInterval are those of the scrape configuration.
	Job            string
	ScrapeInterval time.Duration

	proc *process
}

// StartMetrics starts VictoriaMetrics with an empty data directory and a
// scrape configuration for cfg.Targets, and stops it when t ends.
func StartMetrics(t testing.TB, cfg MetricsConfig) *Metrics {
	t.Helper()
	if cfg.Job == "" {
		cfg.Job = "observatory"
	}
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = DefaultScrapeInterval
	}
	bin := binary(t, binMetrics)
	dir := t.TempDir()
	scrape := filepath.Join(dir, "scrape.yml")
	// 0600: the configuration may hold a bearer token.
	if err := os.WriteFile(scrape, []byte(scrapeConfig(cfg)), 0o600); err != nil {
		t.Fatalf("vmstack: %v", err)
	}
	p, base := startProcess(t, binMetrics, bin,
		"-httpListenAddr=127.0.0.1:0",
		"-storageDataPath="+filepath.Join(dir, "data"),
		"-promscrape.config="+scrape,
		"-promscrape.config.strictParse",
		"-search.latencyOffset="+LatencyOffset.String(),
	)
	return &Metrics{URL: base, Job: cfg.Job, ScrapeInterval: cfg.ScrapeInterval, proc: p}
}

// scrapeConfig is the Prometheus scrape configuration of cfg (YAML; JSON
// strings are valid YAML scalars).
func scrapeConfig(cfg MetricsConfig) string {
	var b strings.Builder
	b.WriteString("scrape_configs:\n")
	for _, j := range append([]ScrapeJob{{Name: cfg.Job, Targets: cfg.Targets, BearerToken: cfg.BearerToken}}, cfg.Jobs...) {
		if j.Interval <= 0 {
			j.Interval = cfg.ScrapeInterval
		}
		fmt.Fprintf(&b, "  - job_name: %q\n    scrape_interval: %s\n    scrape_timeout: %s\n", j.Name, j.Interval, j.Interval)
		if j.BearerToken != "" {
			fmt.Fprintf(&b, "    authorization:\n      type: Bearer\n      credentials: %q\n", j.BearerToken)
		}
		b.WriteString("    static_configs:\n      - targets:\n")
		for _, tg := range j.Targets {
			fmt.Fprintf(&b, "          - %q\n", tg)
		}
	}
	return b.String()
}

// Log returns what VictoriaMetrics logged so far.
func (m *Metrics) Log() string { return m.proc.Log() }

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Time   time.Time
	Value  float64
}

// Series is one element of a range vector: raw samples, oldest first.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Point is one sample of a Series.
type Point struct {
	Time  time.Time
	Value float64
}

// Query runs the MetricsQL expression expr as an instant query at the
// current time (GET /api/v1/query). A scalar result is one Sample with no
// labels; an empty vector is an empty slice, not an error.
func (m *Metrics) Query(ctx context.Context, expr string) ([]Sample, error) {
	res, err := m.query(ctx, expr)
	if err != nil {
		return nil, err
	}
	switch res.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(res.Result, &vec); err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		out := make([]Sample, 0, len(vec))
		for _, s := range vec {
			p, err := parsePoint(s.Value)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", expr, err)
			}
			out = append(out, Sample{Labels: s.Metric, Time: p.Time, Value: p.Value})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(res.Result, &v); err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		p, err := parsePoint(v)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		return []Sample{{Labels: map[string]string{}, Time: p.Time, Value: p.Value}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %q, want vector or scalar", expr, res.ResultType)
	}
}

// QueryMatrix runs expr, a range selector such as `x[30s]`, as an instant
// query and returns the raw samples it selects, with the times at which
// they were scraped.
func (m *Metrics) QueryMatrix(ctx context.Context, expr string) ([]Series, error) {
	res, err := m.query(ctx, expr)
	if err != nil {
		return nil, err
	}
	if res.ResultType != "matrix" {
		return nil, fmt.Errorf("query %q: result type %q, want matrix", expr, res.ResultType)
	}
	var mat []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	if err := json.Unmarshal(res.Result, &mat); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	out := make([]Series, 0, len(mat))
	for _, s := range mat {
		ser := Series{Labels: s.Metric}
		for _, v := range s.Values {
			p, err := parsePoint(v)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", expr, err)
			}
			ser.Points = append(ser.Points, p)
		}
		out = append(out, ser)
	}
	return out, nil
}

type queryResult struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

func (m *Metrics) query(ctx context.Context, expr string) (queryResult, error) {
	var body struct {
		Status    string      `json:"status"`
		ErrorType string      `json:"errorType"`
		Error     string      `json:"error"`
		Data      queryResult `json:"data"`
	}
	form := url.Values{"query": {expr}}
	b, status, err := post(ctx, m.URL+"/api/v1/query", form)
	if err != nil {
		return queryResult{}, fmt.Errorf("query %q: %w", expr, err)
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return queryResult{}, fmt.Errorf("query %q: status %d: %w: %.300s", expr, status, err, b)
	}
	if status != http.StatusOK || body.Status != "success" {
		return queryResult{}, fmt.Errorf("query %q: status %d: %s: %s", expr, status, body.ErrorType, body.Error)
	}
	return body.Data, nil
}

// parsePoint reads [unix seconds (a number), value (a string)].
func parsePoint(v [2]any) (Point, error) {
	ts, ok := v[0].(float64)
	if !ok {
		return Point{}, fmt.Errorf("sample time %v is not a number", v[0])
	}
	s, ok := v[1].(string)
	if !ok {
		return Point{}, fmt.Errorf("sample value %v is not a string", v[1])
	}
	val, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Point{}, fmt.Errorf("sample value: %w", err)
	}
	sec, frac := math.Modf(ts)
	return Point{Time: time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)), Value: val}, nil
}

// post sends form to u and returns the body and status.
func post(ctx context.Context, u string, form url.Values) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(req)
}

// get fetches u and returns the body and status.
func get(ctx context.Context, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	return do(req)
}

func do(req *http.Request) ([]byte, int, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return b, resp.StatusCode, err
}
