package natsauth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/natsauth"
)

// start runs an embedded server in operator mode with the authority of
// dir, listening on a free loopback port.
func start(t *testing.T, dir string) (*server.Server, *natsauth.Authority) {
	t.Helper()
	a, err := natsauth.Embedded(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	o := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: filepath.Join(dir, "js"), NoSigs: true, NoLog: true}
	if err := a.Configure(o); err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return ns, a
}

func connect(t *testing.T, url string, creds []byte, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	tok, seed, err := natsauth.Parse(creds)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := natsauth.InboxPrefix(creds)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.UserJWTAndSeed(tok, seed), nats.CustomInboxPrefix(inbox), nats.MaxReconnects(0))
	return nats.Connect(url, opts...)
}

// permErr collects the permission violations the server reports
// asynchronously on a connection.
type permErr struct{ ch chan error }

func newPermErr() *permErr { return &permErr{ch: make(chan error, 64)} }

func (p *permErr) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case p.ch <- err:
		default:
		}
	})
}

func (p *permErr) want(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-p.ch:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("%s: error %v, want a permissions violation", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no permissions violation reported", what)
	}
}

func TestAnonymousClientsAreRefused(t *testing.T) {
	ns, _ := start(t, t.TempDir())
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	}
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous connect: %v, want an authorization error", err)
	}
}

func TestCredentialsOfAnotherOperatorAreRefused(t *testing.T) {
	ns, _ := start(t, t.TempDir())
	other, err := natsauth.Embedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := other.Creds(natsauth.User{Name: "mallory", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := connect(t, ns.ClientURL(), creds); err == nil {
		nc.Close()
		t.Fatal("a user of another operator connected")
	}
}

// TestRestrictedUser: a user allowed one project's fleet subjects and its
// own inbox publishes there with JetStream acknowledgements, and is refused
// another project's subject, the KV API and stream management; nothing it
// was refused is stored.
func TestRestrictedUser(t *testing.T) {
	ns, a := start(t, t.TempDir())
	now := time.Now()
	admin, err := a.Creds(natsauth.User{Name: "serve", Publish: []string{">"}, Subscribe: []string{">"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	anc, err := connect(t, ns.ClientURL(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	ajs, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "FLEET", Subjects: []string{"fleet.>"}})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := ajs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "SECRETS"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	creds, err := a.Creds(natsauth.User{Name: "w-01", Publish: []string{"fleet.acme.>"}, Inbox: true, Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	perms := newPermErr()
	wnc, err := connect(t, ns.ClientURL(), creds, perms.handler())
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	wjs, err := jetstream.New(wnc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wjs.Publish(ctx, "fleet.acme.llm.call", []byte(`{}`)); err != nil {
		t.Fatalf("publishing its own project's event: %v", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := wjs.Publish(pctx, "fleet.globex.llm.call", []byte(`{}`)); err == nil {
		t.Error("published into another project")
	}
	pcancel()
	perms.want(t, "publishing into another project")

	kctx, kcancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := wjs.KeyValue(kctx, "SECRETS"); err == nil {
		t.Error("opened a KV bucket")
	}
	kcancel()
	perms.want(t, "opening a KV bucket")

	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	if err := wjs.DeleteStream(sctx, "FLEET"); err == nil {
		t.Error("deleted a stream")
	}
	scancel()
	perms.want(t, "deleting a stream")

	if _, err := wnc.Subscribe("_INBOX.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	perms.want(t, "subscribing to everyone's inboxes")

	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.State.Subjects != nil && len(info.State.Subjects) > 1 {
		t.Errorf("FLEET holds %d messages, want the one allowed publish", info.State.Msgs)
	}
	if _, err := ajs.Stream(ctx, "FLEET"); err != nil {
		t.Errorf("FLEET after the refused delete: %v", err)
	}
}

func TestExpiredCredentialsAreRefused(t *testing.T) {
	ns, a := start(t, t.TempDir())
	// Minted an hour ago by the clock of the minter, expired a minute ago
	// by the server's (the wall clock: the server judges expiry by it).
	now := time.Now()
	creds, err := a.Creds(natsauth.User{Name: "late", Publish: []string{"fleet.acme.>"}, Expires: now.Add(-time.Minute)}, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := connect(t, ns.ClientURL(), creds); err == nil {
		nc.Close()
		t.Fatal("expired credentials connected")
	}
}

func TestCredsRefusesAnExpiryInThePast(t *testing.T) {
	a, err := natsauth.Embedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := fleettest.Epoch()
	if _, err := a.Creds(natsauth.User{Name: "x", Expires: now}, now); err == nil {
		t.Error("minted credentials that expire when they are made")
	}
}

// TestKeysPersistAndStayPrivate: a second start with the same directory is
// the same account (JetStream finds its data again), the key files are
// 0600, and a key file others can read is refused.
func TestKeysPersistAndStayPrivate(t *testing.T) {
	dir := t.TempDir()
	a1, err := natsauth.Embedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := natsauth.Embedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a1.AccountID() != a2.AccountID() {
		t.Errorf("the account changed between starts: %s, %s", a1.AccountID(), a2.AccountID())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("%d files in the key directory, want 3", len(entries))
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if err := os.Chmod(filepath.Join(dir, "account.nk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.Embedded(dir); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a world-readable key: %v, want a refusal", err)
	}
}

// TestExternalSigningKey: users minted with an account signing key carry
// the account as issuer_account, and AccountOf reads it back; malformed
// keys and account ids are refused.
func TestExternalSigningKey(t *testing.T) {
	acc, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	accID, _ := acc.PublicKey()
	sk, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := sk.Seed()
	a, err := natsauth.External(append(seed, '\n'), accID)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := a.Creds(natsauth.User{Name: "w-01", Publish: []string{"fleet.acme.>"}, Inbox: true}, fleettest.Epoch())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := natsauth.AccountOf(creds); err != nil || got != accID {
		t.Errorf("AccountOf = %s, %v; want %s", got, err, accID)
	}
	userSeed, _ := nkeys.CreateUser()
	us, _ := userSeed.Seed()
	for _, tc := range []struct {
		seed    []byte
		account string
	}{
		{[]byte("SAJUNK"), accID},
		{us, accID},
		{seed, "not an account"},
	} {
		if _, err := natsauth.External(tc.seed, tc.account); err == nil {
			t.Errorf("External(%.8q, %q) accepted", tc.seed, tc.account)
		}
	}
}
