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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/worker"
)

// Variables that make the test binary a worker host instead of running the
// tests (see startWorkerHost).
const (
	workerHostNATS    = "OBSERVATORY_VMSTACK_WORKER_HOST_NATS"
	workerHostWorkers = "OBSERVATORY_VMSTACK_WORKER_HOST_WORKERS"
	workerHostProject = "OBSERVATORY_VMSTACK_WORKER_HOST_PROJECT"
)

// workerPool is the pool the worker host's workers serve: nobody queues
// missions there, so they take none of the demo's.
const workerPool = "alert-drill"

// workerHostReady is what the worker host prints once its workers run.
const workerHostReady = "workers running"

func TestMain(m *testing.M) {
	if url := os.Getenv(workerHostNATS); url != "" {
		if err := runWorkerHost(url, os.Getenv(workerHostWorkers), os.Getenv(workerHostProject)); err != nil {
			fmt.Fprintln(os.Stderr, "worker host:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runWorkerHost runs n real workers (package worker) of project on the NATS
// at url, as a machine of the fleet does, until its standard input ends
// (the test that started it is gone) or it is killed.
func runWorkerHost(url, n, project string) error {
	workers, err := strconv.Atoi(n)
	if err != nil || workers <= 0 {
		return fmt.Errorf("%s=%q: want a positive number", workerHostWorkers, n)
	}
	nc, err := stream.Connect(url, nil, "vmstack-worker-host")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pub := stream.NewPublisher(js)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, workers)
	for i := range workers {
		w := worker.New(js, pub, worker.Config{
			ID: fmt.Sprintf("w-drill-%02d", i+1), Projects: []string{project}, Pools: []string{workerPool},
			Host: "vmstack-worker-host", Logger: slog.New(slog.DiscardHandler),
		})
		go func() { errs <- w.Run(ctx) }()
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
// project on the NATS at url, in a process of their own, so that killing
// it is a machine of the fleet dying (no worker.left: its workers go quiet,
// then stale, then offline). It is killed when t ends, if not before.
func startWorkerHost(t *testing.T, url string, n int, project string) *workerHost {
	t.Helper()
	h := &workerHost{stdout: &observatorytest.SyncBuffer{}, stderr: &observatorytest.SyncBuffer{}, exited: make(chan struct{})}
	h.cmd = exec.Command(os.Args[0], "-test.run=^$")
	h.cmd.Env = append(os.Environ(), workerHostNATS+"="+url, workerHostWorkers+"="+strconv.Itoa(n), workerHostProject+"="+project)
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
	await(t, time.Minute, "the worker host to start its workers", func() (bool, string) {
		select {
		case <-h.exited:
			t.Fatalf("the worker host exited: %s", h.stderr)
		default:
		}
		return strings.Contains(h.stdout.String(), workerHostReady), h.stderr.String()
	})
	return h
}

// kill kills the worker host (SIGKILL: its workers publish nothing more)
// and waits for it to exit.
func (h *workerHost) kill() {
	_ = h.cmd.Process.Kill()
	<-h.exited
	_ = h.stdin.Close()
}
