package vmstack

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/natscluster"
)

// Names and places of the Collector build.
const (
	binCollector = "otelcol-observatory"
	// CollectorManifest is the builder manifest, relative to the
	// repository root; scripts/build-otelcol.sh builds binCollector from
	// it.
	CollectorManifest = "dashboards/otel-collector/builder.yaml"
	// CollectorConfigFile is the shipped Collector configuration,
	// relative to the repository root.
	CollectorConfigFile = "dashboards/otel-collector/config.yaml"
	// CollectorIngestFile is the Collector configuration of
	// docs/ingest.md: agents' traces forwarded to Observatory's OTLP
	// ingest with a token.
	CollectorIngestFile = "dashboards/otel-collector/ingest.yaml"
	// collectorStampSuffix names the file beside the binary that
	// scripts/build-otelcol.sh writes: the manifest's SHA-256 on its first
	// line.
	collectorStampSuffix = ".manifest.sha256"
	// buildCollector is how to build it, for failure messages.
	buildCollector = "make deps, or: GO=go scripts/go-tool.sh .cache/bin builder go.opentelemetry.io/collector/cmd/builder@v0.161.0 && GO=go scripts/build-otelcol.sh .cache/bin"
)

// CollectorConfig configures StartCollector. With the shipped
// configuration (File empty) both endpoints are required.
type CollectorConfig struct {
	// LogsEndpoint is VictoriaLogs' OTLP/HTTP logs URL
	// (Logs.OTLPLogsURL), the config's VLOGS_OTLP_ENDPOINT.
	LogsEndpoint string
	// TracesEndpoint is the trace store's OTLP/gRPC host:port
	// (Jaeger.OTLPGRPC), the config's TRACES_OTLP_ENDPOINT.
	TracesEndpoint string
	// File is another configuration of the repository to run instead of
	// CollectorConfigFile (CollectorIngestFile), relative to its root;
	// Env sets the variables it reads. Both take the receiver, health
	// and metrics addresses from the same variables as the shipped one.
	File string
	Env  []string
}

// Collector is a running OpenTelemetry Collector: the binary built from
// CollectorManifest, running the shipped CollectorConfigFile itself (its
// endpoints set through the environment variables the file reads).
type Collector struct {
	// OTLPURL is the base URL of its OTLP/HTTP receiver
	// (http://127.0.0.1:port), the value for OTEL_EXPORTER_OTLP_ENDPOINT;
	// OTLP/HTTP requests go to OTLPURL + "/v1/traces" and "/v1/logs".
	OTLPURL string
	// MetricsURL is where the Collector serves its own metrics
	// (Prometheus text).
	MetricsURL string

	proc *process
}

// StartCollector starts the Collector on loopback ports with the shipped
// configuration, waits until its health check answers, and stops it when t
// ends. A missing binary, or one not built from the manifest in the
// repository as it is now, fails t with the command that builds it.
func StartCollector(t testing.TB, cfg CollectorConfig) *Collector {
	t.Helper()
	if cfg.File == "" && (cfg.LogsEndpoint == "" || cfg.TracesEndpoint == "") {
		t.Fatal("vmstack: StartCollector needs LogsEndpoint and TracesEndpoint")
	}
	bin := collectorBinary(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("vmstack: %v", err)
	}
	config := filepath.Join(root, cmp.Or(cfg.File, CollectorConfigFile))
	var c *Collector
	startWithPorts(t, binCollector, 4, func(ports []int) (*process, string) {
		grpc, httpPort, health, metrics := ports[0], ports[1], ports[2], ports[3]
		env := []string{
			"VLOGS_OTLP_ENDPOINT=" + cfg.LogsEndpoint,
			"TRACES_OTLP_ENDPOINT=" + cfg.TracesEndpoint,
			"OTELCOL_OTLP_GRPC_ENDPOINT=" + loopback(grpc),
			"OTELCOL_OTLP_HTTP_ENDPOINT=" + loopback(httpPort),
			"OTELCOL_HEALTH_ENDPOINT=" + loopback(health),
			"OTELCOL_METRICS_HOST=127.0.0.1",
			"OTELCOL_METRICS_PORT=" + strconv.Itoa(metrics),
		}
		env = append(env, cfg.Env...)
		p := launch(t, binCollector, bin, env, "--config="+config)
		c = &Collector{OTLPURL: "http://" + loopback(httpPort), MetricsURL: "http://" + loopback(metrics) + "/metrics", proc: p}
		return p, "http://" + loopback(health) + "/"
	})
	return c
}

// Log returns what the Collector logged so far.
func (c *Collector) Log() string { return c.proc.Log() }

// Metric returns the sum of the values of the Collector's own metric
// series whose name is name (any labels), and how many series it has.
func (c *Collector) Metric(ctx context.Context, name string) (float64, int, error) {
	b, status, err := get(ctx, c.MetricsURL)
	if err != nil {
		return 0, 0, fmt.Errorf("collector metrics: %w", err)
	}
	if status != http.StatusOK {
		return 0, 0, fmt.Errorf("collector metrics: status %d: %.300s", status, b)
	}
	var sum float64
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		metric, _, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("collector metrics: %q: %w", line, err)
		}
		sum += v
		n++
	}
	return sum, n, sc.Err()
}

// collectorBinary returns the path of the Collector binary, failing t
// when it is missing or was built from another manifest than the one in
// the repository: the stamp scripts/build-otelcol.sh writes beside it must
// name the manifest's SHA-256, and the binary's Go build information must
// hold every module the manifest lists, at its version.
func collectorBinary(t testing.TB) string {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		t.Fatalf("vmstack: %v", err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("vmstack: %v", err)
	}
	p := filepath.Join(dir, binCollector)
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("vmstack: %s is not at %s (%s=%q): run %s", binCollector, p, EnvBinDir, os.Getenv(EnvBinDir), buildCollector)
	}
	manifest, err := os.ReadFile(filepath.Join(root, CollectorManifest))
	if err != nil {
		t.Fatalf("vmstack: %v", err)
	}
	if err := checkCollector(p, manifest); err != nil {
		t.Fatalf("vmstack: %v: run %s", err, buildCollector)
	}
	return p
}

// gomodRE matches a module line of a builder manifest.
var gomodRE = regexp.MustCompile(`(?m)^\s*-?\s*gomod:\s*"?(\S+)\s+(v[^\s"]+)"?\s*$`)

// distModuleRE matches the main module the builder generates.
var distModuleRE = regexp.MustCompile(`(?m)^\s+module:\s*"?([^\s"]+)"?\s*$`)

// checkCollector checks the Collector binary at p against the builder
// manifest: its stamp and its build information.
func checkCollector(p string, manifest []byte) error {
	sum := sha256.Sum256(manifest)
	want := hex.EncodeToString(sum[:])
	stamp, err := os.ReadFile(p + collectorStampSuffix)
	if err != nil {
		return fmt.Errorf("%s has no build stamp (%w): it was not built by scripts/build-otelcol.sh", p, err)
	}
	if got, _, _ := strings.Cut(string(stamp), "\n"); got != want {
		return fmt.Errorf("%s was built from a manifest with SHA-256 %s; %s is %s now", p, got, CollectorManifest, want)
	}
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		return fmt.Errorf("%s: no Go build information: %w", p, err)
	}
	if m := distModuleRE.FindSubmatch(manifest); m == nil || bi.Main.Path != string(m[1]) {
		return fmt.Errorf("%s is the program of module %s, not of the manifest's dist module", p, bi.Main.Path)
	}
	deps := map[string]string{}
	for _, d := range bi.Deps {
		deps[d.Path] = d.Version
		if d.Replace != nil {
			deps[d.Path] = d.Replace.Version
		}
	}
	mods := gomodRE.FindAllSubmatch(manifest, -1)
	if len(mods) == 0 {
		return fmt.Errorf("%s lists no gomod", CollectorManifest)
	}
	for _, m := range mods {
		if got := deps[string(m[1])]; got != string(m[2]) {
			return fmt.Errorf("%s has %s at %q, the manifest %s", p, m[1], got, m[2])
		}
	}
	return nil
}

// startWithPorts starts a process on n loopback ports picked free just
// before (the Collector and Jaeger cannot report a port they chose
// themselves): start launches it on the ports and returns it with the URL
// that answers 200 once it is ready. Should another process take one of
// the ports in between, the process exits saying so, and it is started
// again on new ones (three tries).
func startWithPorts(t testing.TB, name string, n int, start func(ports []int) (*process, string)) {
	t.Helper()
	for try := 1; ; try++ {
		ports, err := freePorts(n)
		if err != nil {
			t.Fatalf("vmstack: %s: %v", name, err)
		}
		p, ready := start(ports)
		err = awaitReady(p, ready)
		if err == nil {
			return
		}
		if errors.Is(err, errPortTaken) && try < 3 {
			continue
		}
		t.Fatalf("vmstack: %s: %v\n%s", name, err, p.tail())
	}
}

// errPortTaken reports a process that exited because a port was taken.
var errPortTaken = errors.New("a port was taken")

// awaitReady polls ready until it answers 200. A process that exits
// meanwhile is reaped (its stop at the end of the test then does
// nothing) and reported, with errPortTaken when its log says a port was
// in use.
func awaitReady(p *process, ready string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, status, err := get(ctx, ready)
		cancel()
		if err == nil && status == http.StatusOK {
			return nil
		}
		select {
		case <-p.exited:
			p.stopOnce.Do(func() {})
			if strings.Contains(p.Log(), "address already in use") {
				return fmt.Errorf("exited: %v: %w", p.waitErr, errPortTaken)
			}
			return fmt.Errorf("exited while starting: %v", p.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready at %s within %s", ready, startTimeout)
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago,
// outside the ephemeral range (natscluster.PickPorts).
func freePorts(n int) ([]int, error) { return natscluster.PickPorts(n) }

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
