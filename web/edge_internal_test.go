package web

// This file is an internal test: it measures the edge checks (the Host
// check and the CSRF check) alone, which no route exposes without the
// rest of the chain around them. BenchmarkEdge (edge_bench_test.go)
// measures them in the whole chain.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/protocol"
)

// BenchmarkEdgeChecks runs checkHost and checkCSRF around a handler that
// does nothing, for a GET with a bearer token over loopback, a GET naming
// a public URL's host, and a cookie-authenticated JSON POST from the
// server's own page:
//
//	go test ./web -run '^$' -bench BenchmarkEdgeChecks -benchmem -cpu 1 -count 6
func BenchmarkEdgeChecks(b *testing.B) {
	s, err := New(Config{
		SigningKey: bytes.Repeat([]byte("k"), 32), BcryptCost: 4,
		Logger:     slog.New(slog.NewJSONHandler(io.Discard, nil)),
		PublicURLs: []string{"https://observatory.example.com"},
	}, nopHub{}, nopAuditor{})
	if err != nil {
		b.Fatal(err)
	}
	checks := s.checkHost(s.checkCSRF(func(c echo.Context) error { return nil }))
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3001}
	for _, c := range []struct {
		name, method, host string
		header             http.Header
	}{
		{"GET loopback", "GET", "127.0.0.1:3001", http.Header{"Authorization": {"Bearer x"}}},
		{"GET public host", "GET", "observatory.example.com", http.Header{"Authorization": {"Bearer x"}}},
		{"POST cookie same-origin JSON", "POST", "127.0.0.1:3001", http.Header{
			"Cookie": {SessionCookie + "=x"}, "Content-Type": {"application/json"},
			"Sec-Fetch-Site": {"same-origin"}, "Origin": {"http://127.0.0.1:3001"},
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(c.method, "/api/v1/budgets/preflight", strings.NewReader("{}"))
			req.Host, req.Header = c.host, c.header
			req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, loop))
			rec := httptest.NewRecorder()
			ec := s.echo.NewContext(req, rec)
			ec.SetPath("/api/v1/budgets/preflight")
			b.ReportAllocs()
			for b.Loop() {
				if err := checks(ec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// nopHub and nopAuditor stand for the hub and the auditor, which the
// checks never reach.
type nopHub struct{}

func (nopHub) Subscribe(context.Context, protocol.Subscriber, protocol.Subscribe) error { return nil }
func (nopHub) Unsubscribe(protocol.Subscriber)                                          {}
func (nopHub) Snapshot(context.Context, string) ([]byte, error)                         { return nil, nil }
func (nopHub) Ready() error                                                             { return nil }

type nopAuditor struct{}

func (nopAuditor) Audit(context.Context, fleet.Event) error { return nil }
