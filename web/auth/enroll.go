package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// EnrollPrefix starts every enrollment key, so that one is recognised in a
// config file or a leak scanner, and never parses as a token.
const EnrollPrefix = "obsek1."

// MaxEnrollScope bounds the projects and the pools an enrollment key names.
const MaxEnrollScope = 64

// EnrollmentKey is what an enrollment key asserts: who issued it (Subject,
// and ID, a random name for the audit trail), the projects and pools a
// worker enrolling with it may claim from, and when it was issued and
// expires. Pools hold "default" for the default pool.
type EnrollmentKey struct {
	ID        string
	Subject   string
	Projects  []string
	Pools     []string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

type wireEnroll struct {
	ID    string   `json:"id"`
	Sub   string   `json:"sub"`
	Prj   []string `json:"prj"`
	Pools []string `json:"pools"`
	Iat   int64    `json:"iat"`
	Exp   int64    `json:"exp"`
}

// Validate checks an enrollment key's claims: a subject and an id, 1 to
// MaxEnrollScope well-formed projects and pools, an expiry after the issue
// time, at most MaxEnrollLifetime later.
func (k EnrollmentKey) Validate() error { return k.validate(false) }

func (k EnrollmentKey) validate(legacy bool) error {
	if !ValidSubject(k.Subject) || !ValidSubject(k.ID) {
		return fmt.Errorf("%w: enrollment key subject or id", ErrInvalid)
	}
	for _, l := range []struct {
		name string
		ids  []string
	}{{"projects", k.Projects}, {"pools", k.Pools}} {
		if len(l.ids) == 0 || len(l.ids) > MaxEnrollScope {
			return fmt.Errorf("%w: enrollment key with %d %s", ErrInvalid, len(l.ids), l.name)
		}
		for _, id := range l.ids {
			if !fleet.ValidProjectID(id) {
				return fmt.Errorf("%w: enrollment key %s %q", ErrInvalid, l.name, id)
			}
		}
	}
	if !k.ExpiresAt.After(k.IssuedAt) {
		return fmt.Errorf("%w: expires before it is issued", ErrInvalid)
	}
	lifetime := MaxEnrollLifetime
	if legacy {
		lifetime = legacyMaxLifetime
	}
	if k.ExpiresAt.Sub(k.IssuedAt) > lifetime {
		return fmt.Errorf("%w: an enrollment key lives at most %s", ErrInvalid, lifetime)
	}
	return nil
}

// SignEnrollment returns the enrollment key for k, after validating it:
// EnrollPrefix, the signing key's id, ".", base64url(claims JSON), ".",
// base64url(HMAC), with an HMAC key of its own, so that no enrollment key
// is accepted as a token nor a token as an enrollment key.
func (s *Signer) SignEnrollment(k EnrollmentKey) (string, error) {
	if err := k.validate(false); err != nil {
		return "", fmt.Errorf("auth: sign enrollment key: %w", err)
	}
	payload, err := json.Marshal(wireEnroll{ID: k.ID, Sub: k.Subject, Prj: k.Projects, Pools: k.Pools,
		Iat: k.IssuedAt.Unix(), Exp: k.ExpiresAt.Unix()})
	if err != nil {
		return "", fmt.Errorf("auth: sign enrollment key: %w", err)
	}
	sk := s.keys.Load().current
	signed := sk.id + "." + b64.EncodeToString(payload)
	var sum [sha256.Size]byte
	return EnrollPrefix + signed + "." + b64.EncodeToString(sk.enroll.mac(sum[:0], signed)), nil
}

// VerifyEnrollment checks an enrollment key's signature (in constant
// time) with the key its key id names, decodes it and refuses it if that
// key is unknown or retired at now, or the enrollment key malformed,
// incoherent or expired at now. Its errors wrap ErrInvalid, and
// ErrExpired for an expired key. A key without a key id (a release before
// them) verifies with the ring's legacy key alone.
func (s *Signer) VerifyEnrollment(key string, now time.Time) (EnrollmentKey, error) {
	if len(key) > MaxTokenSize*4 {
		return EnrollmentKey{}, fmt.Errorf("%w: too long", ErrInvalid)
	}
	rest, ok := strings.CutPrefix(key, EnrollPrefix)
	if !ok {
		return EnrollmentKey{}, fmt.Errorf("%w: not an enrollment key", ErrInvalid)
	}
	_, legacy, payload, err := s.open(rest, now, func(k *signingKey) *macPool { return &k.enroll })
	if err != nil {
		return EnrollmentKey{}, err
	}
	var w wireEnroll
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
		return EnrollmentKey{}, fmt.Errorf("%w: payload", ErrInvalid)
	}
	k := EnrollmentKey{ID: w.ID, Subject: w.Sub, Projects: slices.Clip(w.Prj), Pools: slices.Clip(w.Pools),
		IssuedAt: time.Unix(w.Iat, 0).UTC(), ExpiresAt: time.Unix(w.Exp, 0).UTC()}
	if err := k.validate(legacy); err != nil {
		return EnrollmentKey{}, err
	}
	if !now.Before(k.ExpiresAt) {
		return EnrollmentKey{}, fmt.Errorf("%w: %w at %s", ErrInvalid, ErrExpired, k.ExpiresAt.Format(time.RFC3339))
	}
	return k, nil
}
