package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/natscluster"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/wsload"
)

// The fan-out workload of BenchmarkFanoutReplicas, the same for one
// replica and for two. The defaults keep one run near a minute on a
// two-core machine that also runs the three NATS nodes and the load;
// -fanout.subs and -fanout.rate (after -args) load it further.
var (
	scaleSubscribersFlag = flag.Int("fanout.subs", 2000, "BenchmarkFanoutReplicas: WebSocket subscribers")
	scaleRateFlag        = flag.Int("fanout.rate", 500, "BenchmarkFanoutReplicas: llm.call events published per second")
)

const (
	scaleProbes   = 50 // subscribers that decode frames and time ticker entries
	scaleProjects = 10
	scaleAgents   = 50 // per project
	scaleDuration = 15 * time.Second
)

// BenchmarkFanoutReplicas measures /ws fan-out with one serve replica and
// with two on the same three-node NATS cluster, in one run, with the same
// workload (the approach of tools/fanoutbench): -fanout.subs
// WebSocket subscribers spread over scaleProjects project scopes and, for
// two replicas, split evenly between them; llm.call events published to
// FLEET at -fanout.rate per second for scaleDuration. Most subscribers count
// and discard frames; probes decode theirs and time each ticker entry
// against the publish time in its event id. Each replica runs with
// GOMAXPROCS=1, as a replica on a machine of its own would have its own
// cores; here they share two cores with the NATS nodes and the load, so
// the CPU each used is reported beside what it delivered.
//
//	OBSERVATORY_VM_BIN=$PWD/.cache/bin go test -run '^$' -bench FanoutReplicas -benchtime 1x ./cmd/observatory/ \
//	  -args -fanout.subs 5000 -fanout.rate 1000
func BenchmarkFanoutReplicas(b *testing.B) {
	scaleSubscribers := *scaleSubscribersFlag
	bin := observatorytest.Build(b)
	c := natscluster.Start(b, 3)
	creds, seed, keys := serveFiles(b, c)
	js, err := jetstream.New(c.Connect("fanout-publisher"))
	if err != nil {
		b.Fatal(err)
	}
	projects := make([]string, scaleProjects)
	for i := range projects {
		projects[i] = fmt.Sprintf("bench%02d", i)
	}
	for _, replicas := range []int{1, 2} {
		b.Run(fmt.Sprintf("serve=%d", replicas), func(b *testing.B) {
			var procs []*scaleReplica
			for _, port := range natscluster.FreePorts(b, replicas) {
				// One after the other: the first makes the shared key ring.
				procs = append(procs, startScaleReplica(b, bin, "127.0.0.1:"+strconv.Itoa(port),
					"--data-dir", b.TempDir(), "--log-level", "warn",
					"--nats-url", c.URLs(), "--nats-creds", creds, "--nats-account-signing-key", seed,
					"--nats-replicas", "3", "--signing-key-file", keys,
					"--ws-max-conns", strconv.Itoa(scaleSubscribers+100),
					"--ws-max-conns-per-credential", strconv.Itoa(scaleSubscribers+100)))
			}
			token := scaleLogin(b, procs[0].base())
			for _, p := range projects {
				scaleCreateProject(b, procs[0].base(), token, p)
			}
			seedCtx, cancelSeed := context.WithTimeout(context.Background(), time.Minute)
			err := wsload.Seed(seedCtx, js, projects, scaleAgents)
			cancelSeed()
			if err != nil {
				b.Fatal(err)
			}
			for range b.N {
				res := scaleRun(b, js, procs, token, projects)
				b.ReportMetric(res.framesPerSec, "frames/s")
				b.ReportMetric(res.p50, "p50-ms")
				b.ReportMetric(res.p99, "p99-ms")
				b.ReportMetric(res.serverCores, "serve-cores")
				b.ReportMetric(res.eventsPerSec, "events/s")
				if res.disconnects > 0 {
					b.Errorf("%d subscribers were disconnected", res.disconnects)
				}
			}
		})
	}
}

// scaleReplica is a serve process of the benchmark, with GOMAXPROCS=1.
type scaleReplica struct {
	addr   string
	cmd    *exec.Cmd
	stderr *observatorytest.SyncBuffer
	exited chan struct{}
}

func (r *scaleReplica) base() string { return "http://" + r.addr }

// startScaleReplica runs `observatory serve --addr addr args...` until b
// ends (then SIGINT) and waits until it is ready.
func startScaleReplica(b *testing.B, bin, addr string, args ...string) *scaleReplica {
	b.Helper()
	r := &scaleReplica{addr: addr, stderr: &observatorytest.SyncBuffer{}, exited: make(chan struct{})}
	r.cmd = exec.Command(bin, append([]string{"serve", "--addr", addr}, args...)...)
	r.cmd.Env = append(childEnv(), "GOMAXPROCS=1")
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, r.stderr
	if err := r.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.exited)
	}()
	b.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-r.exited:
		case <-time.After(time.Minute):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	})
	deadline := time.Now().Add(2 * time.Minute) // a hang bound on a loaded machine
	for {
		select {
		case <-r.exited:
			b.Fatalf("serve exited at start:\n%s", observatorytest.Tail(r.stderr.String(), 30))
		default:
		}
		if resp, err := http.Get(r.base() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("serve on %s never became ready:\n%s", addr, observatorytest.Tail(r.stderr.String(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type scaleResult struct {
	framesPerSec, eventsPerSec, p50, p99, serverCores float64
	disconnects                                       int64
}

// scaleRun connects the subscribers (subscriber i to replica i mod
// len(procs)), publishes for scaleDuration and returns what was delivered.
func scaleRun(b *testing.B, js jetstream.JetStream, procs []*scaleReplica, token string, projects []string) scaleResult {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &wsload.Stats{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range *scaleSubscribersFlag {
		d := wsload.Dialer{Host: procs[i%len(procs)].addr, Token: token, Protocol: protocol.Subprotocol}
		if err := wsload.Subscribe(ctx, &wg, d, projects[i%len(projects)], i < scaleProbes, st); err != nil {
			b.Fatalf("subscriber %d: %v", i, err)
		}
	}
	// Every subscriber has had its snapshot before the clock starts.
	deadline := time.Now().Add(time.Minute)
	for st.Snapshots.Load() < scaleProbes {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d probes got a snapshot", st.Snapshots.Load(), scaleProbes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st.Reset()
	pids := make([]int, len(procs))
	cpu0 := 0.0
	for i, p := range procs {
		pids[i] = p.cmd.Process.Pid
		cpu0 += wsload.CPUSeconds(pids[i])
	}
	b.ResetTimer()
	t0 := time.Now()
	pctx, pcancel := context.WithTimeout(ctx, scaleDuration+time.Minute) // the acks' hang bound
	published, err := wsload.Publish(pctx, js, projects, scaleAgents, *scaleRateFlag, scaleDuration)
	pcancel()
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(t0).Seconds()
	b.StopTimer()
	cpu1 := 0.0
	for _, pid := range pids {
		cpu1 += wsload.CPUSeconds(pid)
	}
	lat := st.Latencies()
	res := scaleResult{framesPerSec: float64(st.Frames.Load()) / elapsed, eventsPerSec: float64(published) / elapsed,
		serverCores: (cpu1 - cpu0) / elapsed, disconnects: st.Disconnects.Load()}
	if len(lat) == 0 {
		b.Fatal("the probes timed no ticker entry")
	}
	res.p50, res.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	return res
}

func scaleLogin(b *testing.B, base string) string {
	b.Helper()
	token, err := (&live.Client{Base: base, HTTP: http.DefaultClient}).Login(context.Background(), "admin", "admin")
	if err != nil {
		b.Fatal(err)
	}
	return token
}

func scaleCreateProject(b *testing.B, base, token, id string) {
	b.Helper()
	c := live.Client{Base: base, HTTP: http.DefaultClient}
	code, err := c.Do(context.Background(), token, http.MethodPost, "/api/v1/projects", map[string]string{"id": id, "name": "fan-out bench"}, 0, nil)
	if err != nil && code != http.StatusConflict {
		b.Fatalf("create project %s: %v", id, err)
	}
}
