package web_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/telemetry"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// discardWriter is a ResponseWriter that keeps nothing but its headers,
// reused across iterations so the benchmark measures the server.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkRequest serves GET /api/v1/fleet?scope=acme (token check, tenant
// check, snapshot, JSON answer, access log line) through the echo handler:
// without telemetry; with the telemetry cmd wires (HTTP metrics, a server
// span, trace ids in the log line) but no OTLP; and with spans and log
// records exported over OTLP/HTTP to an in-process receiver.
//
//	go test ./web -run '^$' -bench BenchmarkRequest -benchmem -cpu 1 -count 5
func BenchmarkRequest(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer sink.Close()
	for _, c := range []struct {
		name string
		env  map[string]string // nil: no telemetry at all
	}{
		{"uninstrumented", nil},
		{"instrumented", map[string]string{}},
		{"instrumented+otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": sink.URL}},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := web.Config{
				AdminPassword: adminPassword,
				SigningKey:    bytes.Repeat([]byte("k"), 32),
				Logger:        slog.New(slog.NewJSONHandler(io.Discard, nil)),
				BcryptCost:    bcrypt.MinCost,
			}
			if c.env != nil {
				tel, err := telemetry.Setup(context.Background(), func(k string) string { return c.env[k] },
					telemetry.Options{LogOutput: io.Discard})
				if err != nil {
					b.Fatal(err)
				}
				defer tel.Shutdown(context.Background())
				cfg.Logger, cfg.MeterProvider, cfg.TracerProvider = tel.Logger(), tel.MeterProvider(), tel.TracerProvider()
				cfg.Metrics = tel.MetricsHandler()
			}
			srv, err := web.New(cfg, newTestHub(), &testAuditor{})
			if err != nil {
				b.Fatal(err)
			}
			tok, _, err := srv.IssueToken(auth.RoleAdmin, "", 0)
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			req := httptest.NewRequest(http.MethodGet, "/api/v1/fleet?scope=acme", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}
