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

	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/web/auth"
)

func enrollKey() auth.EnrollmentKey {
	return auth.EnrollmentKey{ID: "ek-1", Subject: "admin", Projects: []string{"acme", "globex"}, Pools: []string{"default", "gpu"},
		IssuedAt: epoch, ExpiresAt: epoch.Add(time.Hour)}
}

// TestEnrollmentKeys: a key verifies to what was signed until it expires;
// it is never a token, a token is never a key, and another signing key's
// keys are refused.
func TestEnrollmentKeys(t *testing.T) {
	s := newSigner(t, key)
	k, err := s.SignEnrollment(enrollKey())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k, auth.EnrollPrefix) {
		t.Errorf("key %q lacks the prefix %q", k, auth.EnrollPrefix)
	}
	got, err := s.VerifyEnrollment(k, epoch.Add(time.Minute))
	if err != nil || !cmp.Equal(got, enrollKey()) {
		t.Fatalf("VerifyEnrollment = %+v, %v", got, err)
	}
	if _, err := s.VerifyEnrollment(k, epoch.Add(time.Hour)); !errors.Is(err, auth.ErrExpired) {
		t.Errorf("an expired key: %v, want ErrExpired", err)
	}
	if _, err := s.Verify(k, epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("an enrollment key verified as a token: %v", err)
	}
	tok, _ := s.Sign(projectClaims())
	if _, err := s.VerifyEnrollment(tok, epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a token verified as an enrollment key: %v", err)
	}
	if _, err := s.VerifyEnrollment(auth.EnrollPrefix+strings.TrimPrefix(tok, ""), epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a token with the key prefix verified: %v", err)
	}
	other := newSigner(t, bytes.Repeat([]byte("z"), 32))
	if _, err := other.VerifyEnrollment(k, epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("another server's key verified: %v", err)
	}
	bad := enrollKey()
	bad.Pools = nil
	if _, err := s.SignEnrollment(bad); err == nil {
		t.Error("signed a key without pools")
	}
	bad = enrollKey()
	bad.Projects = []string{"Acme"}
	if _, err := s.SignEnrollment(bad); err == nil {
		t.Error("signed a key for a malformed project")
	}
}

// TestEnrollmentKeyIDs: an enrollment key names the signing key, verifies
// with a rotated-out key until it retires, and not with a ring that lacks
// its key; a key of a release before key ids verifies with the legacy
// key alone.
func TestEnrollmentKeyIDs(t *testing.T) {
	r := newRing(t)
	s := ringSigner(t, r)
	k, err := s.SignEnrollment(enrollKey())
	if err != nil {
		t.Fatal(err)
	}
	if kid, _, _ := strings.Cut(strings.TrimPrefix(k, auth.EnrollPrefix), "."); kid != r.Current().ID {
		t.Errorf("key %s names signing key %q, want %q", k, kid, r.Current().ID)
	}
	rotated, err := r.Rotate(epoch, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetRing(rotated); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyEnrollment(k, epoch.Add(29*time.Minute)); err != nil {
		t.Errorf("within the old key's grace: %v", err)
	}
	if _, err := s.VerifyEnrollment(k, epoch.Add(30*time.Minute)); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("after the old key retired: %v", err)
	}
	if _, err := ringSigner(t, newRing(t)).VerifyEnrollment(k, epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a ring without the key: %v", err)
	}

	// A legacy key: prefix, payload, MAC with the enrollment derivation.
	secret := bytes.Repeat([]byte("L"), 32)
	legacy := auth.EnrollPrefix + handSignEnroll(secret, map[string]any{"id": "ek-1", "sub": "admin",
		"prj": []string{"acme"}, "pools": []string{"default"}, "iat": epoch.Unix(), "exp": epoch.Add(200 * 24 * time.Hour).Unix()})
	withLegacy, err := rotated.Import(keyring.Key{ID: keyring.LegacyID, Secret: secret, Retires: epoch.Add(365 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ringSigner(t, withLegacy).VerifyEnrollment(legacy, epoch); err != nil {
		t.Errorf("a legacy enrollment key with the legacy key: %v", err)
	}
	if _, err := s.VerifyEnrollment(legacy, epoch); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("a legacy enrollment key without the legacy key: %v", err)
	}
	long := enrollKey()
	long.ExpiresAt = long.IssuedAt.Add(auth.MaxEnrollLifetime + time.Second)
	if key, err := s.SignEnrollment(long); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("an enrollment key past the lifetime cap: %q, %v", key, err)
	}
}

// handSignEnroll makes a legacy enrollment key body (payload "." MAC)
// with the enrollment MAC key derived from secret.
func handSignEnroll(secret []byte, claims any) string {
	raw, _ := json.Marshal(claims)
	d := hmac.New(sha256.New, secret)
	d.Write([]byte("observatory/enroll/v1"))
	p := base64.RawURLEncoding.EncodeToString(raw)
	m := hmac.New(sha256.New, d.Sum(nil))
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// FuzzVerifyEnrollment: VerifyEnrollment never panics, and whatever it
// accepts is coherent and signs back to a key it accepts as the same.
func FuzzVerifyEnrollment(f *testing.F) {
	s := ringSigner(f, newRing(f))
	k, _ := s.SignEnrollment(enrollKey())
	f.Add(k)
	f.Add(auth.EnrollPrefix + s.KeyID() + ".e30.AAAA")
	f.Add("")
	f.Add(auth.EnrollPrefix)
	f.Add(auth.EnrollPrefix + "e30.AAAA")
	f.Fuzz(func(t *testing.T, key string) {
		got, err := s.VerifyEnrollment(key, epoch)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted an incoherent key %+v: %v", got, err)
		}
		again, err := s.SignEnrollment(got)
		if err != nil {
			t.Fatal(err)
		}
		if got2, err := s.VerifyEnrollment(again, epoch); err != nil || !cmp.Equal(got, got2) {
			t.Fatalf("re-signed %+v verifies as %+v, %v", got, got2, err)
		}
	})
}
