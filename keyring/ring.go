package keyring

import (
	"bytes"
	"errors"
	"fmt"
)

// Ids of keys that do not come from New or Rotate.
const (
	// StaticID names the one key of a ring read from a raw key (Parse of
	// a base64 or hex secret, Static).
	StaticID = "static"
	// LegacyID names the key imported from an older release, which kept
	// its one signing key in NATS: tokens signed before the upgrade carry
	// no key id and verify with this key alone, until it retires.
	LegacyID = "legacy"
)

// Static returns a ring of one key with the id StaticID: secret, which
// must be at least MinKeySize bytes.
func Static(secret []byte) (*Ring, error) {
	if len(secret) < MinKeySize {
		return nil, fmt.Errorf("keyring: %w: a key of %d bytes, want at least %d", ErrMalformed, len(secret), MinKeySize)
	}
	return &Ring{keys: []Key{{ID: StaticID, Secret: bytes.Clone(secret)}}}, nil
}

// Holds reports whether one of the ring's keys has this secret.
func (r *Ring) Holds(secret []byte) bool {
	for _, k := range r.keys {
		if bytes.Equal(k.Secret, secret) {
			return true
		}
	}
	return false
}

// Import returns a ring that also holds k as a retiring key: it verifies
// until k.Retires and signs nothing. k needs an id of its own in the ring,
// a secret of at least MinKeySize bytes and a retirement time; a ring
// that already holds k's secret is returned as it is.
func (r *Ring) Import(k Key) (*Ring, error) {
	switch {
	case r.Holds(k.Secret):
		return r, nil
	case !idRE.MatchString(k.ID):
		return nil, fmt.Errorf("keyring: import: bad key id %q", k.ID)
	case len(k.Secret) < MinKeySize:
		return nil, fmt.Errorf("keyring: import: a key of %d bytes, want at least %d", len(k.Secret), MinKeySize)
	case k.Retires.IsZero():
		return nil, errors.New("keyring: import: an imported key needs a retirement time")
	case len(r.keys) >= MaxKeys:
		return nil, fmt.Errorf("keyring: import: the ring holds %d keys already", len(r.keys))
	}
	for _, old := range r.keys {
		if old.ID == k.ID {
			return nil, fmt.Errorf("keyring: import: the ring holds a key %q already", k.ID)
		}
	}
	k.Secret = bytes.Clone(k.Secret)
	k.Created, k.Retires = k.Created.UTC(), k.Retires.UTC()
	keys := append(r.Keys(), k)
	return &Ring{keys: keys}, nil
}

// Retire returns a ring without the keys that are not current, so that
// none of the tokens they signed verifies any more: what to do when a
// retiring key may have leaked.
func (r *Ring) Retire() *Ring {
	return &Ring{keys: r.keys[:1:1]}
}

// Equal reports whether r and o hold the same keys.
func (r *Ring) Equal(o *Ring) bool {
	if r == nil || o == nil || len(r.keys) != len(o.keys) {
		return r == o
	}
	for i, k := range r.keys {
		ok := o.keys[i]
		if k.ID != ok.ID || !bytes.Equal(k.Secret, ok.Secret) || !k.Retires.Equal(ok.Retires) || !k.Created.Equal(ok.Created) {
			return false
		}
	}
	return true
}
