package keyring

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// KeySize is the size of a key made here; MinKeySize the smallest one
// accepted from a file.
const (
	KeySize    = 32
	MinKeySize = 32
)

// exposedBits are the permission bits a key file may not have: any
// access by other users, and writing by the group.
const exposedBits = 0o027

// MaxKeys bounds a ring: the current key and the retiring ones.
const MaxKeys = 16

// DefaultGrace is how long a rotated-out key still verifies.
const DefaultGrace = 24 * time.Hour

// Errors of Open and Parse.
var (
	// ErrExposed: a key file that any user may read, or the group may
	// write, is refused, not used.
	ErrExposed = errors.New("key file is open to other users")
	// ErrMalformed: the file is neither a ring nor a raw key.
	ErrMalformed = errors.New("malformed key file")
)

var idRE = regexp.MustCompile(`^[a-z0-9]{1,32}$`)

// Key is one signing key. Retires is zero for the current key; a retiring
// key verifies until then and signs nothing.
type Key struct {
	ID      string
	Secret  []byte
	Created time.Time
	Retires time.Time
}

// Ring is a set of signing keys: the current one, which signs, and the
// retiring ones, which still verify until they retire. A Ring is
// immutable; its methods are safe for concurrent use.
type Ring struct {
	keys []Key // keys[0] is current
}

type wireKey struct {
	ID      string    `json:"id"`
	Secret  string    `json:"secret"`
	Created time.Time `json:"created"`
	Retires time.Time `json:"retires,omitzero"`
}

type wireRing struct {
	Keys []wireKey `json:"keys"`
}

// New returns a ring of one fresh key made at now.
func New(now time.Time) (*Ring, error) {
	k, err := newKey(now)
	if err != nil {
		return nil, err
	}
	return &Ring{keys: []Key{k}}, nil
}

func newKey(now time.Time) (Key, error) {
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("keyring: %w", err)
	}
	id := make([]byte, 5)
	if _, err := rand.Read(id); err != nil {
		return Key{}, fmt.Errorf("keyring: %w", err)
	}
	return Key{ID: strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(id)), Secret: secret, Created: now.UTC()}, nil
}

// Current is the key that signs.
func (r *Ring) Current() Key { return r.keys[0] }

// Lookup returns the key id names if it still verifies at now.
func (r *Ring) Lookup(id string, now time.Time) (Key, bool) {
	for _, k := range r.keys {
		if k.ID == id && (k.Retires.IsZero() || now.Before(k.Retires)) {
			return k, true
		}
	}
	return Key{}, false
}

// Keys returns the ring's keys, the current one first.
func (r *Ring) Keys() []Key { return slices.Clone(r.keys) }

// Rotate returns a ring whose current key is a fresh one: the old current
// key retires at now+grace (it verifies until then, signs nothing), and
// keys already retired at now are dropped.
func (r *Ring) Rotate(now time.Time, grace time.Duration) (*Ring, error) {
	if grace < 0 {
		return nil, errors.New("keyring: negative grace")
	}
	k, err := newKey(now)
	if err != nil {
		return nil, err
	}
	keys := []Key{k}
	for i, old := range r.keys {
		if i == 0 {
			old.Retires = now.UTC().Add(grace)
		}
		if old.Retires.After(now) && len(keys) < MaxKeys {
			keys = append(keys, old)
		}
	}
	return &Ring{keys: keys}, nil
}

// Marshal encodes the ring as the key file's JSON.
func (r *Ring) Marshal() ([]byte, error) {
	var w wireRing
	for _, k := range r.keys {
		w.Keys = append(w.Keys, wireKey{ID: k.ID, Secret: base64.StdEncoding.EncodeToString(k.Secret), Created: k.Created, Retires: k.Retires})
	}
	b, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return append(b, '\n'), nil
}

// Parse decodes a key file: the ring's JSON, or a single raw key (at
// least MinKeySize bytes, hex or base64; what an operator puts in a secret
// by hand), which becomes a ring of one key with the id "static".
func Parse(b []byte) (*Ring, error) {
	t := bytes.TrimSpace(b)
	if len(t) > 0 && t[0] == '{' {
		var w wireRing
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil {
			return nil, fmt.Errorf("keyring: %w: %w", ErrMalformed, err)
		}
		if len(w.Keys) == 0 || len(w.Keys) > MaxKeys {
			return nil, fmt.Errorf("keyring: %w: want 1 to %d keys, got %d", ErrMalformed, MaxKeys, len(w.Keys))
		}
		r := &Ring{}
		seen := map[string]bool{}
		for i, wk := range w.Keys {
			secret, err := base64.StdEncoding.DecodeString(wk.Secret)
			if err != nil || len(secret) < MinKeySize {
				return nil, fmt.Errorf("keyring: %w: key %d: want a base64 secret of at least %d bytes", ErrMalformed, i, MinKeySize)
			}
			if !idRE.MatchString(wk.ID) || seen[wk.ID] {
				return nil, fmt.Errorf("keyring: %w: key %d: bad or repeated id %q", ErrMalformed, i, wk.ID)
			}
			if (i == 0) != wk.Retires.IsZero() {
				return nil, fmt.Errorf("keyring: %w: key %d: only the first key is current (no retires)", ErrMalformed, i)
			}
			seen[wk.ID] = true
			r.keys = append(r.keys, Key{ID: wk.ID, Secret: secret, Created: wk.Created.UTC(), Retires: wk.Retires.UTC()})
		}
		return r, nil
	}
	s := string(t)
	for _, dec := range []func(string) ([]byte, error){hex.DecodeString, base64.StdEncoding.DecodeString, base64.RawURLEncoding.DecodeString} {
		if secret, err := dec(s); err == nil && len(secret) >= MinKeySize {
			return &Ring{keys: []Key{{ID: "static", Secret: secret}}}, nil
		}
	}
	return nil, fmt.Errorf("keyring: %w: neither a key ring (JSON) nor a base64 or hex key of at least %d bytes", ErrMalformed, MinKeySize)
}

// Read reads the key file at path, refusing one that any user may read
// or the file's group may write (exposed). The group may read it: a
// Kubernetes secret mounted for a non-root server is 0440 with the pod's
// fsGroup.
func Read(path string) (*Ring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if fi.Mode().Perm()&exposedBits != 0 {
		return nil, fmt.Errorf("keyring: %s: %w (mode %v): chmod 600 it", path, ErrExposed, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	r, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Open reads the key file at path, or, when there is none, makes a ring of
// one fresh key and writes it there (mode 0600, its directory 0700).
func Open(path string, now time.Time) (*Ring, error) {
	r, err := Read(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return r, err
	}
	if r, err = New(now); err != nil {
		return nil, err
	}
	if err := Write(path, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Write writes r to path atomically (a temporary file in the same
// directory, synced, then renamed), mode 0600.
func Write(path string, r *Ring) error {
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if err := writeAtomic(path, b); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
