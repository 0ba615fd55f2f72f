package natscluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/natscluster"
	"github.com/sagewai/observatory/stream"
)

// publisherEnv, when set, makes the test binary a worker-like publisher
// process instead of running tests (TestMain): BenchmarkWorkerProcesses
// starts several, as a fleet has several worker processes, each with its
// own NATS connection.
const publisherEnv = "NATSCLUSTER_BENCH_PUBLISHER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(publisherEnv); spec != "" {
		if err := runPublisher(spec); err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// publisherSpec is what a publisher process is told (JSON in
// publisherEnv).
type publisherSpec struct {
	URLs     string        `json:"urls"`
	Creds    string        `json:"creds"` // a credentials file
	Project  string        `json:"project"`
	Slots    int           `json:"slots"` // missions publishing at once
	Duration time.Duration `json:"duration"`
	Process  int           `json:"process"`
}

// publisherResult is what a publisher process prints on stdout.
type publisherResult struct {
	Acked  int     `json:"acked"`
	Failed int     `json:"failed"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
}

// runPublisher publishes fleet events as a worker's missions do: Slots
// goroutines, each publishing one event at a time through
// stream.Publisher (a JetStream publish with its dedupe id, waiting for
// the acknowledgement), for Duration; then it prints what was
// acknowledged and the acknowledgement latency.
func runPublisher(raw string) error {
	var spec publisherSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return err
	}
	nc, err := nats.Connect(spec.URLs, nats.UserCredentials(spec.Creds), nats.Name(fmt.Sprintf("bench-worker-%d", spec.Process)))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	pub := stream.NewPublisher(js)
	end := time.Now().Add(spec.Duration)
	var mu sync.Mutex // guards res and lat
	var res publisherResult
	var lat []float64
	var wg sync.WaitGroup
	for slot := range spec.Slots {
		wg.Go(func() {
			var mine []float64
			acked, failed := 0, 0
			for i := 0; time.Now().Before(end); i++ {
				now := time.Now()
				ev := fleet.Event{ID: fmt.Sprintf("p%d-s%d-%d-%d", spec.Process, slot, now.UnixNano(), i), Type: fleet.TypeLLMCall,
					Time: now.UTC(), ProjectID: spec.Project, AgentID: fmt.Sprintf("agent-%d-%d", spec.Process, slot),
					Data: json.RawMessage(`{"model":"gpt-5","input_tokens":1200,"output_tokens":300,"latency_ms":900,"status":"ok"}`)}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := pub.Publish(ctx, ev)
				cancel()
				if err != nil {
					failed++
					continue
				}
				acked++
				mine = append(mine, float64(time.Since(now).Microseconds())/1000)
			}
			mu.Lock()
			res.Acked += acked
			res.Failed += failed
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50ms, res.P99ms = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// BenchmarkWorkerProcesses measures fleet events sustained into FLEET by
// several worker-like processes at once (workerProcs processes of
// workerSlots missions each, every mission publishing one event at a
// time and waiting for its acknowledgement, as the worker runtime does),
// with FLEET at one replica and at three on the same three-node cluster
// of nats-server processes, in one run. Each iteration is a run of
// workerRun; events/s is what all processes had acknowledged, divided by
// the run's time.
//
//	OBSERVATORY_VM_BIN=$PWD/.cache/bin go test -run '^$' -bench WorkerProcesses -benchtime 1x -count 3 ./natscluster/
func BenchmarkWorkerProcesses(b *testing.B) {
	const (
		workerProcs = 4
		workerSlots = 8
		workerRun   = 10 * time.Second
	)
	c := natscluster.Start(b, 3)
	dir := b.TempDir()
	js, err := jetstream.New(c.Connect("bench-admin"))
	if err != nil {
		b.Fatal(err)
	}
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("R%d", replicas), func(b *testing.B) {
			ctx := context.Background()
			_ = js.DeleteStream(ctx, stream.FleetStream)
			rj, _ := stream.WithReplicas(js, replicas)
			if err := stream.EnsureStreams(ctx, rj, stream.StreamsConfig{}); err != nil {
				b.Fatal(err)
			}
			var results []publisherResult
			b.ResetTimer()
			for range b.N {
				results = append(results, runPublishers(b, c, dir, workerProcs, workerSlots, workerRun)...)
			}
			b.StopTimer()
			acked, failed, p50, p99 := 0, 0, 0.0, 0.0
			for _, r := range results {
				acked += r.Acked
				failed += r.Failed
				p50, p99 = max(p50, r.P50ms), max(p99, r.P99ms)
			}
			if failed > 0 {
				b.Errorf("%d publishes failed", failed)
			}
			// What FLEET holds is what was acknowledged: nothing lost,
			// nothing twice.
			st, err := js.Stream(ctx, stream.FleetStream)
			if err != nil {
				b.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if info.State.Msgs != uint64(acked) {
				b.Errorf("FLEET holds %d messages; the processes saw %d acknowledged", info.State.Msgs, acked)
			}
			b.ReportMetric(float64(acked)/(float64(b.N)*workerRun.Seconds()), "events/s")
			b.ReportMetric(p50, "worst-p50-ms")
			b.ReportMetric(p99, "worst-p99-ms")
		})
	}
}

// runPublishers runs procs publisher processes (the test binary again)
// for run and returns what each printed.
func runPublishers(b *testing.B, c *natscluster.Cluster, dir string, procs, slots int, run time.Duration) []publisherResult {
	b.Helper()
	out := make([]publisherResult, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for i := range procs {
		creds := filepath.Join(dir, "worker-"+strconv.Itoa(i)+".creds")
		if err := os.WriteFile(creds, c.Creds(fmt.Sprintf("bench-worker-%d", i)), 0o600); err != nil {
			b.Fatal(err)
		}
		spec, _ := json.Marshal(publisherSpec{URLs: c.URLs(), Creds: creds, Project: fmt.Sprintf("proj%d", i%3),
			Slots: slots, Duration: run, Process: i})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), publisherEnv+"="+string(spec))
		wg.Go(func() {
			raw, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				errs[i] = fmt.Errorf("publisher %d: %v\n%s", i, err, strings.TrimSpace(stderr))
				return
			}
			errs[i] = json.Unmarshal(raw, &out[i])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return out
}
