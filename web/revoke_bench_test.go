package web_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/revoke"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// BenchmarkRequestRevocations serves GET /api/v1/fleet?scope=acme as
// BenchmarkRequest/uninstrumented does, once with one signing key and no
// revocations, once with what issue 12 adds per request: the token
// verified with the key its kid names in a ring of five keys, and the
// revocation check against 10,000 revoked ids kept by a revoke.Store on
// a real NATS.
//
//	go test ./web -run '^$' -bench RequestRevocations -benchmem -cpu 1 -count 5
func BenchmarkRequestRevocations(b *testing.B) {
	n := streamtest.Start(b, stream.HubConfig{})
	clock := fleettest.NewClock()
	ctx := context.Background()
	rev, err := revoke.Open(ctx, n.JS, revoke.Config{MaxAge: auth.MaxLifetime, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rev.Run(rctx) }()
	defer func() { stop(); <-done }()
	for i := range 10_000 {
		if err := rev.Revoke(ctx, fmt.Sprintf("revoked%013d", i), clock.Now().Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	ring, err := keyring.New(clock.Now())
	if err != nil {
		b.Fatal(err)
	}
	for range 4 {
		if ring, err = ring.Rotate(clock.Now(), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		edit func(*web.Config)
	}{
		{"one key, no revocations", func(c *web.Config) { c.SigningKey = make([]byte, 32) }},
		{"ring of five keys, 10k revocations", func(c *web.Config) { c.Keys, c.Revocations = ring, rev }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := web.Config{
				AdminPassword: adminPassword,
				Logger:        slog.New(slog.NewJSONHandler(io.Discard, nil)),
				BcryptCost:    bcrypt.MinCost,
				Now:           clock.Now,
				PublicURLs:    []string{"http://example.com"}, // httptest.NewRequest's host
			}
			bc.edit(&cfg)
			srv, err := web.New(cfg, newTestHub(), &testAuditor{})
			if err != nil {
				b.Fatal(err)
			}
			tok, _, err := srv.IssueToken(auth.RoleAdmin, "", 0)
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			req := httptest.NewRequest(http.MethodGet, "/api/v1/fleet?scope=acme", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}
