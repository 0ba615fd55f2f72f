package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/lbtest"
	"github.com/sagewai/observatory/natscluster"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// lbPublicHost is the balancer's name as the test's clients write it in
// URLs (and so in Host and Origin); lbClient resolves it to the
// balancer's loopback address. It is no loopback name, so serve answers
// it only because it is the host of its --public-url.
const lbPublicHost = "observatory.test"

// lbClientAddr is where the test's clients connect from: a loopback
// address other than the balancer's (127.0.0.1), so that serve can tell
// the client from the balancer.
var lbClientAddr = net.IPv4(127, 0, 0, 2)

// lbClient is an HTTP client of the balancer as a browser on another
// machine would be: its connections leave from lbClientAddr, and it
// resolves lbPublicHost to 127.0.0.1. (No Timeout: a WebSocket dial
// refuses a client with one; requests carry contexts instead.)
func lbClient() *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: lbClientAddr}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, port, err := net.SplitHostPort(addr); err == nil && host == lbPublicHost {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// lbDo sends a request through client with a bearer token (when not
// empty), the extra headers and, when host is not empty, that Host; it
// returns the status and the body.
func lbDo(t *testing.T, client *http.Client, method, url, token, host string, header http.Header, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// lbReplica is a real `observatory serve` process behind the balancer,
// on a fixed address, so that it comes back where nginx expects it after
// a test kills it.
type lbReplica struct {
	name, addr string
	bin        string
	args       []string
	env        []string // added to childEnv()

	// mu guards the running process's fields: the test starts and kills
	// it, its cleanup stops it.
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // the process's exit, set before exited is closed
	stderr *syncBuffer
}

// startReplica runs `observatory serve --addr addr args...` until the
// test ends (then SIGINT, and a clean exit is expected).
func startReplica(t *testing.T, bin, name, addr string, args ...string) *lbReplica {
	t.Helper()
	return startReplicaEnv(t, bin, name, addr, nil, args...)
}

// startReplicaEnv is startReplica with env added to the process's
// environment.
func startReplicaEnv(t *testing.T, bin, name, addr string, env []string, args ...string) *lbReplica {
	t.Helper()
	r := &lbReplica{name: name, addr: addr, bin: bin, env: env, args: append([]string{"serve", "--addr", addr}, args...)}
	r.start(t)
	t.Cleanup(func() { r.stop(t) })
	return r
}

// base is the replica's own URL, for the test's direct looks.
func (r *lbReplica) base() string { return "http://" + r.addr }

// start starts the process (again) and waits until it is ready.
func (r *lbReplica) start(t *testing.T) {
	t.Helper()
	stderr := &syncBuffer{}
	cmd := exec.Command(r.bin, r.args...)
	cmd.Env = append(childEnv(), r.env...)
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		close(exited)
	}()
	r.mu.Lock()
	r.cmd, r.exited, r.stderr = cmd, exited, stderr
	r.mu.Unlock()
	streamtest.Eventually(t, hangBound, func() bool {
		select {
		case <-exited:
			t.Fatalf("replica %s exited at start:\n%s", r.name, observatorytest.Tail(stderr.String(), 30))
		default:
		}
		resp, err := http.Get(r.base() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "replica "+r.name+" never became ready")
}

// kill kills the process with SIGKILL, as a lost machine, and waits
// until it is gone.
func (r *lbReplica) kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	_ = cmd.Process.Kill()
	<-exited
}

// stop stops a running process with SIGINT and expects a clean exit.
func (r *lbReplica) stop(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	cmd, exited, stderr := r.cmd, r.exited, r.stderr
	r.mu.Unlock()
	select {
	case <-exited:
		return // killed, and not started again
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
		r.mu.Lock()
		err := r.err
		r.mu.Unlock()
		if err != nil {
			t.Errorf("replica %s after SIGINT: %v\n%s", r.name, err, observatorytest.Tail(stderr.String(), 30))
		}
	case <-time.After(hangBound):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("replica %s did not stop within %s of SIGINT", r.name, hangBound)
	}
}

// lbTail is `observatory tail`'s subscriber (the tailer, reconnecting
// and resuming with its {epoch, seq}) following one scope through the
// balancer in this process, with the test's client.
type lbTail struct {
	scope  string
	frames *mirrorWriter
	stderr *tailOutput
	done   chan struct{}
	err    error // what the tailer returned, set before done is closed
}

func startLBTail(t *testing.T, ctx context.Context, client *http.Client, wsURL, origin, scope string) *lbTail {
	t.Helper()
	lt := &lbTail{scope: scope, frames: &mirrorWriter{}, stderr: &tailOutput{}, done: make(chan struct{})}
	// As tailCmd sets it up from its flags, with the test's client.
	tl := &tailer{url: wsURL, scope: scope, origin: origin, username: "admin", password: "admin",
		client: client, stdout: lt.frames, stderr: lt.stderr, ownToken: true}
	base, err := tailAPIBase(wsURL)
	if err != nil {
		t.Fatal(err)
	}
	tl.loginURL = base + "/api/v1/auth/login"
	go func() {
		defer close(lt.done)
		lt.err = tl.run(ctx)
	}()
	return lt
}

// mirrorWriter is a tail's stdout: it applies each frame printed, in
// order, to a fresh mirror (tail writes one frame per Write), so the
// mirror is what a reader of tail's output rebuilds. The first frame
// that does not apply (a diff that does not start where the frames
// before it left the state, or an error frame) is kept as err.
type mirrorWriter struct {
	// mu guards the fields below.
	mu     sync.Mutex
	m      protocol.Mirror
	frames int
	err    error
}

func (w *mirrorWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames++
	if w.err == nil {
		if _, err := w.m.Apply(bytes.TrimSuffix(p, []byte("\n"))); err != nil {
			w.err = fmt.Errorf("frame %d: %w: %.300s", w.frames, err, p)
		}
	}
	return len(p), nil
}

// seq is the seq the frames so far reach; it fails the test if one did
// not apply.
func (lt *lbTail) seq(t *testing.T) uint64 {
	t.Helper()
	w := lt.frames
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("tail %s: %v\nstderr:\n%s", lt.scope, w.err, lt.stderr.String())
	}
	return w.m.Seq
}

// mirror returns the mirror's seq, state (as canonical JSON values) and
// frame counts.
func (lt *lbTail) mirror(t *testing.T) (seq uint64, state any, snapshots, diffs int) {
	t.Helper()
	lt.seq(t)
	w := lt.frames
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m.Seq, canonicalJSON(t, w.m.State), w.m.Snapshots, w.m.Diffs
}

var hubSubscribersRE = regexp.MustCompile(`(?m)^sagewai_hub_subscribers(?:\{[^}]*\})? (\d+)$`)

// hubSubscribers is the /ws subscribers replica r holds, from its
// /metrics.
func hubSubscribers(t *testing.T, r *lbReplica) int {
	t.Helper()
	resp := getMetrics(t, r.base())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := hubSubscribersRE.FindSubmatch(b)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("%s/metrics: %d, no sagewai_hub_subscribers", r.base(), resp.StatusCode)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// fleetLastSeq is FLEET's last sequence.
func fleetLastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// TestReplicasBehindNginx puts Debian's nginx, configured as
// docs/deploy.md says, in front of two real serve processes on a NATS
// cluster, each started as an operator would (--public-url of the
// balancer, --trusted-proxies of the balancer, a shared
// --signing-key-file). Through the balancer: logins and the API work and
// reach both replicas; another Host is refused (421); the audit log names
// the client's address, not the balancer's nor what the client wrote in
// X-Forwarded-For. Three tail subscribers follow the stream through the
// balancer while events are published; the replica holding most of them
// is killed with SIGKILL mid-stream; every subscriber it held reconnects
// through the balancer to the other with its {epoch, seq}; the killed
// replica comes back and takes requests again; and at the end every
// subscriber's frames, applied in order without a gap, give the state the
// surviving replica's /api/v1/fleet shows at the same seq, which is a
// fresh fold of the stream, and both replicas answer the same
// /api/v1/fleet at the same seq.
func TestReplicasBehindNginx(t *testing.T) {
	bin := observatorytest.Build(t)
	c := natscluster.Start(t, 3)
	creds, seed, keys := serveFiles(t, c)
	ports := natscluster.FreePorts(t, 3)
	lbAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	public := fmt.Sprintf("http://%s:%d", lbPublicHost, ports[0])
	serveArgs := func() []string {
		return []string{"--data-dir", t.TempDir(), "--tick", "20ms",
			"--nats-url", c.URLs(), "--nats-creds", creds, "--nats-account-signing-key", seed, "--signing-key-file", keys,
			"--nats-replicas", "3", "--public-url", public, "--trusted-proxies", "127.0.0.1"}
	}
	// One after the other: the first makes the shared signing key.
	replicas := []*lbReplica{
		startReplica(t, bin, "a", "127.0.0.1:"+strconv.Itoa(ports[1]), serveArgs()...),
		startReplica(t, bin, "b", "127.0.0.1:"+strconv.Itoa(ports[2]), serveArgs()...),
	}
	lb := lbtest.Start(t, lbtest.Config{Upstreams: []string{replicas[0].addr, replicas[1].addr}, Listen: lbAddr, ServerName: lbPublicHost})
	client := lbClient()
	defer func() {
		if t.Failed() {
			t.Logf("nginx access log (tail):\n%s", observatorytest.Tail(lb.AccessLog(), 30))
			for _, r := range replicas {
				r.mu.Lock()
				t.Logf("replica %s stderr (tail):\n%s", r.name, observatorytest.Tail(r.stderr.String(), 20))
				r.mu.Unlock()
			}
		}
	}()

	// HTTP through the balancer: a login (the client claims another
	// address in X-Forwarded-For, which must not count), then the API on
	// both replicas.
	status, body := lbDo(t, client, http.MethodPost, public+"/api/v1/auth/login", "", "",
		http.Header{"X-Forwarded-For": {"203.0.113.9"}}, `{"username":"admin","password":"admin"}`)
	var session struct{ Token string }
	if status != http.StatusOK || json.Unmarshal(body, &session) != nil || session.Token == "" {
		t.Fatalf("login through nginx: %d %s", status, body)
	}
	token := session.Token
	for range 6 {
		if status, body := lbDo(t, client, http.MethodGet, public+"/api/v1/fleet", token, "", nil, ""); status != http.StatusOK {
			t.Fatalf("GET /api/v1/fleet through nginx: %d %s", status, body)
		}
	}
	streamtest.Eventually(t, hangBound, func() bool {
		got := lb.AnsweredBy("/api/v1/fleet")
		return got[replicas[0].addr]+got[replicas[1].addr] >= 6
	}, "nginx never logged the six requests")
	if got := lb.AnsweredBy("/api/v1/fleet"); got[replicas[0].addr] == 0 || got[replicas[1].addr] == 0 {
		t.Errorf("GET /api/v1/fleet answered per replica: %v; want both", got)
	}
	rebind := fmt.Sprintf("rebind.example:%d", ports[0])
	if status, _ := lbDo(t, client, http.MethodGet, public+"/api/v1/fleet", token, rebind, nil, ""); status != http.StatusMisdirectedRequest {
		t.Errorf("through nginx with Host %s: %d, want 421 (the replicas answer only their --public-url)", rebind, status)
	}
	var addrs []string
	streamtest.Eventually(t, hangBound, func() bool {
		status, body := lbDo(t, client, http.MethodGet, public+"/api/v1/audit?type="+fleet.TypeLoginSucceeded, token, "", nil, "")
		var out struct {
			Events []struct {
				Data struct{ Addr string } `json:"data"`
			} `json:"events"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &out) != nil {
			t.Fatalf("GET /api/v1/audit through nginx: %d %s", status, body)
		}
		addrs = addrs[:0]
		for _, e := range out.Events {
			addrs = append(addrs, e.Data.Addr)
		}
		return len(addrs) > 0
	}, "no login in the audit log")
	for _, a := range addrs {
		if a != lbClientAddr.String() {
			t.Errorf("the audit log has a login from %q, want the client's %s (not the balancer's, nor what the client wrote in X-Forwarded-For)", a, lbClientAddr)
		}
	}

	// Three subscribers through the balancer, as a browser's HUD would
	// connect (Origin of the public URL).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wsURL := fmt.Sprintf("ws://%s:%d/ws", lbPublicHost, ports[0])
	var tails []*lbTail
	for _, scope := range []string{fleet.ScopeAll, "acme", "globex"} {
		tails = append(tails, startLBTail(t, ctx, client, wsURL, public, scope))
	}
	defer func() {
		cancel()
		for _, lt := range tails {
			<-lt.done
			if lt.err != nil {
				t.Errorf("tail %s: %v\n%s", lt.scope, lt.err, lt.stderr.String())
			}
		}
	}()
	for _, lt := range tails {
		streamtest.Eventually(t, hangBound, func() bool { return lt.seq(t) > 0 },
			"tail "+lt.scope+" received no snapshot through nginx:\n"+lt.stderr.String())
	}

	nc := c.Connect("lb-publisher")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pub := stream.NewPublisher(js)
	var evs []fleet.Event
	for _, m := range fleettest.Generate(rand.New(rand.NewPCG(13, 13)), 1500, fleettest.Options{Start: time.Now().Add(-time.Minute)}) {
		if ev, err := fleet.DecodeEvent(m.Subject, m.Body); err == nil {
			evs = append(evs, ev)
		}
	}
	publish := func(batch []fleet.Event, count *atomic.Int64) error {
		for _, ev := range batch {
			pctx, cancel := context.WithTimeout(context.Background(), hangBound)
			_, err := pub.Publish(pctx, ev)
			cancel()
			if err != nil {
				return fmt.Errorf("publish %s: %w", ev.ID, err)
			}
			if count != nil {
				count.Add(1)
			}
		}
		return nil
	}
	first, second := len(evs)/5, 4*len(evs)/5
	if err := publish(evs[:first], nil); err != nil {
		t.Fatal(err)
	}
	last := fleetLastSeq(t, js)
	for _, lt := range tails {
		streamtest.Eventually(t, hangBound, func() bool { return lt.seq(t) >= last },
			fmt.Sprintf("tail %s never reached seq %d", lt.scope, last))
	}

	// Kill the replica holding most subscribers (at least two of the
	// three) while the next batch is being published.
	held := make([]int, len(replicas))
	streamtest.Eventually(t, hangBound, func() bool {
		for i, r := range replicas {
			held[i] = hubSubscribers(t, r)
		}
		return held[0]+held[1] == len(tails)
	}, fmt.Sprintf("the replicas never held the %d subscribers between them", len(tails)))
	victim, survivor := replicas[0], replicas[1]
	if held[1] > held[0] {
		victim, survivor = replicas[1], replicas[0]
	}
	victimHeld := max(held[0], held[1])
	var published atomic.Int64
	pubDone := make(chan error, 1)
	go func() { pubDone <- publish(evs[first:second], &published) }()
	streamtest.Eventually(t, hangBound, func() bool { return published.Load() >= 100 }, "the publisher is stuck")
	victim.kill()
	killed := time.Now()
	t.Logf("killed replica %s (it held %d of %d subscribers) after %d of %d events of the batch", victim.name, victimHeld, len(tails), published.Load(), second-first)
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}

	// Every subscriber the victim held reconnects through the balancer
	// (to the survivor: nothing else answers) and resumes.
	resumed := func() int {
		n := 0
		for _, lt := range tails {
			if strings.Contains(lt.stderr.String(), "resuming scope") {
				n++
			}
		}
		return n
	}
	streamtest.Eventually(t, hangBound, func() bool { return resumed() >= victimHeld },
		fmt.Sprintf("%d of the %d subscribers of the killed replica reconnected", resumed(), victimHeld))
	t.Logf("its subscribers had reconnected through nginx %s after the kill", time.Since(killed).Round(time.Millisecond))
	last = fleetLastSeq(t, js)
	for _, lt := range tails {
		streamtest.Eventually(t, hangBound, func() bool { return lt.seq(t) >= last },
			fmt.Sprintf("tail %s never reached seq %d after the kill:\n%s", lt.scope, last, lt.stderr.String()))
	}
	if got := hubSubscribers(t, survivor); got != len(tails) {
		t.Errorf("the surviving replica holds %d subscribers, want all %d", got, len(tails))
	}

	// The killed replica comes back on its address and takes requests
	// through the balancer again (nginx retries it once its fail_timeout,
	// 10 s, has passed).
	before := lb.AnsweredBy("/api/v1/fleet")[victim.addr]
	victim.start(t)
	restarted := time.Now()
	streamtest.Eventually(t, hangBound, func() bool {
		if status, body := lbDo(t, client, http.MethodGet, public+"/api/v1/fleet?scope=acme", token, "", nil, ""); status != http.StatusOK {
			t.Fatalf("GET /api/v1/fleet through nginx after the restart: %d %s", status, body)
		}
		return lb.AnsweredBy("/api/v1/fleet")[victim.addr] > before
	}, "the restarted replica never answered through nginx")
	t.Logf("the restarted replica answered through nginx %s after it was ready", time.Since(restarted).Round(time.Millisecond))
	if err := publish(evs[second:], nil); err != nil {
		t.Fatal(err)
	}
	last = fleetLastSeq(t, js)

	// Each subscriber ends equal to the surviving replica's answer at the
	// same seq, and that answer is a fresh fold of the stream up to it.
	admin := login(t, survivor.base(), "admin", "admin")
	var stored []fleettest.Msg
	for _, lt := range tails {
		var snap protocol.Snapshot
		streamtest.Eventually(t, hangBound, func() bool {
			seq := lt.seq(t)
			_, snap = getFleet(t, survivor.base(), admin, lt.scope)
			return seq >= last && seq == snap.Seq && lt.seq(t) == seq
		}, fmt.Sprintf("tail %s and the surviving replica never stood at one seq at or past %d", lt.scope, last))
		seq, state, snapshots, diffs := lt.mirror(t)
		if seq != snap.Seq {
			t.Fatalf("tail %s moved from seq %d to %d while the test read it: the stream is not quiet", lt.scope, snap.Seq, seq)
		}
		if d := cmp.Diff(canonicalJSON(t, snap.State), state); d != "" {
			t.Errorf("tail %s at seq %d: its frames give another state than the surviving replica's (-replica +tail):\n%s", lt.scope, seq, d)
		}
		stored = appendStored(t, js, stored)
		if d := cmp.Diff(canonicalJSON(t, fleettest.Fold(stored[:snap.Seq]).View(lt.scope)), canonicalJSON(t, snap.State)); d != "" {
			t.Errorf("scope %s at seq %d (-fresh fold +replica):\n%s", lt.scope, snap.Seq, d)
		}
		if strings.Contains(lt.stderr.String(), "resubscribing") {
			t.Errorf("tail %s saw a gap in its diffs:\n%s", lt.scope, lt.stderr.String())
		}
		how := "stayed on its replica"
		switch e := lt.stderr.String(); {
		case strings.Contains(e, "resumed at seq"):
			how = "resumed with the diffs it missed"
		case strings.Contains(e, "resuming scope"):
			how = "resumed with a snapshot (the survivor held no diff from its seq)"
		}
		t.Logf("tail %s: %d snapshots, %d diffs, %s; ended at seq %d", lt.scope, snapshots, diffs, how, seq)
	}

	// Both replicas, the restarted one included, answer the same
	// /api/v1/fleet at the same seq.
	var same bool
	var bodyA, bodyB []byte
	streamtest.Eventually(t, hangBound, func() bool {
		var seqA, seqB uint64
		bodyA, seqA = fleetFrame(t, survivor.base(), admin)
		bodyB, seqB = fleetFrame(t, victim.base(), admin) // the survivor's token: the replicas share their keys
		if seqA < last || seqA != seqB {
			return false
		}
		same = bytes.Equal(bodyA, bodyB)
		return true
	}, fmt.Sprintf("the replicas never stood at one seq at or past %d", last))
	if !same {
		t.Errorf("at the same seq the replicas answer differently:\n%s: %.600s\n%s: %.600s", survivor.name, bodyA, victim.name, bodyB)
	}
}
