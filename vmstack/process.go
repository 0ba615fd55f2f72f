package vmstack

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvBinDir names the directory holding victoria-metrics, victoria-logs
// and vmalert; the Makefile exports it as $(CACHE)/bin.
const EnvBinDir = "OBSERVATORY_VM_BIN"

// Binary names, as `go install` writes them.
const (
	binMetrics = "victoria-metrics"
	binLogs    = "victoria-logs"
	binAlert   = "vmalert"
)

// pinned is the module and version each binary must be built from (`make
// deps` installs them): their Go build information says so, as `go version
// -m` prints it. (Built with go install, their own -version prints an
// empty line.)
var pinned = map[string]struct{ Module, Version string }{
	binMetrics: {"github.com/VictoriaMetrics/VictoriaMetrics", "v1.151.0"},
	binLogs:    {"github.com/VictoriaMetrics/VictoriaLogs", "v1.52.1"},
	binAlert:   {"github.com/VictoriaMetrics/VictoriaMetrics", "v1.151.0"},
}

// startTimeout bounds how long a process may take to listen and answer
// /health (they start in about 0.2 s here).
const startTimeout = 30 * time.Second

// stopTimeout is how long a process has to exit after SIGTERM.
const stopTimeout = 5 * time.Second

// RepoRoot returns the directory of the go.mod above the working
// directory: the repository root when the working directory is inside it,
// as it is for `go test`.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repo root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// BinDir returns where the binaries are: $OBSERVATORY_VM_BIN, else
// <repo root>/.cache/bin.
func BinDir() (string, error) {
	if d := strings.TrimSpace(os.Getenv(EnvBinDir)); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "bin"), nil
}

// binary returns the path of the named binary, failing t when it is not
// there or not the pinned version.
func binary(t testing.TB, name string) string {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		t.Fatalf("vmstack: %v", err)
	}
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("vmstack: %s is not at %s (%s=%q): run make deps", name, p, EnvBinDir, os.Getenv(EnvBinDir))
	}
	if err := checkVersion(name, p); err != nil {
		t.Fatalf("vmstack: %v: run make deps", err)
	}
	return p
}

// checkVersion reads the Go build information of the binary at p and
// checks it is the pinned module and version of name.
func checkVersion(name, p string) error {
	want := pinned[name]
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		return fmt.Errorf("%s at %s: no Go build information (want %s %s): %w", name, p, want.Module, want.Version, err)
	}
	if bi.Main.Path != want.Module || bi.Main.Version != want.Version {
		return fmt.Errorf("%s at %s is built from %s %s, want %s %s", name, p, bi.Main.Path, bi.Main.Version, want.Module, want.Version)
	}
	return nil
}

// process is one child process whose output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	// exited is closed by the waiting goroutine once cmd.Wait returned;
	// waitErr is set before.
	exited  chan struct{}
	waitErr error
	// stopOnce makes stop run once: early, when a test stops the process
	// on purpose, else in t.Cleanup.
	stopOnce sync.Once
}

// listenRE matches the line the VictoriaMetrics HTTP server logs once it
// listens; with -httpListenAddr 127.0.0.1:0 it names the port it chose.
var listenRE = regexp.MustCompile(`started server at (http://127\.0\.0\.1:[0-9]+)/`)

// startProcess runs bin with args (logging to a file in a temporary
// directory), waits until it says where it listens and answers /health,
// and registers its stop with t.Cleanup. It returns the process and its
// base URL.
func startProcess(t testing.TB, name, bin string, args ...string) (*process, string) {
	t.Helper()
	p := launch(t, name, bin, nil, args...)
	deadline := time.Now().Add(startTimeout)
	var base string
	for {
		if m := listenRE.FindSubmatch(p.readLog()); m != nil {
			base = string(m[1])
			break
		}
		p.pause(t, deadline, "to listen")
	}
	for {
		if ok, _ := healthy(base); ok {
			return p, base
		}
		p.pause(t, deadline, "to answer /health at "+base)
	}
}

// launch runs bin with args, with env (K=V) added to the test's
// environment, logging to a file in a temporary directory, and registers
// its stop with t.Cleanup. It does not wait for anything.
func launch(t testing.TB, name, bin string, env []string, args ...string) *process {
	t.Helper()
	logDir := t.TempDir() // removed after the stop below, cleanups being LIFO
	p := &process{name: name, logPath: filepath.Join(logDir, name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatalf("vmstack: %s: %v", name, err)
	}
	p.cmd = exec.Command(bin, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	dieWithParent(p.cmd)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("vmstack: start %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// pause waits a little before the next check, failing t when the process
// exited or the deadline passed.
func (p *process) pause(t testing.TB, deadline time.Time, what string) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("vmstack: %s exited while waiting for it %s: %v\n%s", p.name, what, p.waitErr, p.tail())
	case <-time.After(20 * time.Millisecond):
	}
	if time.Now().After(deadline) {
		t.Fatalf("vmstack: %s did not start within %s (waiting for it %s)\n%s", p.name, startTimeout, what, p.tail())
	}
}

func healthy(base string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

func (p *process) readLog() []byte {
	b, _ := os.ReadFile(p.logPath)
	return b
}

// tail returns the last lines of the process's log, for failure messages.
func (p *process) tail() string {
	b := p.readLog()
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Sprintf("--- last lines of %s (%s) ---\n%s", p.name, p.logPath, bytes.Join(lines, []byte("\n")))
}

// stop ends the process: SIGTERM, then SIGKILL after stopTimeout. A
// process that had exited on its own fails t (the harness never asks it
// to). Later calls do nothing.
func (p *process) stop(t testing.TB) {
	t.Helper()
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			t.Errorf("vmstack: %s exited before the test ended: %v\n%s", p.name, p.waitErr, p.tail())
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// execOutput runs bin to completion and returns its combined output.
func execOutput(ctx context.Context, bin string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, bin, args...).CombinedOutput()
}

// Log returns what the process wrote so far (its stdout and stderr).
func (p *process) Log() string { return string(p.readLog()) }
