package web_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
	"github.com/sagewai/observatory/worker"
)

type enrollKeyOut struct {
	Key       string    `json:"key"`
	KeyID     string    `json:"key_id"`
	Projects  []string  `json:"projects"`
	Pools     []string  `json:"pools"`
	ExpiresAt time.Time `json:"expires_at"`
}

type grantOut struct {
	WorkerID  string            `json:"worker_id"`
	Projects  []string          `json:"projects"`
	Pools     []string          `json:"pools"`
	Models    []string          `json:"models"`
	Labels    map[string]string `json:"labels"`
	ExpiresAt time.Time         `json:"key_expires_at"`
	Lease     string            `json:"lease"`
}

// TestEnrollment issues an enrollment key for two of three projects and
// two pools, and enrolls workers with it: a worker gets what it asks for
// within the key's scope, is refused (403, audited) when the key covers
// none of it and (401) with a bad key, and shows on the HUD's state as
// soon as it enrolls. A real worker runtime enrolls with the key and
// claims only the granted projects and pools.
func TestEnrollment(t *testing.T) {
	a := newAdminEnv(t, nil)
	for _, p := range []string{"acme", "globex", "initech"} {
		a.project(t, p)
	}
	const path = "/api/v1/enrollment-keys"
	if res := a.call(t, "POST", path, a.projectToken(t, "acme"), `{"projects":["acme"]}`); res.status != http.StatusForbidden {
		t.Errorf("a project token minted an enrollment key: %d %s", res.status, res.body)
	}
	for body, code := range map[string]string{
		`{"projects":["nope"]}`:                      "not_found",
		`{"projects":[]}`:                            "bad_request",
		`{"projects":["acme"],"pools":["GPU"]}`:      "bad_request",
		`{"projects":["acme"],"ttl":"forever"}`:      "bad_request",
		`{"projects":["acme"],"scope":"everything"}`: "bad_request",
		// An empty pool id is no pool id: the default pool is named.
		`{"projects":["acme"],"pools":[""]}`: "bad_request",
	} {
		if res := a.call(t, "POST", path, a.admin, body); res.errorCode(t) != code {
			t.Errorf("%s: %d %s, want %s", body, res.status, res.body, code)
		}
	}
	var k enrollKeyOut
	a.must(t, "POST", path, a.admin, `{"projects":["globex","acme"],"pools":["gpu","default"],"ttl":"1h"}`, http.StatusCreated, &k)
	if !strings.HasPrefix(k.Key, auth.EnrollPrefix) || !slices.Equal(k.Projects, []string{"acme", "globex"}) ||
		!slices.Equal(k.Pools, []string{"default", "gpu"}) || k.ExpiresAt.Sub(a.issuedAt()) != time.Hour {
		t.Fatalf("issued %+v", k)
	}
	if strings.Contains(a.logs.String(), k.Key) {
		t.Error("the enrollment key was logged")
	}
	issued := auditOf(t, a, fleet.Event{}, web.TypeEnrollmentKeyIssued)
	if len(issued) != 2 || strings.Contains(string(issued[0].Data), k.Key) || !strings.Contains(string(issued[0].Data), k.KeyID) {
		t.Errorf("audit of the key: %+v", issued)
	}

	const enroll = "/api/v1/workers/enroll"
	body := func(fields string) string {
		return `{"key":"` + k.Key + `","worker_id":"w-1"` + fields + `}`
	}
	var g grantOut
	a.must(t, "POST", enroll, "", body(`,"projects":["globex","initech"],"pools":["gpu"],"models":["gpt-5"],"labels":["gpu=a100"],"host":"h1","capacity":4,"lease":"90s"`), http.StatusOK, &g)
	want := grantOut{WorkerID: "w-1", Projects: []string{"globex"}, Pools: []string{"gpu"}, Models: []string{"gpt-5"},
		Labels: map[string]string{"gpu": "a100"}, ExpiresAt: k.ExpiresAt, Lease: "1m30s"}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("grant (-want +got):\n%s", diff)
	}
	streamtest.Eventually(t, 10*time.Second, func() bool {
		v, _, err := a.nats.Hub.View(context.Background(), "globex")
		w := v.Workers["w-1"]
		return err == nil && w.Status == fleet.WorkerOnline && slices.Equal(w.Pools, []string{"gpu"}) && w.Capacity == 4 && w.Labels["gpu"] == "a100"
	}, "the enrolled worker does not show in globex")
	a.must(t, "POST", enroll, "", body(``), http.StatusOK, &g)
	if !slices.Equal(g.Projects, k.Projects) || !slices.Equal(g.Pools, k.Pools) {
		t.Errorf("asking for nothing granted %+v, want the key's whole scope", g)
	}

	for _, tc := range []struct{ body, code string }{
		{body(`,"projects":["initech"]`), "forbidden"},
		{body(`,"pools":["cpu"]`), "forbidden"},
		{`{"key":"` + k.Key[:len(k.Key)-2] + `xx","worker_id":"w-1"}`, "unauthorized"},
		{`{"key":"` + a.admin + `","worker_id":"w-1"}`, "unauthorized"},
		{`{"worker_id":"w-1"}`, "unauthorized"},
		{`{"key":"` + k.Key + `","worker_id":"W 1"}`, "bad_request"},
		{body(`,"labels":42`), "bad_request"},
		{body(`,"capacity":-1`), "bad_request"},
		// An empty pool id is no pool id, not the default pool.
		{body(`,"pools":[""]`), "bad_request"},
		{body(`,"pools":["gpu",""]`), "bad_request"},
		{body(`,"lease":"forever"`), "bad_request"},
		{body(`,"lease":"10ms"`), "bad_request"},
		{body(`,"lease":"2h"`), "bad_request"},
	} {
		if res := a.call(t, "POST", enroll, "", tc.body); res.errorCode(t) != tc.code {
			t.Errorf("%s: %d %s, want %s", tc.body, res.status, res.body, tc.code)
		}
	}
	if denied := auditOf(t, a, fleet.Event{}, web.TypeWorkerEnrollDenied); len(denied) == 0 {
		t.Error("a refused enrollment was not audited")
	}

	// The runtime: it asks for three projects and gets two; it claims in
	// the gpu pool of those two only.
	w := startWorker(t, a.nats, worker.Config{ID: "w-runtime", Projects: []string{"acme", "globex", "initech"}, Pools: []string{"gpu"},
		Enroll: worker.EnrollHTTP(a.url, k.Key, nil)})
	var m missionPoolOut
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin, `{"title":"render","model":"gpt-5","pool":"gpu"}`, http.StatusCreated, &m)
	streamtest.Eventually(t, 20*time.Second, func() bool { return w.Stats().Completed == 1 }, "the enrolled worker did not run acme's gpu mission")
	ctx := context.Background()
	for name, want := range map[string]bool{"workers-acme@gpu": true, "workers-globex@gpu": true, "workers-initech@gpu": false, "workers-acme": false} {
		_, err := a.nats.JS.Consumer(ctx, stream.MissionsStream, name)
		if got := err == nil; got != want || (err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound)) {
			t.Errorf("consumer %s exists: %v (%v), want %v", name, got, err, want)
		}
	}

	// A worker with a bad key never starts claiming.
	bad := worker.New(a.nats.JS, a.nats.Publisher, worker.Config{ID: "w-bad", Projects: []string{"acme"},
		Enroll: worker.EnrollHTTP(a.url, "obsek1.nope.nope", nil)})
	if err := bad.Run(ctx); !errors.Is(err, worker.ErrEnrollRefused) || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("a worker with a bad key: Run = %v, want ErrEnrollRefused (unauthorized)", err)
	}
}

// auditOf returns the events of typ on AUDIT.
func auditOf(t *testing.T, a *adminEnv, _ fleet.Event, typ string) []fleet.Event {
	t.Helper()
	var out struct {
		Events []fleet.Event `json:"events"`
	}
	a.must(t, "GET", "/api/v1/audit?type="+typ, a.admin, "", http.StatusOK, &out)
	return out.Events
}

// TestExpiredEnrollmentKey: a key is refused with 401 once it expires.
func TestExpiredEnrollmentKey(t *testing.T) {
	e := newAdminEnv(t, nil)
	key, exp, err := e.srv.IssueEnrollmentKey([]string{"acme"}, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"key":"` + key + `","worker_id":"w-1"}`
	if res := e.do(t, "POST", "/api/v1/workers/enroll", body, nil); res.status != http.StatusOK {
		t.Fatalf("a fresh key: %d %s", res.status, res.body)
	}
	e.clock.Advance(exp.Sub(e.clock.Now()) + time.Second)
	res := e.do(t, "POST", "/api/v1/workers/enroll", body, nil)
	if res.status != http.StatusUnauthorized || res.errorCode(t) != "unauthorized" || !strings.Contains(string(res.body), "expired") {
		t.Errorf("an expired key: %d %s", res.status, res.body)
	}
}
