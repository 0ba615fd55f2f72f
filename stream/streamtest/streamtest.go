// Package streamtest runs a real embedded NATS server with the Observatory
// streams and a running Hub for tests of other packages.
package streamtest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/natsauth"
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
	// Authority is the server's trust chain when it runs in operator mode
	// (Options.Auth), nil otherwise. Conn is then a user allowed
	// everything, as serve's own.
	Authority *natsauth.Authority

	cancel context.CancelFunc
	runErr chan error
}

// Options are what StartWith may change from Start's defaults.
type Options struct {
	// Auth runs the server in operator mode (package natsauth), as serve
	// runs its embedded NATS: no anonymous client connects; Env.Authority
	// mints users.
	Auth bool
}

// Start starts NATS on a random loopback port with its store in a temporary
// dir, creates the streams and runs a hub with cfg until the test ends. The
// server accepts anonymous clients; StartWith can make it refuse them.
func Start(t testing.TB, cfg stream.HubConfig) *Env {
	t.Helper()
	return StartWith(t, cfg, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, cfg stream.HubConfig, o Options) *Env {
	t.Helper()
	dir := t.TempDir()
	e := &Env{Dir: dir}
	if o.Auth {
		a, err := natsauth.Embedded(filepath.Join(dir, "keys"))
		if err != nil {
			t.Fatal(err)
		}
		e.Authority = a
	}
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0", Authority: e.Authority})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e.Server = ns
	e.Connect(t)
	e.StartHub(t, cfg)
	return e
}

// Creds mints the credentials of u on an Env in operator mode, made now
// (the wall clock: the NATS server judges expiry by it).
func (e *Env) Creds(t testing.TB, u natsauth.User) []byte {
	t.Helper()
	if e.Authority == nil {
		t.Fatal("streamtest: Creds needs an Env started with Options{Auth: true}")
	}
	creds, err := e.Authority.Creds(u, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// Dial connects over loopback TCP with creds, as a program on another
// machine would: with the credentials' inbox prefix, no reconnects, and
// the server's asynchronous errors (permissions violations) sent to errs
// when it is not nil. The connection closes when the test ends.
func (e *Env) Dial(t testing.TB, creds []byte, errs chan<- error) (*nats.Conn, error) {
	t.Helper()
	tok, seed, err := natsauth.Parse(creds)
	if err != nil {
		return nil, err
	}
	inbox, err := natsauth.InboxPrefix(creds)
	if err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.UserJWTAndSeed(tok, seed), nats.CustomInboxPrefix(inbox), nats.MaxReconnects(0)}
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	}
	nc, err := nats.Connect(e.Server.ClientURL(), opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	return nc, nil
}

// Connect (re)connects to the server and ensures the streams.
func (e *Env) Connect(t testing.TB) {
	t.Helper()
	var opts []nats.Option
	if e.Authority != nil {
		tok, seed, err := natsauth.Parse(e.Creds(t, natsauth.User{Name: "streamtest", Publish: []string{">"}, Subscribe: []string{">"}}))
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, nats.UserJWTAndSeed(tok, seed))
	}
	nc, err := stream.Connect("", e.Server, "streamtest", opts...)
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
