package auth_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/web/auth"
)

var (
	key = bytes.Repeat([]byte("k"), auth.MinKeySize)
	// epoch is the test clock's start, in whole seconds as claims carry
	// them; OBSERVATORY_TEST_CLOCK moves it.
	epoch = fleettest.Epoch().Truncate(time.Second)
)

func newSigner(t testing.TB, key []byte) *auth.Signer {
	t.Helper()
	s, err := auth.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func projectClaims() auth.Claims {
	return auth.Claims{
		Subject: "api:acme", Role: auth.RoleProject, Project: "acme", Kind: auth.KindAPI,
		IssuedAt: epoch, ExpiresAt: epoch.Add(time.Hour),
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	s := newSigner(t, key)
	for _, c := range []auth.Claims{
		projectClaims(),
		{Subject: "admin", Role: auth.RoleAdmin, Kind: auth.KindSession, IssuedAt: epoch, ExpiresAt: epoch.Add(12 * time.Hour)},
		{Subject: "embed:acme", Role: auth.RoleProject, Project: "acme", Kind: auth.KindEmbed, IssuedAt: epoch, ExpiresAt: epoch.Add(time.Minute)},
	} {
		tok, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Verify(tok, epoch)
		if err != nil {
			t.Fatalf("Verify(%s): %v", tok, err)
		}
		if diff := cmp.Diff(c, got); diff != "" {
			t.Errorf("claims changed in the round trip (-want +got):\n%s", diff)
		}
	}
}

func TestVerifyExpiry(t *testing.T) {
	s := newSigner(t, key)
	c := projectClaims()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"just issued", epoch, true},
		{"a second before expiry", c.ExpiresAt.Add(-time.Second), true},
		{"at expiry", c.ExpiresAt, false},
		{"after expiry", c.ExpiresAt.Add(time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Verify(tok, tc.now)
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, auth.ErrExpired) || !errors.Is(err, auth.ErrInvalid) {
				t.Fatalf("Verify = %v, want ErrExpired and ErrInvalid", err)
			}
		})
	}
}

func TestVerifyRefusesTampering(t *testing.T) {
	s := newSigner(t, key)
	tok, err := s.Sign(projectClaims())
	if err != nil {
		t.Fatal(err)
	}
	payload, sig, _ := strings.Cut(tok, ".")
	// A token claiming admin, signed with another key.
	admin := projectClaims()
	admin.Role, admin.Project = auth.RoleAdmin, ""
	forged, err := newSigner(t, bytes.Repeat([]byte("x"), 32)).Sign(admin)
	if err != nil {
		t.Fatal(err)
	}
	forgedPayload, _, _ := strings.Cut(forged, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	escalated := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte(`"role":"project"`), []byte(`"role":"admin"`), 1))

	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"no signature", payload},
		{"empty signature", payload + "."},
		{"flipped payload byte", flip(payload, 3) + "." + sig},
		{"flipped signature byte", payload + "." + flip(sig, 5)},
		{"escalated role, old signature", escalated + "." + sig},
		{"other key", forged},
		{"forged payload, our signature", forgedPayload + "." + sig},
		{"extra part", tok + ".x"},
		{"truncated signature", tok[:len(tok)-2]},
		{"too long", tok + strings.Repeat("A", auth.MaxTokenSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := s.Verify(tc.token, epoch); !errors.Is(err, auth.ErrInvalid) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalid", c, err)
			}
		})
	}
}

func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestSignRefusesIncoherentClaims(t *testing.T) {
	s := newSigner(t, key)
	for _, tc := range []struct {
		name string
		edit func(*auth.Claims)
	}{
		{"unknown role", func(c *auth.Claims) { c.Role = "root" }},
		{"project role without project", func(c *auth.Claims) { c.Project = "" }},
		{"bad project id", func(c *auth.Claims) { c.Project = "Acme!" }},
		{"admin with project", func(c *auth.Claims) { c.Role = auth.RoleAdmin }},
		{"unknown kind", func(c *auth.Claims) { c.Kind = "forever" }},
		{"empty subject", func(c *auth.Claims) { c.Subject = "" }},
		{"control character in subject", func(c *auth.Claims) { c.Subject = "a\nb" }},
		{"expires before issue", func(c *auth.Claims) { c.ExpiresAt = c.IssuedAt }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := projectClaims()
			tc.edit(&c)
			if tok, err := s.Sign(c); !errors.Is(err, auth.ErrInvalid) {
				t.Fatalf("Sign = %q, %v; want ErrInvalid", tok, err)
			}
		})
	}
}

func TestNewSignerNeedsALongKey(t *testing.T) {
	if _, err := auth.NewSigner(make([]byte, auth.MinKeySize-1)); err == nil {
		t.Fatal("NewSigner accepted a 31-byte key")
	}
}

// FuzzVerify: Verify never panics, and whatever it accepts is coherent and
// signs back to a token it accepts with the same claims.
func FuzzVerify(f *testing.F) {
	s := newSigner(f, key)
	tok, _ := s.Sign(projectClaims())
	f.Add(tok)
	f.Add("")
	f.Add(".")
	f.Add("e30.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := s.Verify(token, epoch)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted incoherent claims %+v: %v", c, err)
		}
		again, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := s.Verify(again, epoch)
		if err != nil || !cmp.Equal(c, c2) {
			t.Fatalf("re-signed claims %+v verify as %+v, %v", c, c2, err)
		}
	})
}
