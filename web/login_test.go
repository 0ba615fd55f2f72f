package web_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web"
)

func login(t *testing.T, e *env, user, password, addr string) response {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"username": user, "password": password})
	var h http.Header
	if addr != "" {
		h = http.Header{"X-Forwarded-For": {addr}}
	}
	return e.do(t, http.MethodPost, "/api/v1/auth/login", string(b), h)
}

func TestLogin(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
		wantSays   string // a fragment of the error message
		wantAudit  []auditRecord
	}{
		{
			name: "right password", body: `{"username":"admin","password":"` + adminPassword + `"}`,
			wantStatus: 200,
			wantAudit:  []auditRecord{{fleet.TypeLoginSucceeded, "global", "admin", map[string]string{"addr": "127.0.0.1"}}},
		},
		{
			name: "wrong password", body: `{"username":"admin","password":"admin"}`,
			wantStatus: 401, wantCode: "unauthorized",
			wantAudit: []auditRecord{{fleet.TypeLoginFailed, "global", "admin", map[string]string{"addr": "127.0.0.1", "reason": "bad_credentials"}}},
		},
		{
			name: "unknown user", body: `{"username":"root","password":"` + adminPassword + `"}`,
			wantStatus: 401, wantCode: "unauthorized",
			wantAudit: []auditRecord{{fleet.TypeLoginFailed, "global", "root", map[string]string{"addr": "127.0.0.1", "reason": "bad_credentials"}}},
		},
		{name: "bad JSON", body: `{"username":"admin",`, wantStatus: 400, wantCode: "bad_request", wantSays: "malformed JSON"},
		{name: "not an object", body: `["admin"]`, wantStatus: 400, wantCode: "bad_request", wantSays: "the body must be a JSON object"},
		{name: "two values", body: `{"username":"admin","password":"x"} {}`, wantStatus: 400, wantCode: "bad_request", wantSays: "trailing data"},
		{name: "no body", body: ``, wantStatus: 400, wantCode: "bad_request", wantSays: "a JSON body is required"},
		{name: "no password", body: `{"username":"admin"}`, wantStatus: 400, wantCode: "bad_request", wantSays: "username and password are required"},
		// A misspelt field is named, not taken for a missing one, and
		// nothing is checked or audited.
		{name: "a misspelt field", body: `{"username":"admin","pasword":"x"}`, wantStatus: 400, wantCode: "bad_request", wantSays: `unknown field "pasword"`},
		{name: "an extra field", body: `{"username":"admin","password":"` + adminPassword + `","remember":true}`, wantStatus: 400, wantCode: "bad_request", wantSays: `unknown field "remember"`},
		{name: "a password not a string", body: `{"username":"admin","password":42}`, wantStatus: 400, wantCode: "bad_request", wantSays: `field "password" must be a string, not number`},
		{name: "a number for a body", body: `42`, wantStatus: 400, wantCode: "bad_request", wantSays: "the body must be a JSON object"},
		{name: "control characters in the name", body: `{"username":"ad\nmin","password":"x"}`, wantStatus: 400, wantCode: "bad_request", wantSays: "username must be at most 128 bytes of UTF-8 text without control characters"},
		{name: "too large", body: `{"username":"admin","password":"` + strings.Repeat("x", 2<<10) + `"}`, wantStatus: 413, wantCode: "too_large", wantSays: "request body exceeds 1024 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *web.Config) { c.MaxBodyBytes = 1 << 10 })
			res := e.do(t, http.MethodPost, "/api/v1/auth/login", tc.body, nil)
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.status, tc.wantStatus, res.body)
			}
			if tc.wantCode != "" {
				code, msg := res.errorOf(t)
				if code != tc.wantCode || !strings.Contains(msg, tc.wantSays) {
					t.Errorf("error %s %q, want %s saying %q", code, msg, tc.wantCode, tc.wantSays)
				}
				if leak := goInternals(msg); leak != "" {
					t.Errorf("message %q speaks Go (%q), not the API", msg, leak)
				}
			} else {
				var tr struct {
					Token     string    `json:"token"`
					ExpiresAt time.Time `json:"expires_at"`
				}
				if err := json.Unmarshal(res.body, &tr); err != nil || tr.Token == "" {
					t.Fatalf("body %s: %v", res.body, err)
				}
				if want := e.issuedAt().Add(web.DefaultTokenTTL); !tr.ExpiresAt.Equal(want) {
					t.Errorf("expires_at %s, want %s", tr.ExpiresAt, want)
				}
				if got := e.do(t, http.MethodGet, "/api/v1/fleet", "", bearer(tr.Token)); got.status != 200 {
					t.Errorf("the session token does not open /api/v1/fleet: %d %s", got.status, got.body)
				}
				if cc := res.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", cc)
				}
			}
			if diff := cmp.Diff(tc.wantAudit, e.audit.records(t)); diff != "" {
				t.Errorf("audit events (-want +got):\n%s", diff)
			}
			if strings.Contains(e.logs.String(), adminPassword) {
				t.Error("the password appears in the log")
			}
		})
	}
}

// TestLoginSlowDown: after five failures, logins are refused with 429 and
// Retry-After without the password being checked, so even the right one
// is refused until the lock runs out.
func TestLoginSlowDown(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 5 {
		if res := login(t, e, "admin", "guess"+strconv.Itoa(i), ""); res.status != 401 {
			t.Fatalf("failure %d: status %d, want 401", i+1, res.status)
		}
	}
	res := login(t, e, "admin", adminPassword, "")
	if res.status != http.StatusTooManyRequests || res.errorCode(t) != "too_many_attempts" {
		t.Fatalf("sixth attempt (right password): %d %s, want 429 too_many_attempts", res.status, res.body)
	}
	retry, err := strconv.Atoi(res.header.Get("Retry-After"))
	if err != nil || retry < 1 {
		t.Fatalf("Retry-After %q", res.header.Get("Retry-After"))
	}
	e.clock.Advance(time.Duration(retry-1) * time.Second)
	if res := login(t, e, "admin", adminPassword, ""); res.status != 429 {
		t.Fatalf("a second before the lock ends: %d, want 429", res.status)
	}
	e.clock.Advance(time.Second)
	if res := login(t, e, "admin", adminPassword, ""); res.status != 200 {
		t.Fatalf("after the lock: %d %s, want 200", res.status, res.body)
	}

	var reasons []string
	for _, r := range e.audit.records(t) {
		reasons = append(reasons, r.Type+" "+r.Data["reason"])
	}
	want := []string{
		"auth.login.failed bad_credentials", "auth.login.failed bad_credentials", "auth.login.failed bad_credentials",
		"auth.login.failed bad_credentials", "auth.login.failed bad_credentials",
		"auth.login.failed too_many_attempts", "auth.login.failed too_many_attempts",
		"auth.login.succeeded ",
	}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("audit trail (-want +got):\n%s", diff)
	}
}
