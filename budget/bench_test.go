package budget_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
)

// benchJS starts an embedded NATS (fsync on every write, or JetStream's
// default of every 2 minutes) with the streams, for benchmarks.
func benchJS(b *testing.B, syncAlways bool) (jetstream.JetStream, *stream.Publisher) {
	b.Helper()
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: b.TempDir(), Listen: "127.0.0.1:0", SyncAlways: syncAlways})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ns.Shutdown)
	nc, err := stream.Connect("", ns, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if err := stream.EnsureStreams(context.Background(), js, stream.StreamsConfig{}); err != nil {
		b.Fatal(err)
	}
	return js, stream.NewPublisher(js)
}

func syncName(on bool) string {
	if on {
		return "sync=always"
	}
	return "sync=default"
}

// BenchmarkReserve measures reservations per second: one Reserve (read,
// compare-and-swap hold, reservation record, index by mission) and its
// Release (read the record, compare-and-swap, record the release), on one
// budget key that every goroutine fights over, or on many keys (a budget
// per project, goroutines spread over 16 projects), with JetStream
// fsyncing every write or not.
//
//	go test ./budget -run '^$' -bench BenchmarkReserve -benchtime 3s
func BenchmarkReserve(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		for _, bc := range []struct {
			name     string
			keys     int
			parallel int
		}{
			{"one-key/1-goroutine", 1, 1},
			{"one-key/16-goroutines", 1, 16},
			{"many-keys/16-goroutines", 16, 16},
		} {
			b.Run(syncName(syncAlways)+"/"+bc.name, func(b *testing.B) {
				js, _ := benchJS(b, syncAlways)
				l := startLedger(b, js, budget.Config{Logger: slog.New(slog.DiscardHandler)})
				for k := range bc.keys {
					mustCreate(b, l, fleet.BudgetLimit{Scope: "project", ProjectID: fmt.Sprintf("p%02d", k), Period: "daily",
						LimitUSD: 1_000_000_000, Action: "stop"})
				}
				var next atomic.Int64
				var conflicts0 = l.Stats().Conflicts
				b.SetParallelism(bc.parallel) // × GOMAXPROCS goroutines
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					g := next.Add(1)
					project := fmt.Sprintf("p%02d", g%int64(bc.keys))
					ctx := context.Background()
					for i := 0; pb.Next(); i++ {
						// As mission creation asks: with the mission as the reservation's ref.
						d, err := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: project, Model: "gpt-5", Estimate: 10_000,
							Ref: fmt.Sprintf("m-%d-%d", g, i)})
						if err != nil || !d.Allowed || d.Reservation == "" {
							b.Fatalf("reserve: %+v, %v", d, err)
						}
						if err := l.Release(ctx, d.Reservation); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reservations/s")
				b.ReportMetric(float64(l.Stats().Conflicts-conflicts0)/float64(b.N), "conflicts/op")
			})
		}
	}
}

// BenchmarkFollowCharges measures how fast the ledger charges llm.call
// events to a budget: publish b.N calls, wait until all are charged.
func BenchmarkFollowCharges(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		b.Run(syncName(syncAlways), func(b *testing.B) {
			js, pub := benchJS(b, syncAlways)
			l := startLedger(b, js, budget.Config{Logger: slog.New(slog.DiscardHandler)})
			mustCreate(b, l, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1_000_000_000, Action: "stop"})
			mustCreate(b, l, fleet.BudgetLimit{Scope: "global", Period: "monthly", LimitUSD: 1_000_000_000, Action: "warn"})
			evs := make([]fleet.Event, b.N)
			now := time.Now()
			for i := range evs {
				evs[i] = fleettest.LLMCall("acme", "a-1", fmt.Sprintf("r-%d", i%50), "gpt-5", 1_000, 100, 0, 0, now)
			}
			b.ResetTimer()
			var last uint64
			for _, ev := range evs {
				seq, err := pub.Publish(context.Background(), ev)
				if err != nil {
					b.Fatal(err)
				}
				last = seq
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := l.WaitSeq(ctx, last); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

// BenchmarkPublishFleet is what fsyncing every write costs the event path
// (FLEET), which the embedded server's SyncAlways also slows.
func BenchmarkPublishFleet(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		b.Run(syncName(syncAlways), func(b *testing.B) {
			_, pub := benchJS(b, syncAlways)
			ev := fleettest.LLMCall("acme", "a-1", "r-1", "gpt-5", 1_000, 100, 0, 0, time.Now())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ev.ID = fmt.Sprintf("ev-%d", i)
				if _, err := pub.Publish(context.Background(), ev); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
