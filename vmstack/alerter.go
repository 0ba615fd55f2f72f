package vmstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// AlerterConfig configures StartAlerter. Zero values mean the defaults.
type AlerterConfig struct {
	// Name tells two vmalert processes apart in logs and failures
	// (default "vmalert").
	Name string
	// RuleFiles are the rule files (paths on disk) to evaluate.
	RuleFiles []string
	// Datasource is the base URL the rules are evaluated against: a
	// VictoriaMetrics for rules on metrics, a VictoriaLogs for groups of
	// type vlogs. vmalert takes one.
	Datasource string
	// RemoteWrite is the VictoriaMetrics that receives the alerts' state
	// (ALERTS and ALERTS_FOR_STATE series); none when empty.
	RemoteWrite string
	// EvaluationInterval is the interval of groups that set none (default
	// 2s); a group's own interval wins.
	EvaluationInterval time.Duration
}

// DefaultEvaluationInterval is the evaluation interval of StartAlerter
// for groups that set none.
const DefaultEvaluationInterval = 2 * time.Second

// Alerter is a running vmalert.
type Alerter struct {
	// Name is the one given in AlerterConfig.
	Name string
	// URL is its base URL, http://127.0.0.1:port.
	URL string

	proc *process
}

// StartAlerter starts vmalert with notifications blackholed and stops it
// when t ends. The rule files are checked first (-dryRun), so that a bad
// file fails with vmalert's own message.
func StartAlerter(t testing.TB, cfg AlerterConfig) *Alerter {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = binAlert
	}
	if cfg.EvaluationInterval <= 0 {
		cfg.EvaluationInterval = DefaultEvaluationInterval
	}
	if len(cfg.RuleFiles) == 0 || cfg.Datasource == "" {
		t.Fatalf("vmstack: %s: rule files and a datasource are required", cfg.Name)
	}
	bin := binary(t, binAlert)
	var args []string
	for _, f := range cfg.RuleFiles {
		args = append(args, "-rule="+f)
	}
	if out, err := runDry(bin, args); err != nil {
		t.Fatalf("vmstack: %s: vmalert -dryRun %v: %v\n%s", cfg.Name, cfg.RuleFiles, err, out)
	}
	args = append(args,
		"-httpListenAddr=127.0.0.1:0",
		"-datasource.url="+cfg.Datasource,
		"-notifier.blackhole",
		"-evaluationInterval="+cfg.EvaluationInterval.String(),
		"-rule.evalDelay="+LatencyOffset.String(),
	)
	if cfg.RemoteWrite != "" {
		args = append(args, "-remoteWrite.url="+cfg.RemoteWrite, "-remoteWrite.flushInterval=1s")
	}
	p, base := startProcess(t, cfg.Name, bin, args...)
	return &Alerter{Name: cfg.Name, URL: base, proc: p}
}

func runDry(bin string, ruleArgs []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return execOutput(ctx, bin, append([]string{"-dryRun"}, ruleArgs...)...)
}

// Log returns what vmalert logged so far.
func (a *Alerter) Log() string { return a.proc.Log() }

// Alert is one active alert as vmalert reports it (GET /api/v1/alerts).
type Alert struct {
	Name     string            `json:"name"`
	State    string            `json:"state"` // pending or firing
	Value    string            `json:"value"`
	Labels   map[string]string `json:"labels"`
	ActiveAt time.Time         `json:"activeAt"`
	GroupID  string            `json:"group_id"`
	RuleID   string            `json:"rule_id"`
}

// Alerts returns the active (pending and firing) alerts.
func (a *Alerter) Alerts(ctx context.Context) ([]Alert, error) {
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []Alert `json:"alerts"`
		} `json:"data"`
	}
	if err := a.getJSON(ctx, "/api/v1/alerts", &body); err != nil {
		return nil, err
	}
	return body.Data.Alerts, nil
}

// Group is one rule group as vmalert reports it (GET /api/v1/rules).
type Group struct {
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	File     string  `json:"file"`
	Interval float64 `json:"interval"` // seconds
	Rules    []Rule  `json:"rules"`
}

// Rule is one rule of a Group and its last evaluation.
type Rule struct {
	Name           string    `json:"name"`
	Type           string    `json:"type"`  // alerting or recording
	State          string    `json:"state"` // inactive, pending, firing (alerting rules)
	Query          string    `json:"query"`
	Health         string    `json:"health"` // ok, err, nodata
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
	LastSamples    int       `json:"lastSamples"`
}

// Groups returns the rule groups with their rules' last evaluations.
func (a *Alerter) Groups(ctx context.Context) ([]Group, error) {
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Groups []Group `json:"groups"`
		} `json:"data"`
	}
	if err := a.getJSON(ctx, "/api/v1/rules", &body); err != nil {
		return nil, err
	}
	return body.Data.Groups, nil
}

func (a *Alerter) getJSON(ctx context.Context, path string, v any) error {
	b, status, err := get(ctx, a.URL+path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", a.Name, path, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s %s: status %d: %.300s", a.Name, path, status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w", a.Name, path, err)
	}
	return nil
}

// WriteRuleFiles copies the named files of fsys into a new temporary
// directory, keeping their paths, and returns the paths on disk (for
// rule files embedded in a package, such as dashboards.FS).
func WriteRuleFiles(t testing.TB, fsys fs.FS, names ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			t.Fatalf("vmstack: %v", err)
		}
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("vmstack: %v", err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatalf("vmstack: %v", err)
		}
		out = append(out, p)
	}
	return out
}
