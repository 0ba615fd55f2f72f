package auth_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

// FuzzVerifyEnrollment: VerifyEnrollment never panics, and whatever it
// accepts is coherent and signs back to a key it accepts as the same.
func FuzzVerifyEnrollment(f *testing.F) {
	s := newSigner(f, key)
	k, _ := s.SignEnrollment(enrollKey())
	f.Add(k)
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
