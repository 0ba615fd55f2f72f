package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web"
)

// embedTokenCmd runs `observatory embed-token`: it reads the signing
// keys the servers use (the same --data-dir or --signing-key-file, or
// OBSERVATORY_SIGNING_KEY) and prints a signed, short-lived, read-only
// token for one project, for an iframe's /hud?embed=1&embed_token=...
// URL. The token goes to stdout alone (for scripts); the iframe snippet
// to stderr. POST /api/v1/projects/{project}/embed-tokens does the same
// through the API.
func embedTokenCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("embed-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	project := fs.String("project", env("OBSERVATORY_PROJECT", ""), "the project the token may read (env OBSERVATORY_PROJECT)")
	ttl := fs.Duration("ttl", envDuration(getenv, "OBSERVATORY_EMBED_TTL", web.DefaultEmbedTokenTTL), fmt.Sprintf("how long the token lasts, at most %s (env OBSERVATORY_EMBED_TTL)", web.MaxEmbedTokenTTL))
	dataDir := fs.String("data-dir", env("OBSERVATORY_DATA_DIR", "./data"), "the server's data directory, where its signing keys are (env OBSERVATORY_DATA_DIR)")
	keys := addKeyFlags(fs, getenv, dataDir)
	hudURL := fs.String("hud-url", env("OBSERVATORY_HUD_URL", "http://localhost:3001/hud"), "the HUD's URL, for the iframe snippet (env OBSERVATORY_HUD_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("embed-token: unexpected arguments %q", fs.Args())
	}
	if *project == "" {
		return errors.New("embed-token: --project is required")
	}
	if !fleet.ValidProjectID(*project) {
		return fmt.Errorf("embed-token: --project %q is not a project id", *project)
	}
	if *ttl <= 0 || *ttl > web.MaxEmbedTokenTTL {
		return fmt.Errorf("embed-token: --ttl %s: want more than 0 and at most %s", *ttl, web.MaxEmbedTokenTTL)
	}
	ring, err := keys.read()
	if err != nil {
		return fmt.Errorf("embed-token: %w", err)
	}
	tok, exp, err := web.SignEmbedTokenRing(ring, *project, *ttl, time.Now())
	if err != nil {
		return fmt.Errorf("embed-token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	q := url.Values{"embed": {"1"}, "project": {*project}, "embed_token": {tok}}
	fmt.Fprintf(stderr, "embed token for project %s, expires %s (in %s); framing needs serve --embed-origins:\n", *project, exp.Format(time.RFC3339), *ttl)
	fmt.Fprintf(stderr, "  <iframe src=\"%s?%s\"></iframe>\n", *hudURL, q.Encode())
	return nil
}
