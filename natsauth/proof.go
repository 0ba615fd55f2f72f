package natsauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Errors of Check.
var (
	// ErrProof is returned for a missing, malformed or wrong proof.
	ErrProof = errors.New("natsauth: bad proof")
	// ErrStale is returned for a proof signed too far from the checker's
	// time.
	ErrStale = errors.New("natsauth: stale proof")
	// ErrNotOurs is returned for a user JWT this authority did not issue.
	ErrNotOurs = errors.New("natsauth: credentials not issued by this authority")
	// ErrExpired is returned for a user JWT past its expiry.
	ErrExpired = errors.New("natsauth: credentials expired")
)

// MaxProofSkew is how far from the checker's time a proof may have been
// signed.
const MaxProofSkew = 2 * time.Minute

// maxProofSize bounds a proof header: a decimal time, a dot and an
// ed25519 signature in base64url (86 bytes).
const maxProofSize = 128

// Proof is what the holder of credentials sends besides its user JWT to
// prove it holds the seed: a signature of a request (RequestMessage) at a
// time, which Check verifies. It is how a worker authenticates to
// Observatory's HTTP API with the credentials its enrollment gave it.
type Proof struct {
	At  time.Time // whole seconds
	Sig []byte
}

// String encodes p as "<unix seconds>.<base64url signature>".
func (p Proof) String() string {
	return strconv.FormatInt(p.At.Unix(), 10) + "." + base64.RawURLEncoding.EncodeToString(p.Sig)
}

// ParseProof decodes what Proof.String encodes.
func ParseProof(s string) (Proof, error) {
	if len(s) > maxProofSize {
		return Proof{}, fmt.Errorf("%w: %d bytes", ErrProof, len(s))
	}
	ts, sig, ok := strings.Cut(s, ".")
	if !ok || ts == "" || sig == "" {
		return Proof{}, fmt.Errorf("%w: want <unix seconds>.<signature>", ErrProof)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 || strconv.FormatInt(sec, 10) != ts {
		return Proof{}, fmt.Errorf("%w: time %q", ErrProof, ts)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || len(b) != 64 {
		return Proof{}, fmt.Errorf("%w: signature", ErrProof)
	}
	return Proof{At: time.Unix(sec, 0).UTC(), Sig: b}, nil
}

// RequestMessage is what a Proof signs for an HTTP request: the method,
// the request URI (path and query), the time and a hash of the body, so
// that a proof is good for one request and not another.
func RequestMessage(method, requestURI string, at time.Time, body []byte) []byte {
	h := sha256.Sum256(body)
	return []byte("observatory-proof-v1\n" + method + "\n" + requestURI + "\n" +
		strconv.FormatInt(at.Unix(), 10) + "\n" + hex.EncodeToString(h[:]))
}

// Signer signs proofs with the seed of a user's credentials.
type Signer struct {
	token string
	kp    nkeys.KeyPair
}

// NewSigner reads creds (the text of a .creds file).
func NewSigner(creds []byte) (*Signer, error) {
	tok, seed, err := Parse(creds)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return nil, fmt.Errorf("natsauth: credentials: %w", err)
	}
	return &Signer{token: tok, kp: kp}, nil
}

// Token is the user JWT, sent beside the proof.
func (s *Signer) Token() string { return s.token }

// Sign proves, at the time at, the request method requestURI with body.
func (s *Signer) Sign(method, requestURI string, at time.Time, body []byte) (Proof, error) {
	at = time.Unix(at.Unix(), 0).UTC()
	sig, err := s.kp.Sign(RequestMessage(method, requestURI, at, body))
	if err != nil {
		return Proof{}, fmt.Errorf("natsauth: sign: %w", err)
	}
	return Proof{At: at, Sig: sig}, nil
}

// Check verifies that token is a user JWT this authority issued, not
// expired at natsNow (the clock NATS judges expiry by), and that p, made
// within MaxProofSkew of now, signs the request with the user's seed. It
// returns the user's claims: its name and permissions.
func (a *Authority) Check(token string, p Proof, method, requestURI string, body []byte, now, natsNow time.Time) (*jwt.UserClaims, error) {
	uc, err := a.Verify(token, natsNow)
	if err != nil {
		return nil, err
	}
	if d := now.Sub(p.At); d > MaxProofSkew || d < -MaxProofSkew {
		return nil, fmt.Errorf("%w: signed at %s", ErrStale, p.At.Format(time.RFC3339))
	}
	pub, err := nkeys.FromPublicKey(uc.Subject)
	if err != nil {
		return nil, fmt.Errorf("%w: user key: %w", ErrProof, err)
	}
	if err := pub.Verify(RequestMessage(method, requestURI, p.At, body), p.Sig); err != nil {
		return nil, fmt.Errorf("%w: signature", ErrProof)
	}
	return uc, nil
}

// Verify decodes a user JWT and checks that this authority issued it (its
// signing key signed it, for its account) and that it has not expired at
// now.
func (a *Authority) Verify(token string, now time.Time) (*jwt.UserClaims, error) {
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotOurs, err)
	}
	signer, _ := a.signer.PublicKey()
	account := uc.IssuerAccount
	if account == "" {
		account = uc.Issuer
	}
	if uc.Issuer != signer || account != a.accountID {
		return nil, ErrNotOurs
	}
	if uc.Expires > 0 && now.Unix() >= uc.Expires {
		return nil, ErrExpired
	}
	return uc, nil
}
