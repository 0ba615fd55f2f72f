package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// syncBuffer is an output buffer safe to read while a command writes it.
type syncBuffer = observatorytest.SyncBuffer

var (
	servingRE = regexp.MustCompile(`serving (http://\S+)`)
	natsRE    = regexp.MustCompile(`NATS\s+(nats://\S+)`)
	// bannerEndRE matches the banner's last line (printTelemetry's), so that
	// the whole banner has been written when it matches.
	bannerEndRE = regexp.MustCompile(`(?m)^  metrics\s+http://\S+/metrics$`)
)

// serveProc is an `observatory serve` running in this test process through run.
type serveProc struct {
	base, nats string
	dataDir    string
	stdout     *syncBuffer
	stderr     *syncBuffer
	done       chan error
	cancel     context.CancelFunc
}

func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serveProc{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1), cancel: cancel, dataDir: t.TempDir()}
	all := append([]string{"serve", "--addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data-dir", s.dataDir, "--tick", "20ms"}, args...)
	for i, a := range args[:max(len(args)-1, 0)] {
		if a == "--data-dir" {
			s.dataDir = args[i+1] // the last one given wins, as for the flag
		}
	}
	go func() { s.done <- run(ctx, all, func(string) string { return "" }, s.stdout, s.stderr) }()
	t.Cleanup(func() { s.stop(t) })
	// The bounds below only turn a hang into a failure: a loaded machine
	// may take long to start a server (CI runs the suite beside busy loops).
	streamtest.Eventually(t, 2*time.Minute, func() bool {
		select {
		case err := <-s.done:
			s.done <- err // for the cleanup's stop, which waits for it
			t.Fatalf("serve exited early: %v\n%s", err, s.stderr.String())
		default:
		}
		return bannerEndRE.MatchString(s.stdout.String())
	}, "serve printed no banner")
	out := s.stdout.String()
	s.base = servingRE.FindStringSubmatch(out)[1]
	if m := natsRE.FindStringSubmatch(out); m != nil {
		s.nats = m[1]
	}
	streamtest.Eventually(t, time.Minute, func() bool {
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "serve never became ready")
	return s
}

func (s *serveProc) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Error("serve did not stop within a minute of its context ending")
	}
}

func login(t *testing.T, base, user, pass string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	resp, err := http.Post(base+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("login: %d %s", resp.StatusCode, b)
	}
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Token == "" || !out.ExpiresAt.After(time.Now()) {
		t.Fatalf("login returned token %q expiring %v", out.Token, out.ExpiresAt)
	}
	return out.Token
}

func getFleet(t *testing.T, base, token, scope string) (int, protocol.Snapshot) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/fleet?scope="+scope, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var snap protocol.Snapshot
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, snap
}

// wsMirror follows scope over a real WebSocket into a Mirror.
type wsMirror struct {
	mu     sync.Mutex
	m      protocol.Mirror
	err    error
	frames int
}

func followWS(t *testing.T, ctx context.Context, base, token, scope string) *wsMirror {
	t.Helper()
	url := strings.Replace(base, "http", "ws", 1) + "/ws"
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		Subprotocols: []string{protocol.Subprotocol},
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { c.CloseNow() })
	sub, _ := json.Marshal(protocol.Subscribe{Op: protocol.OpSubscribe, Scope: scope})
	if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
		t.Fatal(err)
	}
	w := &wsMirror{}
	go func() {
		for {
			_, b, err := c.Read(ctx)
			w.mu.Lock()
			if err != nil {
				if w.err == nil && ctx.Err() == nil {
					w.err = err
				}
				w.mu.Unlock()
				return
			}
			w.frames++
			if _, err := w.m.Apply(b); err != nil && w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func canonicalJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitAgree waits until the API shows want (the state of a fresh fold) and
// the socket's mirror stands at the same seq, then checks the socket shows
// that same state.
func waitAgree(t *testing.T, s *serveProc, token, scope string, w *wsMirror, want any) {
	t.Helper()
	var snap protocol.Snapshot
	defer func() {
		if t.Failed() {
			t.Logf("scope %s, last read (-fold +server):\n%s", scope, cmp.Diff(want, canonicalJSON(t, snap.State)))
		}
	}()
	streamtest.Eventually(t, 20*time.Second, func() bool {
		var code int
		code, snap = getFleet(t, s.base, token, scope)
		if code != http.StatusOK {
			t.Fatalf("GET /api/v1/fleet: %d", code)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err != nil {
			t.Fatalf("socket: %v", w.err)
		}
		return w.m.Seq == snap.Seq && cmp.Equal(want, canonicalJSON(t, snap.State))
	}, fmt.Sprintf("scope %s: the API never showed the fresh fold's state with the socket at the same seq", scope))
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := cmp.Diff(canonicalJSON(t, snap.State), canonicalJSON(t, w.m.State)); d != "" {
		t.Fatalf("scope %s: /ws and /api/v1/fleet disagree (-api +ws):\n%s", scope, d)
	}
}

func publisherFor(t *testing.T, url string) (*stream.Publisher, jetstream.JetStream) {
	t.Helper()
	nc, err := stream.Connect(url, nil, "serve-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return stream.NewPublisher(js), js
}

// storedMsgs returns every message of FLEET with its stored time.
func storedMsgs(t *testing.T, js jetstream.JetStream) []fleettest.Msg {
	t.Helper()
	return appendStored(t, js, nil)
}

// appendStored appends to msgs (the first messages of FLEET) the messages
// stored after them, with their stored times.
func appendStored(t *testing.T, js jetstream.JetStream, msgs []fleettest.Msg) []fleettest.Msg {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := msgs
	for seq := uint64(len(msgs)) + 1; seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fleettest.Msg{Subject: raw.Subject, Body: raw.Data, At: raw.Time})
	}
	return out
}

// TestServeEndToEnd runs `observatory serve` with its embedded NATS, logs in,
// follows every scope over real WebSockets while a random stream (with bad,
// duplicate and unknown events) is published from another connection, and
// checks that each socket, the API and a fresh fold of the stream agree.
func TestServeEndToEnd(t *testing.T) {
	s := startServe(t)
	if s.nats == "" {
		t.Fatal("the banner does not say where the embedded NATS listens")
	}
	if !strings.Contains(s.stdout.String(), "admin / admin") {
		t.Error("the banner does not print the dev login")
	}
	if code, _ := getFleet(t, s.base, "", "*"); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/fleet without a token: %d, want 401", code)
	}
	token := login(t, s.base, "admin", "admin")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	projects := []string{"acme", "globex", "initech"}
	mirrors := map[string]*wsMirror{}
	for _, sc := range append([]string{"*"}, projects...) {
		mirrors[sc] = followWS(t, ctx, s.base, token, sc)
	}
	pub, js := s.natsAdmin(t)
	msgs := fleettest.Generate(rand.New(rand.NewPCG(11, 12)), 500, fleettest.Options{Projects: projects, Start: time.Now().Add(-time.Hour)})
	for _, m := range msgs {
		pub.PublishRaw(ctx, m.Subject, m.Body, "") // subjects NATS refuses never reach the fold
	}
	stored := storedMsgs(t, js)
	ref := fleettest.Fold(stored)
	for sc, w := range mirrors {
		waitAgree(t, s, token, sc, w, canonicalJSON(t, ref.View(sc)))
	}
	w := mirrors["*"]
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m.Diffs == 0 {
		t.Error("the * socket received no diff")
	}
}

// restartProc is an observatory process a test can kill.
type restartProc struct {
	cmd    *exec.Cmd
	base   string
	stderr *syncBuffer
	exited chan struct{}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *restartProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// logLines returns the JSON log lines of p whose event is event.
func (p *restartProc) logLines(t *testing.T, event string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}

// ingested sums sagewai_hub_events_ingested_total: the FLEET messages
// (not clock ticks) the server's hub folded since the process started.
func ingested(t *testing.T, base string) int64 {
	t.Helper()
	resp := getMetrics(t, base)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	found := false
	for _, m := range regexp.MustCompile(`(?m)^sagewai_hub_events_ingested_total\{[^}]*\} (\d+)$`).FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseInt(string(m[1]), 10, 64)
		n += v
		found = true
	}
	if !found {
		t.Fatalf("/metrics has no sagewai_hub_events_ingested_total")
	}
	return n
}

// checkpointSeq reads the checkpoint in dir as the server would load it
// and returns its seq; it fails the test if the file is not a whole,
// loadable checkpoint of epoch.
func checkpointSeq(t *testing.T, dir, epoch string) uint64 {
	t.Helper()
	st, err := stream.NewCheckpoints(dir).Load(epoch, fleet.DefaultPricing())
	if err != nil || st == nil {
		t.Fatalf("the checkpoint in %s is not loadable: %v (nil %v)", dir, err, st == nil)
	}
	return st.Seq()
}

// tempCheckpoints lists the temporary files a checkpoint write leaves
// behind when it is killed before its rename.
func tempCheckpoints(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), checkpointTempPrefix) {
			if info, err := e.Info(); err == nil {
				out[e.Name()] = info.Size()
			}
		}
	}
	return out
}

// checkpointTempPrefix starts the name of the temporary file
// stream.Checkpoints writes before renaming it over the checkpoint.
const checkpointTempPrefix = ".hub-checkpoint-"

// bigAgents returns n agent.created messages of acme, each with a
// description of size bytes, so that every checkpoint after them is
// several megabytes and takes milliseconds to write.
func bigAgents(n, size int) []fleettest.Msg {
	desc := strings.Repeat("An agent that writes long descriptions of itself. ", size/50)
	out := make([]fleettest.Msg, 0, n)
	for i := range n {
		data, _ := json.Marshal(fleet.AgentCreated{Name: fmt.Sprintf("Filler %d", i), Role: "filler", Model: "gpt-5-mini", Version: "1",
			Tools: []string{}, Skills: []string{}, Description: desc})
		body, _ := json.Marshal(fleet.Event{ID: fmt.Sprintf("ev-big-agent-%03d", i), Type: fleet.TypeAgentCreated,
			Time: time.Now().Add(-2 * time.Hour).UTC(), ProjectID: "acme", AgentID: fmt.Sprintf("acme-filler-%03d", i), Data: data})
		out = append(out, fleettest.Msg{Subject: "fleet.acme." + fleet.TypeAgentCreated, Body: body})
	}
	return out
}

// TestServeRestartHard kills a real observatory process (SIGKILL) in the
// middle of a stream on an external NATS, keeps publishing while it is
// down, and starts it again on the same data dir: the restart loads the
// checkpoint on disk (its log says so, with the checkpoint's seq) and folds
// only the events after it (its hub's ingested count is the tail's, where
// a refold would count the whole stream), and its state and seq equal a
// fresh fold of the whole stream. Then it kills the process again while a
// checkpoint is being written (the moment its temporary file appears in
// the checkpoints directory): the restart loads the previous whole
// checkpoint, never the torn one, and again ends at the fresh fold's state.
//
// The stream's stored times, which the fold runs on, are the NATS server's
// wall clock; the events are dated from it.
func TestServeRestartHard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := observatorytest.Build(t)
	natsDir := t.TempDir()
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: natsDir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	pub, js := publisherFor(t, ns.ClientURL())
	ctx := context.Background()
	if err := stream.EnsureStreams(ctx, js, stream.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	epoch, err := stream.Epoch(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cpDir := filepath.Join(dataDir, "checkpoints")
	start := func() *restartProc {
		t.Helper()
		p := &restartProc{stderr: &syncBuffer{}, exited: make(chan struct{})}
		p.cmd = exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--nats-url", ns.ClientURL(), "--data-dir", dataDir, "--tick", "20ms")
		out := &syncBuffer{}
		p.cmd.Stdout, p.cmd.Stderr = out, p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.cmd.Wait(); close(p.exited) }()
		t.Cleanup(p.kill)
		streamtest.Eventually(t, 30*time.Second, func() bool { return servingRE.MatchString(out.String()) }, "no banner")
		p.base = servingRE.FindStringSubmatch(out.String())[1]
		return p
	}
	publish := func(ms []fleettest.Msg) {
		for _, m := range ms {
			pub.PublishRaw(ctx, m.Subject, m.Body, "")
		}
	}
	// restarted checks a process started on a checkpoint of seq from:
	// it says it resumed from that checkpoint, it folded only the messages
	// after it, and it shows the state of a fresh fold of the stream.
	restarted := func(p *restartProc, from uint64) {
		t.Helper()
		token := login(t, p.base, "admin", "admin")
		streamtest.Eventually(t, 30*time.Second, func() bool {
			if sk := p.logLines(t, "hub.checkpoint.skipped"); len(sk) > 0 {
				t.Fatalf("the restart did not use the checkpoint: %v", sk[0])
			}
			return len(p.logLines(t, "hub.checkpoint.loaded")) > 0
		}, "the restarted server never logged hub.checkpoint.loaded")
		if got := p.logLines(t, "hub.checkpoint.loaded")[0]["seq"]; got != float64(from) {
			t.Fatalf("the restart resumed from a checkpoint at seq %v; the one on disk is at seq %d", got, from)
		}
		// (The seq is the stream's whatever the scope; globex's view is
		// small, acme's holds the big agents.)
		last := uint64(len(appendStored(t, js, nil)))
		streamtest.Eventually(t, 30*time.Second, func() bool {
			_, snap := getFleet(t, p.base, token, "globex")
			return snap.Seq >= last
		}, fmt.Sprintf("the restarted server did not reach seq %d", last))
		// Only the tail was folded: the hub's count of ingested messages is
		// that of the messages after the checkpoint (clock ticks aside),
		// read at a seq that did not move in between.
		var want, got int64
		var stored []fleettest.Msg
		streamtest.Eventually(t, 30*time.Second, func() bool {
			_, before := getFleet(t, p.base, token, "globex")
			got = ingested(t, p.base)
			_, after := getFleet(t, p.base, token, "globex")
			stored = appendStored(t, js, stored)
			if before.Seq != after.Seq || after.Seq > uint64(len(stored)) {
				return false
			}
			want = 0
			for i, m := range stored[:after.Seq] {
				if uint64(i+1) > from && m.Subject != fleet.ClockSubject {
					want++
				}
			}
			return got == want
		}, fmt.Sprintf("the restarted hub did not fold only the tail after seq %d", from))
		t.Logf("resumed from the checkpoint at seq %d, folded %d messages after it", from, got)
		// Each scope equals a fresh fold of the stream up to the seq it was
		// read at, all scopes read at one seq (no clock tick in between).
		streamtest.Eventually(t, 30*time.Second, func() bool {
			views := map[string]protocol.Snapshot{}
			var seq uint64
			for _, sc := range append([]string{fleet.ScopeAll}, fleettest.DefaultProjects...) {
				_, snap := getFleet(t, p.base, token, sc)
				if seq != 0 && snap.Seq != seq {
					return false
				}
				seq, views[sc] = snap.Seq, snap
			}
			stored = appendStored(t, js, stored)
			ref := fleettest.Fold(stored[:seq])
			for sc, snap := range views {
				if d := cmp.Diff(canonicalJSON(t, ref.View(sc)), canonicalJSON(t, snap.State)); d != "" {
					t.Fatalf("scope %s at seq %d after a hard restart (-fresh fold +server):\n%s", sc, seq, d)
				}
			}
			return true
		}, "the restarted server's scopes were never read at one seq")
	}

	msgs := fleettest.Generate(rand.New(rand.NewPCG(5, 6)), 1200, fleettest.Options{Start: time.Now().Add(-time.Hour)})
	publish(bigAgents(80, 40<<10))
	publish(msgs[:400])

	// 1. Killed while the stream moves, after a checkpoint; restarted
	// after more was published while it was down.
	p := start()
	login(t, p.base, "admin", "admin")
	streamtest.Eventually(t, 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(cpDir, "hub-checkpoint.json"))
		return err == nil
	}, "no checkpoint was written")
	published := make(chan struct{})
	go func() {
		publish(msgs[400:800])
		close(published)
	}()
	p.kill()
	<-published
	publish(msgs[800:]) // while it is down
	good := checkpointSeq(t, cpDir, epoch)
	p = start()
	restarted(p, good)

	// 2. Killed while a checkpoint is being written: when the temporary
	// file appears, before the rename makes it the checkpoint. Should the
	// rename win the race, the new checkpoint is whole and the round is
	// tried again.
	more := fleettest.Generate(rand.New(rand.NewPCG(7, 8)), 1000, fleettest.Options{Start: time.Now().Add(-30 * time.Minute)})
	torn := false
	for round := 0; round < 5 && !torn; round++ {
		temps := tempCheckpoints(t, cpDir)
		victim := p
		stop := onCreate(t, cpDir, checkpointTempPrefix, func(string) { _ = victim.cmd.Process.Kill() })
		publish(more[round*200 : (round+1)*200]) // the state moved: a checkpoint is due
		select {
		case <-victim.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("no checkpoint was written within 30 s")
		}
		stop()
		for name, size := range tempCheckpoints(t, cpDir) {
			if _, old := temps[name]; !old {
				torn = true
				t.Logf("round %d: killed while writing a checkpoint: %s holds %d bytes", round+1, name, size)
			}
		}
		if !torn {
			t.Logf("round %d: the checkpoint's rename won the race; again", round+1)
		}
		good = checkpointSeq(t, cpDir, epoch)
		p = start()
		restarted(p, good)
	}
	if !torn {
		t.Fatal("in 5 rounds the kill never landed while a checkpoint was being written")
	}
}
