package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/telemetry"
)

// BenchmarkObserveFleet is what the hub goroutine pays per folded
// llm.call for its metrics, and for its span when traces are exported.
//
//	go test ./telemetry -run '^$' -bench BenchmarkObserveFleet -benchmem -cpu 1
func BenchmarkObserveFleet(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer sink.Close()
	for _, c := range []struct {
		name string
		env  map[string]string
	}{
		{"metrics", nil},
		{"metrics+spans", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.URL + "/v1/traces"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			tel, err := telemetry.Setup(context.Background(), envOf(c.env), telemetry.Options{LogOutput: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			defer tel.Shutdown(context.Background())
			st := fleet.NewState(nil)
			t0 := fleettest.Epoch()
			ev := fleettest.LLMCall("acme", "a1", "r1", "claude-sonnet-4-5", 1200, 300, 5000, 0, t0)
			res := st.Apply(1, t0, ev)
			b.ReportAllocs()
			for b.Loop() {
				tel.ObserveFleet(ev, res, st)
			}
		})
	}
}

// BenchmarkSaveCheckpoint is the telemetry part of a hub checkpoint for a
// fleet of 10 projects × 100 agents on two models: the hub encodes it on
// its goroutine, at a frame boundary, every CheckpointEvery.
//
//	go test ./telemetry -run '^$' -bench BenchmarkSaveCheckpoint -benchmem -cpu 1
func BenchmarkSaveCheckpoint(b *testing.B) {
	tel, err := telemetry.Setup(context.Background(), envOf(nil), telemetry.Options{LogOutput: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	st := fleet.NewState(nil)
	t0 := fleettest.Epoch()
	var seq uint64
	for p := range 10 {
		for a := range 100 {
			project, agent := fmt.Sprintf("proj-%02d", p), fmt.Sprintf("agent-%03d", a)
			model := []string{"claude-sonnet-4-5", "gpt-5"}[a%2]
			seq++
			ev := fleettest.LLMCall(project, agent, "", model, 1200, 300, 5000, 0, t0)
			tel.ObserveFleet(ev, st.Apply(seq, t0, ev), st)
		}
	}
	var size int
	b.ReportAllocs()
	for b.Loop() {
		cp, err := tel.SaveCheckpoint()
		if err != nil {
			b.Fatal(err)
		}
		size = len(cp)
	}
	b.ReportMetric(float64(size), "bytes/checkpoint")
}
