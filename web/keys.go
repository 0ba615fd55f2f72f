package web

import (
	"context"
	"fmt"
	"time"

	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/web/auth"
)

// newSigner makes the server's signer from Config.Keys, or from
// Config.SigningKey (a ring of that one key) when Keys is nil, after
// checking that sessions fit the session lifetime cap.
func newSigner(cfg Config) (*auth.Signer, error) {
	if cfg.TokenTTL > auth.MaxSessionLifetime {
		return nil, fmt.Errorf("token ttl %s exceeds the session cap %s", cfg.TokenTTL, auth.MaxSessionLifetime)
	}
	if cfg.Keys != nil {
		return auth.NewRingSigner(cfg.Keys)
	}
	return auth.NewSigner(cfg.SigningKey)
}

// SetKeys makes r the ring tokens are signed and verified with, from the
// next request on: what a running server does when its key file changes
// (observatory rotate-key). Open /ws connections keep their subscription;
// the ones whose token no longer verifies are closed with 4401 on the
// next check.
func (s *Server) SetKeys(r *keyring.Ring) error {
	if err := s.signer.SetRing(r); err != nil {
		return fmt.Errorf("web: set keys: %w", err)
	}
	s.guard.keys.Add(1)
	s.log.Info("signing keys loaded", "event", "auth.keys.loaded", "key_id", s.signer.KeyID(), "keys", len(r.Keys()))
	return nil
}

// KeyID is the id of the key that signs the server's tokens.
func (s *Server) KeyID() string { return s.signer.KeyID() }

// Revocations is the set of revoked token ids, shared by every replica
// (revoke.Store).
type Revocations interface {
	// Revoke records that the token id is revoked until until, when it
	// expires.
	Revoke(ctx context.Context, id string, until time.Time) error
	// Revoked reports whether the token id is revoked; it answers from
	// memory.
	Revoked(id string) bool
}

// revoked reports whether the token id is revoked.
func (s *Server) revoked(id string) bool {
	return id != "" && s.cfg.Revocations != nil && s.cfg.Revocations.Revoked(id)
}

// maxTokenLifetime is how long any token this server signs may live: how
// long a revocation of an id whose token is unknown must last.
func (s *Server) maxTokenLifetime() time.Duration {
	return max(auth.MaxLifetime, s.cfg.TokenTTL)
}
