package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/worker"
)

// newNATSAdminEnv is newAdminEnv on a NATS in operator mode, as serve runs
// its embedded one: the server's own connection is a user allowed
// everything, and enrollment makes the grant's consumers, mints the
// worker's credentials and keeps its pass counts (web.WorkersConfig).
func newNATSAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	n := streamtest.StartWith(t, stream.HubConfig{Tick: 10 * time.Millisecond}, streamtest.Options{Auth: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := stream.OpenRegistry(ctx, n.JS, stream.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	skips, err := stream.MissionSkips(ctx, n.JS)
	if err != nil {
		t.Fatal(err)
	}
	// The server's clock is the test clock. The credentials' expiry is on
	// the wall clock (WorkersConfig.NATSNow's default), by which the NATS
	// server judges it.
	a := &adminEnv{env: &env{logs: &syncBuffer{}, clock: fleettest.NewClock()}, nats: n, reg: reg, events: &flakyEvents{pub: n.Publisher}}
	srv, err := web.New(web.Config{
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
		Workers: web.WorkersConfig{
			Authority: n.Authority,
			NATSURL:   n.Server.ClientURL(),
			Consumers: worker.NewConsumers(n.JS),
			Passes:    worker.NewKVPasses(skips),
		},
	}, n.Hub, n.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	a.srv, a.url = srv, newTestServer(t, srv)
	a.admin = a.adminToken(t)
	return a
}

// enrollmentKey mints a key for projects (default pool) through the API.
func (a *adminEnv) enrollmentKey(t *testing.T, projects ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"projects": projects, "ttl": "24h"})
	var k enrollKeyOut
	a.must(t, "POST", "/api/v1/enrollment-keys", a.admin, string(body), http.StatusCreated, &k)
	return k.Key
}

// enrolledGrant is the answer of an enrollment with its NATS part.
type enrolledGrant struct {
	grantOut
	Lease string `json:"lease"`
	NATS  *struct {
		URL       string    `json:"url"`
		Creds     string    `json:"creds"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"nats"`
}

// enroll enrolls worker with key through the API.
func (a *adminEnv) enroll(t *testing.T, key, worker string) enrolledGrant {
	t.Helper()
	var g enrolledGrant
	a.must(t, "POST", "/api/v1/workers/enroll", "", `{"key":"`+key+`","worker_id":"`+worker+`"}`, http.StatusOK, &g)
	return g
}

// streamState is what every stream and bucket holds: the last sequence
// and the consumers of each.
type streamState map[string]string

func stateOf(t *testing.T, js jetstream.JetStream) streamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := streamState{}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var consumers []string
		for c := range st.ListConsumers(ctx).Info() {
			consumers = append(consumers, fmt.Sprintf("%s(ack wait %s)", c.Name, c.Config.AckWait))
		}
		slices.Sort(consumers)
		out[name] = fmt.Sprintf("last seq %d, %d messages, consumers %v", info.State.LastSeq, info.State.Msgs, consumers)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// violations collects the permissions violations the server reports to a
// client.
type violations chan error

// want fails the test unless a permissions violation is reported for what.
func (v violations) want(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-v:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("%s: %v, want a permissions violation", what, err)
		}
	case <-time.After(hangBound):
		t.Errorf("%s: the server reported no permissions violation", what)
	}
}

// attackTimeout is how long a refused JetStream call waits for an answer
// that never comes (the server drops what it refuses): only a bound.
const attackTimeout = 500 * time.Millisecond

// TestEnrolledCredentialsAreConfined enrolls a worker of acme through the
// real API on a NATS in operator mode and uses its credentials as an
// attacker would: publishing into globex (the forged spend of issue 12),
// reading KV buckets (the key theft) and AUDIT, making, changing and
// deleting streams and consumers, taking globex's missions, reading other
// tenants' events or inboxes. Each is refused with a permissions
// violation and stores nothing (every stream and bucket unchanged, globex's
// bill too). An anonymous client cannot connect at all. What the
// credentials are for works: acme's events with JetStream acks.
func TestEnrolledCredentialsAreConfined(t *testing.T) {
	a := newNATSAdminEnv(t)
	for _, p := range []string{"acme", "globex"} {
		a.project(t, p)
	}
	ctx := context.Background()
	// What the signing key's bucket was before release 12: the prize of
	// the key theft.
	secrets, err := a.nats.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "OBSERVATORY_CREDENTIALS"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Put(ctx, "signing-key", []byte("the key that signs every token")); err != nil {
		t.Fatal(err)
	}
	// globex has a worker, so its consumer exists.
	a.enroll(t, a.enrollmentKey(t, "globex"), "w-globex")
	g := a.enroll(t, a.enrollmentKey(t, "acme"), "w-acme")
	if g.NATS == nil || g.NATS.URL != a.nats.Server.ClientURL() || g.Lease != "1m0s" {
		t.Fatalf("the grant's NATS part: %+v, lease %q", g.NATS, g.Lease)
	}
	if left := time.Until(g.NATS.ExpiresAt); left <= 23*time.Hour || left > web.MaxWorkerCredsTTL {
		t.Errorf("the credentials expire in %s, want with the key (24 h)", left)
	}
	creds := []byte(g.NATS.Creds)
	if strings.Contains(a.logs.String(), g.NATS.Creds) || strings.Contains(a.logs.String(), "SUA") {
		t.Error("the credentials were logged")
	}

	if anon, err := nats.Connect(a.nats.Server.ClientURL(), nats.MaxReconnects(0)); err == nil {
		anon.Close()
		t.Fatal("an anonymous client connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("an anonymous client: %v, want an authorization error", err)
	}

	v := make(violations, 64)
	nc, err := a.nats.Dial(t, creds, v)
	if err != nil {
		t.Fatalf("the enrolled credentials do not connect: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	globexBefore := a.view(t, "globex", 0).Projects["globex"]
	before := stateOf(t, a.nats.JS)

	forged := fleet.Event{ID: "ev-forged", Type: fleet.TypeLLMCall, Time: time.Now().UTC(), ProjectID: "globex", AgentID: "a-1",
		Data: json.RawMessage(`{"model":"gpt-5","input_tokens":900000000,"output_tokens":900000000}`)}
	body, _ := json.Marshal(forged)
	attacks := []struct {
		what string
		do   func(context.Context) error
	}{
		{"publishing an llm.call into globex (the forged spend)", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "fleet.globex.llm.call", body)
			return err
		}},
		{"forging a budget standing in its own project", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "fleet.acme.budget.status", body)
			return err
		}},
		{"forging a project announcement in its own project", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "fleet.acme.project.created", body)
			return err
		}},
		{"publishing to AUDIT", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "audit.acme.auth.login", body)
			return err
		}},
		{"queueing a mission", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "missions.acme", body)
			return err
		}},
		{"reading OBSERVATORY_CREDENTIALS (the key theft)", func(ctx context.Context) error {
			_, err := js.KeyValue(ctx, "OBSERVATORY_CREDENTIALS")
			return err
		}},
		{"a direct get of the signing key", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.KV_OBSERVATORY_CREDENTIALS.$KV.OBSERVATORY_CREDENTIALS.signing-key", nil)
			return err
		}},
		{"reading the registry bucket", func(ctx context.Context) error {
			_, err := js.KeyValue(ctx, stream.RegistryBucket)
			return err
		}},
		{"reading the pass counts' bucket", func(ctx context.Context) error {
			_, err := js.KeyValue(ctx, stream.MissionSkipsBucket)
			return err
		}},
		{"reading AUDIT", func(ctx context.Context) error {
			_, err := js.Stream(ctx, stream.AuditStream)
			return err
		}},
		{"a consumer on AUDIT", func(ctx context.Context) error {
			_, err := js.OrderedConsumer(ctx, stream.AuditStream, jetstream.OrderedConsumerConfig{})
			return err
		}},
		{"creating a stream", func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
			return err
		}},
		{"deleting AUDIT", func(ctx context.Context) error { return js.DeleteStream(ctx, stream.AuditStream) }},
		{"purging FLEET", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+stream.FleetStream, nil)
			return err
		}},
		{"stretching its own consumer's lease", func(ctx context.Context) error {
			_, err := js.CreateOrUpdateConsumer(ctx, stream.MissionsStream, jetstream.ConsumerConfig{Durable: "workers-acme",
				FilterSubject: "missions.acme", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
			return err
		}},
		{"deleting its own consumer", func(ctx context.Context) error {
			return js.DeleteConsumer(ctx, stream.MissionsStream, "workers-acme")
		}},
		{"a consumer of every mission", func(ctx context.Context) error {
			_, err := js.CreateOrUpdateConsumer(ctx, stream.MissionsStream, jetstream.ConsumerConfig{Durable: "all", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{"binding to globex's missions", func(ctx context.Context) error {
			_, err := js.Consumer(ctx, stream.MissionsStream, "workers-globex")
			return err
		}},
		{"pulling globex's missions", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.MISSIONS.workers-globex", []byte(`{"batch":1,"expires":1000000000}`))
			return err
		}},
		{"subscribing to every fleet event", func(ctx context.Context) error {
			sub, err := nc.SubscribeSync("fleet.>")
			if err == nil {
				err = nc.FlushWithContext(ctx)
				_, nerr := sub.NextMsgWithContext(ctx)
				if nerr == nil {
					return nil
				}
				return errors.Join(err, nerr)
			}
			return err
		}},
		{"subscribing to everyone's inboxes", func(ctx context.Context) error {
			sub, err := nc.SubscribeSync("_INBOX.>")
			if err == nil {
				_ = nc.FlushWithContext(ctx)
				_, err = sub.NextMsgWithContext(ctx)
			}
			return err
		}},
	}
	for _, at := range attacks {
		actx, cancel := context.WithTimeout(ctx, attackTimeout)
		err := at.do(actx)
		cancel()
		if err == nil {
			t.Errorf("%s: it worked", at.what)
			continue
		}
		v.want(t, at.what)
	}
	if diff := cmp.Diff(before, stateOf(t, a.nats.JS)); diff != "" {
		t.Errorf("refused attempts changed the streams and buckets (-before +after):\n%s", diff)
	}

	// What the credentials are for: acme's events, acknowledged.
	seq, err := stream.NewPublisher(js).Publish(ctx, fleet.Event{ID: "ev-ok", Type: fleet.TypeLLMCall, Time: time.Now().UTC(),
		ProjectID: "acme", AgentID: "a-1", Data: json.RawMessage(`{"model":"gpt-5","input_tokens":10,"output_tokens":10}`)})
	if err != nil {
		t.Fatalf("publishing acme's event: %v", err)
	}
	// The fold has read past the forged event's attempt: globex's bill is
	// what it was.
	if got := a.view(t, "globex", seq).Projects["globex"]; got.SpendTotal != globexBefore.SpendTotal || got.RunsTotal != globexBefore.RunsTotal {
		t.Errorf("globex's bill went from %v to %v", globexBefore.SpendTotal, got.SpendTotal)
	}
	if a.view(t, "acme", seq).Projects["acme"].SpendTotal == 0 {
		t.Error("acme's own event was not folded")
	}
}

// TestEnrolledWorkerRunsMissions: a worker runtime that enrolls over HTTP
// and runs on the credentials it receives (worker.Enrolled) completes a
// mission created through the API, and one that its first worker does not
// match: that worker passes it on, counting the pass through the server
// (POST /api/v1/workers/{id}/passes), so the worker that matches it runs
// it as attempt 1, not as a retry after a lost lease; its count is then
// cleared. A worker of a named pool runs that pool's mission.
func TestEnrolledWorkerRunsMissions(t *testing.T) {
	a := newNATSAdminEnv(t)
	a.project(t, "acme")
	var k enrollKeyOut
	a.must(t, "POST", "/api/v1/enrollment-keys", a.admin, `{"projects":["acme"],"pools":["default","gpu"]}`, http.StatusCreated, &k)
	key := k.Key
	start := func(id string, models ...string) *worker.Worker {
		pools := []string{"default"}
		if id == "w-gpu" {
			pools = []string{"gpu"}
		}
		w := worker.Enrolled(worker.Config{ID: id, Projects: []string{"acme"}, Pools: pools, Models: models, Now: a.clock.Now,
			SkipDelay: 20 * time.Millisecond, Agent: worker.Synthetic(worker.SyntheticConfig{TimeScale: 0.001, FailRate: -1, Seed: 3}),
			Logger: slog.New(slog.DiscardHandler), Enroll: worker.EnrollHTTP(a.url, key, nil)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		t.Cleanup(func() {
			w.Stop()
			if err := <-done; err != nil {
				t.Errorf("worker %s: %v", id, err)
			}
			cancel()
		})
		return w
	}
	haiku := start("w-haiku", "claude-haiku-4-5")
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin, `{"title":"triage","model":"claude-haiku-4-5"}`, http.StatusCreated, nil)
	streamtest.Eventually(t, 30*time.Second, func() bool { return haiku.Stats().Completed == 1 }, "the enrolled worker did not complete acme's mission")

	var m struct{ ID string }
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin, `{"title":"research","model":"gpt-5"}`, http.StatusCreated, &m)
	streamtest.Eventually(t, 30*time.Second, func() bool { return haiku.Stats().Skipped >= 2 }, "the worker did not pass the mission on")
	ctx := context.Background()
	skips, err := a.nats.JS.KeyValue(ctx, stream.MissionSkipsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, skips); n != 1 {
		t.Errorf("%d pass counts in the bucket, want the mission's", n)
	}
	gpt := start("w-gpt", "gpt-5")
	streamtest.Eventually(t, 30*time.Second, func() bool { return gpt.Stats().Completed == 1 }, "the matching worker did not run the mission")
	if st := gpt.Stats(); st.Expired != 0 || st.Skipped != 0 {
		t.Errorf("the matching worker's stats: %+v", st)
	}
	claims := fleetEventsOf(t, a.nats.JS, "fleet.acme.mission.claimed")
	var attempts []int
	for _, ev := range claims {
		if ev.MissionID == m.ID {
			var c worker.Claimed
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				t.Fatal(err)
			}
			attempts = append(attempts, c.Attempt)
		}
	}
	if !slices.Equal(attempts, []int{1}) {
		t.Errorf("the passed-on mission was claimed with attempts %v, want [1]", attempts)
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return countKeys(t, skips) == 0 }, "the mission's pass count was not cleared")

	// A named pool's consumer (workers-acme@gpu) works the same way.
	gpu := start("w-gpu")
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin, `{"title":"render","model":"gpt-5","pool":"gpu"}`, http.StatusCreated, nil)
	streamtest.Eventually(t, 30*time.Second, func() bool { return gpu.Stats().Completed == 1 }, "the gpu pool's enrolled worker did not run its mission")
}

func countKeys(t *testing.T, kv jetstream.KeyValue) int {
	t.Helper()
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n
}

// fleetEventsOf reads the events of FLEET on subject.
func fleetEventsOf(t *testing.T, js jetstream.JetStream, subject string) []fleet.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream.FleetStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var out []fleet.Event
	for {
		if c.CachedInfo() != nil && c.CachedInfo().NumPending == 0 {
			break
		}
		msg, err := c.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
				break
			}
			t.Fatal(err)
		}
		ev, err := fleet.DecodeEvent("", msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
		if meta, err := msg.Metadata(); err == nil && meta.NumPending == 0 {
			break
		}
	}
	return out
}

// TestPassRoutes checks the routes an enrolled worker counts passes on:
// only its own credentials with a fresh proof of the very request pass,
// only for its own projects (another project's is 403, audited), and the
// counts are exact under concurrent adds.
func TestPassRoutes(t *testing.T) {
	a := newNATSAdminEnv(t)
	for _, p := range []string{"acme", "globex"} {
		a.project(t, p)
	}
	g := a.enroll(t, a.enrollmentKey(t, "acme"), "w-01")
	other := a.enroll(t, a.enrollmentKey(t, "acme"), "w-02")
	signer, err := natsauth.NewSigner([]byte(g.NATS.Creds))
	if err != nil {
		t.Fatal(err)
	}
	const path = "/api/v1/workers/w-01/passes"
	body := `{"project":"acme","stream_seq":7}`
	signed := func(method, uri, body string, at time.Time) http.Header {
		p, err := signer.Sign(method, uri, at, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + signer.Token()}, web.ProofHeader: {p.String()}}
	}
	now := a.clock.Now()
	foreignSigner, err := natsauth.NewSigner([]byte(other.NATS.Creds))
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := foreignSigner.Sign("POST", path, now, []byte(body))
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   string
		header http.Header
		code   string
	}{
		{"no credentials", "POST", path, body, nil, "unauthorized"},
		{"an admin token", "POST", path, body, bearer(a.admin), "unauthorized"},
		{"no proof", "POST", path, body, http.Header{"Authorization": {"Bearer " + signer.Token()}}, "unauthorized"},
		{"a proof of another body", "POST", path, body, signed("POST", path, `{"project":"acme","stream_seq":8}`, now), "unauthorized"},
		{"a proof of another method", "POST", path, body, signed("DELETE", path, body, now), "unauthorized"},
		{"a stale proof", "POST", path, body, signed("POST", path, body, now.Add(-3*time.Minute)), "unauthorized"},
		{"another worker's path", "POST", "/api/v1/workers/w-02/passes", body, signed("POST", "/api/v1/workers/w-02/passes", body, now), "unauthorized"},
		{"another worker's credentials", "POST", path, body, http.Header{"Authorization": {"Bearer " + foreignSigner.Token()}, web.ProofHeader: {fp.String()}}, "unauthorized"},
		{"another worker's JWT with its proof", "POST", path, body, http.Header{"Authorization": {"Bearer " + foreignSigner.Token()}, web.ProofHeader: {signed("POST", path, body, now).Get(web.ProofHeader)}}, "unauthorized"},
		{"another project", "POST", path, `{"project":"globex","stream_seq":7}`, signed("POST", path, `{"project":"globex","stream_seq":7}`, now), "forbidden"},
		{"no sequence", "POST", path, `{"project":"acme"}`, signed("POST", path, `{"project":"acme"}`, now), "bad_request"},
		{"a bad sequence", "GET", path + "?project=acme&stream_seq=x", "", signed("GET", path+"?project=acme&stream_seq=x", "", now), "bad_request"},
	} {
		res := a.do(t, tc.method, tc.path, tc.body, tc.header)
		if got := res.errorCode(t); got != tc.code {
			t.Errorf("%s: %d %s, want %s", tc.name, res.status, res.body, tc.code)
		}
	}
	denied := auditOf(t, a, fleet.Event{}, fleet.TypeCrossAccess)
	if len(denied) != 1 || denied[0].ProjectID != "acme" || denied[0].UserID != "worker:w-01" {
		t.Errorf("the cross-project pass was audited as %+v", denied)
	}
	skips, err := a.nats.JS.KeyValue(context.Background(), stream.MissionSkipsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, skips); n != 0 {
		t.Errorf("refused requests left %d pass counts", n)
	}

	p, err := worker.NewHTTPPasses(a.url, "w-01", []byte(g.NATS.Creds), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Now = a.clock.Now
	ctx := context.Background()
	const adds = 12
	var wg sync.WaitGroup
	got := make(chan uint64, adds)
	for range adds {
		wg.Go(func() {
			n, err := p.Add(ctx, "acme", 7)
			if err != nil {
				t.Error(err)
			}
			got <- n
		})
	}
	wg.Wait()
	close(got)
	var counts []uint64
	for n := range got {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	want := make([]uint64, adds)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("concurrent adds counted (-want +got):\n%s", diff)
	}
	if n, err := p.Count(ctx, "acme", 7); err != nil || n != adds {
		t.Errorf("Count = %d, %v; want %d", n, err, adds)
	}
	if n, err := p.Count(ctx, "acme", 8); err != nil || n != 0 {
		t.Errorf("Count of another mission = %d, %v; want 0", n, err)
	}
	if err := p.Clear(ctx, "acme", 7); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Count(ctx, "acme", 7); err != nil || n != 0 {
		t.Errorf("Count after Clear = %d, %v; want 0", n, err)
	}
}

// TestWorkerIDBelongsToItsFirstProject repeats finding 7 of issue 12: a
// key of globex enrolling acme's worker id w-01 is refused with 409 and
// audited in both projects, and writes nothing else (no worker.joined in
// globex, no consumer, no registry change): globex never sees w-01's
// models and labels. The owner may enroll it again; a key that covers
// every owner may add a project; another id is free.
func TestWorkerIDBelongsToItsFirstProject(t *testing.T) {
	a := newNATSAdminEnv(t)
	for _, p := range []string{"acme", "globex"} {
		a.project(t, p)
	}
	acme, globex := a.enrollmentKey(t, "acme"), a.enrollmentKey(t, "globex")
	enroll := `{"key":"%s","worker_id":"w-01","models":["claude-opus-4-1"],"labels":{"region":"eu"}}`
	a.must(t, "POST", "/api/v1/workers/enroll", "", fmt.Sprintf(enroll, acme), http.StatusOK, nil)
	streamtest.Eventually(t, hangBound, func() bool {
		v, _, err := a.nats.Hub.View(context.Background(), "acme")
		return err == nil && v.Workers["w-01"].Status == fleet.WorkerOnline
	}, "acme's worker did not show")

	before := stateOf(t, a.nats.JS)
	delete(before, stream.AuditStream)
	res := a.call(t, "POST", "/api/v1/workers/enroll", "", fmt.Sprintf(enroll, globex))
	code, msg := res.errorOf(t)
	if code != "conflict" || res.status != http.StatusConflict {
		t.Fatalf("globex's key enrolling acme's w-01: %d %s, want 409 conflict", res.status, res.body)
	}
	if strings.Contains(msg, "acme") {
		t.Errorf("the refusal names the owner to another tenant: %q", msg)
	}
	var conflicts []string
	for _, ev := range auditOf(t, a, fleet.Event{}, web.TypeWorkerEnrollConflict) {
		conflicts = append(conflicts, ev.ProjectID)
		if ev.ProjectID == "acme" && strings.Contains(string(ev.Data), "globex") {
			t.Errorf("acme's record of the conflict names the other tenant: %s", ev.Data)
		}
	}
	slices.Sort(conflicts)
	if !slices.Equal(conflicts, []string{"acme", "globex"}) {
		t.Errorf("the conflict was audited in %v, want acme and globex", conflicts)
	}
	after := stateOf(t, a.nats.JS)
	delete(after, stream.AuditStream)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("the refused enrollment wrote (-before +after):\n%s", diff)
	}
	var snap struct {
		State fleet.View `json:"state"`
	}
	a.must(t, "GET", "/api/v1/fleet?scope=globex", a.projectToken(t, "globex"), "", http.StatusOK, &snap)
	if w, ok := snap.State.Workers["w-01"]; ok {
		t.Errorf("globex sees w-01: %+v", w)
	}

	a.must(t, "POST", "/api/v1/workers/enroll", "", fmt.Sprintf(enroll, acme), http.StatusOK, nil)
	both := a.enrollmentKey(t, "acme", "globex")
	var g grantOut
	a.must(t, "POST", "/api/v1/workers/enroll", "", `{"key":"`+both+`","worker_id":"w-01","projects":["globex"]}`, http.StatusOK, &g)
	if !slices.Equal(g.Projects, []string{"globex"}) {
		t.Errorf("a key over both projects granted %v", g.Projects)
	}
	if res := a.call(t, "POST", "/api/v1/workers/enroll", "", fmt.Sprintf(enroll, globex)); res.status != http.StatusConflict {
		t.Errorf("globex's key after w-01 joined globex too: %d %s, want 409 (acme still owns it)", res.status, res.body)
	}
	a.must(t, "POST", "/api/v1/workers/enroll", "", `{"key":"`+globex+`","worker_id":"w-02"}`, http.StatusOK, nil)
}
