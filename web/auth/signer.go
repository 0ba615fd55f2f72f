package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagewai/observatory/keyring"
)

// Signer mints and verifies tokens and enrollment keys with the keys of a
// ring (package keyring): the current key signs, and every key verifies
// what it signed until it retires. SetRing swaps the ring while the
// Signer is in use (a rotation).
type Signer struct {
	keys atomic.Pointer[keySet]
}

// keySet is a ring with the MAC keys derived from each of its keys.
type keySet struct {
	ring    *keyring.Ring
	current *signingKey
	byID    map[string]*signingKey
}

// signingKey is one key of the ring, as the Signer uses it: the HMAC keys
// of tokens and of enrollment keys are derived from its secret, so that
// neither is ever taken for the other.
type signingKey struct {
	id      string
	retires time.Time // zero for the current key
	token   macPool
	enroll  macPool
}

// macPool hands out HMAC-SHA256 states of one key: a state is reset
// rather than made for each token (making one hashes the key twice).
type macPool struct{ pool sync.Pool }

func newMACPool(key []byte) macPool {
	return macPool{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// mac appends the HMAC of data to dst.
func (p *macPool) mac(dst []byte, data string) []byte {
	h := p.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(data))
	dst = h.Sum(dst)
	p.pool.Put(h)
	return dst
}

func derive(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

func newKeySet(r *keyring.Ring) (*keySet, error) {
	if r == nil {
		return nil, fmt.Errorf("auth: no key ring")
	}
	ks := &keySet{ring: r, byID: map[string]*signingKey{}}
	for i, k := range r.Keys() {
		if len(k.Secret) < MinKeySize {
			return nil, fmt.Errorf("auth: signing key %s has %d bytes, need at least %d", k.ID, len(k.Secret), MinKeySize)
		}
		sk := &signingKey{id: k.ID, retires: k.Retires,
			token:  newMACPool(derive(k.Secret, "observatory/token/v1")),
			enroll: newMACPool(derive(k.Secret, "observatory/enroll/v1"))}
		if i == 0 {
			ks.current = sk
		}
		ks.byID[k.ID] = sk
	}
	return ks, nil
}

// lookup returns the key id names if it still verifies at now, else nil.
func (ks *keySet) lookup(id string, now time.Time) *signingKey {
	k := ks.byID[id]
	if k == nil || (!k.retires.IsZero() && !now.Before(k.retires)) {
		return nil
	}
	return k
}

// NewSigner returns a Signer for one key, which must be at least
// MinKeySize bytes of secret: a ring of that key alone, with the id
// keyring.StaticID.
func NewSigner(key []byte) (*Signer, error) {
	r, err := keyring.Static(key)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key has %d bytes, need at least %d", len(key), MinKeySize)
	}
	return NewRingSigner(r)
}

// NewRingSigner returns a Signer for the keys of r.
func NewRingSigner(r *keyring.Ring) (*Signer, error) {
	s := &Signer{}
	if err := s.SetRing(r); err != nil {
		return nil, err
	}
	return s, nil
}

// SetRing makes r the Signer's ring: its current key signs from now on,
// and tokens verify with r's keys alone.
func (s *Signer) SetRing(r *keyring.Ring) error {
	ks, err := newKeySet(r)
	if err != nil {
		return err
	}
	s.keys.Store(ks)
	return nil
}

// Ring returns the Signer's ring.
func (s *Signer) Ring() *keyring.Ring { return s.keys.Load().ring }

// KeyID returns the id of the key that signs.
func (s *Signer) KeyID() string { return s.keys.Load().current.id }
