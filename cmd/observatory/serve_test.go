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
	stdout     *syncBuffer
	stderr     *syncBuffer
	done       chan error
	cancel     context.CancelFunc
}

func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serveProc{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1), cancel: cancel}
	all := append([]string{"serve", "--addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--tick", "20ms"}, args...)
	go func() { s.done <- run(ctx, all, func(string) string { return "" }, s.stdout, s.stderr) }()
	t.Cleanup(func() { s.stop(t) })
	streamtest.Eventually(t, 30*time.Second, func() bool {
		select {
		case err := <-s.done:
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
	streamtest.Eventually(t, 10*time.Second, func() bool {
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
	case <-time.After(15 * time.Second):
		t.Error("serve did not stop within 15 s of its context ending")
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
	ok := false
	deadline := time.Now().Add(20 * time.Second)
	for !ok && time.Now().Before(deadline) {
		var code int
		code, snap = getFleet(t, s.base, token, scope)
		if code != http.StatusOK {
			t.Fatalf("GET /api/v1/fleet: %d", code)
		}
		w.mu.Lock()
		if w.err != nil {
			t.Fatalf("socket: %v", w.err)
		}
		ok = w.m.Seq == snap.Seq && cmp.Equal(want, canonicalJSON(t, snap.State))
		w.mu.Unlock()
		if !ok {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if d := cmp.Diff(want, canonicalJSON(t, snap.State)); d != "" {
		t.Fatalf("scope %s: the server differs from a fresh fold of the stream (-fold +server):\n%s", scope, d)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m.Seq != snap.Seq {
		t.Fatalf("scope %s: the socket stands at seq %d, the API at %d", scope, w.m.Seq, snap.Seq)
	}
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
	ctx := context.Background()
	st, err := js.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []fleettest.Msg
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
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
	pub, js := publisherFor(t, s.nats)
	msgs := fleettest.Generate(rand.New(rand.NewPCG(11, 12)), 500, fleettest.Options{Projects: projects, Start: time.Now().Add(-time.Hour)})
	for _, m := range msgs {
		pub.PublishRaw(ctx, m.Subject, m.Body, "") // subjects NATS refuses never reach the fold
	}
	stored := storedMsgs(t, js)
	ref := fleettest.Fold(stored)
	for sc, w := range mirrors {
		waitAgree(t, s, token, sc, w, canonicalJSON(t, ref.View(sc)))
	}
	if w := mirrors["*"]; w.m.Diffs == 0 {
		t.Error("the * socket received no diff")
	}
}

// TestServeRestartHard kills a real observatory process (SIGKILL) in the
// middle of a stream on an external NATS, keeps publishing while it is down,
// starts it again on the same data dir, and checks that its state and seq
// equal a fresh fold of the whole stream.
func TestServeRestartHard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "observatory")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
	dataDir := t.TempDir()
	start := func() (*exec.Cmd, string) {
		cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--nats-url", ns.ClientURL(), "--data-dir", dataDir, "--tick", "20ms")
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		streamtest.Eventually(t, 30*time.Second, func() bool { return servingRE.MatchString(out.String()) }, "no banner")
		return cmd, servingRE.FindStringSubmatch(out.String())[1]
	}
	msgs := fleettest.Generate(rand.New(rand.NewPCG(5, 6)), 1200, fleettest.Options{Start: time.Now().Add(-time.Hour)})
	publish := func(ms []fleettest.Msg) {
		for _, m := range ms {
			pub.PublishRaw(ctx, m.Subject, m.Body, "")
		}
	}

	cmd, base := start()
	token := login(t, base, "admin", "admin")
	publish(msgs[:400])
	// Let it take at least one checkpoint, then kill it while publishing.
	streamtest.Eventually(t, 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dataDir, "checkpoints", "hub-checkpoint.json"))
		return err == nil
	}, "no checkpoint was written")
	killed := make(chan struct{})
	go func() {
		publish(msgs[400:800])
		close(killed)
	}()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	<-killed
	publish(msgs[800:]) // while it is down

	_, base = start()
	token = login(t, base, "admin", "admin")
	stored := storedMsgs(t, js)
	ref := fleettest.Fold(stored)
	var snap protocol.Snapshot
	streamtest.Eventually(t, 30*time.Second, func() bool {
		_, snap = getFleet(t, base, token, "*")
		return snap.Seq == uint64(len(stored))
	}, fmt.Sprintf("the restarted server did not reach seq %d", len(stored)))
	for _, sc := range append([]string{fleet.ScopeAll}, ref.Projects()...) {
		_, snap := getFleet(t, base, token, sc)
		if d := cmp.Diff(canonicalJSON(t, ref.View(sc)), canonicalJSON(t, snap.State)); d != "" {
			t.Fatalf("scope %s after a hard restart (-fresh fold +server):\n%s", sc, d)
		}
	}
}
