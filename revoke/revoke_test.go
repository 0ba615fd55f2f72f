package revoke_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/revoke"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

const maxAge = 90 * 24 * time.Hour

// open opens a Store on its own connection to n's server, as another
// replica would, and runs it until the test ends.
func open(t *testing.T, n *streamtest.Env, clock *fleettest.Clock) *revoke.Store {
	t.Helper()
	nc, err := nats.Connect(n.Server.ClientURL())
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
	s, err := revoke.Open(ctx, js, revoke.Config{MaxAge: maxAge, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// TestRevocationReachesEveryReplica: a revocation made through one Store
// is seen by another on the same NATS, and by one opened afterwards; the
// stored entry expires when the token would have (a per-key TTL).
func TestRevocationReachesEveryReplica(t *testing.T) {
	n := streamtest.Start(t, stream.HubConfig{})
	clock := fleettest.NewClock()
	a, b := open(t, n, clock), open(t, n, clock)
	const id = "abcdefghijklmnopqrst"
	if a.Revoked(id) || b.Revoked(id) {
		t.Fatal("revoked before anything was revoked")
	}
	until := clock.Now().Add(2 * time.Hour)
	if err := a.Revoke(context.Background(), id, until); err != nil {
		t.Fatal(err)
	}
	if !a.Revoked(id) {
		t.Error("the replica that revoked does not refuse the id at once")
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return b.Revoked(id) }, "the other replica never saw the revocation")
	if err := b.Revoke(context.Background(), id, until); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	if c := open(t, n, clock); !c.Revoked(id) || c.Len() != 1 {
		t.Errorf("a replica opened later: revoked %v, %d revocations", c.Revoked(id), c.Len())
	}

	// The stored entry: what it says, and its TTL (the token's remaining
	// life plus a minute's slack).
	msg, err := kvStream(t, n).GetLastMsgForSubject(context.Background(), "$KV."+revoke.Bucket+"."+id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := revoke.DecodeEntry(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if want := (revoke.Entry{RevokedAt: clock.Now().UTC(), Until: until.UTC()}); !cmp.Equal(got, want) {
		t.Errorf("entry %+v, want %+v", got, want)
	}
	if ttl := msg.Header.Get("Nats-TTL"); ttl != "2h1m0s" {
		t.Errorf("entry TTL %q, want 2h1m", ttl)
	}
}

func kvStream(t *testing.T, n *streamtest.Env) jetstream.Stream {
	t.Helper()
	s, err := n.JS.Stream(context.Background(), "KV_"+revoke.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRevokeRefusesBadInput: a malformed id is refused and nothing is
// written; a token already expired needs no entry.
func TestRevokeRefusesBadInput(t *testing.T) {
	n := streamtest.Start(t, stream.HubConfig{})
	clock := fleettest.NewClock()
	s := open(t, n, clock)
	for _, id := range []string{"", "ABC", "a.b", "a*", "a>", strings.Repeat("a", 65), "../x"} {
		if err := s.Revoke(context.Background(), id, clock.Now().Add(time.Hour)); !errors.Is(err, revoke.ErrBadID) {
			t.Errorf("Revoke(%q) = %v, want ErrBadID", id, err)
		}
	}
	if err := s.Revoke(context.Background(), "expiredtokenid00", clock.Now()); err != nil {
		t.Errorf("revoking an expired token: %v", err)
	}
	info, err := kvStream(t, n).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("the bucket holds %d entries, want none", info.State.Msgs)
	}
}

// TestUnreadableEntriesRevoke: an entry nobody can decode still revokes
// its id (fail closed); a deleted one no longer does.
func TestUnreadableEntriesRevoke(t *testing.T) {
	n := streamtest.Start(t, stream.HubConfig{})
	clock := fleettest.NewClock()
	s := open(t, n, clock)
	kv, err := n.JS.KeyValue(context.Background(), revoke.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "garbledentry0000", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return s.Revoked("garbledentry0000") }, "an unreadable entry did not revoke its id")
	if err := kv.Delete(context.Background(), "garbledentry0000"); err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return !s.Revoked("garbledentry0000") }, "a deleted entry still revokes")
}

// FuzzDecodeEntry: DecodeEntry never panics, and what it accepts has a
// time until which it matters.
func FuzzDecodeEntry(f *testing.F) {
	f.Add([]byte(`{"revoked_at":"2026-11-27T15:04:05Z","until":"2026-11-27T16:04:05Z"}`))
	f.Add([]byte(`{"until":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := revoke.DecodeEntry(b)
		if err == nil && e.Until.IsZero() {
			t.Fatalf("accepted %q without until", b)
		}
	})
}

// FuzzValidID: an id ValidID accepts is a NATS KV key of one token.
func FuzzValidID(f *testing.F) {
	f.Add("abcdefghijklmnopqrst")
	f.Add("a.b")
	f.Add("")
	f.Add("*")
	f.Fuzz(func(t *testing.T, id string) {
		if revoke.ValidID(id) && (id == "" || len(id) > 64 || strings.ContainsAny(id, ".*> /\\\x00")) {
			t.Fatalf("ValidID accepted %q", id)
		}
	})
}

// TestRevocationsSurviveNATSRestart: the NATS server restarts under two
// replicas; a revocation made after it is back still reaches the other
// replica (its watch, left behind by the restart, is replaced within two
// checks), and the ones made before are kept.
func TestRevocationsSurviveNATSRestart(t *testing.T) {
	dir := t.TempDir()
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := ns.Addr().String()
	t.Cleanup(func() { ns.Shutdown() })
	clock := fleettest.NewClock()
	connect := func() jetstream.JetStream {
		nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	stores := make([]*revoke.Store, 2)
	for i := range stores {
		js := connect()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := revoke.Open(ctx, js, revoke.Config{MaxAge: maxAge, Now: clock.Now})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		stores[i] = s
	}
	a, b := stores[0], stores[1]
	const before, after = "revokedbeforerestart", "revokedafterrestart0"
	if err := a.Revoke(context.Background(), before, clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return b.Revoked(before) }, "no revocation before the restart")

	restarted := time.Now()
	ns.Shutdown()
	ns.WaitForShutdown()
	ns, err = stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return a.Revoke(ctx, after, clock.Now().Add(time.Hour)) == nil
	}, "no revocation could be stored after the restart")
	t.Logf("stored %s after the restart", time.Since(restarted))
	streamtest.Eventually(t, 20*time.Second, func() bool { return b.Revoked(after) }, "the other replica never saw the revocation made after the restart")
	t.Logf("seen %s after the restart", time.Since(restarted))
	if !b.Revoked(before) {
		t.Error("the revocation made before the restart was lost")
	}
}
