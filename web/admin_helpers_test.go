package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// adminEnv is a Server over loopback on a real in-process NATS with the
// streams, the registry and a running hub.
type adminEnv struct {
	*env
	nats   *streamtest.Env
	reg    *stream.Registry
	events *flakyEvents
	admin  string // an admin API token
}

// newAdminEnv starts NATS, a hub with a 10 ms tick, the registry, and a
// server wired to them; edit may change the config (add a budget gate).
func newAdminEnv(t *testing.T, edit func(*web.Config)) *adminEnv {
	t.Helper()
	n := streamtest.Start(t, stream.HubConfig{Tick: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := stream.OpenRegistry(ctx, n.JS, stream.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// The server's clock is the test clock: tokens, records and the events
	// the API writes take their times from it. What NATS stores (and the
	// fold and the audit log's time range go by) carries the wall clock's.
	a := &adminEnv{env: &env{logs: &syncBuffer{}, clock: fleettest.NewClock()}, nats: n, reg: reg, events: &flakyEvents{pub: n.Publisher}}
	cfg := web.Config{
		AdminPassword: adminPassword,
		SigningKey:    bytes.Repeat([]byte("k"), 32),
		Logger:        slog.New(slog.NewJSONHandler(a.logs, nil)),
		Now:           a.clock.Now,
		BcryptCost:    bcrypt.MinCost,
		Records:       reg.Records,
		Work:          reg.Work,
		Events:        a.events,
		Missions:      reg.Missions,
		AuditLog:      stream.NewAuditLog(n.JS),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := web.New(cfg, n.Hub, n.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	a.srv, a.url = srv, newTestServer(t, srv)
	a.admin = a.adminToken(t)
	return a
}

// newTestServer serves srv over loopback until the test ends and returns
// its URL.
func newTestServer(t testing.TB, srv *web.Server) string {
	t.Helper()
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.Close()
	})
	return ts.URL
}

// flakyEvents publishes to FLEET unless told to fail events of one type.
type flakyEvents struct {
	pub  *stream.Publisher
	fail atomic.Value // string: the event type to refuse
}

func (f *flakyEvents) Publish(ctx context.Context, ev fleet.Event) (uint64, error) {
	if typ, _ := f.fail.Load().(string); typ == ev.Type {
		return 0, errors.New("publish refused by the test")
	}
	return f.pub.Publish(ctx, ev)
}

func (f *flakyEvents) failOn(typ string) { f.fail.Store(typ) }

// call sends a request with a bearer token (none when tok is "").
func (a *adminEnv) call(t *testing.T, method, path, tok, body string) response {
	t.Helper()
	var h http.Header
	if tok != "" {
		h = bearer(tok)
	}
	return a.do(t, method, path, body, h)
}

// must sends a request, expects status and decodes the body into out.
func (a *adminEnv) must(t *testing.T, method, path, tok, body string, status int, out any) {
	t.Helper()
	res := a.call(t, method, path, tok, body)
	if res.status != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.status, status, res.body)
	}
	if out != nil {
		if err := json.Unmarshal(res.body, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, res.body)
		}
	}
}

// project creates a project as the admin.
func (a *adminEnv) project(t *testing.T, id string) {
	t.Helper()
	a.must(t, "POST", "/api/v1/projects", a.admin, `{"id":"`+id+`","name":"`+id+` inc"}`, http.StatusCreated, nil)
}

// agent registers an agent as the admin.
func (a *adminEnv) agent(t *testing.T, project, id, model string) {
	t.Helper()
	a.must(t, "POST", "/api/v1/projects/"+project+"/agents", a.admin,
		`{"id":"`+id+`","name":"`+id+`","role":"triage","model":"`+model+`"}`, http.StatusCreated, nil)
}

// view waits until the hub has folded seq and returns scope's state.
func (a *adminEnv) view(t *testing.T, scope string, seq uint64) fleet.View {
	t.Helper()
	streamtest.WaitSeq(t, a.nats.Hub, seq)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, err := a.nats.Hub.View(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// lastSeqs returns the last sequence of every stream the admin API writes
// to, AUDIT aside (denials are audited).
func (a *adminEnv) lastSeqs(t *testing.T) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]uint64{}
	for _, name := range []string{stream.FleetStream, stream.MissionsStream, "KV_" + stream.RegistryBucket, "KV_" + stream.WorkBucket} {
		s, err := a.nats.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = s.CachedInfo().State.LastSeq
	}
	return out
}

// projectToken mints an API token of project.
func (a *adminEnv) projectToken(t *testing.T, project string) string {
	return a.token(t, auth.RoleProject, project)
}

// testGate is a budget gate whose decisions the test chooses, recording
// what it was asked.
type testGate struct {
	mu       sync.Mutex
	decide   func(fleet.BudgetRequest) (fleet.BudgetDecision, error)
	reserved []fleet.BudgetRequest
	settled  map[string]fleet.Micros
	released []string
}

func newTestGate(decide func(fleet.BudgetRequest) (fleet.BudgetDecision, error)) *testGate {
	return &testGate{decide: decide, settled: map[string]fleet.Micros{}}
}

func (g *testGate) Reserve(ctx context.Context, req fleet.BudgetRequest) (fleet.BudgetDecision, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reserved = append(g.reserved, req)
	return g.decide(req)
}

func (g *testGate) Settle(ctx context.Context, reservation string, actual fleet.Micros) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.settled[reservation] = actual
	return nil
}

func (g *testGate) Release(ctx context.Context, reservation string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.released = append(g.released, reservation)
	return nil
}

// calls returns copies of what the gate was asked.
func (g *testGate) calls() (reserved []fleet.BudgetRequest, settled map[string]fleet.Micros, released []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	settled = map[string]fleet.Micros{}
	for k, v := range g.settled {
		settled[k] = v
	}
	return append([]fleet.BudgetRequest(nil), g.reserved...), settled, append([]string(nil), g.released...)
}

var _ web.BudgetGate = (*testGate)(nil)

// snapshotOnlyHub hides the real hub's View, so that the server reads the
// fold through snapshot frames as it does with other hubs.
type snapshotOnlyHub struct{ web.Hub }
