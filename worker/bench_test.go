package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/worker"
)

// benchEnv is NATS with the streams and the MISSIONS queue, without a hub:
// the benchmarks measure the dispatch path, not the fold.
func benchEnv(b *testing.B) (*streamtest.Env, *stream.MissionQueue) {
	b.Helper()
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: b.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ns.Shutdown)
	env := &streamtest.Env{Server: ns}
	env.Connect(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := stream.OpenMissionQueue(ctx, env.JS, 0)
	if err != nil {
		b.Fatal(err)
	}
	return env, q
}

// startBenchWorkers runs n single-slot workers of project with agent and
// waits until each has a pull request pending, so that claims measure the
// dispatch, not the workers' start.
func startBenchWorkers(b *testing.B, env *streamtest.Env, project string, n int, agent worker.Agent) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		w := worker.New(env.JS, env.Publisher, worker.Config{ID: fmt.Sprintf("w-%03d", i), Projects: []string{project},
			Agent: agent, Logger: quiet})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Run(ctx)
		}()
	}
	b.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	streamtest.Eventually(b, 60*time.Second, func() bool {
		c, err := env.JS.Consumer(context.Background(), stream.MissionsStream, worker.ConsumerName(project))
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumWaiting >= n
	}, "the workers are not all waiting")
}

// feedLoop enqueues missions of project from 8 goroutines while b.Loop
// runs, with at most cap(window) missions queued or running at once. It
// returns the number of missions enqueued once they all are.
func feedLoop(b *testing.B, q *stream.MissionQueue, project string, window chan struct{}) int {
	ctx := context.Background()
	data, _ := json.Marshal(fleet.MissionQueued{Title: "bench", Priority: "normal", Model: "claude-haiku-4-5"})
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				now := time.Now().UTC()
				ev := fleet.Event{ID: fleet.NewID(now), Type: fleet.TypeMissionQueued, Time: now, ProjectID: project,
					MissionID: fmt.Sprintf("m-%d-%d", now.UnixNano(), i), Data: data}
				if _, err := q.Enqueue(ctx, ev); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	n := 0
	for b.Loop() {
		window <- struct{}{}
		jobs <- n
		n++
	}
	close(jobs)
	wg.Wait()
	return n
}

// BenchmarkClaims measures the dispatcher: N single-slot workers wait on
// one project's consumer and the agent returns at once. A claim is the
// agent's start; its latency is from the mission's enqueue to that start.
// With load=full, missions are enqueued from 8 goroutines with at most N
// queued or running (every worker busy, none starved); with load=one, one
// mission at a time, so the latency is the bare push to an idle fleet.
// Reported: claims/s (the whole runtime path: claim, mission.claimed,
// agent.run.started, the run's and the mission's end, the ack) and claim
// latency percentiles in ms.
func BenchmarkClaims(b *testing.B) {
	for _, n := range []int{24, 100, 500} {
		for _, load := range []string{"full", "one"} {
			b.Run(fmt.Sprintf("workers=%d/load=%s", n, load), func(b *testing.B) {
				env, q := benchEnv(b)
				window := make(chan struct{}, n)
				if load == "one" {
					window = make(chan struct{}, 1)
				}
				var mu sync.Mutex
				lat := make([]time.Duration, 0, 1<<16)
				var claimed atomic.Int64
				var last atomic.Int64
				agent := func(ctx context.Context, m worker.Mission, emit func(fleet.Event) error) error {
					d := time.Since(m.QueuedAt)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
					claimed.Add(1)
					last.Store(time.Now().UnixNano())
					<-window
					return nil
				}
				startBenchWorkers(b, env, "bench", n, agent)
				start := time.Now()
				sent := feedLoop(b, q, "bench", window)
				streamtest.Eventually(b, 60*time.Second, func() bool { return claimed.Load() >= int64(sent) }, "not every mission was claimed")
				elapsed := time.Duration(last.Load() - start.UnixNano())
				mu.Lock()
				defer mu.Unlock()
				reportLatency(b, lat, float64(sent)/elapsed.Seconds(), "claims/s")
			})
		}
	}
}

// BenchmarkMissions measures missions end to end: 24 workers of capacity 2
// run the synthetic agent (2 to 5 steps, each an llm.call, a tool.call and
// a mission.progress) at a ten-thousandth of real time, so the figure is
// the runtime's cost, not the agent's waits. A mission ends when its
// worker acknowledges it. Reported: missions/s and enqueue-to-claim
// latency.
func BenchmarkMissions(b *testing.B) {
	const n = 24
	env, q := benchEnv(b)
	window := make(chan struct{}, 2*n)
	synthetic := worker.Synthetic(worker.SyntheticConfig{TimeScale: 0.0001, FailRate: -1, Seed: 1})
	var mu sync.Mutex
	lat := make([]time.Duration, 0, 1<<16)
	var done, last atomic.Int64
	agent := func(ctx context.Context, m worker.Mission, emit func(fleet.Event) error) error {
		d := time.Since(m.QueuedAt)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		err := synthetic(ctx, m, emit)
		done.Add(1)
		last.Store(time.Now().UnixNano())
		<-window
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		w := worker.New(env.JS, env.Publisher, worker.Config{ID: fmt.Sprintf("w-%02d", i), Projects: []string{"bench"},
			Capacity: 2, Agent: agent, Logger: quiet})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Run(ctx)
		}()
	}
	b.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	streamtest.Eventually(b, 60*time.Second, func() bool {
		c, err := env.JS.Consumer(context.Background(), stream.MissionsStream, worker.ConsumerName("bench"))
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumWaiting >= 2*n
	}, "the workers are not all waiting")
	start := time.Now()
	sent := feedLoop(b, q, "bench", window)
	streamtest.Eventually(b, 60*time.Second, func() bool { return done.Load() >= int64(sent) }, "not every mission ended")
	elapsed := time.Duration(last.Load() - start.UnixNano())
	mu.Lock()
	defer mu.Unlock()
	reportLatency(b, lat, float64(sent)/elapsed.Seconds(), "missions/s")
}

// reportLatency reports rate and the p50, p95 and p99 of lat in ms.
func reportLatency(b *testing.B, lat []time.Duration, rate float64, unit string) {
	b.ReportMetric(rate, unit)
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	for _, p := range []struct {
		q    float64
		name string
	}{{0.50, "p50-ms"}, {0.95, "p95-ms"}, {0.99, "p99-ms"}} {
		i := min(int(p.q*float64(len(lat))), len(lat)-1)
		b.ReportMetric(float64(lat[i].Microseconds())/1000, p.name)
	}
}
