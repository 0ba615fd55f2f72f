// Package streamtest runs a real embedded NATS server with the Observatory
// streams and a running Hub for tests of other packages.
package streamtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/stream"
)

// Env is a NATS server, a connection, the streams and a running hub.
type Env struct {
	Server    *server.Server
	Conn      *nats.Conn
	JS        jetstream.JetStream
	Publisher *stream.Publisher
	Hub       *stream.Hub
	Dir       string

	cancel context.CancelFunc
	runErr chan error
}

// Start starts NATS on a random loopback port with its store in a temporary
// dir, creates the streams and runs a hub with cfg until the test ends.
func Start(t testing.TB, cfg stream.HubConfig) *Env {
	t.Helper()
	dir := t.TempDir()
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e := &Env{Server: ns, Dir: dir}
	e.Connect(t)
	e.StartHub(t, cfg)
	return e
}

// Connect (re)connects to the server and ensures the streams.
func (e *Env) Connect(t testing.TB) {
	t.Helper()
	nc, err := stream.Connect("", e.Server, "streamtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stream.EnsureStreams(ctx, js, stream.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	e.Conn, e.JS, e.Publisher = nc, js, stream.NewPublisher(js)
}

// StartHub runs a new hub with cfg; it stops when the test ends or StopHub
// is called.
func (e *Env) StartHub(t testing.TB, cfg stream.HubConfig) *stream.Hub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := stream.NewHub(e.JS, cfg)
	errc := make(chan error, 1)
	go func() { errc <- h.Run(ctx) }()
	e.Hub, e.cancel, e.runErr = h, cancel, errc
	t.Cleanup(func() { e.StopHub(t) })
	WaitReady(t, h)
	return h
}

// StopHub stops the running hub and fails the test if it ended in error.
func (e *Env) StopHub(t testing.TB) {
	t.Helper()
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	if err := <-e.runErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("hub run: %v", err)
	}
}

// WaitReady waits until h has caught up with the stream.
func WaitReady(t testing.TB, h *stream.Hub) {
	t.Helper()
	Eventually(t, 10*time.Second, func() bool { return h.Ready() == nil }, "hub not ready")
}

// WaitSeq waits until h has folded the stream up to seq.
func WaitSeq(t testing.TB, h *stream.Hub, seq uint64) {
	t.Helper()
	Eventually(t, 20*time.Second, func() bool { return h.Stats().Seq >= seq }, "hub did not reach seq")
}

// Eventually polls cond until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
