package observatorytest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Build compiles ./cmd/observatory (without -race, to spare the CPU the
// process shares with the test) once per test binary and returns the
// binary's path. The Go build cache makes it quick after the first time.
func Build(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			built.err = fmt.Errorf("observatorytest: where am I")
			return
		}
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		if built.dir, built.err = os.MkdirTemp("", "observatorytest-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "observatory")
		cmd := exec.Command("go", "build", "-o", built.bin, "./cmd/observatory")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build ./cmd/observatory: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// SyncBuffer is a bytes.Buffer safe for one writer and many readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingRE = regexp.MustCompile(`serving (http://\S+)`)

// Process is a running observatory.
type Process struct {
	// Base is the server's base URL (http://127.0.0.1:port); Host is its
	// host:port.
	Base, Host string
	// Started is when the process was started.
	Started time.Time
	// Stdout and Stderr hold what it printed so far.
	Stdout, Stderr *SyncBuffer

	cmd      *exec.Cmd
	exited   chan struct{}
	err      error // set before exited is closed
	stopOnce sync.Once
}

// Start runs bin with args and env (and no OTEL_* or OBSERVATORY_* variable
// of the test's own environment), waits up to a minute for its banner and
// /readyz, and stops it with SIGINT when t ends, failing t if it does not
// exit cleanly.
func Start(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.Stdout, p.Stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "OBSERVATORY_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.Stop(t) })

	deadline := time.Now().Add(time.Minute)
	for {
		if m := servingRE.FindStringSubmatch(p.Stdout.String()); m != nil {
			p.Base = m[1]
			break
		}
		p.pause(t, deadline, "to print its banner")
	}
	u, err := url.Parse(p.Base)
	if err != nil {
		t.Fatalf("banner address %q: %v", p.Base, err)
	}
	p.Host = u.Host
	for {
		if ready(p.Base) {
			return p
		}
		p.pause(t, deadline, "to be ready")
	}
}

func ready(base string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *Process) pause(t testing.TB, deadline time.Time, what string) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("observatory exited while waiting for it %s: %v\nstdout:\n%s\nstderr (tail):\n%s", what, p.err, p.Stdout, Tail(p.Stderr.String(), 30))
	case <-time.After(50 * time.Millisecond):
	}
	if time.Now().After(deadline) {
		t.Fatalf("observatory did not get %s in time\nstdout:\n%s\nstderr (tail):\n%s", what, p.Stdout, Tail(p.Stderr.String(), 30))
	}
}

// Stop sends SIGINT (Ctrl-C) and waits up to 20 s for a clean exit,
// failing t otherwise; later calls do nothing. Stdout then holds what the
// process printed on its way out.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			t.Errorf("observatory exited before the test ended: %v\nstderr (tail):\n%s", p.err, Tail(p.Stderr.String(), 30))
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.exited:
			if p.err != nil {
				t.Errorf("observatory after SIGINT: %v\nstderr (tail):\n%s", p.err, Tail(p.Stderr.String(), 30))
			}
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			t.Errorf("observatory did not stop within 20 s of SIGINT\nstderr (tail):\n%s", Tail(p.Stderr.String(), 30))
		}
	})
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
