package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/keyring"
)

// Where releases before package keyring kept the one signing key: a KV
// bucket on the NATS every replica shares. serve moves the key out of it
// into the key file on its first start (migrateLegacyKey).
const (
	legacyCredentialsBucket = "OBSERVATORY_CREDENTIALS"
	legacySigningKeyName    = "signing-key"
	// legacyGrace is how long the imported key verifies the tokens it
	// signed: the longest those releases issued (365 days).
	legacyGrace = 365 * 24 * time.Hour
)

// signingKeyEnv holds the key ring's (or a raw key's) text itself; it has
// no flag twin, so that a secret never sits on a command line.
const signingKeyEnv = "OBSERVATORY_SIGNING_KEY"

// keySource says where a command finds the signing keys: the text of
// OBSERVATORY_SIGNING_KEY, or a key file (--signing-key-file, default
// <data-dir>/keys/signing.json).
type keySource struct {
	file    string // --signing-key-file; "" for the default
	text    string // OBSERVATORY_SIGNING_KEY
	dataDir *string
}

// addKeyFlags registers --signing-key-file on fs; dataDir is the
// command's --data-dir, read after parsing.
func addKeyFlags(fs *flag.FlagSet, getenv func(string) string, dataDir *string) *keySource {
	k := &keySource{text: strings.TrimSpace(getenv(signingKeyEnv)), dataDir: dataDir}
	fs.StringVar(&k.file, "signing-key-file", envDefault(getenv, "OBSERVATORY_SIGNING_KEY_FILE", ""),
		"the signing keys' file (a key ring, mode 0600), created on first start; replicas share one (a Kubernetes secret, say); default <data-dir>/keys/signing.json; or env "+signingKeyEnv+" with the ring's text itself (env OBSERVATORY_SIGNING_KEY_FILE)")
	return k
}

// path is the key file, "" when the keys come from the environment.
func (k *keySource) path() (string, error) {
	switch {
	case k.text != "" && k.file != "":
		return "", fmt.Errorf("both --signing-key-file and %s are set: use one", signingKeyEnv)
	case k.text != "":
		return "", nil
	case k.file != "":
		return k.file, nil
	default:
		return filepath.Join(*k.dataDir, "keys", "signing.json"), nil
	}
}

// open returns the ring and the file it came from ("" for the
// environment's), making the file with a fresh key when there is none;
// made says it did.
func (k *keySource) open(now time.Time) (r *keyring.Ring, path string, made bool, err error) {
	if path, err = k.path(); err != nil {
		return nil, "", false, err
	}
	if path == "" {
		if r, err = keyring.Parse([]byte(k.text)); err != nil {
			return nil, "", false, fmt.Errorf("%s: %w", signingKeyEnv, err)
		}
		return r, "", false, nil
	}
	_, err = os.Stat(path)
	made = errors.Is(err, os.ErrNotExist)
	if r, err = keyring.Open(path, now); err != nil {
		return nil, "", false, fmt.Errorf("signing keys: %w", err)
	}
	return r, path, made, nil
}

// read returns the ring, never making one: a key no server uses would
// sign useless tokens.
func (k *keySource) read() (*keyring.Ring, error) {
	path, err := k.path()
	if err != nil {
		return nil, err
	}
	if path == "" {
		r, err := keyring.Parse([]byte(k.text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", signingKeyEnv, err)
		}
		return r, nil
	}
	r, err := keyring.Read(path)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w (start `observatory serve` with the same --data-dir or --signing-key-file first)", err)
	}
	return r, nil
}

// migrateLegacyKey moves the signing key of an older release out of NATS:
// when the credentials bucket holds one on the start that made the key
// file (made: the first start of this release on the data directory), it
// joins the ring as the legacy key (tokens signed before the upgrade
// verify with it until it retires, legacyGrace from now), the ring is
// written to path, and only then is the bucket deleted, so a crash in
// between loses nothing (the next start finds the key in the file). A
// bucket found on any later start is not trusted: whoever can write to
// NATS could have planted it with a key of their own. It is deleted and
// nothing imported, as with keys from the environment (path ""), whose
// old tokens stop verifying. (A crash after the file was made and before
// the import has the same outcome: old tokens stop verifying; no forged
// one is ever accepted.)
func migrateLegacyKey(ctx context.Context, js jetstream.JetStream, r *keyring.Ring, path string, made bool, now time.Time, log *slog.Logger) (*keyring.Ring, error) {
	kv, err := js.KeyValue(ctx, legacyCredentialsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("legacy credentials bucket: %w", err)
	}
	e, err := kv.Get(ctx, legacySigningKeyName)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("legacy signing key: %w", err)
	case len(e.Value()) < keyring.MinKeySize:
		log.Warn("legacy signing key too short, dropped", "event", "auth.keys.legacy_dropped", "bucket", legacyCredentialsBucket)
	case path == "":
		log.Warn("legacy signing key not imported: the keys come from the environment; tokens issued before the upgrade no longer verify",
			"event", "auth.keys.legacy_dropped", "bucket", legacyCredentialsBucket, "env", signingKeyEnv)
	case !made && !r.Holds(e.Value()):
		log.Warn("a signing key appeared in NATS after the keys left it: deleted, not trusted", "event", "auth.keys.planted_key_dropped",
			"bucket", legacyCredentialsBucket, "file", path)
	default:
		imported, err := r.Import(keyring.Key{ID: keyring.LegacyID, Secret: e.Value(), Created: now, Retires: now.Add(legacyGrace)})
		if err != nil {
			return nil, fmt.Errorf("import the legacy signing key: %w", err)
		}
		if imported != r {
			if err := keyring.Write(path, imported); err != nil {
				return nil, fmt.Errorf("import the legacy signing key into %s: %w", path, err)
			}
			log.Info("legacy signing key moved out of NATS", "event", "auth.keys.legacy_imported", "file", path,
				"retires", imported.Keys()[len(imported.Keys())-1].Retires.Format(time.RFC3339))
		}
		r = imported
	}
	if err := js.DeleteKeyValue(ctx, legacyCredentialsBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("delete the legacy credentials bucket: %w", err)
	}
	log.Info("legacy credentials bucket deleted", "event", "auth.keys.legacy_bucket_deleted", "bucket", legacyCredentialsBucket)
	return r, nil
}
