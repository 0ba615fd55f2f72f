package keyring_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/keyring"
)

func TestOpenCreatesOnceAndKeeps(t *testing.T) {
	now := fleettest.Epoch()
	path := filepath.Join(t.TempDir(), "keys", "signing.json")
	r1, err := keyring.Open(path, now)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v, want 0700", di.Mode().Perm())
	}
	r2, err := keyring.Open(path, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r1.Keys(), r2.Keys()); diff != "" {
		t.Errorf("a second Open made other keys (-first +second):\n%s", diff)
	}
	if len(r1.Current().Secret) != keyring.KeySize {
		t.Errorf("key of %d bytes", len(r1.Current().Secret))
	}
}

func TestExposedFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.json")
	if _, err := keyring.Open(path, fleettest.Epoch()); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o604, 0o660, 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := keyring.Open(path, fleettest.Epoch()); !errors.Is(err, keyring.ErrExposed) {
			t.Errorf("Open of a key file of mode %v: %v, want ErrExposed", mode, err)
		}
	}
	// A Kubernetes secret mounted for a non-root server: the pod's group
	// reads it.
	for _, mode := range []os.FileMode{0o440, 0o640, 0o400} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := keyring.Read(path); err != nil {
			t.Errorf("Read of a key file of mode %v: %v", mode, err)
		}
	}
}

// TestRotate: the new key signs, the old one verifies until its grace
// ends and not after, and keys long retired are dropped.
func TestRotate(t *testing.T) {
	now := fleettest.Epoch()
	path := filepath.Join(t.TempDir(), "signing.json")
	r, err := keyring.Open(path, now)
	if err != nil {
		t.Fatal(err)
	}
	old := r.Current()
	r2, err := r.Rotate(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := keyring.Write(path, r2); err != nil {
		t.Fatal(err)
	}
	r2, err = keyring.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Current().ID == old.ID || bytes.Equal(r2.Current().Secret, old.Secret) {
		t.Fatal("the rotated ring signs with the old key")
	}
	if _, ok := r2.Lookup(old.ID, now.Add(59*time.Minute)); !ok {
		t.Error("the old key does not verify within its grace")
	}
	if _, ok := r2.Lookup(old.ID, now.Add(time.Hour)); ok {
		t.Error("the old key verifies after its grace")
	}
	if _, ok := r2.Lookup(r2.Current().ID, now.Add(1000*time.Hour)); !ok {
		t.Error("the current key does not verify")
	}
	r3, err := r2.Rotate(now.Add(2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r3.Keys()); n != 2 {
		t.Errorf("after a second rotation past the first grace the ring holds %d keys, want 2", n)
	}
	if _, ok := r3.Lookup(old.ID, now.Add(2*time.Hour)); ok {
		t.Error("a key retired before the second rotation still verifies")
	}
}

func TestParseRawKeys(t *testing.T) {
	secret := bytes.Repeat([]byte{0xab}, 32)
	for name, text := range map[string]string{
		"base64":     base64.StdEncoding.EncodeToString(secret) + "\n",
		"base64url":  base64.RawURLEncoding.EncodeToString(secret),
		"hex":        hex.EncodeToString(secret),
		"hex spaced": "  " + hex.EncodeToString(secret) + "\n\n",
	} {
		r, err := keyring.Parse([]byte(text))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(r.Current().Secret, secret) {
			t.Errorf("%s: secret %x", name, r.Current().Secret)
		}
	}
	for name, text := range map[string]string{
		"short":           base64.StdEncoding.EncodeToString(secret[:16]),
		"empty":           "",
		"json no keys":    `{"keys":[]}`,
		"json unknown":    `{"keys":[],"x":1}`,
		"retiring first":  `{"keys":[{"id":"a","secret":"` + base64.StdEncoding.EncodeToString(secret) + `","created":"2026-01-01T00:00:00Z","retires":"2026-01-02T00:00:00Z"}]}`,
		"bad id":          `{"keys":[{"id":"A B","secret":"` + base64.StdEncoding.EncodeToString(secret) + `","created":"2026-01-01T00:00:00Z"}]}`,
		"two current":     `{"keys":[{"id":"a","secret":"` + base64.StdEncoding.EncodeToString(secret) + `"},{"id":"b","secret":"` + base64.StdEncoding.EncodeToString(secret) + `"}]}`,
		"short in a ring": `{"keys":[{"id":"a","secret":"` + base64.StdEncoding.EncodeToString(secret[:8]) + `"}]}`,
	} {
		if _, err := keyring.Parse([]byte(text)); !errors.Is(err, keyring.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzParse: any bytes either fail with ErrMalformed or give a ring whose
// encoding parses back to the same ring, with keys of at least
// MinKeySize bytes.
func FuzzParse(f *testing.F) {
	r, err := keyring.New(fleettest.Epoch())
	if err != nil {
		f.Fatal(err)
	}
	r, err = r.Rotate(fleettest.Epoch(), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	good, err := r.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(strings.Repeat("ab", 32)))
	f.Add([]byte(`{"keys":[{"id":"a","secret":"AAAA"}]}`))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := keyring.Parse(b)
		if err != nil {
			if !errors.Is(err, keyring.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for _, k := range r.Keys() {
			if len(k.Secret) < keyring.MinKeySize {
				t.Fatalf("key %s of %d bytes", k.ID, len(k.Secret))
			}
		}
		if r.Current().ID == "static" {
			return
		}
		enc, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := keyring.Parse(enc)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", enc, err)
		}
		if diff := cmp.Diff(r.Keys(), back.Keys()); diff != "" {
			t.Fatalf("round trip (-parsed +reparsed):\n%s", diff)
		}
	})
}
