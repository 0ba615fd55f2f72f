package vmstack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/vmstack"
)

// buildObservatory builds cmd/observatory into a temporary directory (the
// Go build cache makes this quick after the first time).
func buildObservatory(t *testing.T) string {
	t.Helper()
	root, err := vmstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "observatory")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/observatory")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/observatory: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe for a writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingRE = regexp.MustCompile(`serving (http://\S+)`)

// observatory is a running `observatory` process.
type observatory struct {
	base   string // http://127.0.0.1:port
	host   string // 127.0.0.1:port, the scrape target
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	exited chan struct{}
	err    error // set before exited is closed
}

// startObservatory runs bin with args and env (and no other OTEL_* or
// OBSERVATORY_* variable from the test's environment), waits for its
// banner and /readyz, and stops it with SIGINT when t ends, failing t if it
// does not exit cleanly.
func startObservatory(t *testing.T, bin string, env []string, args ...string) *observatory {
	t.Helper()
	o := &observatory{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	o.cmd = exec.Command(bin, args...)
	o.cmd.Stdout, o.cmd.Stderr = o.stdout, o.stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "OBSERVATORY_") {
			o.cmd.Env = append(o.cmd.Env, kv)
		}
	}
	o.cmd.Env = append(o.cmd.Env, env...)
	if err := o.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		o.err = o.cmd.Wait()
		close(o.exited)
	}()
	t.Cleanup(func() { o.stop(t) })

	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := servingRE.FindStringSubmatch(o.stdout.String()); m != nil {
			o.base = m[1]
			break
		}
		o.pause(t, deadline, "to print its banner")
	}
	u, err := url.Parse(o.base)
	if err != nil {
		t.Fatalf("banner address %q: %v", o.base, err)
	}
	o.host = u.Host
	for {
		if code, err := o.status(context.Background(), "/readyz"); err == nil && code == http.StatusOK {
			return o
		}
		o.pause(t, deadline, "to be ready")
	}
}

func (o *observatory) pause(t *testing.T, deadline time.Time, what string) {
	t.Helper()
	select {
	case <-o.exited:
		t.Fatalf("observatory exited while waiting for it %s: %v\nstdout:\n%s\nstderr (tail):\n%s", what, o.err, o.stdout.String(), tail(o.stderr.String(), 30))
	case <-time.After(50 * time.Millisecond):
	}
	if time.Now().After(deadline) {
		t.Fatalf("observatory did not get %s in time\nstdout:\n%s\nstderr (tail):\n%s", what, o.stdout.String(), tail(o.stderr.String(), 30))
	}
}

func (o *observatory) stop(t *testing.T) {
	t.Helper()
	select {
	case <-o.exited:
		t.Errorf("observatory exited before the test ended: %v\nstderr (tail):\n%s", o.err, tail(o.stderr.String(), 30))
		return
	default:
	}
	_ = o.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-o.exited:
		if o.err != nil {
			t.Errorf("observatory after SIGINT: %v\nstderr (tail):\n%s", o.err, tail(o.stderr.String(), 30))
		}
	case <-time.After(20 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.exited
		t.Errorf("observatory did not stop within 20 s of SIGINT\nstderr (tail):\n%s", tail(o.stderr.String(), 30))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// api is the API client of the observatory under test.
func (o *observatory) api() *live.Client { return &live.Client{Base: o.base, HTTP: http.DefaultClient} }

// status sends GET path without a token and returns the status.
func (o *observatory) status(ctx context.Context, path string) (int, error) {
	code, err := o.api().Do(ctx, "", http.MethodGet, path, nil, 0, nil)
	var ae *live.APIError
	if errors.As(err, &ae) {
		err = nil
	}
	return code, err
}

// mustJSON sends a request that must answer want. A 2xx answer is decoded
// into out (when not nil); an error answer's code is returned.
func (o *observatory) mustJSON(t *testing.T, method, path, token string, body any, want int, out any) string {
	t.Helper()
	code, err := o.api().Do(context.Background(), token, method, path, body, want, out)
	var ae *live.APIError
	switch {
	case code == want && want >= 300 && errors.As(err, &ae):
		return ae.Code
	case err != nil:
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return ""
}

// login returns an admin token.
func (o *observatory) login(t *testing.T, user, password string) string {
	t.Helper()
	tok, err := o.api().Login(context.Background(), user, password)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// fleetRead is one GET /api/v1/fleet?scope=* and when it was sent and
// answered: the state it shows is the fold's at some moment in between.
type fleetRead struct {
	start, end time.Time
	seq        uint64
	spend      map[string]fleet.Micros // spend_total_usd by project
}

func (o *observatory) readFleet(ctx context.Context, token string) (fleetRead, error) {
	r := fleetRead{start: time.Now()}
	var snap struct {
		Seq   uint64 `json:"seq"`
		State struct {
			Projects map[string]struct {
				SpendTotal fleet.Micros `json:"spend_total_usd"`
			} `json:"projects"`
		} `json:"state"`
	}
	_, err := o.api().Do(ctx, token, http.MethodGet, "/api/v1/fleet?scope=*", nil, http.StatusOK, &snap)
	r.end = time.Now()
	if err != nil {
		return r, fmt.Errorf("GET /api/v1/fleet: %w", err)
	}
	r.seq = snap.Seq
	r.spend = map[string]fleet.Micros{}
	for id, p := range snap.State.Projects {
		r.spend[id] = p.SpendTotal
	}
	return r, nil
}
