package natscluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/natscluster"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestAnR3StreamOutlivesANode checks the harness does what the cluster
// tests rely on: three real nodes; an R3 stream keeps taking writes while
// one node is killed with SIGKILL; the node comes back on its store and
// the stream holds every acknowledged message once.
func TestAnR3StreamOutlivesANode(t *testing.T) {
	c := natscluster.Start(t, 3)
	js, err := jetstream.New(c.Connect("harness-test"))
	if err != nil {
		t.Fatal(err)
	}
	r3, err := stream.WithReplicas(js, 3)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	setup, cancelSetup := context.WithTimeout(ctx, 2*time.Minute) // a hang bound, as in TestLedgerReadsItsOwnWritesOnR3
	defer cancelSetup()
	if err := stream.EnsureStreams(setup, r3, stream.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	pub := stream.NewPublisher(js)
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			ev := fleet.Event{ID: fmt.Sprintf("ev-%04d", i), Type: fleet.TypeToolCall, Time: time.Now().UTC(), ProjectID: "acme",
				AgentID: "a-1", Data: []byte(`{"tool":"search","status":"ok"}`)}
			streamtest.Eventually(t, 2*time.Minute, func() bool {
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				_, err := pub.Publish(pctx, ev)
				return err == nil
			}, "event "+ev.ID+" never acknowledged")
		}
	}
	publish(0, 100)
	c.Kill(c.Nodes[0])
	publish(100, 200)
	c.Restart(c.Nodes[0])
	c.WaitReady()
	st, err := js.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.State.Msgs != 200 {
		t.Fatalf("FLEET: %d replicas, %d messages; want 3 and 200", info.Config.Replicas, info.State.Msgs)
	}
}

// TestLedgerReadsItsOwnWritesOnR3 checks the budget gate on buckets of
// three replicas: a reservation it has just made is found at once by the
// release that follows. (With JetStream's direct gets, which any replica
// may answer, releases failed with "no such reservation", leaving the
// money held until the reservation expired.)
func TestLedgerReadsItsOwnWritesOnR3(t *testing.T) {
	c := natscluster.Start(t, 3)
	js, err := jetstream.New(c.Connect("ledger-test"))
	if err != nil {
		t.Fatal(err)
	}
	r3, _ := stream.WithReplicas(js, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Setup has a deadline, as serve's has: without one each JetStream
	// call gets the library's 5 s, which creating an R3 bucket on a busy
	// machine can take. This one is a hang bound.
	setup, cancelSetup := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelSetup()
	if err := stream.EnsureStreams(setup, r3, stream.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	l, err := budget.NewLedger(setup, r3, budget.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	streamtest.Eventually(t, time.Minute, func() bool { return l.Ready() == nil }, "the ledger never got ready")
	if _, err := l.CreateBudget(ctx, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily",
		LimitUSD: 1_000_000_000, Action: "stop"}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	for g := range 16 {
		go func() {
			for i := range 50 {
				d, err := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Model: "gpt-5", Estimate: 10_000, Ref: fmt.Sprintf("m-%d-%d", g, i)})
				if err == nil && !d.Allowed {
					err = fmt.Errorf("refused: %+v", d)
				}
				if err == nil {
					err = l.Release(ctx, d.Reservation)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, err := l.Budget(ctx, "project.acme.acme.daily")
	if err != nil {
		t.Fatal(err)
	}
	if st.Reserved != 0 {
		t.Fatalf("after 800 reservations released, %s is still reserved", st.Reserved)
	}
}

// BenchmarkPublishR1VsR3 measures fleet events published with JetStream
// acknowledgements, 64 in flight, into FLEET with one replica and with
// three on the same three-node cluster of nats-server processes.
func BenchmarkPublishR1VsR3(b *testing.B) {
	c := natscluster.Start(b, 3)
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("R%d", replicas), func(b *testing.B) {
			js, err := jetstream.New(c.Connect("bench"))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			_ = js.DeleteStream(ctx, stream.FleetStream)
			rj, _ := stream.WithReplicas(js, replicas)
			if err := stream.EnsureStreams(ctx, rj, stream.StreamsConfig{}); err != nil {
				b.Fatal(err)
			}
			pub := stream.NewPublisher(js)
			now := time.Now()
			sem := make(chan struct{}, 64)
			var failed atomic.Int64
			b.ResetTimer()
			for i := range b.N {
				sem <- struct{}{}
				go func() {
					defer func() { <-sem }()
					ev := fleet.Event{ID: fmt.Sprintf("ev-%d-%d", now.UnixNano(), i), Type: fleet.TypeLLMCall, Time: now, ProjectID: "acme",
						AgentID: "a-1", Data: []byte(`{"model":"gpt-5","input_tokens":1200,"output_tokens":300}`)}
					if _, err := pub.Publish(ctx, ev); err != nil {
						failed.Add(1)
					}
				}()
			}
			for range cap(sem) {
				sem <- struct{}{}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d publishes failed", n)
			}
		})
	}
}

// BenchmarkReserveR1VsR3 measures budget reservations (reserve, then
// release) by 16 goroutines on one project's budget, with the gate's
// buckets at one replica and at three on the same cluster.
func BenchmarkReserveR1VsR3(b *testing.B) {
	c := natscluster.Start(b, 3)
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("R%d", replicas), func(b *testing.B) {
			js, err := jetstream.New(c.Connect("bench"))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for _, name := range []string{budget.BudgetsBucket, budget.LedgerBucket, budget.ReservationsBucket} {
				_ = js.DeleteKeyValue(ctx, name)
			}
			_ = js.DeleteStream(ctx, stream.FleetStream)
			rj, _ := stream.WithReplicas(js, replicas)
			if err := stream.EnsureStreams(ctx, rj, stream.StreamsConfig{}); err != nil {
				b.Fatal(err)
			}
			l, err := budget.NewLedger(ctx, rj, budget.Config{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(time.Minute)
			for l.Ready() != nil {
				if time.Now().After(deadline) {
					b.Fatal("the ledger never got ready")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := l.CreateBudget(ctx, fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily",
				LimitUSD: 1_000_000_000, Action: "stop"}); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			conflicts0 := l.Stats().Conflicts
			b.SetParallelism(8) // × GOMAXPROCS goroutines
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := next.Add(1)
				for i := 0; pb.Next(); i++ {
					d, err := l.Reserve(ctx, fleet.BudgetRequest{ProjectID: "acme", Model: "gpt-5", Estimate: 10_000,
						Ref: fmt.Sprintf("m-%d-%d", g, i)})
					if err != nil || !d.Allowed {
						b.Errorf("reserve: %+v, %v", d, err)
						return
					}
					if err := l.Release(ctx, d.Reservation); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reservations/s")
			b.ReportMetric(float64(l.Stats().Conflicts-conflicts0)/float64(b.N), "conflicts/op")
		})
	}
}

// TestOneNode checks that a "cluster" of one node starts: a single
// server with JetStream, as a test of the external-NATS path may want.
func TestOneNode(t *testing.T) {
	c := natscluster.Start(t, 1)
	js, err := jetstream.New(c.Connect("one-node"))
	if err != nil {
		t.Fatal(err)
	}
	setup, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang bound
	defer cancel()
	if err := stream.EnsureStreams(setup, js, stream.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
}

// TestStreamsWaitForTheClusterToForm: a replica that starts while its
// NATS cluster is still forming (two nodes of three up, a meta leader
// elected, an R3 stream refused for want of peers) does not fail: it
// creates its buckets (the budget gate's, first in this test) and its
// streams once the third node has joined.
func TestStreamsWaitForTheClusterToForm(t *testing.T) {
	c := natscluster.Prepare(t, 3)
	c.Restart(c.Nodes[0])
	c.Restart(c.Nodes[1])
	js, err := jetstream.New(c.Connect("forming-test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Two nodes elect a meta leader, which places no R3 stream yet.
	streamtest.Eventually(t, 2*time.Minute, func() bool {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(actx)
		return err == nil
	}, "two nodes never elected a meta leader")
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Replicas: 3})
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10005 {
		t.Fatalf("an R3 stream on two nodes of three: %v; want JetStream's no suitable peers (10005)", err)
	}

	r3, err := stream.WithReplicas(js, 3)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ectx, cancel := context.WithTimeout(ctx, 2*time.Minute) // a hang bound
		defer cancel()
		if _, err := budget.NewLedger(ectx, r3, budget.Config{Logger: slog.New(slog.DiscardHandler)}); err != nil {
			done <- fmt.Errorf("the ledger's buckets: %w", err)
			return
		}
		done <- stream.EnsureStreams(ectx, r3, stream.StreamsConfig{})
	}()
	c.Restart(c.Nodes[2])
	if err := <-done; err != nil {
		t.Fatalf("setup while the cluster formed: %v", err)
	}
	natscluster.WantReplicas(t, js, 3, stream.FleetStream, stream.AuditStream,
		"KV_"+budget.BudgetsBucket, "KV_"+budget.LedgerBucket, "KV_"+budget.ReservationsBucket)
}

// TestPickPortsOutsideTheEphemeralRange: the ports the harnesses hand to
// processes are distinct, free, and never from the range the kernel gives
// port-0 listeners and outgoing connections, which could take one of them
// before its process binds it.
func TestPickPortsOutsideTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatalf("this test reads Linux's ephemeral range: %v", err)
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		t.Fatal(err)
	}
	ports, err := natscluster.PickPorts(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p >= lo && p <= hi {
			t.Errorf("port %d is in the ephemeral range %d-%d", p, lo, hi)
		}
		if seen[p] {
			t.Errorf("port %d picked twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d is not free: %v", p, err)
			continue
		}
		ln.Close()
	}
	if len(ports) != 50 {
		t.Fatalf("%d ports, want 50", len(ports))
	}
}
