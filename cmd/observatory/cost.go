package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/sagewai/observatory/costreport"
	"github.com/sagewai/observatory/fleet"
)

// loadPricing returns the embedded pricing table with the entries of the
// --pricing file on top (an entry replaces the embedded entry of the same
// model name, the others are added), or the embedded table alone for an
// empty path.
func loadPricing(path string) (*fleet.Pricing, error) {
	if path == "" {
		return fleet.DefaultPricing(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--pricing: %w", err)
	}
	p, err := fleet.ParsePricing(b)
	if err != nil {
		return nil, fmt.Errorf("--pricing %s: %w", path, err)
	}
	return fleet.DefaultPricing().Merge(p), nil
}

// costCmd runs `observatory cost` (package costreport): cost-tagged work
// for two tenants through the real pipeline, then where the money went.
func costCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	natsURL := fs.String("nats-url", env("OBSERVATORY_NATS_URL", ""), "run against this NATS (a running server's) instead of an embedded one in a temporary directory (env OBSERVATORY_NATS_URL)")
	natsCreds := fs.String("nats-creds", env("OBSERVATORY_NATS_CREDS", ""), "credentials file of a --nats-url user allowed what serve's own user is (env OBSERVATORY_NATS_CREDS)")
	pricingFile := fs.String("pricing", env("OBSERVATORY_PRICING", ""), "a pricing table (JSON, the format of fleet/pricing.json) merged on top of the embedded one: its models replace the embedded entries of the same name (env OBSERVATORY_PRICING)")
	missions := fs.Int("missions", envInt(getenv, "OBSERVATORY_COST_MISSIONS", 12), "missions per tenant (env OBSERVATORY_COST_MISSIONS)")
	seed := fs.Uint64("seed", uint64(envInt(getenv, "OBSERVATORY_COST_SEED", 34)), "seed of the workload (env OBSERVATORY_COST_SEED)")
	asJSON := fs.Bool("json", false, "print only the figures, as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *missions < 1 || *missions > 10_000 {
		return fmt.Errorf("cost: want --missions between 1 and 10000 and no arguments")
	}
	pricing, err := loadPricing(*pricingFile)
	if err != nil {
		return fmt.Errorf("cost: %w", err)
	}
	out := stdout
	if *asJSON {
		out = io.Discard
	}
	fig, err := costreport.Run(ctx, costreport.Config{
		NATSURL: *natsURL, NATSCreds: *natsCreds, Pricing: pricing, Missions: *missions, Seed: *seed, Out: out,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return fmt.Errorf("cost: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(fig); err != nil {
			return err
		}
	} else {
		costreport.Print(out, fig)
	}
	if !fig.Agree {
		return errors.New("cost: the ledger, the fold and the rollup disagree")
	}
	return nil
}

// envInt returns the env twin of an integer flag, or def.
func envInt(getenv func(string) string, name string, def int) int {
	if v, err := strconv.Atoi(strings.TrimSpace(getenv(name))); err == nil && v >= 0 {
		return v
	}
	return def
}
