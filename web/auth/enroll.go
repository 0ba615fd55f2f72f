package auth

import (
	"bytes"
	"crypto/hmac"
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
// time.
func (k EnrollmentKey) Validate() error {
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
	return nil
}

// SignEnrollment returns the enrollment key for k, after validating it:
// EnrollPrefix, base64url(claims JSON), ".", base64url(HMAC), with an HMAC
// key of its own, so that no enrollment key is accepted as a token nor a
// token as an enrollment key.
func (s *Signer) SignEnrollment(k EnrollmentKey) (string, error) {
	if err := k.Validate(); err != nil {
		return "", fmt.Errorf("auth: sign enrollment key: %w", err)
	}
	payload, err := json.Marshal(wireEnroll{ID: k.ID, Sub: k.Subject, Prj: k.Projects, Pools: k.Pools,
		Iat: k.IssuedAt.Unix(), Exp: k.ExpiresAt.Unix()})
	if err != nil {
		return "", fmt.Errorf("auth: sign enrollment key: %w", err)
	}
	p := b64.EncodeToString(payload)
	return EnrollPrefix + p + "." + b64.EncodeToString(s.enrollMAC(p)), nil
}

func (s *Signer) enrollMAC(payload string) []byte {
	m := hmac.New(sha256.New, s.enrollKey)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// VerifyEnrollment checks an enrollment key's signature (in constant
// time), decodes it and refuses it if it is malformed, incoherent or
// expired at now. Its errors wrap ErrInvalid, and ErrExpired for an
// expired key.
func (s *Signer) VerifyEnrollment(key string, now time.Time) (EnrollmentKey, error) {
	if len(key) > MaxTokenSize*4 {
		return EnrollmentKey{}, fmt.Errorf("%w: too long", ErrInvalid)
	}
	rest, ok := strings.CutPrefix(key, EnrollPrefix)
	if !ok {
		return EnrollmentKey{}, fmt.Errorf("%w: not an enrollment key", ErrInvalid)
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || p == "" {
		return EnrollmentKey{}, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.enrollMAC(p)) {
		return EnrollmentKey{}, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return EnrollmentKey{}, fmt.Errorf("%w: payload encoding", ErrInvalid)
	}
	var w wireEnroll
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
		return EnrollmentKey{}, fmt.Errorf("%w: payload", ErrInvalid)
	}
	k := EnrollmentKey{ID: w.ID, Subject: w.Sub, Projects: slices.Clip(w.Prj), Pools: slices.Clip(w.Pools),
		IssuedAt: time.Unix(w.Iat, 0).UTC(), ExpiresAt: time.Unix(w.Exp, 0).UTC()}
	if err := k.Validate(); err != nil {
		return EnrollmentKey{}, err
	}
	if !now.Before(k.ExpiresAt) {
		return EnrollmentKey{}, fmt.Errorf("%w: %w at %s", ErrInvalid, ErrExpired, k.ExpiresAt.Format(time.RFC3339))
	}
	return k, nil
}
