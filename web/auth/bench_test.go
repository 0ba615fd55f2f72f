package auth_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/web/auth"
)

// BenchmarkVerify measures what checking one token costs: the signature
// with the key its kid names, decoding and validating the claims.
//
//	go test ./web/auth -run '^$' -bench 'Verify|Sign' -benchmem -count 5
func BenchmarkVerify(b *testing.B) {
	legacySecret := bytes.Repeat([]byte("L"), 32)
	ring, err := keyring.New(epoch)
	if err != nil {
		b.Fatal(err)
	}
	for range 3 {
		if ring, err = ring.Rotate(epoch, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	withLegacy, err := ring.Import(keyring.Key{ID: keyring.LegacyID, Secret: legacySecret, Retires: epoch.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	one := ringSigner(b, mustStatic(b))
	four := ringSigner(b, withLegacy)
	c := projectClaims()
	for _, bc := range []struct {
		name  string
		s     *auth.Signer
		token string
	}{
		{"one key", one, mustSign(b, one, c)},
		{"ring of five keys", four, mustSign(b, four, c)},
		{"legacy token", four, handSign(legacySecret, "", map[string]any{"sub": c.Subject, "role": c.Role, "prj": c.Project,
			"kind": c.Kind, "iat": c.IssuedAt.Unix(), "exp": c.ExpiresAt.Unix()})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if _, err := bc.s.Verify(bc.token, epoch); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bc.s.Verify(bc.token, epoch); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSign measures minting one token.
func BenchmarkSign(b *testing.B) {
	s := ringSigner(b, mustStatic(b))
	c := projectClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

func mustStatic(b *testing.B) *keyring.Ring {
	r, err := keyring.Static(key)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func mustSign(b *testing.B, s *auth.Signer, c auth.Claims) string {
	tok, err := s.Sign(c)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}
