package stream_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/stream"
)

// connectAs connects in process to ns with a user of a allowed everything
// (serve's own kind of user).
func connectAs(t *testing.T, ns *server.Server, a *natsauth.Authority) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	creds, err := a.Creds(natsauth.User{Name: "serve", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, seed, err := natsauth.Parse(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := stream.Connect("", ns, "test", nats.UserJWTAndSeed(tok, seed))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// holdings is what a data dir holds that an upgrade must keep.
type holdings struct {
	FleetMsgs, AuditMsgs, Missions uint64
	FleetCreated                   time.Time
	Project                        string
	Consumer                       string
}

func holdingsOf(t *testing.T, js jetstream.JetStream) holdings {
	t.Helper()
	ctx := testCtx(t)
	var h holdings
	for name, n := range map[string]*uint64{stream.FleetStream: &h.FleetMsgs, stream.AuditStream: &h.AuditMsgs, stream.MissionsStream: &h.Missions} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		*n = info.State.Msgs
		if name == stream.FleetStream {
			h.FleetCreated = info.Created
		}
	}
	kv, err := js.KeyValue(ctx, stream.RegistryBucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", stream.RegistryBucket, err)
	}
	e, err := kv.Get(ctx, "projects.acme")
	if err != nil {
		t.Fatalf("projects.acme: %v", err)
	}
	h.Project = string(e.Value())
	c, err := js.Consumer(ctx, stream.MissionsStream, "workers-acme")
	if err != nil {
		t.Fatalf("consumer workers-acme: %v", err)
	}
	h.Consumer = c.CachedInfo().Config.FilterSubject
	return h
}

// TestOperatorModeKeepsOlderData: a data dir made by an older release (an
// open server, its streams, buckets and consumers in the global account)
// is started in operator mode: nothing anonymous connects, and FLEET,
// AUDIT, MISSIONS with its consumer and the registry are all there, FLEET
// of the same lineage (its creation time is the fold's epoch). A second
// start moves nothing and finds the same.
func TestOperatorModeKeepsOlderData(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)

	// The previous code path: an open server on the dir.
	old, err := stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := stream.Connect("", old, "old")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.EnsureStreams(ctx, js, stream.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	reg, err := stream.OpenRegistry(ctx, js, stream.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Records.Create(ctx, "projects.acme", []byte(`{"id":"acme"}`)); err != nil {
		t.Fatal(err)
	}
	now := fleettest.Epoch()
	pub := stream.NewPublisher(js)
	for i := range 3 {
		if _, err := pub.Publish(ctx, fleet.Event{ID: fmt.Sprintf("ev-%d", i), Type: fleet.TypeAgentCreated, Time: now, ProjectID: "acme", AgentID: "a-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Audit(ctx, fleet.Event{ID: "au-1", Type: "auth.login", Time: now, ProjectID: "acme", UserID: "admin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Missions.Enqueue(ctx, fleet.Event{ID: "ev-m", Type: fleet.TypeMissionQueued, Time: now, ProjectID: "acme", MissionID: "m-1"}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, stream.MissionsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "workers-acme", FilterSubject: "missions.acme", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	before := holdingsOf(t, js)
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()
	if _, err := os.Stat(filepath.Join(dir, "nats", "jetstream", "$G", "streams", stream.FleetStream)); err != nil {
		t.Fatalf("the older release's layout is not what this test assumes: %v", err)
	}

	a, err := natsauth.Embedded(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	for start := range 2 {
		ns, err := stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0", Authority: a})
		if err != nil {
			t.Fatal(err)
		}
		if anon, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(0)); err == nil {
			anon.Close()
			t.Fatalf("start %d: an anonymous client connected", start+1)
		}
		nc, js := connectAs(t, ns, a)
		if diff := cmp.Diff(before, holdingsOf(t, js)); diff != "" {
			t.Errorf("start %d in operator mode (-before +after):\n%s", start+1, diff)
		}
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	}
	if _, err := os.Stat(filepath.Join(dir, "nats", "jetstream", "$G")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the global account's directory is still there: %v", err)
	}
}

// TestOperatorModeMovesNothingOverNewerData: when the account already has
// data, an older $G directory (an older release started on the dir again)
// is left alone rather than put over it.
func TestOperatorModeMovesNothingOverNewerData(t *testing.T) {
	dir := t.TempDir()
	a, err := natsauth.Embedded(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0", Authority: a})
	if err != nil {
		t.Fatal(err)
	}
	nc, js := connectAs(t, ns, a)
	if err := stream.EnsureStreams(testCtx(t), js, stream.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()
	stale := filepath.Join(dir, "nats", "jetstream", "$G", "left-by-an-older-release")
	if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ns, err = stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0", Authority: a})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, js = connectAs(t, ns, a)
	defer nc.Close()
	if _, err := js.Stream(testCtx(t), stream.FleetStream); err != nil {
		t.Errorf("FLEET after a start with a stale $G beside it: %v", err)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Errorf("the stale $G was touched: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                           "nats://127.0.0.1:4222",
		"nats://alice:s3cr3t@nats-1:4222":                 "nats://nats-1:4222",
		"tls://tok3n@nats-1:4222,nats://bob:pw@nats-2:42": "tls://nats-1:4222,nats://nats-2:42",
		"alice:s3cr3t@nats-1:4222":                        "nats-1:4222",
		"nats://al ice:s3cr3t@host:4222":                  "(a NATS URL that does not parse)",
		"":                                                "",
	} {
		if got := stream.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConnectErrorsCarryNoPassword: a connect that fails, with a password
// in the URL (and one only a parser error would echo), names the URL
// without it and keeps the cause for errors.Is.
func TestConnectErrorsCarryNoPassword(t *testing.T) {
	for _, url := range []string{
		"nats://alice:hunter2-secret@127.0.0.1:1",
		"nats://127.0.0.1:1,nats://bob:hunter2-secret@127.0.0.1:2",
		"nats://alice:hunter2-secret@[::1:1",
	} {
		_, err := stream.Connect(url, nil, "test", nats.MaxReconnects(0), nats.Timeout(time.Second))
		if err == nil {
			t.Fatalf("%s: connected", stream.RedactURL(url))
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error carries the password: %v", err)
		}
		if !strings.Contains(err.Error(), "connect nats") {
			t.Errorf("the error does not say what failed: %v", err)
		}
	}
	_, err := stream.Connect("nats://alice:hunter2-secret@127.0.0.1:1", nil, "test", nats.MaxReconnects(0))
	if !errors.Is(err, nats.ErrNoServers) {
		t.Errorf("the cause is lost: %v", err)
	}
}

// FuzzRedactURL: whatever the input, the output holds no password of a URL
// that has one, and never panics.
func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{"nats://a:b@h:1", "h:1", "tls://t@h,nats://u:p@h2", "nats://[::1]:4222", "::@@", "nats://u:p%40x@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := stream.RedactURL(s)
		for _, p := range strings.Split(s, ",") {
			p = strings.TrimSpace(p)
			at := strings.LastIndex(p, "@")
			if at < 0 {
				continue
			}
			info := p[:at]
			if i := strings.Index(info, "://"); i >= 0 {
				info = info[i+3:]
			}
			if _, pass, ok := strings.Cut(info, ":"); ok && len(pass) >= 6 && !strings.ContainsAny(pass, ",") && strings.Contains(out, pass) {
				t.Fatalf("RedactURL(%q) = %q keeps the password %q", s, out, pass)
			}
		}
	})
}

// publishBench publishes fleet events with JetStream acknowledgements
// through a publisher on nc, b.N in all, 64 in flight.
func publishBench(b *testing.B, nc *nats.Conn) {
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	pub := stream.NewPublisher(js)
	ctx := context.Background()
	now := time.Now()
	sem := make(chan struct{}, 64)
	errs := make(chan error, 64)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			ev := fleet.Event{ID: fmt.Sprintf("ev-%d-%d", now.UnixNano(), i), Type: fleet.TypeLLMCall, Time: now, ProjectID: "acme",
				AgentID: "a-1", Data: []byte(`{"model":"gpt-5","input_tokens":1200,"output_tokens":300}`)}
			if _, err := pub.Publish(ctx, ev); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// The process's CPU (client and server both run in it) per event: less
	// noisy than the rate on a shared machine.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// benchServer starts a server on a loopback port with FLEET, in operator
// mode when a is not nil, and no hub: only the publishing is measured.
func benchServer(b *testing.B, a *natsauth.Authority) *server.Server {
	b.Helper()
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: b.TempDir(), Listen: "127.0.0.1:0", Authority: a})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ns.Shutdown)
	var opts []nats.Option
	if a != nil {
		creds, err := a.Creds(natsauth.User{Name: "serve", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		tok, seed, _ := natsauth.Parse(creds)
		opts = append(opts, nats.UserJWTAndSeed(tok, seed))
	}
	nc, err := stream.Connect("", ns, "setup", opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if err := stream.EnsureStreams(context.Background(), js, stream.StreamsConfig{}); err != nil {
		b.Fatal(err)
	}
	return ns
}

// BenchmarkPublishFleetEvents measures what the permission checks cost:
// fleet events published with JetStream acks over loopback TCP, 64 in
// flight, by a worker's restricted user (publish fleet.acme.>, its inbox)
// on a server in operator mode, and by an anonymous client of an open
// server (the previous release), in the same run.
//
//	go test -run '^$' -bench PublishFleetEvents -benchtime 20000x -count 5 ./stream/
func BenchmarkPublishFleetEvents(b *testing.B) {
	b.Run("open", func(b *testing.B) {
		ns := benchServer(b, nil)
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		publishBench(b, nc)
	})
	b.Run("worker-creds", func(b *testing.B) {
		a, err := natsauth.Embedded(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		ns := benchServer(b, a)
		creds, err := a.Creds(natsauth.User{Name: "w-bench", Publish: []string{"fleet.acme.>"}, Inbox: true, Expires: time.Now().Add(time.Hour)}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		tok, seed, _ := natsauth.Parse(creds)
		inbox, _ := natsauth.InboxPrefix(creds)
		nc, err := nats.Connect(ns.ClientURL(), nats.UserJWTAndSeed(tok, seed), nats.CustomInboxPrefix(inbox))
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		publishBench(b, nc)
	})
}
