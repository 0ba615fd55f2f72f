package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/keyring"
)

// Roles a token can carry.
const (
	// RoleAdmin sees every project and may ask for scope "*".
	RoleAdmin = "admin"
	// RoleProject sees exactly one project, named in Claims.Project.
	RoleProject = "project"
	// RoleMetrics may read /metrics and nothing else. Only tokens of
	// KindMetrics carry it, and no user has it.
	RoleMetrics = "metrics"
)

// Kinds of token, which decide where a token is accepted.
const (
	// KindSession is minted by a login: a bearer token or the HUD cookie.
	KindSession = "session"
	// KindAPI is minted for programs (workers, tenants' tools).
	KindAPI = "api"
	// KindEmbed is short-lived and read-only: it may travel in a URL.
	KindEmbed = "embed"
	// KindMetrics may read /metrics and nothing else (a scraper's).
	KindMetrics = "metrics"
)

// Lifetime caps: no token is signed, or verifies, with a lifetime
// (expiry minus issue time) longer than its kind's.
const (
	MaxSessionLifetime = 7 * 24 * time.Hour
	MaxAPILifetime     = 90 * 24 * time.Hour
	MaxEmbedLifetime   = time.Hour
	MaxMetricsLifetime = 90 * 24 * time.Hour
	// MaxEnrollLifetime caps enrollment keys.
	MaxEnrollLifetime = 90 * 24 * time.Hour
	// MaxLifetime is the longest any token or enrollment key signed
	// here lives: how long a revocation must be remembered.
	MaxLifetime = 90 * 24 * time.Hour
	// legacyMaxLifetime is what releases before key ids issued (project
	// tokens of up to 365 days); their tokens verify with it until the
	// legacy key retires.
	legacyMaxLifetime = 365 * 24 * time.Hour
)

// LifetimeCap returns the longest lifetime a token of kind may have (0
// for an unknown kind).
func LifetimeCap(kind string) time.Duration {
	switch kind {
	case KindSession:
		return MaxSessionLifetime
	case KindAPI:
		return MaxAPILifetime
	case KindEmbed:
		return MaxEmbedLifetime
	case KindMetrics:
		return MaxMetricsLifetime
	}
	return 0
}

// MinKeySize is the shortest signing key NewSigner accepts.
const MinKeySize = keyring.MinKeySize

// MaxTokenSize bounds what Verify will look at.
const MaxTokenSize = 2048

// Token errors. Every error Verify returns wraps ErrInvalid; an expired but
// otherwise good token also wraps ErrExpired.
var (
	ErrInvalid = errors.New("invalid token")
	ErrExpired = errors.New("token expired")
)

// Claims is what a token asserts: its ID (jti, what a revocation names),
// who (Subject), with which Role, for which Project (empty for admins),
// what Kind of token, and when it was issued and expires. Times have a
// resolution of one second. Tokens of releases before token ids verify
// (until the legacy key retires) with an empty ID.
type Claims struct {
	ID        string
	Subject   string
	Role      string
	Project   string
	Kind      string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// wireClaims is the compact JSON form of Claims.
type wireClaims struct {
	Jti  string `json:"jti,omitempty"`
	Sub  string `json:"sub"`
	Role string `json:"role"`
	Prj  string `json:"prj,omitempty"`
	Kind string `json:"kind"`
	Iat  int64  `json:"iat"`
	Exp  int64  `json:"exp"`
}

// TokenIDSize is the length of the ids NewID makes: 12 random bytes in
// lower-case base32.
const TokenIDSize = 20

var tokenIDRE = regexp.MustCompile(`^[a-z0-9]{16,64}$`)

// ValidTokenID reports whether id can name a token (or an enrollment
// key): 16 to 64 lower-case letters and digits. NewID's ids are.
func ValidTokenID(id string) bool { return tokenIDRE.MatchString(id) }

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a fresh random token id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// Validate checks that the claims are coherent: a known role and kind (a
// metrics token exactly when the role is RoleMetrics), a project exactly
// when the role is RoleProject, a well-formed ID when there is one, a
// subject without control characters, and an expiry after the issue time
// within the kind's LifetimeCap.
func (c Claims) Validate() error { return c.validate(false) }

func (c Claims) validate(legacy bool) error {
	switch {
	case c.Kind == KindMetrics || c.Role == RoleMetrics:
		if c.Kind != KindMetrics || c.Role != RoleMetrics || c.Project != "" {
			return fmt.Errorf("%w: a metrics token has the metrics role, the metrics kind and no project", ErrInvalid)
		}
	default:
		if err := ValidateRole(c.Role, c.Project); err != nil {
			return err
		}
	}
	lifetime := LifetimeCap(c.Kind)
	if lifetime == 0 {
		return fmt.Errorf("%w: kind %q", ErrInvalid, c.Kind)
	}
	if legacy {
		lifetime = legacyMaxLifetime
	}
	if c.ID != "" && !ValidTokenID(c.ID) {
		return fmt.Errorf("%w: token id", ErrInvalid)
	}
	if !ValidSubject(c.Subject) {
		return fmt.Errorf("%w: subject", ErrInvalid)
	}
	if !c.ExpiresAt.After(c.IssuedAt) {
		return fmt.Errorf("%w: expires before it is issued", ErrInvalid)
	}
	if c.ExpiresAt.Sub(c.IssuedAt) > lifetime {
		return fmt.Errorf("%w: a %s token lives at most %s", ErrInvalid, c.Kind, lifetime)
	}
	return nil
}

// ValidateRole checks that role is a user's (RoleAdmin, or RoleProject)
// and that project is set exactly when the role is RoleProject. Its errors
// wrap ErrInvalid.
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

// b64 encodes tokens; strict decodes them, refusing the encodings that
// differ from b64's in the unused low bits of the last character, so
// that a token has one spelling only (a flipped padding bit is not the
// same token).
var (
	b64    = base64.RawURLEncoding
	strict = base64.RawURLEncoding.Strict()
)

// Sign returns the token for c, after validating it (c.ID is required),
// signed with the current key of the ring:
// kid "." base64url(claims JSON) "." base64url(HMAC of the two).
func (s *Signer) Sign(c Claims) (string, error) {
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	if c.ID == "" {
		return "", fmt.Errorf("auth: sign: %w: a token needs an id", ErrInvalid)
	}
	payload, err := json.Marshal(wireClaims{
		Jti: c.ID, Sub: c.Subject, Role: c.Role, Prj: c.Project, Kind: c.Kind,
		Iat: c.IssuedAt.Unix(), Exp: c.ExpiresAt.Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	k := s.keys.Load().current
	signed := k.id + "." + b64.EncodeToString(payload)
	var sum [sha256.Size]byte
	return signed + "." + b64.EncodeToString(k.token.mac(sum[:0], signed)), nil
}

// Verify checks token's signature (in constant time) with the key its
// key id names, decodes its claims and refuses it if the key is unknown
// or retired at now, or the token malformed, incoherent or expired at
// now. A token without a key id (a release before them) verifies with
// the ring's legacy key alone.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	c, _, err := s.VerifyUntil(token, now)
	return c, err
}

// VerifyUntil is Verify that also returns until when the token verifies:
// its expiry, or the retirement of its key when that comes first (with
// the same ring).
func (s *Signer) VerifyUntil(token string, now time.Time) (Claims, time.Time, error) {
	c, k, err := s.verify(token, now)
	if err != nil {
		return Claims{}, time.Time{}, err
	}
	until := c.ExpiresAt
	if !k.retires.IsZero() && k.retires.Before(until) {
		until = k.retires
	}
	return c, until, nil
}

func (s *Signer) verify(token string, now time.Time) (Claims, *signingKey, error) {
	if len(token) > MaxTokenSize {
		return Claims{}, nil, fmt.Errorf("%w: too long", ErrInvalid)
	}
	k, legacy, payload, err := s.open(token, now, func(k *signingKey) *macPool { return &k.token })
	if err != nil {
		return Claims{}, nil, err
	}
	var w wireClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
		return Claims{}, nil, fmt.Errorf("%w: payload", ErrInvalid)
	}
	if (w.Jti == "") != legacy {
		return Claims{}, nil, fmt.Errorf("%w: token id", ErrInvalid)
	}
	c := Claims{
		ID: w.Jti, Subject: w.Sub, Role: w.Role, Project: w.Prj, Kind: w.Kind,
		IssuedAt: time.Unix(w.Iat, 0).UTC(), ExpiresAt: time.Unix(w.Exp, 0).UTC(),
	}
	if err := c.validate(legacy); err != nil {
		return Claims{}, nil, err
	}
	if !now.Before(c.ExpiresAt) {
		return Claims{}, nil, fmt.Errorf("%w: %w at %s", ErrInvalid, ErrExpired, c.ExpiresAt.Format(time.RFC3339))
	}
	return c, k, nil
}

// open splits a signed string into its key id, payload and signature
// (kid.payload.sig, or payload.sig for the legacy key: then legacy is
// true), finds the key, checks the signature with the MAC pool use picks
// and returns the decoded payload.
func (s *Signer) open(signed string, now time.Time, use func(*signingKey) *macPool) (k *signingKey, legacy bool, payload []byte, err error) {
	first, rest, ok := strings.Cut(signed, ".")
	if !ok || first == "" {
		return nil, false, nil, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	kid, p, sig, covered := keyring.LegacyID, first, rest, first
	legacy = true
	if p2, sig2, ok := strings.Cut(rest, "."); ok {
		kid, p, sig, covered, legacy = first, p2, sig2, signed[:len(first)+1+len(p2)], false
	}
	if p == "" {
		return nil, false, nil, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	if k = s.keys.Load().lookup(kid, now); k == nil {
		return nil, false, nil, fmt.Errorf("%w: signed with an unknown or retired key", ErrInvalid)
	}
	var got, want [sha256.Size]byte
	if len(sig) != b64.EncodedLen(sha256.Size) {
		return nil, false, nil, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	if n, err := strict.Decode(got[:], []byte(sig)); err != nil || n != sha256.Size || !hmac.Equal(got[:], use(k).mac(want[:0], covered)) {
		return nil, false, nil, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	if payload, err = strict.DecodeString(p); err != nil {
		return nil, false, nil, fmt.Errorf("%w: payload encoding", ErrInvalid)
	}
	return k, legacy, payload, nil
}
