package web_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// meter is an SDK meter provider with a manual reader, for tests that
// read the recorded data directly.
type meter struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newMeter(t *testing.T) *meter {
	t.Helper()
	r := sdkmetric.NewManualReader()
	m := &meter{reader: r, mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))}
	t.Cleanup(func() { m.mp.Shutdown(context.Background()) })
	return m
}

// series is one data point: its labels and its value (a histogram's count).
type series struct {
	labels string
	value  float64
	sum    float64
}

// collect returns the data points of the instrument name, by label set.
func (m *meter) collect(t *testing.T, name string) map[string]series {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]series{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != name {
				continue
			}
			switch d := mt.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					k := key(p.Attributes)
					out[k] = series{k, float64(p.Count), p.Sum}
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					k := key(p.Attributes)
					out[k] = series{k, float64(p.Count), float64(p.Sum)}
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					k := key(p.Attributes)
					out[k] = series{k, float64(p.Value), 0}
				}
			}
		}
	}
	return out
}

// counts reduces collect to label set → value.
func (m *meter) counts(t *testing.T, name string) map[string]float64 {
	out := map[string]float64{}
	for k, s := range m.collect(t, name) {
		out[k] = s.value
	}
	return out
}

// key writes an attribute set as "k=v k=v", sorted by key.
func key(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(parts, " ")
}

func labelsOf(method, route string, status int, project string) string {
	return "http.method=" + method + " http.route=" + route + " http.status_code=" + strconv.Itoa(status) + " sagewai.project_id=" + project
}

func TestHTTPMetricsLabelRequestsByRouteTemplate(t *testing.T) {
	m := newMeter(t)
	e := newEnv(t, func(c *web.Config) { c.MeterProvider = m.mp })
	admin := bearer(e.adminToken(t))
	globex := bearer(e.token(t, auth.RoleProject, "globex"))
	for _, r := range []struct {
		method, path string
		header       http.Header
		status       int
	}{
		{"GET", "/api/v1/fleet?scope=acme", admin, 200},
		{"GET", "/api/v1/fleet?scope=acme", admin, 200},
		{"GET", "/api/v1/fleet", globex, 200},
		{"GET", "/api/v1/fleet?scope=acme", globex, 403},
		{"GET", "/api/v1/fleet?scope=Bad!", admin, 400},
		{"GET", "/nope/12345", nil, 404},
		{"PUT", "/api/v1/fleet", admin, 405},
		{"BREW", "/api/v1/fleet", admin, 405},
		{"GET", "/healthz", nil, 200},
		{"GET", "/readyz", nil, 200},
	} {
		if res := e.do(t, r.method, r.path, "", r.header); res.status != r.status {
			t.Fatalf("%s %s: %d, want %d", r.method, r.path, res.status, r.status)
		}
	}
	c := e.mustDial(t, "", admin)
	send(t, c, subscribeFrame("acme"))
	mustRead(t, c)
	c.CloseNow()

	want := map[string]float64{
		labelsOf("GET", "/api/v1/fleet", 200, "acme"):      2,
		labelsOf("GET", "/api/v1/fleet", 200, "globex"):    1,
		labelsOf("GET", "/api/v1/fleet", 403, "globex"):    1,
		labelsOf("GET", "/api/v1/fleet", 400, "global"):    1, // an admin token, the scope refused before it resolved
		labelsOf("GET", "unmatched", 404, "global"):        1,
		labelsOf("PUT", "/api/v1/fleet", 405, "global"):    1,
		labelsOf("_OTHER", "/api/v1/fleet", 405, "global"): 1,
	}
	if diff := cmp.Diff(want, m.counts(t, "http.server.duration")); diff != "" {
		t.Errorf("duration samples, /ws and probes left out (-want +got):\n%s", diff)
	}
	sizes := m.counts(t, "http.server.request.size")
	for _, k := range []string{labelsOf("GET", "/healthz", 200, "global"), labelsOf("GET", "/readyz", 200, "global"), labelsOf("GET", "/ws", 101, "global")} {
		if sizes[k] != 1 {
			t.Errorf("request size samples of %s: %v, want 1", k, sizes[k])
		}
	}
	for _, name := range []string{"http.server.duration", "http.server.request.size", "http.server.response.size", "http.server.active_requests"} {
		for k := range m.collect(t, name) {
			if strings.Contains(k, "12345") || strings.Contains(k, "scope=") || strings.Contains(k, "nope") {
				t.Errorf("%s has a raw path in its labels: %s", name, k)
			}
		}
	}
}

func TestHTTPMetricsSizes(t *testing.T) {
	m := newMeter(t)
	e := newEnv(t, func(c *web.Config) { c.MeterProvider = m.mp })
	body := `{"username":"admin","password":"` + adminPassword + `"}`
	// A chunked body: no Content-Length, so the bytes read are counted.
	req, err := http.NewRequest(http.MethodPost, e.url+"/api/v1/auth/login", io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resBody, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || req.ContentLength > 0 {
		t.Fatalf("login: %d (content length %d)", res.StatusCode, req.ContentLength)
	}
	k := labelsOf("POST", "/api/v1/auth/login", 200, "global")
	if got := m.collect(t, "http.server.request.size")[k]; got.value != 1 || got.sum != float64(len(body)) {
		t.Errorf("request size %+v, want one sample of %d", got, len(body))
	}
	if got := m.collect(t, "http.server.response.size")[k]; got.value != 1 || got.sum != float64(len(resBody)) {
		t.Errorf("response size %+v, want one sample of %d", got, len(resBody))
	}
}

func TestHTTPActiveRequests(t *testing.T) {
	m := newMeter(t)
	e := newEnv(t, func(c *web.Config) { c.MeterProvider = m.mp })
	admin := bearer(e.adminToken(t))
	active := "http.method=GET http.route=/api/v1/fleet"
	e.hub.mu.Lock() // the snapshot waits: the request stays in flight
	done := make(chan response, 1)
	go func() { done <- e.do(t, http.MethodGet, "/api/v1/fleet?scope=acme", "", admin) }()
	// The handler has asked the hub for the snapshot: the request is past
	// every middleware, and stays there while the test holds the hub.
	select {
	case <-e.hub.snapshots:
	case <-time.After(hangBound):
		e.hub.mu.Unlock()
		t.Fatal("the request never reached the hub")
	}
	got := m.counts(t, "http.server.active_requests")[active]
	e.hub.mu.Unlock()
	if got != 1 {
		t.Errorf("active requests while one is in flight: %v, want 1", got)
	}
	if r := <-done; r.status != http.StatusOK {
		t.Fatalf("fleet: %d", r.status)
	}
	if got := m.counts(t, "http.server.active_requests")[active]; got != 0 {
		t.Errorf("active requests after the answer: %v, want 0", got)
	}
}

func TestCrossTenantDenialIsCounted(t *testing.T) {
	m := newMeter(t)
	e := newEnv(t, func(c *web.Config) { c.MeterProvider = m.mp })
	res := e.do(t, http.MethodGet, "/api/v1/fleet?scope=acme", "", bearer(e.token(t, auth.RoleProject, "globex")))
	if res.status != http.StatusForbidden || res.errorCode(t) != web.CodeForbidden {
		t.Fatalf("cross-tenant read: %d %s", res.status, res.body)
	}
	want := []auditRecord{{Type: "tenant.cross_access_denied", ProjectID: "globex", UserID: "api:globex",
		Data: map[string]string{"subject": "api:globex", "scope": "acme", "route": "/api/v1/fleet"}}}
	if diff := cmp.Diff(want, e.audit.records(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"http.route=/api/v1/fleet sagewai.project_id=globex": 1},
		m.counts(t, "sagewai.tenant.cross_access_denied")); diff != "" {
		t.Errorf("denials counted (-want +got):\n%s", diff)
	}
	var logged int
	for _, l := range e.logs.lines(t) {
		if l["event"] == "tenant.cross_access_denied" && l["sagewai.project_id"] == "globex" && l["route"] == "/api/v1/fleet" {
			logged++
		}
	}
	if logged != 1 {
		t.Errorf("%d business log lines of the denial, want 1:\n%s", logged, e.logs.String())
	}
}

func TestLoginsAreCounted(t *testing.T) {
	m := newMeter(t)
	e := newEnv(t, func(c *web.Config) {
		c.MeterProvider = m.mp
		c.LoginMaxFailures = 2
	})
	e.sessionToken(t)
	for _, want := range []int{401, 401, 429} {
		if r := e.do(t, http.MethodPost, "/api/v1/auth/login", `{"username":"admin","password":"nope"}`, nil); r.status != want {
			t.Fatalf("bad login: %d, want %d", r.status, want)
		}
	}
	want := map[string]float64{
		"result=succeeded":                       1,
		"reason=bad_credentials result=failed":   2,
		"reason=too_many_attempts result=failed": 1,
	}
	if diff := cmp.Diff(want, m.counts(t, "sagewai.auth.logins")); diff != "" {
		t.Errorf("logins (-want +got):\n%s", diff)
	}
}

func TestMetricsRoute(t *testing.T) {
	e := newEnv(t, func(c *web.Config) {
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "# exposition\n") })
	})
	if r := e.do(t, http.MethodGet, "/metrics", "", bearer(e.adminToken(t))); r.status != http.StatusOK || string(r.body) != "# exposition\n" {
		t.Errorf("GET /metrics: %d %q", r.status, r.body)
	}
	off := newEnv(t, nil)
	if r := off.do(t, http.MethodGet, "/metrics", "", nil); r.status != http.StatusNotFound {
		t.Errorf("GET /metrics without a handler: %d, want 404", r.status)
	}
}
