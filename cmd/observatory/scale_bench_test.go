package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/natscluster"
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
			scaleSeed(b, js, projects)
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
	st := &scaleStats{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range *scaleSubscribersFlag {
		conn, br, err := scaleDial(procs[i%len(procs)].addr, token, projects[i%len(projects)])
		if err != nil {
			b.Fatalf("subscriber %d: %v", i, err)
		}
		probe := i < scaleProbes
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			if err := scaleRead(br, probe, st); err != nil && ctx.Err() == nil {
				st.disconnects.Add(1)
			}
		}()
	}
	// Every subscriber has had its snapshot before the clock starts.
	deadline := time.Now().Add(time.Minute)
	for st.snapshots.Load() < scaleProbes {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d probes got a snapshot", st.snapshots.Load(), scaleProbes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st.reset()
	pids := make([]int, len(procs))
	cpu0 := 0.0
	for i, p := range procs {
		pids[i] = p.cmd.Process.Pid
		cpu0 += scaleCPUSeconds(pids[i])
	}
	b.ResetTimer()
	t0 := time.Now()
	published := scalePublish(b, js, projects)
	elapsed := time.Since(t0).Seconds()
	b.StopTimer()
	cpu1 := 0.0
	for _, pid := range pids {
		cpu1 += scaleCPUSeconds(pid)
	}
	lat := st.latencies()
	res := scaleResult{framesPerSec: float64(st.frames.Load()) / elapsed, eventsPerSec: float64(published) / elapsed,
		serverCores: (cpu1 - cpu0) / elapsed, disconnects: st.disconnects.Load()}
	if len(lat) == 0 {
		b.Fatal("the probes timed no ticker entry")
	}
	res.p50, res.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	return res
}

func scaleLogin(b *testing.B, base string) string {
	b.Helper()
	resp, err := http.Post(base+"/api/v1/auth/login", "application/json", strings.NewReader(`{"username":"admin","password":"admin"}`))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		b.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	return out.Token
}

func scaleCreateProject(b *testing.B, base, token, id string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/projects", strings.NewReader(`{"id":"`+id+`","name":"fan-out bench"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusConflict {
		b.Fatalf("create project %s: %s", id, resp.Status)
	}
}

// scaleSeed creates the agents, so that snapshots have their real size.
func scaleSeed(b *testing.B, js jetstream.JetStream, projects []string) {
	b.Helper()
	now := time.Now().UTC()
	for _, p := range projects {
		for a := range scaleAgents {
			ev := fleet.Event{ID: fmt.Sprintf("seed-%s-%d-%d", p, a, now.UnixNano()), Type: fleet.TypeAgentCreated, Time: now, ProjectID: p,
				AgentID: fmt.Sprintf("%s-agent-%03d", p, a),
				Data:    json.RawMessage(`{"name":"bench agent","role":"worker","model":"claude-sonnet-4-5","tools":["search","code"],"skills":["triage"]}`)}
			raw, _ := json.Marshal(ev)
			if _, err := js.PublishAsync(fleet.Subject(ev), raw); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("the seed events were never acknowledged")
	}
}

// scalePublish publishes llm.call events at -fanout.rate for scaleDuration,
// spread over the projects and agents, each id carrying its publish time
// (b-<unix nanos>-<n>).
func scalePublish(b *testing.B, js jetstream.JetStream, projects []string) int {
	b.Helper()
	const batch = 10
	tick := time.NewTicker(time.Second * batch / time.Duration(*scaleRateFlag))
	defer tick.Stop()
	end := time.Now().Add(scaleDuration)
	n := 0
	var buf bytes.Buffer
	for time.Now().Before(end) {
		<-tick.C
		for range batch {
			now := time.Now()
			p := projects[n%len(projects)]
			buf.Reset()
			fmt.Fprintf(&buf, `{"id":"b-%d-%d","type":"llm.call","time":%q,"project_id":%q,"agent_id":"%s-agent-%03d","run_id":"r-%d","data":{"provider":"anthropic","model":"claude-sonnet-4-5","input_tokens":1200,"output_tokens":300,"latency_ms":900,"status":"ok"}}`,
				now.UnixNano(), n, now.UTC().Format(time.RFC3339Nano), p, p, (n/len(projects))%scaleAgents, n%500)
			if _, err := js.PublishAsync("fleet."+p+".llm.call", slices.Clone(buf.Bytes())); err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("the events were never acknowledged")
	}
	return n
}

// scaleDial opens a WebSocket by hand (the upgrade, then one masked
// subscribe frame), as tools/fanoutbench does, so that the load
// generator stays cheap.
func scaleDial(host, token, scope string) (net.Conn, *bufio.Reader, error) {
	conn, err := net.Dial("tcp", host)
	if err != nil {
		return nil, nil, err
	}
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: observatory.v1\r\n"+
		"Authorization: Bearer %s\r\n\r\n", host, base64.StdEncoding.EncodeToString(key), token)
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	payload := []byte(`{"op":"subscribe","scope":"` + scope + `"}`)
	frame := []byte{0x81, 0x80 | byte(len(payload)), 1, 2, 3, 4}
	for i, c := range payload {
		frame = append(frame, c^frame[2+i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, br, nil
}

type scaleStats struct {
	frames, snapshots, disconnects atomic.Int64
	// mu guards lat.
	mu  sync.Mutex
	lat []float64
}

func (s *scaleStats) reset() {
	s.frames.Store(0)
	s.mu.Lock()
	s.lat = s.lat[:0]
	s.mu.Unlock()
}

func (s *scaleStats) latencies() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.lat)
	slices.Sort(out)
	return out
}

// scaleRead reads server frames until the connection ends; a probe
// decodes each and times its ticker entries, the others discard them.
func scaleRead(br *bufio.Reader, probe bool, st *scaleStats) error {
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return err
		}
		op, n := hdr[0]&0x0f, uint64(hdr[1]&0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[:2]); err != nil {
				return err
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(br, hdr[:8]); err != nil {
				return err
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if op == 0x8 {
			return errors.New("the server closed the connection")
		}
		recv := time.Now()
		if !probe {
			if _, err := br.Discard(int(n)); err != nil {
				return err
			}
		} else {
			buf = slices.Grow(buf[:0], int(n))[:n]
			if _, err := io.ReadFull(br, buf); err != nil {
				return err
			}
			scaleObserve(buf, recv, st)
		}
		if op == 0x1 || op == 0x2 {
			st.frames.Add(1)
		}
	}
}

func scaleObserve(frame []byte, recv time.Time, st *scaleStats) {
	var f struct {
		Op     string `json:"op"`
		Ticker []struct {
			ID string `json:"id"`
		} `json:"ticker"`
	}
	if json.Unmarshal(frame, &f) != nil {
		return
	}
	if f.Op == "snapshot" {
		st.snapshots.Add(1)
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, e := range f.Ticker {
		parts := strings.Split(e.ID, "-")
		if len(parts) != 3 || parts[0] != "b" {
			continue
		}
		if ns, err := strconv.ParseInt(parts[1], 10, 64); err == nil {
			st.lat = append(st.lat, float64(recv.UnixNano()-ns)/1e6)
		}
	}
}

// scaleCPUSeconds reads utime+stime of pid from /proc.
func scaleCPUSeconds(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	stt, _ := strconv.ParseFloat(f[12], 64)
	return (ut + stt) / 100 // USER_HZ
}
