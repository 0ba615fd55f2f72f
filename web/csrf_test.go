package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/web"
)

// lastSeqs returns the last sequence of each stream (KV buckets are the
// streams KV_<bucket>).
func lastSeqs(t *testing.T, js jetstream.JetStream, names ...string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	out := map[string]uint64{}
	for _, name := range names {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = st.CachedInfo().State.LastSeq
	}
	return out
}

// csrfWatched are what a budget write touches: the budgets bucket, FLEET
// (budget events) and AUDIT.
var csrfWatched = []string{"KV_" + budget.BudgetsBucket, stream.FleetStream, stream.AuditStream}

// TestCSRFRefused reproduces the attack of issue 12 against the real
// server with the real budget ledger: the admin is logged in to the HUD
// (the session cookie), and a page on another port of the same host
// (Grafana's, say) posts a $0.01 global stop budget, which would halt all
// work, as text/plain, which a form or a no-cors fetch may send and the
// browser sends with the cookie. Every variant is refused with 403 csrf
// and writes nothing; the same request from the HUD's own page as JSON,
// and any request with a bearer token, goes through.
func TestCSRFRefused(t *testing.T) {
	nats, srvs := newBudgetServers(t, 1)
	s := srvs[0]
	session := s.sessionToken(t)
	cookie := web.SessionCookie + "=" + session
	s.must(t, "POST", "/api/v1/budgets", s.admin, `{"scope":"project","project_id":"acme","period":"daily","limit_usd":5,"action":"stop"}`, http.StatusCreated, nil)
	stop := `{"scope":"global","period":"daily","limit_usd":"0.01","action":"stop"}`
	own := s.url // the HUD's own origin: http://127.0.0.1:port
	grafana := "http://127.0.0.1:3000"

	before := lastSeqs(t, nats.JS, csrfWatched...)
	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
	}{
		{"text/plain from another port", "POST", "/api/v1/budgets", stop,
			http.Header{"Content-Type": {"text/plain"}, "Sec-Fetch-Site": {"same-site"}, "Origin": {grafana}}},
		{"text/plain from another site", "POST", "/api/v1/budgets", stop,
			http.Header{"Content-Type": {"text/plain;charset=UTF-8"}, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}},
		{"a form from another port", "POST", "/api/v1/budgets", "scope=global",
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"same-site"}, "Origin": {grafana}}},
		{"JSON from another port (an old browser: Origin only)", "POST", "/api/v1/budgets", stop,
			http.Header{"Content-Type": {"application/json"}, "Origin": {grafana}}},
		{"a sandboxed frame", "POST", "/api/v1/budgets", stop,
			http.Header{"Content-Type": {"text/plain"}, "Origin": {"null"}}},
		{"text/plain from the HUD's own page", "POST", "/api/v1/budgets", stop,
			http.Header{"Content-Type": {"text/plain"}, "Sec-Fetch-Site": {"same-origin"}, "Origin": {own}}},
		{"multipart from the HUD's own origin", "POST", "/api/v1/budgets", stop,
			http.Header{"Content-Type": {"multipart/form-data; boundary=x"}, "Origin": {own}}},
		{"no Origin, no Sec-Fetch-Site (not a browser: use a bearer token)", "POST", "/api/v1/budgets", stop,
			http.Header{"Content-Type": {"application/json"}}},
		{"raise the cap from another port", "PUT", "/api/v1/budgets/project.acme.acme.daily", `{"limit_usd":0.01}`,
			http.Header{"Content-Type": {"text/plain"}, "Sec-Fetch-Site": {"same-site"}, "Origin": {grafana}}},
		{"delete a budget from another port", "DELETE", "/api/v1/budgets/project.acme.acme.daily", "",
			http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {grafana}}},
		{"a project from another site", "POST", "/api/v1/projects", `{"id":"evil","name":"Evil"}`,
			http.Header{"Content-Type": {"text/plain"}, "Sec-Fetch-Site": {"cross-site"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header.Clone()
			h.Set("Cookie", cookie)
			res := sendAs(t, nil, s.url, "", tc.method, tc.path, tc.body, h)
			if res.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403: %s", res.status, res.body)
			}
			if code, msg := res.errorOf(t); code != "csrf" || !strings.Contains(msg, "Authorization: Bearer") {
				t.Errorf("error %s %q, want csrf pointing to bearer tokens", code, msg)
			}
		})
	}
	if diff := cmp.Diff(before, lastSeqs(t, nats.JS, csrfWatched...)); diff != "" {
		t.Fatalf("a refused request wrote (-before +after):\n%s", diff)
	}
	var list struct{ Budgets []budgetJSON }
	s.must(t, "GET", "/api/v1/budgets", s.admin, "", http.StatusOK, &list)
	if len(list.Budgets) != 1 || list.Budgets[0].ID != "project.acme.acme.daily" || list.Budgets[0].LimitUSD != 5_000_000 {
		t.Fatalf("budgets after the attacks: %+v, want acme's $5 alone", list.Budgets)
	}
	if n := strings.Count(s.logs.String(), `"event":"http.csrf_refused"`); n != 11 {
		t.Errorf("%d refusals logged, want 11", n)
	}

	// The HUD's own page may write with the cookie, as JSON: Sec-Fetch-Site
	// same-origin, or (a browser without it) its own Origin. So may any
	// program with a bearer token, whatever it says its body is.
	for _, h := range []http.Header{
		{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"same-origin"}, "Origin": {own}, "Cookie": {cookie}},
		{"Content-Type": {"application/json; charset=utf-8"}, "Origin": {own}, "Cookie": {cookie}},
		{"Content-Type": {"text/plain"}, "Authorization": {"Bearer " + s.admin}, "Cookie": {cookie}, "Sec-Fetch-Site": {"cross-site"}},
	} {
		res := sendAs(t, nil, s.url, "", "DELETE", "/api/v1/budgets/global._._.daily", "", http.Header{"Authorization": {"Bearer " + s.admin}})
		if res.status != http.StatusNoContent && res.status != http.StatusNotFound {
			t.Fatalf("cleanup: %d %s", res.status, res.body)
		}
		if res := sendAs(t, nil, s.url, "", "POST", "/api/v1/budgets", stop, h); res.status != http.StatusCreated {
			t.Errorf("%v: %d %s, want 201", h, res.status, res.body)
		}
	}
	if diff := cmp.Diff(before, lastSeqs(t, nats.JS, csrfWatched...)); diff == "" {
		t.Error("the accepted writes left the budgets bucket as it was: the check above could not see a write")
	}
}
