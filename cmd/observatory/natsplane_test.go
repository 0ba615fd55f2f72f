package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/natscluster"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/worker"
)

// adminCreds mints a user allowed everything in the account of the
// embedded NATS of s, with the keys in its data dir: what whoever holds
// the machine's data dir can do, and nobody else.
func (s *serveProc) adminCreds(t *testing.T) []byte {
	t.Helper()
	a, err := natsauth.Embedded(natsKeysDir(s.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := a.Creds(natsauth.User{Name: "test-operator", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// natsAdmin connects to the embedded NATS of s as adminCreds' user.
func (s *serveProc) natsAdmin(t *testing.T) (*stream.Publisher, jetstream.JetStream) {
	t.Helper()
	tok, seed, err := natsauth.Parse(s.adminCreds(t))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := stream.Connect(s.nats, nil, "serve-test-operator", nats.UserJWTAndSeed(tok, seed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return stream.NewPublisher(js), js
}

// TestServeNATSRefusesAnonymous: the embedded NATS of a real serve takes
// no anonymous client and no user of another operator (the start of the
// key theft of issue 12); its keys are private files in the data dir.
func TestServeNATSRefusesAnonymous(t *testing.T) {
	s := startServe(t)
	if !strings.Contains(s.stdout.String(), "operator mode") {
		t.Errorf("the banner does not say the NATS refuses anonymous clients:\n%s", s.stdout.String())
	}
	nc, err := nats.Connect(s.nats, nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to serve's NATS")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("an anonymous client: %v, want an authorization error", err)
	}
	other, err := natsauth.Embedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := other.Creds(natsauth.User{Name: "mallory", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, seed, _ := natsauth.Parse(creds)
	if nc, err := nats.Connect(s.nats, nats.UserJWTAndSeed(tok, seed), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a user of another operator connected")
	}
	entries, err := os.ReadDir(natsKeysDir(s.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file %s: mode %v (%v), want 0600", e.Name(), fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(natsKeysDir(s.dataDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the key directory: %v, want mode 0700", err)
	}
	// Its own operator's users do connect: the streams are there.
	_, js := s.natsAdmin(t)
	if _, err := js.Stream(context.Background(), stream.FleetStream); err != nil {
		t.Errorf("FLEET through an operator's user: %v", err)
	}
}

// TestServeEnrollsWorkersWithCredentials: a real serve's enrollment gives
// a worker credentials for its NATS (the URL serve listens on), with
// which a worker runtime completes a mission created through the API.
func TestServeEnrollsWorkersWithCredentials(t *testing.T) {
	s := startServe(t)
	admin := login(t, s.base, "admin", "admin")
	c := &live.Client{Base: s.base, HTTP: http.DefaultClient}
	ctx := context.Background()
	if _, err := c.Do(ctx, admin, http.MethodPost, "/api/v1/projects", map[string]string{"id": "acme", "name": "Acme"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	var k struct{ Key string }
	if _, err := c.Do(ctx, admin, http.MethodPost, "/api/v1/enrollment-keys", map[string]any{"projects": []string{"acme"}}, http.StatusCreated, &k); err != nil {
		t.Fatal(err)
	}
	var g struct {
		NATS struct{ URL, Creds string } `json:"nats"`
	}
	if _, err := c.Do(ctx, "", http.MethodPost, "/api/v1/workers/enroll", map[string]string{"key": k.Key, "worker_id": "w-probe"}, http.StatusOK, &g); err != nil {
		t.Fatal(err)
	}
	if g.NATS.URL != s.nats || !strings.Contains(g.NATS.Creds, "NATS USER JWT") {
		t.Fatalf("the enrollment's nats part: url %q, creds %d bytes; want %s and a credentials file", g.NATS.URL, len(g.NATS.Creds), s.nats)
	}
	w := worker.Enrolled(worker.Config{ID: "w-1", Agent: worker.Synthetic(worker.SyntheticConfig{TimeScale: 0.001, FailRate: -1}),
		Logger: quietLog(), Enroll: worker.EnrollHTTP(s.base, k.Key, nil)})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		w.Stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		cancel()
	}()
	if _, err := c.Do(ctx, admin, http.MethodPost, "/api/v1/projects/acme/missions", map[string]any{"title": "t", "model": "gpt-5"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, time.Minute, func() bool { return w.Stats().Completed == 1 }, "the enrolled worker did not complete the mission")
	_, snap := getFleet(t, s.base, admin, "acme")
	if p := snap.State.Projects["acme"]; p.MissionsDone != 1 {
		t.Errorf("acme's fold: %d missions done, want 1", p.MissionsDone)
	}
}

// TestServeNeverPrintsNATSPassword repeats finding 12 of issue 12: serve on
// an external NATS whose URL carries user:password shows the URL without
// them in its banner and logs, and a connect that fails says so without
// the password, in its error, stdout and stderr.
func TestServeNeverPrintsNATSPassword(t *testing.T) {
	const password = "hunter2-s3cret"
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		Username: "alice", Password: password, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	addr := strings.TrimPrefix(ns.ClientURL(), "nats://")
	s := startServe(t, "--nats-url", "nats://alice:"+password+"@"+addr)
	if !strings.Contains(s.stdout.String(), "nats://"+addr) {
		t.Errorf("the banner does not show the NATS without userinfo:\n%s", s.stdout.String())
	}
	s.stop(t)
	for name, out := range map[string]string{"stdout": s.stdout.String(), "stderr": s.stderr.String()} {
		if strings.Contains(out, password) {
			t.Errorf("serve's %s shows the NATS password:\n%s", name, out)
		}
	}

	for _, url := range []string{
		"nats://alice:" + password + "@127.0.0.1:1",
		"nats://127.0.0.1:1,nats://alice:" + password + "@127.0.0.1:2",
		"nats://alice:" + password + "@[::1:1",
	} {
		var stdout, stderr syncBuffer
		err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--nats-url", url}, noEnv, &stdout, &stderr)
		if err == nil {
			t.Fatalf("serve on %s started", stream.RedactURL(url))
		}
		for name, out := range map[string]string{"error": err.Error(), "stdout": stdout.String(), "stderr": stderr.String()} {
			if strings.Contains(out, password) {
				t.Errorf("a failed connect shows the NATS password in its %s: %s", name, out)
			}
		}
		if !strings.Contains(err.Error(), "connect nats") {
			t.Errorf("the error does not say what failed: %v", err)
		}
	}
}

// externalOperator runs a NATS server in operator mode as an operator
// sets one up with nsc (docs/deploy.md): an operator, a system account,
// and an application account with JetStream and a signing key apart from
// the account's own key. It returns the server, the account's public key
// and the signing key's seed.
func externalOperator(t *testing.T) (*server.Server, string, []byte) {
	t.Helper()
	tr := natscluster.NewTrust(t)
	res := &server.MemAccResolver{}
	_ = res.Store(tr.SystemAccount, tr.SystemJWT)
	_ = res.Store(tr.Account, tr.AccountJWT)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{tr.Operator}, SystemAccount: tr.SystemAccount, AccountResolver: res, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	return ns, tr.Account, tr.SigningSeed
}

// TestServeExternalNATSWithSigningKey runs serve on an external NATS in
// operator mode (externalOperator): serve gets its own user
// (--nats-creds, minted with the signing key as nsc would) and the
// signing key (--nats-account-signing-key), and enrollment gives workers
// credentials in that account, which the external NATS accepts and
// confines to their project.
func TestServeExternalNATSWithSigningKey(t *testing.T) {
	ns, account, skSeed := externalOperator(t)
	dir := t.TempDir()
	sk, err := natsauth.External(skSeed, account)
	if err != nil {
		t.Fatal(err)
	}
	serveCreds, err := sk.Creds(natsauth.User{Name: "observatory-serve", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	credsFile, skFile := filepath.Join(dir, "serve.creds"), filepath.Join(dir, "signing.nk")
	if err := os.WriteFile(credsFile, serveCreds, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(skFile, append(skSeed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--nats-url", ns.ClientURL(), "--nats-creds", credsFile, "--nats-account-signing-key", skFile)
	if !strings.Contains(s.stdout.String(), account) {
		t.Errorf("the banner does not name the workers' account:\n%s", s.stdout.String())
	}
	if anon, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(0)); err == nil {
		anon.Close()
		t.Fatal("the external NATS of this test takes anonymous clients")
	}
	admin := login(t, s.base, "admin", "admin")
	c := &live.Client{Base: s.base, HTTP: http.DefaultClient}
	ctx := context.Background()
	for _, p := range []string{"acme", "globex"} {
		if _, err := c.Do(ctx, admin, http.MethodPost, "/api/v1/projects", map[string]string{"id": p, "name": p}, http.StatusCreated, nil); err != nil {
			t.Fatal(err)
		}
	}
	var k struct{ Key string }
	if _, err := c.Do(ctx, admin, http.MethodPost, "/api/v1/enrollment-keys", map[string]any{"projects": []string{"acme"}}, http.StatusCreated, &k); err != nil {
		t.Fatal(err)
	}
	var g struct {
		NATS struct{ URL, Creds string } `json:"nats"`
	}
	if _, err := c.Do(ctx, "", http.MethodPost, "/api/v1/workers/enroll", map[string]string{"key": k.Key, "worker_id": "w-1"}, http.StatusOK, &g); err != nil {
		t.Fatal(err)
	}
	if acc, err := natsauth.AccountOf([]byte(g.NATS.Creds)); err != nil || acc != account {
		t.Fatalf("the worker's account: %s, %v; want %s", acc, err, account)
	}
	tok, seed, err := natsauth.Parse([]byte(g.NATS.Creds))
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := natsauth.InboxPrefix([]byte(g.NATS.Creds))
	errs := make(chan error, 8)
	nc, err := nats.Connect(g.NATS.URL, nats.UserJWTAndSeed(tok, seed), nats.CustomInboxPrefix(inbox), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("the worker's credentials on the external NATS: %v", err)
	}
	defer nc.Close()
	pub := stream.NewPublisher(mustJS(t, nc))
	ev := fleet.Event{ID: "ev-1", Type: fleet.TypeLLMCall, Time: time.Now().UTC(), ProjectID: "acme", AgentID: "a-1",
		Data: json.RawMessage(`{"model":"gpt-5","input_tokens":1,"output_tokens":1}`)}
	if _, err := pub.Publish(ctx, ev); err != nil {
		t.Errorf("acme's event: %v", err)
	}
	ev.ID, ev.ProjectID = "ev-2", "globex"
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := pub.Publish(pctx, ev); err == nil {
		t.Error("the worker published into globex")
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("publishing into globex: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("no permissions violation for publishing into globex")
	}
}

func mustJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestServeNATSFlags: flags that mean nothing together are refused before
// anything starts.
func TestServeNATSFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-creds", "x.creds"}, "--nats-creds is for an external NATS"},
		{[]string{"--nats-tls-ca", "ca.pem"}, "--nats-tls-ca is for an external NATS"},
		{[]string{"--nats-url", "nats://127.0.0.1:1", "--nats-account-signing-key", "sk.nk"}, "needs --nats-creds"},
		{[]string{"--nats-url", "nats://127.0.0.1:1", "--nats-tls-cert", "c.pem"}, "go together"},
		{[]string{"--nats-advertise", "nats://u:p@example.com:4222"}, "must not carry userinfo"},
		{[]string{"--nats-replicas", "3"}, "--nats-replicas is for a NATS cluster"},
		{[]string{"--nats-url", "nats://127.0.0.1:1", "--nats-replicas", "7"}, "want 1 to 5"},
	} {
		var stdout, stderr syncBuffer
		err := run(context.Background(), append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...), noEnv, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestFleetOnOperatorModeNATS runs the fleet example on an existing NATS
// that takes no anonymous client, with the credentials file of a user of
// its account (--nats-creds): every mission ends, none crosses a tenant.
func TestFleetOnOperatorModeNATS(t *testing.T) {
	dir := t.TempDir()
	a, err := natsauth.Embedded(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0", Authority: a})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	creds, err := a.Creds(natsauth.User{Name: "fleet-example", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "fleet.creds")
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := runFleet(t, "--nats-url", ns.ClientURL(), "--nats-creds", file, "--workers", "3", "--tenants", "2", "--missions", "8",
		"--rate", "20", "--time-scale", "0.002")
	if err != nil {
		t.Fatal(err)
	}
	if f.MissionsEnqueued != 8 || f.MissionsLost != 0 || f.CrossTenantLeaks != 0 {
		t.Errorf("enqueued %d, lost %d, leaks %d; want 8, 0, 0", f.MissionsEnqueued, f.MissionsLost, f.CrossTenantLeaks)
	}
}

// TestServeUpgradesAnOlderDataDir: a data dir an older release made (an
// open embedded NATS: its streams in the global account) is served by
// serve in operator mode with its history: the fold shows what FLEET held.
func TestServeUpgradesAnOlderDataDir(t *testing.T) {
	dir := t.TempDir()
	old, err := stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := stream.Connect("", old, "older-release")
	if err != nil {
		t.Fatal(err)
	}
	js := mustJS(t, nc)
	ctx := context.Background()
	if err := stream.EnsureStreams(ctx, js, stream.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.OpenRegistry(ctx, js, stream.RegistryConfig{}); err != nil {
		t.Fatal(err)
	}
	ev := fleet.Event{ID: "ev-old", Type: fleet.TypeAgentCreated, Time: time.Now().UTC(), ProjectID: "acme", AgentID: "acme-triager",
		Data: json.RawMessage(`{"name":"Triager","model":"claude-haiku-4-5"}`)}
	if _, err := stream.NewPublisher(js).Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()

	s := startServe(t, "--data-dir", dir)
	if nc, err := nats.Connect(s.nats, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("the upgraded server takes anonymous clients")
	}
	admin := login(t, s.base, "admin", "admin")
	streamtest.Eventually(t, 30*time.Second, func() bool {
		code, snap := getFleet(t, s.base, admin, "acme")
		_, ok := snap.State.Agents["acme-triager"]
		return code == http.StatusOK && ok
	}, "the agent the older release recorded is not in the fold after the upgrade")
	if !strings.Contains(s.stderr.String(), "nats.account_migrated") {
		t.Error("the move of the older data was not logged")
	}
}

// credsFile writes adminCreds to a file of the test and returns its path
// (for commands that take --nats-creds).
func (s *serveProc) credsFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "operator.creds")
	if err := os.WriteFile(path, s.adminCreds(t), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
