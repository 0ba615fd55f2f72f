package auth_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/keyring"
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

func newRing(t testing.TB) *keyring.Ring {
	t.Helper()
	r, err := keyring.New(epoch)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ringSigner(t testing.TB, r *keyring.Ring) *auth.Signer {
	t.Helper()
	s, err := auth.NewRingSigner(r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func projectClaims() auth.Claims {
	return auth.Claims{
		ID: "abcdefghijklmnopqrst", Subject: "api:acme", Role: auth.RoleProject, Project: "acme", Kind: auth.KindAPI,
		IssuedAt: epoch, ExpiresAt: epoch.Add(time.Hour),
	}
}

// handSign makes a token by hand, as docs/api.md describes the format:
// kid "." payload "." HMAC-SHA256(kid "." payload) with the token MAC key
// derived from secret; without a kid, the format of releases before key
// ids (payload "." HMAC(payload)).
func handSign(secret []byte, kid string, claims any) string {
	raw, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	d := hmac.New(sha256.New, secret)
	d.Write([]byte("observatory/token/v1"))
	signed := base64.RawURLEncoding.EncodeToString(raw)
	if kid != "" {
		signed = kid + "." + signed
	}
	m := hmac.New(sha256.New, d.Sum(nil))
	m.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestSignVerifyRoundTrip(t *testing.T) {
	s := newSigner(t, key)
	for _, c := range []auth.Claims{
		projectClaims(),
		{ID: auth.NewID(), Subject: "admin", Role: auth.RoleAdmin, Kind: auth.KindSession, IssuedAt: epoch, ExpiresAt: epoch.Add(12 * time.Hour)},
		{ID: auth.NewID(), Subject: "embed:acme", Role: auth.RoleProject, Project: "acme", Kind: auth.KindEmbed, IssuedAt: epoch, ExpiresAt: epoch.Add(time.Minute)},
		{ID: auth.NewID(), Subject: "metrics:vm", Role: auth.RoleMetrics, Kind: auth.KindMetrics, IssuedAt: epoch, ExpiresAt: epoch.Add(auth.MaxMetricsLifetime)},
	} {
		tok, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		if kid, _, _ := strings.Cut(tok, "."); kid != keyring.StaticID {
			t.Errorf("token %s starts with key id %q, want %q", tok, kid, keyring.StaticID)
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

// TestTokenSize: the key id and the token id add at most 50 bytes to a
// token of the format before them, so it stays short enough for a
// header, a cookie and a URL.
func TestTokenSize(t *testing.T) {
	r := newRing(t)
	s := ringSigner(t, r)
	c := projectClaims()
	c.ID = auth.NewID()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	before := handSign(r.Current().Secret, "", map[string]any{"sub": c.Subject, "role": c.Role, "prj": c.Project, "kind": c.Kind,
		"iat": c.IssuedAt.Unix(), "exp": c.ExpiresAt.Unix()})
	if grew := len(tok) - len(before); grew > 50 {
		t.Errorf("a project token of %d bytes, %d more than without kid and jti: %s", len(tok), grew, tok)
	}
	if id := auth.NewID(); len(id) != auth.TokenIDSize || !auth.ValidTokenID(id) || id == auth.NewID() {
		t.Errorf("NewID = %q: want %d fresh lower-case letters and digits", id, auth.TokenIDSize)
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
	kid, rest, _ := strings.Cut(tok, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	// A token claiming admin, signed with another key of the same id.
	admin := projectClaims()
	admin.Role, admin.Project = auth.RoleAdmin, ""
	forged, err := newSigner(t, bytes.Repeat([]byte("x"), 32)).Sign(admin)
	if err != nil {
		t.Fatal(err)
	}
	_, forgedRest, _ := strings.Cut(forged, ".")
	forgedPayload, _, _ := strings.Cut(forgedRest, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	escalated := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte(`"role":"project"`), []byte(`"role":"admin"`), 1))
	longer := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte(`"exp":`), []byte(`"exp":9`), 1))

	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"no signature", kid + "." + payload},
		{"empty signature", kid + "." + payload + "."},
		{"no key id, our signature", payload + "." + sig},
		{"unknown key id", "zzzz." + payload + "." + sig},
		{"empty key id", "." + payload + "." + sig},
		{"flipped payload byte", kid + "." + flip(payload, 3) + "." + sig},
		{"flipped signature byte", kid + "." + payload + "." + flip(sig, 5)},
		{"escalated role, old signature", kid + "." + escalated + "." + sig},
		{"longer expiry, old signature", kid + "." + longer + "." + sig},
		{"other key", forged},
		{"forged payload, our signature", kid + "." + forgedPayload + "." + sig},
		{"extra part", tok + ".x"},
		{"truncated signature", tok[:len(tok)-2]},
		{"signature padded", tok + "A"},
		{"a padding bit of the signature set", kid + "." + payload + "." + sig[:len(sig)-1] + padBit(sig[len(sig)-1:])},
		{"too long", tok + strings.Repeat("A", auth.MaxTokenSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := s.Verify(tc.token, epoch); !errors.Is(err, auth.ErrInvalid) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalid", c, err)
			}
		})
	}
}

// padBit sets the lowest bit of a base64url character, a bit the last
// character of a 32-byte encoding does not use.
func padBit(c string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return string(alphabet[strings.Index(alphabet, c)^1])
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

// TestRotation: after a rotation the new key signs, a token of the old
// key verifies until the old key retires and not after, and a ring
// without the old key refuses its tokens; a token naming no key of the
// ring is refused.
func TestRotation(t *testing.T) {
	r := newRing(t)
	s := ringSigner(t, r)
	old, err := s.Sign(projectClaims())
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := r.Rotate(epoch, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetRing(rotated); err != nil {
		t.Fatal(err)
	}
	c := projectClaims()
	c.ExpiresAt = epoch.Add(2 * time.Hour)
	fresh, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if kid, _, _ := strings.Cut(fresh, "."); kid != rotated.Current().ID || kid == r.Current().ID || s.KeyID() != kid {
		t.Errorf("after the rotation tokens are signed by key %q, want the new key %q", kid, rotated.Current().ID)
	}
	if _, err := s.Verify(old, epoch.Add(59*time.Minute)); err != nil {
		t.Errorf("a token of the old key within its grace: %v", err)
	}
	if _, err := s.Verify(old, epoch.Add(time.Hour)); !errors.Is(err, auth.ErrInvalid) || errors.Is(err, auth.ErrExpired) {
		t.Errorf("a token of the old key once it retired: %v, want ErrInvalid (the key, not the token's expiry)", err)
	}
	if _, err := s.Verify(fresh, epoch.Add(90*time.Minute)); err != nil {
		t.Errorf("a token of the new key: %v", err)
	}
	// Another server that never had the old key.
	other := ringSigner(t, newRing(t))
	if _, err := other.Verify(old, epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a ring without the key verified its token: %v", err)
	}
	// Retire drops the old key at once.
	if err := s.SetRing(rotated.Retire()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(old, epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a token of a retired-early key: %v", err)
	}
}

// TestLegacyTokens: a token of a release before key ids (no kid, no jti)
// verifies with the ring's legacy key and with nothing else, up to the
// legacy lifetimes, until the legacy key retires.
func TestLegacyTokens(t *testing.T) {
	secret := bytes.Repeat([]byte("L"), 32)
	wire := map[string]any{"sub": "api:acme:ci", "role": "project", "prj": "acme", "kind": "api",
		"iat": epoch.Unix(), "exp": epoch.Add(300 * 24 * time.Hour).Unix()}
	legacy := handSign(secret, "", wire)
	r, err := newRing(t).Import(keyring.Key{ID: keyring.LegacyID, Secret: secret, Created: epoch, Retires: epoch.Add(365 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	s := ringSigner(t, r)
	got, err := s.Verify(legacy, epoch.Add(24*time.Hour))
	if err != nil {
		t.Fatalf("a legacy token with the legacy key in the ring: %v", err)
	}
	if got.ID != "" || got.Project != "acme" || got.Kind != auth.KindAPI {
		t.Errorf("legacy claims %+v", got)
	}
	if _, err := s.Verify(legacy, epoch.Add(366*24*time.Hour)); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a legacy token after the legacy key retired: %v", err)
	}
	if _, err := ringSigner(t, newRing(t)).Verify(legacy, epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a legacy token without the legacy key: %v", err)
	}
	// The legacy key signs nothing, and a token without a kid of a key
	// other than the legacy one is refused.
	if tok, _ := s.Sign(projectClaims()); strings.HasPrefix(tok, keyring.LegacyID+".") {
		t.Errorf("the legacy key signed %s", tok)
	}
	cur := r.Current().Secret
	for name, tok := range map[string]string{
		"no kid, the current key":   handSign(cur, "", wire),
		"legacy with a jti":         handSign(secret, "", withJTI(wire)),
		"new format without a jti":  handSign(cur, r.Current().ID, wire),
		"new format, 300 days":      handSign(cur, r.Current().ID, withJTI(wire)),
		"legacy format, 400 days":   handSign(secret, "", with(wire, "exp", epoch.Add(400*24*time.Hour).Unix())),
		"legacy key id, new format": handSign(secret, keyring.LegacyID, wire),
	} {
		if c, err := s.Verify(tok, epoch); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("%s: Verify = %+v, %v; want ErrInvalid", name, c, err)
		}
	}
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	out[k] = v
	return out
}

func withJTI(m map[string]any) map[string]any { return with(m, "jti", "abcdefghijklmnopqrst") }

// TestLifetimeCaps: no token outlives its kind's cap, whether asked of
// Sign or made by hand with the key.
func TestLifetimeCaps(t *testing.T) {
	r := newRing(t)
	s := ringSigner(t, r)
	for _, tc := range []struct {
		kind, role, project string
		cap                 time.Duration
	}{
		{auth.KindSession, auth.RoleAdmin, "", auth.MaxSessionLifetime},
		{auth.KindAPI, auth.RoleProject, "acme", auth.MaxAPILifetime},
		{auth.KindEmbed, auth.RoleProject, "acme", auth.MaxEmbedLifetime},
		{auth.KindMetrics, auth.RoleMetrics, "", auth.MaxMetricsLifetime},
	} {
		c := auth.Claims{ID: auth.NewID(), Subject: "s", Role: tc.role, Project: tc.project, Kind: tc.kind, IssuedAt: epoch, ExpiresAt: epoch.Add(tc.cap)}
		if _, err := s.Sign(c); err != nil {
			t.Errorf("%s for exactly %s: %v", tc.kind, tc.cap, err)
		}
		c.ExpiresAt = c.ExpiresAt.Add(time.Second)
		if tok, err := s.Sign(c); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("%s for %s: Sign = %q, %v; want ErrInvalid", tc.kind, tc.cap+time.Second, tok, err)
		}
		hand := handSign(r.Current().Secret, r.Current().ID, map[string]any{"jti": c.ID, "sub": "s", "role": tc.role, "prj": tc.project,
			"kind": tc.kind, "iat": epoch.Unix(), "exp": c.ExpiresAt.Unix()})
		if got, err := s.Verify(hand, epoch); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("%s for %s made by hand: Verify = %+v, %v; want ErrInvalid", tc.kind, tc.cap+time.Second, got, err)
		}
	}
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
		{"no id", func(c *auth.Claims) { c.ID = "" }},
		{"malformed id", func(c *auth.Claims) { c.ID = "ABC/../x" }},
		{"metrics kind, project role", func(c *auth.Claims) { c.Kind = auth.KindMetrics }},
		{"metrics role, api kind", func(c *auth.Claims) { c.Role, c.Project = auth.RoleMetrics, "" }},
		{"metrics token with a project", func(c *auth.Claims) { c.Role, c.Kind = auth.RoleMetrics, auth.KindMetrics }},
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
	if _, err := auth.NewRingSigner(nil); err == nil {
		t.Fatal("NewRingSigner accepted no ring")
	}
}

// FuzzVerify: Verify never panics, and whatever it accepts is coherent,
// carries a token id, and signs back to a token it accepts with the same
// claims.
func FuzzVerify(f *testing.F) {
	r := newRing(f)
	rotated, err := r.Rotate(epoch, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	old := ringSigner(f, r)
	s := ringSigner(f, rotated)
	for _, c := range []auth.Claims{projectClaims(),
		{ID: auth.NewID(), Subject: "metrics:vm", Role: auth.RoleMetrics, Kind: auth.KindMetrics, IssuedAt: epoch, ExpiresAt: epoch.Add(time.Hour)}} {
		tok, _ := s.Sign(c)
		f.Add(tok)
		tok, _ = old.Sign(c)
		f.Add(tok)
	}
	f.Add(handSign(rotated.Current().Secret, rotated.Current().ID, map[string]any{"sub": "x"}))
	f.Add("")
	f.Add(".")
	f.Add("..")
	f.Add("e30.AAAA")
	f.Add(rotated.Current().ID + ".e30.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := s.Verify(token, epoch)
		if err != nil {
			if !errors.Is(err, auth.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := c.Validate(); err != nil || c.ID == "" {
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

// FuzzTokenID: ValidTokenID accepts exactly 16 to 64 lower-case letters
// and digits, so an accepted id is a NATS KV key and a URL path segment
// as it is.
func FuzzTokenID(f *testing.F) {
	f.Add(auth.NewID())
	f.Add("")
	f.Add("abc")
	f.Add(strings.Repeat("a", 65))
	f.Add("abcdefghijklmnop/")
	f.Add("ABCDEFGHIJKLMNOPQRST")
	f.Add("abcdefghijklmnop.q")
	f.Fuzz(func(t *testing.T, id string) {
		ok := auth.ValidTokenID(id)
		want := len(id) >= 16 && len(id) <= 64 && strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789") == ""
		if ok != want {
			t.Fatalf("ValidTokenID(%q) = %v, want %v", id, ok, want)
		}
	})
}
