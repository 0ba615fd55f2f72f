package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sagewai/observatory/ingest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/telemetry"
	"github.com/sagewai/observatory/telemetry/otlptest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// envOf returns a getenv reading m.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// lines decodes the JSON log lines.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// stack is the whole pipeline wired the way cmd wires it: telemetry, a
// real NATS and hub folding FLEET, and the web server over loopback.
type stack struct {
	tel  *telemetry.Telemetry
	nats *streamtest.Env
	srv  *web.Server
	url  string
	logs *syncBuffer
	recv *otlptest.Receiver // nil when OTLP is off
}

// signingKey signs the test tokens.
var signingKey = bytes.Repeat([]byte("k"), 32)

const adminPassword = "correct horse"

func newStack(t *testing.T, otlp bool) *stack {
	t.Helper()
	st := &stack{logs: &syncBuffer{}}
	env := map[string]string{}
	if otlp {
		st.recv = otlptest.NewReceiver(t)
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = st.recv.URL
		env["OTEL_BSP_SCHEDULE_DELAY"] = "50"
		env["OTEL_BLRP_SCHEDULE_DELAY"] = "50"
	}
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, envOf(env), telemetry.Options{LogOutput: st.logs, LogLevel: slog.LevelInfo})
	if err != nil {
		t.Fatal(err)
	}
	st.tel = tel
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("telemetry shutdown: %v", err)
		}
	})
	st.nats = streamtest.Start(t, stream.HubConfig{Tick: 20 * time.Millisecond, Logger: tel.Logger(), Observe: tel.ObserveFleet})
	hub := st.nats.Hub
	if err := tel.WatchFleet(telemetry.FleetSource{View: hub.View, Live: func() bool { return hub.Ready() == nil }}); err != nil {
		t.Fatal(err)
	}
	if err := hub.RegisterMetrics(tel.MeterProvider()); err != nil {
		t.Fatal(err)
	}
	// OTLP ingest as serve wires it: its counters are on the same
	// exposition.
	traces, err := ingest.New(ingest.Config{Publisher: st.nats.Publisher, MeterProvider: tel.MeterProvider(), Logger: tel.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := web.New(web.Config{
		AdminPassword:  adminPassword,
		SigningKey:     signingKey,
		Logger:         tel.Logger(),
		BcryptCost:     4,
		Traces:         traces,
		Metrics:        tel.MetricsHandler(),
		MeterProvider:  tel.MeterProvider(),
		TracerProvider: tel.TracerProvider(),
	}, hub, st.nats.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	st.srv = srv
	ts := httptest.NewServer(srv.Handler())
	st.url = ts.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("web shutdown: %v", err)
		}
		ts.Close()
	})
	return st
}

type response struct {
	status int
	body   []byte
}

func (st *stack) do(t *testing.T, method, path, body string, header http.Header) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, st.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, body: b}
}

func (st *stack) token(t *testing.T, role, project string) string {
	t.Helper()
	tok, _, err := st.srv.IssueToken(role, project, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// scrape reads /metrics over HTTP, as an admin (DESIGN §11.2), and parses
// the exposition.
func (st *stack) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, st.url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+st.token(t, auth.RoleAdmin, ""))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", res.StatusCode)
	}
	return parseExposition(t, res.Body)
}

// scrapeHandler reads the exposition straight from a metrics handler.
func scrapeHandler(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics handler: %d %s", rec.Code, rec.Body)
	}
	return parseExposition(t, rec.Body)
}

func parseExposition(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return fams
}

// labels returns the labels of m as a map.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// sum adds the values of the series of family name whose labels include
// want: counters and gauges by value, histograms by sample count.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	for _, m := range fams[name].GetMetric() {
		ls := labels(m)
		ok := true
		for k, v := range want {
			if ls[k] != v {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// micros converts a dollar float as exposed back to micro-dollars.
func micros(usd float64) int64 { return int64(math.Round(usd * 1e6)) }
