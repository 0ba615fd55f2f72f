package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sagewai/observatory/fleet"
)

// Roles a token can carry.
const (
	// RoleAdmin sees every project and may ask for scope "*".
	RoleAdmin = "admin"
	// RoleProject sees exactly one project, named in Claims.Project.
	RoleProject = "project"
)

// Kinds of token, which decide where a token is accepted.
const (
	// KindSession is minted by a login: a bearer token or the HUD cookie.
	KindSession = "session"
	// KindAPI is minted for programs (workers, tenants' tools).
	KindAPI = "api"
	// KindEmbed is short-lived and read-only: it may travel in a URL.
	KindEmbed = "embed"
)

// MinKeySize is the shortest signing key NewSigner accepts.
const MinKeySize = 32

// MaxTokenSize bounds what Verify will look at.
const MaxTokenSize = 2048

// Token errors. Every error Verify returns wraps ErrInvalid; an expired but
// otherwise good token also wraps ErrExpired.
var (
	ErrInvalid = errors.New("invalid token")
	ErrExpired = errors.New("token expired")
)

// Claims is what a token asserts: who (Subject), with which Role, for which
// Project (empty for admins), what Kind of token, and when it was issued and
// expires. Times have a resolution of one second.
type Claims struct {
	Subject   string
	Role      string
	Project   string
	Kind      string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// wireClaims is the compact JSON form of Claims.
type wireClaims struct {
	Sub  string `json:"sub"`
	Role string `json:"role"`
	Prj  string `json:"prj,omitempty"`
	Kind string `json:"kind"`
	Iat  int64  `json:"iat"`
	Exp  int64  `json:"exp"`
}

// Validate checks that the claims are coherent: a known role and kind, a
// project exactly when the role is RoleProject, a subject without control
// characters, and an expiry after the issue time.
func (c Claims) Validate() error {
	if err := ValidateRole(c.Role, c.Project); err != nil {
		return err
	}
	switch c.Kind {
	case KindSession, KindAPI, KindEmbed:
	default:
		return fmt.Errorf("%w: kind %q", ErrInvalid, c.Kind)
	}
	if !ValidSubject(c.Subject) {
		return fmt.Errorf("%w: subject", ErrInvalid)
	}
	if !c.ExpiresAt.After(c.IssuedAt) {
		return fmt.Errorf("%w: expires before it is issued", ErrInvalid)
	}
	return nil
}

// ValidateRole checks that role is known and that project is set exactly
// when the role is RoleProject. Its errors wrap ErrInvalid.
func ValidateRole(role, project string) error {
	switch role {
	case RoleAdmin:
		if project != "" {
			return fmt.Errorf("%w: the admin role names no project", ErrInvalid)
		}
	case RoleProject:
		if !fleet.ValidProjectID(project) {
			return fmt.Errorf("%w: project %q", ErrInvalid, project)
		}
	default:
		return fmt.Errorf("%w: role %q", ErrInvalid, role)
	}
	return nil
}

// ValidSubject reports whether s can name a token's subject: 1 to
// MaxNameSize bytes of valid UTF-8 without control characters.
func ValidSubject(s string) bool {
	return s != "" && len(s) <= MaxNameSize && utf8.ValidString(s) &&
		!strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// Signer mints and verifies tokens (and enrollment keys) with one key.
type Signer struct {
	key       []byte
	enrollKey []byte // a second derived key: an enrollment key is never a token
}

// NewSigner returns a Signer for key, which must be at least MinKeySize
// bytes of secret. The HMAC key is derived from it, so the same signing key
// can serve other purposes without its tokens being confused with them.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("auth: signing key has %d bytes, need at least %d", len(key), MinKeySize)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("observatory/token/v1"))
	e := hmac.New(sha256.New, key)
	e.Write([]byte("observatory/enroll/v1"))
	return &Signer{key: m.Sum(nil), enrollKey: e.Sum(nil)}, nil
}

var b64 = base64.RawURLEncoding

// Sign returns the token for c, after validating it.
func (s *Signer) Sign(c Claims) (string, error) {
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	payload, err := json.Marshal(wireClaims{
		Sub: c.Subject, Role: c.Role, Prj: c.Project, Kind: c.Kind,
		Iat: c.IssuedAt.Unix(), Exp: c.ExpiresAt.Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	p := b64.EncodeToString(payload)
	return p + "." + b64.EncodeToString(s.mac(p)), nil
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Verify checks token's signature (in constant time), decodes its claims and
// refuses it if it is malformed, incoherent or expired at now.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > MaxTokenSize {
		return Claims{}, fmt.Errorf("%w: too long", ErrInvalid)
	}
	p, sig, ok := strings.Cut(token, ".")
	if !ok || p == "" {
		return Claims{}, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(p)) {
		return Claims{}, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: payload encoding", ErrInvalid)
	}
	var w wireClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
		return Claims{}, fmt.Errorf("%w: payload", ErrInvalid)
	}
	c := Claims{
		Subject: w.Sub, Role: w.Role, Project: w.Prj, Kind: w.Kind,
		IssuedAt: time.Unix(w.Iat, 0).UTC(), ExpiresAt: time.Unix(w.Exp, 0).UTC(),
	}
	if err := c.Validate(); err != nil {
		return Claims{}, err
	}
	if !now.Before(c.ExpiresAt) {
		return Claims{}, fmt.Errorf("%w: %w at %s", ErrInvalid, ErrExpired, c.ExpiresAt.Format(time.RFC3339))
	}
	return c, nil
}
