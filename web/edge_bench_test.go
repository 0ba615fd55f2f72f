package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// benchBudgets is a BudgetStore whose preflight answers at once, so that
// a POST through the full handler chain measures the chain.
type benchBudgets struct{}

func (benchBudgets) Budgets(context.Context, string) ([]fleet.BudgetStanding, error) { return nil, nil }
func (benchBudgets) Budget(context.Context, string) (fleet.BudgetStanding, error) {
	return fleet.BudgetStanding{}, fleet.ErrBudgetNotFound
}
func (benchBudgets) CreateBudget(context.Context, fleet.BudgetLimit) (fleet.BudgetStanding, error) {
	return fleet.BudgetStanding{}, nil
}
func (benchBudgets) UpdateBudget(context.Context, fleet.BudgetLimit) (fleet.BudgetStanding, error) {
	return fleet.BudgetStanding{}, nil
}
func (benchBudgets) DeleteBudget(context.Context, string) error { return nil }
func (benchBudgets) Preflight(context.Context, fleet.BudgetRequest) (fleet.BudgetDecision, error) {
	return fleet.BudgetDecision{Allowed: true}, nil
}

// BenchmarkEdge serves requests through the whole echo handler chain (the
// Host check, the CSRF check, the token check, the route): GET
// /api/v1/fleet with a bearer token, and POST /api/v1/budgets/preflight
// with a bearer token and with the session cookie (the same-origin JSON a
// HUD page sends). Each request arrives as over loopback at
// 127.0.0.1:3001. It uses only what the server offered before the edge
// checks, so that the same file measures a copy of HEAD:
//
//	go test ./web -run '^$' -bench BenchmarkEdge -benchmem -cpu 1 -count 6
func BenchmarkEdge(b *testing.B) {
	srv, err := web.New(web.Config{
		AdminPassword: adminPassword,
		SigningKey:    bytes.Repeat([]byte("k"), 32),
		Logger:        slog.New(slog.NewJSONHandler(io.Discard, nil)),
		BcryptCost:    bcrypt.MinCost,
		BudgetStore:   benchBudgets{},
		Now:           func() time.Time { return time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC) },
	}, newTestHub(), &testAuditor{})
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := srv.IssueToken(auth.RoleAdmin, "", 0)
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	login := httptest.NewRecorder()
	h.ServeHTTP(login, loopbackRequest(http.MethodPost, "/api/v1/auth/login", `{"username":"admin","password":"`+adminPassword+`"}`,
		http.Header{"Content-Type": {"application/json"}}))
	var session struct{ Token string }
	if err := json.Unmarshal(login.Body.Bytes(), &session); err != nil || session.Token == "" {
		b.Fatalf("login: %d %s", login.Code, login.Body)
	}
	body := `{"project_id":"acme","estimate_usd":"0.10"}`
	for _, c := range []struct {
		name, method, path, body string
		header                   http.Header
	}{
		{"GET fleet bearer", "GET", "/api/v1/fleet?scope=acme", "", http.Header{"Authorization": {"Bearer " + tok}}},
		{"POST preflight bearer", "POST", "/api/v1/budgets/preflight", body,
			http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"application/json"}}},
		{"POST preflight cookie", "POST", "/api/v1/budgets/preflight", body, http.Header{
			"Cookie": {web.SessionCookie + "=" + session.Token}, "Content-Type": {"application/json"},
			"Sec-Fetch-Site": {"same-origin"}, "Origin": {"http://127.0.0.1:3001"},
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, loopbackRequest(c.method, c.path, c.body, c.header))
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

// loopbackRequest is a request as the server sees one that came over
// loopback to 127.0.0.1:3001.
func loopbackRequest(method, path, body string, header http.Header) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host, req.RemoteAddr = "127.0.0.1:3001", "127.0.0.1:54321"
	req.Header = header.Clone()
	return req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey,
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3001}))
}
