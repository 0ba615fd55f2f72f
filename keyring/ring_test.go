package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/keyring"
)

// TestImport: a key of an older release joins a ring as a retiring key,
// once; a key without a retirement, a short one or a second key of an id
// is refused.
func TestImport(t *testing.T) {
	now := fleettest.Epoch()
	r, err := keyring.New(now)
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Repeat([]byte{7}, 32)
	legacy := keyring.Key{ID: keyring.LegacyID, Secret: old, Created: now, Retires: now.Add(time.Hour)}
	got, err := r.Import(legacy)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Holds(old) || r.Holds(old) || got.Current().ID != r.Current().ID || len(got.Keys()) != 2 {
		t.Fatalf("after Import: keys %v", got.Keys())
	}
	if _, ok := got.Lookup(keyring.LegacyID, now.Add(59*time.Minute)); !ok {
		t.Error("the imported key does not verify within its time")
	}
	if _, ok := got.Lookup(keyring.LegacyID, now.Add(time.Hour)); ok {
		t.Error("the imported key verifies after it retired")
	}
	if again, err := got.Import(legacy); err != nil || again != got {
		t.Errorf("importing a key the ring holds: %v, a new ring %v", err, again != got)
	}
	enc, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := keyring.Parse(enc)
	if err != nil || !back.Equal(got) {
		t.Fatalf("the ring with an imported key does not round-trip: %v", err)
	}
	for name, k := range map[string]keyring.Key{
		"no retirement": {ID: "other", Secret: bytes.Repeat([]byte{8}, 32)},
		"short":         {ID: "other", Secret: []byte("short"), Retires: now.Add(time.Hour)},
		"taken id":      {ID: keyring.LegacyID, Secret: bytes.Repeat([]byte{9}, 32), Retires: now.Add(time.Hour)},
		"bad id":        {ID: "Bad Id", Secret: bytes.Repeat([]byte{9}, 32), Retires: now.Add(time.Hour)},
	} {
		if _, err := got.Import(k); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
	if got.Retire().Holds(old) || len(got.Retire().Keys()) != 1 {
		t.Error("Retire kept a retiring key")
	}
	if _, err := keyring.Static(make([]byte, 31)); !errors.Is(err, keyring.ErrMalformed) {
		t.Errorf("Static of a 31-byte key: %v", err)
	}
}

// TestWatcher: a running watcher hands over each ring written to its file
// (a rotation), reports a file that does not read and keeps the ring in
// service then, and takes the file up again once it is good.
func TestWatcher(t *testing.T) {
	now := fleettest.Epoch()
	path := filepath.Join(t.TempDir(), "signing.json")
	r, err := keyring.Open(path, now)
	if err != nil {
		t.Fatal(err)
	}
	rings := make(chan *keyring.Ring, 4)
	errs := make(chan error, 4)
	w := keyring.NewWatcher(path, r, 5*time.Millisecond, func(r *keyring.Ring) { rings <- r }, func(err error) {
		select {
		case errs <- err:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	next := func() *keyring.Ring {
		t.Helper()
		select {
		case r := <-rings:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher handed over no ring")
			return nil
		}
	}

	rotated, err := r.Rotate(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := keyring.Write(path, rotated); err != nil {
		t.Fatal(err)
	}
	if got := next(); !got.Equal(rotated) {
		t.Fatalf("handed over %v, want the rotated ring", got.Keys())
	}

	if err := os.WriteFile(path+".tmp", []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, keyring.ErrMalformed) {
			t.Errorf("reported %v, want ErrMalformed", err)
		}
	case r := <-rings:
		t.Fatalf("a malformed file was handed over: %v", r.Keys())
	case <-time.After(10 * time.Second):
		t.Fatal("a malformed file was not reported")
	}

	again, err := rotated.Rotate(now.Add(time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := keyring.Write(path, again); err != nil {
		t.Fatal(err)
	}
	if got := next(); !got.Equal(again) {
		t.Fatalf("after a bad file: handed over %v, want the good ring", got.Keys())
	}
}
