package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/ingest"
	"github.com/sagewai/observatory/ingest/ingesttest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// exports makes n protobuf exports of per agents each (4 spans an agent:
// its invocation, two chat calls and a tool call), every trace distinct.
func exports(n, per, base int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		var trs []ingesttest.Trace
		for j := 0; j < per; j++ {
			k := uint64(base + i*per + j)
			trs = append(trs, agent(k, "bench", fmt.Sprintf("agent-%d", k%50),
				ingesttest.Usage{Input: 1200 + int64(k%100), Output: 300, CacheRead: 400}, ingesttest.Usage{Input: 1600, Output: 250}))
		}
		out[i] = ingesttest.Protobuf(ingesttest.Request(trs...))
	}
	return out
}

// BenchmarkIngest measures GenAI spans ingested into FLEET: decode, map
// and publish with every acknowledgement awaited, the NATS server in the
// same process (run with -cpu 1 for one core, server included). An
// export holds 128 agent invocations, 512 spans: an SDK batch.
//
//	go test -run '^$' -bench Ingest -cpu 1 ./ingest/
func BenchmarkIngest(b *testing.B) {
	n := streamtest.Start(b, stream.HubConfig{Pricing: fleet.DefaultPricing()})
	n.StopHub(b) // the fold is measured on its own (stream's benchmarks)
	in, err := ingest.New(ingest.Config{Publisher: n.Publisher})
	if err != nil {
		b.Fatal(err)
	}
	const per = 128
	bodies := exports(64, per, 0)
	ctx := context.Background()
	i, made := 0, len(bodies)*per
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if i == len(bodies) { // new traces, so that none is a duplicate
			b.StopTimer()
			bodies = exports(len(bodies), per, made)
			made += len(bodies) * per
			b.StartTimer()
			i = 0
		}
		if _, _, res, err := in.Export(ctx, acme, "application/x-protobuf", "", bytes.NewReader(bodies[i])); err != nil || res.Accepted != 4*per {
			b.Fatalf("%+v %v", res, err)
		}
		i++
	}
	b.ReportMetric(float64(4*per*b.N)/b.Elapsed().Seconds(), "spans/s")
}

// frameWatch is a hub subscriber that notes when each frame's seq arrives.
type frameWatch struct {
	mu   sync.Mutex
	seq  uint64
	wait map[uint64]chan struct{}
}

func (w *frameWatch) Send(frame []byte) bool {
	var h struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(frame, &h); err == nil {
		w.mu.Lock()
		w.seq = max(w.seq, h.Seq)
		for s, ch := range w.wait {
			if s <= w.seq {
				close(ch)
				delete(w.wait, s)
			}
		}
		w.mu.Unlock()
	}
	return true
}
func (w *frameWatch) Reset(frame []byte)     { w.Send(frame) }
func (w *frameWatch) Close(code, msg string) {}

func (w *frameWatch) until(seq uint64) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if seq <= w.seq {
		close(ch)
		return ch
	}
	w.wait[seq] = ch
	return ch
}

// BenchmarkExportToDiff measures how long an agent's spans take from the
// export to the HUD: from the POST's body to the diff frame of the
// project's scope that holds them, at serve's default 100 ms tick (a
// diff goes out once a tick, so the tick bounds the wait). It reports the
// median and the 99th percentile.
//
//	go test -run '^$' -bench ExportToDiff -benchtime 200x -cpu 1 ./ingest/
func BenchmarkExportToDiff(b *testing.B) {
	n := streamtest.Start(b, stream.HubConfig{Pricing: fleet.DefaultPricing(), Tick: 100 * time.Millisecond})
	in, err := ingest.New(ingest.Config{Publisher: n.Publisher})
	if err != nil {
		b.Fatal(err)
	}
	w := &frameWatch{wait: map[uint64]chan struct{}{}}
	ctx := context.Background()
	if err := n.Hub.Subscribe(ctx, w, protocol.Subscribe{Op: "subscribe", Scope: "acme"}); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	k := uint64(0)
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		// Each export starts at a random phase of the hub's tick: right
		// after a diff it would always wait a whole tick.
		<-time.After(time.Duration(rng.Int64N(int64(100 * time.Millisecond))))
		k++
		body := ingesttest.Protobuf(ingesttest.Request(agent(k, "bench", "agent", ingesttest.Usage{Input: 1000, Output: 100})))
		start := time.Now()
		_, _, res, err := in.Export(ctx, acme, "application/x-protobuf", "", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		<-w.until(res.Seq)
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
