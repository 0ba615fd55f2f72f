package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/synth"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// tailServer is the real server (web over a real hub on an embedded NATS)
// behind a TCP proxy whose connections a test can cut.
type tailServer struct {
	env   *streamtest.Env
	web   *web.Server
	proxy *tailProxy
	url   string // ws://<proxy>/ws
}

func startTailServer(t *testing.T) *tailServer {
	t.Helper()
	return startTailServerBehind(t, startTailProxy(t, "127.0.0.1:0", ""))
}

// startTailServerBehind is startTailServer behind the proxy p, which it
// makes forward to the server.
func startTailServerBehind(t *testing.T, p *tailProxy) *tailServer {
	t.Helper()
	env := streamtest.Start(t, stream.HubConfig{Tick: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	srv, err := web.New(web.Config{
		SigningKey: bytes.Repeat([]byte("k"), 32),
		BcryptCost: 4,
		Logger:     slog.New(slog.DiscardHandler),
	}, env.Hub, env.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
	})
	p.forward(ts.Listener.Addr().String())
	return &tailServer{env: env, web: srv, proxy: p, url: "ws://" + p.addr + "/ws"}
}

// tailProxy forwards TCP connections to target until cut.
// Until it has a target (none: ""), it closes every connection at once,
// as a host where nothing serves yet would refuse it.
type tailProxy struct {
	addr string
	ln   net.Listener

	mu     sync.Mutex // guards target and conns
	target string
	conns  []net.Conn
}

func startTailProxy(t *testing.T, addr, target string) *tailProxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &tailProxy{addr: ln.Addr().String(), target: target, ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			target := p.target
			p.mu.Unlock()
			if target == "" {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

// forward makes the proxy forward new connections to target.
func (p *tailProxy) forward(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// cut drops every connection open through the proxy, as a network failure would.
func (p *tailProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// tailOutput collects what tail writes.
type tailOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *tailOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *tailOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// frames returns the JSON lines written so far, each checked to be one
// JSON object with an op.
func (o *tailOutput) frames(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	sc := bufio.NewScanner(strings.NewReader(o.String()))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var head struct {
			Op string `json:"op"`
		}
		if err := json.Unmarshal(sc.Bytes(), &head); err != nil || head.Op == "" {
			t.Fatalf("stdout line is not a frame: %v\n%.300s", err, sc.Text())
		}
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

func ops(t *testing.T, frames [][]byte) []string {
	t.Helper()
	var out []string
	for _, f := range frames {
		var h struct{ Op string }
		json.Unmarshal(f, &h)
		out = append(out, h.Op)
	}
	return out
}

type tailRun struct {
	stdout, stderr *tailOutput
	cancel         context.CancelFunc
	done           chan struct{} // closed when tailCmd has returned err
	err            error
}

// stop cancels tail and returns what it returned.
func (r *tailRun) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(10 * time.Second):
		t.Fatal("tail did not return after its context ended")
		return nil
	}
}

func startTail(t *testing.T, args ...string) *tailRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &tailRun{stdout: &tailOutput{}, stderr: &tailOutput{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = tailCmd(ctx, args, func(string) string { return "" }, r.stdout, r.stderr)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// TestTailFollowsAndResumes follows a live synthetic fleet through the
// real server, in either protocol version, cuts the network under it, and
// checks that tail resumes with the diffs it missed (no new snapshot), and
// that the frames it printed rebuild exactly the server's state.
func TestTailFollowsAndResumes(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		want  string
		patch bool // whether diffs carry field patches
	}{
		{nil, protocol.SubprotocolV2, true},
		{[]string{"--protocol", protocol.Subprotocol}, protocol.Subprotocol, false},
	} {
		t.Run(tc.want, func(t *testing.T) { tailFollowsAndResumes(t, tc.args, tc.want, tc.patch) })
	}
}

func tailFollowsAndResumes(t *testing.T, args []string, version string, patch bool) {
	s := startTailServer(t)
	fleetCtx, stopFleet := context.WithCancel(context.Background())
	defer stopFleet()
	fl := synth.New(synth.Config{MissionEvery: 50 * time.Millisecond, Rand: rand.New(rand.NewPCG(1, 2))},
		func(ctx context.Context, ev fleet.Event) error {
			_, err := s.env.Publisher.Publish(ctx, ev)
			return err
		})
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fl.Run(fleetCtx) }()

	tr := startTail(t, append([]string{"--url", s.url}, args...)...) // logs in as admin/admin
	streamtest.Eventually(t, 20*time.Second, func() bool { return len(tr.stdout.frames(t)) >= 5 }, "tail printed fewer than 5 frames")
	before := tr.stdout.frames(t)
	if got := ops(t, before)[0]; got != protocol.OpSnapshot {
		t.Fatalf("first frame is %q, want a snapshot", got)
	}

	s.proxy.cut()
	streamtest.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(tr.stderr.String(), "resumed at seq") && len(tr.stdout.frames(t)) > len(before)+3
	}, "tail did not resume after the connection was cut:\n"+tr.stderr.String())
	if n := strings.Count(strings.Join(ops(t, tr.stdout.frames(t)), " "), protocol.OpSnapshot); n != 1 {
		t.Errorf("%d snapshots; a resume within the ring must send only the missed diffs", n)
	}

	stopFleet()
	if err := <-fleetDone; err != nil {
		t.Fatal(err)
	}
	// The frames printed, applied in order, give the server's state.
	var snap protocol.Snapshot
	var m protocol.Mirror
	streamtest.Eventually(t, 20*time.Second, func() bool {
		frame, err := s.env.Hub.Snapshot(context.Background(), fleet.ScopeAll)
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(frame, &snap)
		m = protocol.Mirror{Protocol: version}
		for _, f := range tr.stdout.frames(t) {
			if _, err := m.Apply(f); err != nil {
				t.Fatalf("applying the printed frames: %v", err)
			}
		}
		return m.Seq == snap.Seq
	}, "tail's frames never reached the server's seq")
	var want any
	b, _ := json.Marshal(snap.State)
	json.Unmarshal(b, &want)
	if d := cmp.Diff(want, any(m.State)); d != "" {
		t.Fatalf("the printed frames rebuild another state than the server's (-server +tail):\n%s", d)
	}

	if !strings.Contains(tr.stderr.String(), "("+version+")") {
		t.Errorf("tail did not say it speaks %s:\n%s", version, tr.stderr.String())
	}
	patched := false
	for _, f := range tr.stdout.frames(t) {
		patched = patched || bytes.Contains(f, []byte(`"patch":{`))
	}
	if patched != patch {
		t.Errorf("%s: a printed diff carries a patch: %v, want %v", version, patched, patch)
	}
	if err := tr.stop(t); err != nil {
		t.Fatalf("tail returned %v when its context ended, want nil", err)
	}
}

// TestTailRefusals: what a retry cannot fix ends tail with an error at
// once; nothing is printed on stdout.
func TestTailRefusals(t *testing.T) {
	s := startTailServer(t)
	acme, _, err := s.web.IssueToken(auth.RoleProject, "acme", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad token", []string{"--token", "not-a-token"}, "unauthorized"},
		{"wrong password", []string{"--password", "wrong"}, "401"},
		{"other tenant", []string{"--token", acme, "--scope", "globex"}, "forbidden"},
		{"project token asking for all", []string{"--token", acme}, "forbidden"},
		{"bad scope", []string{"--scope", "Not A Project"}, "scope"},
		{"bad url", []string{"--url", "ftp://example.com/ws"}, "ws or wss"},
		{"stray argument", []string{"acme"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr tailOutput
			err := tailCmd(ctx, append([]string{"--url", s.url}, tc.args...), func(string) string { return "" }, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("tail = %v, want an error with %q", err, tc.want)
			}
			if ctx.Err() != nil {
				t.Fatalf("tail retried until the deadline: %v", err)
			}
			if strings.Contains(stderr.String(), "reconnecting") {
				t.Errorf("tail retried:\n%s", stderr.String())
			}
			for _, f := range stdout.frames(t) {
				if !bytes.Contains(f, []byte(`"op":"error"`)) {
					t.Errorf("printed a frame other than the error: %.200s", f)
				}
			}
		})
	}

	// A token scoped to acme follows acme.
	tr := startTail(t, "--url", s.url, "--token", acme, "--scope", "acme")
	streamtest.Eventually(t, 10*time.Second, func() bool { return len(tr.stdout.frames(t)) >= 1 }, "no snapshot for a project token")
	if f := tr.stdout.frames(t)[0]; !bytes.HasPrefix(f, []byte(`{"op":"snapshot","scope":"acme"`)) {
		t.Errorf("first frame %.200s, want the snapshot of acme", f)
	}
}

var reconnectRE = regexp.MustCompile(`(?m)reconnecting in (\S+)$`)

// TestTailRetriesUntilServerComes: with no server, tail keeps retrying
// (the login included) with delays growing from 250 ms, doubling, within
// their jitter; when the server comes, tail logs in and follows it; and it
// returns nil when told to stop.
func TestTailRetriesUntilServerComes(t *testing.T) {
	// The address answers nothing yet: every connection is closed at once.
	p := startTailProxy(t, "127.0.0.1:0", "")
	tr := startTail(t, "--url", "ws://"+p.addr+"/ws")
	defer func() {
		if t.Failed() {
			t.Logf("tail's stderr:\n%s", tr.stderr.String())
		}
	}()
	streamtest.Eventually(t, time.Minute, func() bool { return len(reconnectRE.FindAllString(tr.stderr.String(), -1)) >= 3 },
		"tail did not retry three times")
	if n := len(tr.stdout.frames(t)); n != 0 {
		t.Fatalf("tail printed %d frames with no server", n)
	}
	base := tailBackoffMin
	for i, m := range reconnectRE.FindAllStringSubmatch(tr.stderr.String(), 3) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("retry %d: %v", i+1, err)
		}
		lo := time.Duration(float64(base)*(1-tailBackoffJitter)) - time.Millisecond
		hi := time.Duration(float64(base)*(1+tailBackoffJitter)) + time.Millisecond
		if d < lo || d > hi {
			t.Errorf("retry %d waited %s, want %s..%s:\n%s", i+1, d, lo, hi, tr.stderr.String())
		}
		base *= 2
	}

	// The server comes, at the address tail keeps trying.
	startTailServerBehind(t, p)
	streamtest.Eventually(t, time.Minute, func() bool { return len(tr.stdout.frames(t)) >= 1 }, "tail never followed the server once it came")
	if f := tr.stdout.frames(t)[0]; !bytes.HasPrefix(f, []byte(`{"op":"snapshot","scope":"*"`)) {
		t.Errorf("first frame %.200s, want the snapshot of *", f)
	}
	if err := tr.stop(t); err != nil {
		t.Fatalf("tail = %v when its context ended, want nil", err)
	}
}

// TestTailEnv: every flag has its env twin.
func TestTailEnv(t *testing.T) {
	s := startTailServer(t)
	env := map[string]string{"OBSERVATORY_URL": s.url, "OBSERVATORY_SCOPE": "acme", "OBSERVATORY_PASSWORD": "wrong"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr tailOutput
	err := tailCmd(ctx, nil, func(k string) string { return env[k] }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), s.proxy.addr) {
		t.Fatalf("tail = %v, want a refused login at %s (from OBSERVATORY_URL and OBSERVATORY_PASSWORD)", err, s.proxy.addr)
	}
}

func TestTailBackoff(t *testing.T) {
	b := tailBackoff{next: tailBackoffMin}
	base := tailBackoffMin
	for i := 0; i < 10; i++ {
		d := b.wait()
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
		if d < lo || d > hi {
			t.Fatalf("wait %d = %s, want within %s..%s", i, d, lo, hi)
		}
		base = min(2*base, tailBackoffMax)
	}
	b.reset()
	if d := b.wait(); d > 300*time.Millisecond {
		t.Fatalf("after reset, wait = %s", d)
	}
}

func TestTailAPIBase(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:3001/ws":               "http://127.0.0.1:3001",
		"wss://obs.example.com/ws":             "https://obs.example.com",
		"wss://example.com/observatory/ws/":    "https://example.com/observatory",
		"ws://localhost:3001/ws?embed_token=x": "http://localhost:3001",
	} {
		got, err := tailAPIBase(in)
		if err != nil || got != want {
			t.Errorf("tailAPIBase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := tailAPIBase("ftp://x/ws"); err == nil {
		t.Error("ftp:// accepted")
	}
	var perm *tailPermanent
	if errors.As(tailCloseError(errors.New("connection reset")), &perm) {
		t.Error("a network error is treated as permanent")
	}
}

// TestTailRefusesUnknownProtocol: a misspelt --protocol ends tail at once,
// naming the versions it speaks, before any connection.
func TestTailRefusesUnknownProtocol(t *testing.T) {
	var stdout, stderr tailOutput
	err := tailCmd(context.Background(), []string{"--protocol", "observatory.v3", "--url", "ws://127.0.0.1:1/ws"}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), protocol.SubprotocolV2) || !strings.Contains(err.Error(), protocol.Subprotocol) {
		t.Fatalf("tail = %v, want a refusal naming both versions", err)
	}
}
