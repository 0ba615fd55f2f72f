package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sagewai/observatory/keyring"
)

// rotateKeyCmd runs `observatory rotate-key`: a fresh key signs from now
// on; the key that signed until now still verifies for --grace (its
// tokens keep working that long, and no longer); keys whose grace has
// ended are dropped. Running servers reading the same file take the new
// ring up within a second. --drop-old ends every old key's grace at once
// (a key that leaked). A missing file is made, with one fresh key.
func rotateKeyCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rotate-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envDefault(getenv, "OBSERVATORY_DATA_DIR", "./data"), "the servers' data directory, whose keys/signing.json is rotated (env OBSERVATORY_DATA_DIR)")
	keys := addKeyFlags(fs, func(k string) string {
		if k == signingKeyEnv {
			return "" // rotate-key rotates files only
		}
		return getenv(k)
	}, dataDir)
	grace := fs.Duration("grace", envDuration(getenv, "OBSERVATORY_ROTATE_GRACE", keyring.DefaultGrace), "how long tokens signed by the old key still verify (env OBSERVATORY_ROTATE_GRACE)")
	dropOld := fs.Bool("drop-old", false, "drop every old key now: every token signed before the rotation stops verifying (a leaked key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("rotate-key: unexpected arguments %q", fs.Args())
	}
	if *grace < 0 {
		return errors.New("rotate-key: --grace must not be negative")
	}
	path, err := keys.path()
	if err != nil {
		return fmt.Errorf("rotate-key: %w", err)
	}
	now := time.Now()
	r, err := keyring.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		if r, err = keyring.Open(path, now); err != nil {
			return fmt.Errorf("rotate-key: %w", err)
		}
		fmt.Fprintf(stdout, "made %s: key %s signs\n", path, r.Current().ID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("rotate-key: %w", err)
	}
	if *dropOld {
		*grace = 0
	}
	rotated, err := r.Rotate(now, *grace)
	if err != nil {
		return fmt.Errorf("rotate-key: %w", err)
	}
	if *dropOld {
		rotated = rotated.Retire()
	}
	if err := keyring.Write(path, rotated); err != nil {
		return fmt.Errorf("rotate-key: %w", err)
	}
	fmt.Fprintf(stdout, "rotated %s: key %s signs from now on\n", path, rotated.Current().ID)
	for _, k := range rotated.Keys()[1:] {
		fmt.Fprintf(stdout, "  key %s verifies until %s\n", k.ID, k.Retires.Format(time.RFC3339))
	}
	if len(rotated.Keys()) == 1 {
		fmt.Fprintf(stdout, "  no other key verifies: tokens signed before now are refused\n")
	}
	fmt.Fprintf(stdout, "servers reading this file take it up within a second; copy it to replicas that read their own copy\n")
	return nil
}
