package revoke_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/revoke"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// BenchmarkRevoked is the revocation check each request pays: a lookup
// in the in-memory set, here holding 10,000 revocations, for an id that
// is not revoked (every good request) and one that is.
//
//	go test ./revoke -run '^$' -bench Revoked -benchmem -count 5
func BenchmarkRevoked(b *testing.B) {
	n := streamtest.Start(b, stream.HubConfig{})
	clock := fleettest.NewClock()
	ctx := context.Background()
	s, err := revoke.Open(ctx, n.JS, revoke.Config{MaxAge: maxAge, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() { stop(); <-done }()
	const n10k = 10_000
	for i := range n10k {
		if err := s.Revoke(ctx, fmt.Sprintf("revoked%013d", i), clock.Now().Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	if s.Len() != n10k {
		b.Fatalf("%d revocations", s.Len())
	}
	for _, bc := range []struct {
		name, id string
		want     bool
	}{
		{"not revoked", "abcdefghijklmnopqrst", false},
		{"revoked", fmt.Sprintf("revoked%013d", n10k/2), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if s.Revoked(bc.id) != bc.want {
						b.Error("wrong answer")
						return
					}
				}
			})
		})
	}
}
