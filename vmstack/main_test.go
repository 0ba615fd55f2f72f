package vmstack_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/worker"
)

// Variables that make the test binary a worker host instead of running the
// tests (see startWorkerHost).
const (
	workerHostURL     = "OBSERVATORY_VMSTACK_WORKER_HOST_URL"
	workerHostKey     = "OBSERVATORY_VMSTACK_WORKER_HOST_KEY"
	workerHostWorkers = "OBSERVATORY_VMSTACK_WORKER_HOST_WORKERS"
	workerHostProject = "OBSERVATORY_VMSTACK_WORKER_HOST_PROJECT"
)

// workerPool is the pool the worker host's workers serve: nobody queues
// missions there, so they take none of the demo's.
const workerPool = "alert-drill"

// workerHostReady is what the worker host prints once all its workers
// have enrolled.
const workerHostReady = "workers enrolled"

func TestMain(m *testing.M) {
	if url := os.Getenv(workerHostURL); url != "" {
		if err := runWorkerHost(url, os.Getenv(workerHostKey), os.Getenv(workerHostWorkers), os.Getenv(workerHostProject)); err != nil {
			fmt.Fprintln(os.Stderr, "worker host:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runWorkerHost runs n real workers (package worker) of project's
// workerPool, as a machine of the fleet does: each enrolls at the
// observatory at url with the enrollment key and runs on the NATS
// credentials the enrollment gives it (worker.Enrolled), until the host's
// standard input ends (the test that started it is gone) or it is killed.
// It prints workerHostReady once every worker has enrolled.
func runWorkerHost(url, key, n, project string) error {
	workers, err := strconv.Atoi(n)
	if err != nil || workers <= 0 {
		return fmt.Errorf("%s=%q: want a positive number", workerHostWorkers, n)
	}
	if key == "" {
		return fmt.Errorf("%s is empty: want an enrollment key", workerHostKey)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enroll := worker.EnrollHTTP(url, key, nil)
	enrolled := make(chan struct{}, workers)
	errs := make(chan error, workers)
	for i := range workers {
		w := worker.Enrolled(worker.Config{
			ID: fmt.Sprintf("w-drill-%02d", i+1), Projects: []string{project}, Pools: []string{workerPool},
			Host: "vmstack-worker-host", Logger: slog.New(slog.DiscardHandler),
			Enroll: func(ctx context.Context, req worker.EnrollRequest) (worker.Grant, error) {
				g, err := enroll(ctx, req)
				if err == nil {
					enrolled <- struct{}{}
				}
				return g, err
			},
		})
		go func() { errs <- w.Run(ctx) }()
	}
	for range workers {
		select {
		case <-enrolled:
		case err := <-errs:
			return fmt.Errorf("a worker stopped before all enrolled: %w", err)
		}
	}
	fmt.Println(workerHostReady)
	stdin := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdin)
	}()
	select {
	case <-stdin:
		return nil
	case err := <-errs:
		return fmt.Errorf("a worker stopped: %w", err)
	}
}

// workerHost is a worker host process started by startWorkerHost.
type workerHost struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *observatorytest.SyncBuffer
	stderr *observatorytest.SyncBuffer
	exited chan struct{}
}

// startWorkerHost runs the test binary again as a worker host: n workers of
// project, enrolled at the observatory at base with the enrollment key, in
// a process of their own, so that killing it is a machine of the fleet
// dying (no worker.left: its workers go quiet, then stale, then offline).
// It returns once every worker has enrolled, and the host is killed when t
// ends, if not before.
func startWorkerHost(t *testing.T, base, key string, n int, project string) *workerHost {
	t.Helper()
	h := &workerHost{stdout: &observatorytest.SyncBuffer{}, stderr: &observatorytest.SyncBuffer{}, exited: make(chan struct{})}
	h.cmd = exec.Command(os.Args[0], "-test.run=^$")
	h.cmd.Env = append(os.Environ(), workerHostURL+"="+base, workerHostKey+"="+key,
		workerHostWorkers+"="+strconv.Itoa(n), workerHostProject+"="+project)
	h.cmd.Stdout, h.cmd.Stderr = h.stdout, h.stderr
	stdin, err := h.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdin = stdin
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start the worker host: %v", err)
	}
	go func() {
		_ = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(h.kill)
	await(t, time.Minute, "the worker host's workers to enroll", func() (bool, string) {
		h.checkAlive(t)
		return strings.Contains(h.stdout.String(), workerHostReady), h.stderr.String()
	})
	return h
}

// checkAlive fails t, with what the worker host said, if it has exited
// (a worker that could not connect with its credentials stops it).
func (h *workerHost) checkAlive(t *testing.T) {
	t.Helper()
	select {
	case <-h.exited:
		t.Fatalf("the worker host exited: %s", h.stderr)
	default:
	}
}

// kill kills the worker host (SIGKILL: its workers publish nothing more)
// and waits for it to exit.
func (h *workerHost) kill() {
	_ = h.cmd.Process.Kill()
	<-h.exited
	_ = h.stdin.Close()
}
