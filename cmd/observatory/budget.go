package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/sagewai/observatory/budgettour"
)

// budgetCmd runs `observatory budget` (package budgettour): per-user,
// per-team and per-project caps with warn, throttle and stop, step by
// step, every decision made by the real gate behind the real HTTP API.
func budgetCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("budget", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print only the figures, as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("budget: unexpected arguments %q", fs.Args())
	}
	out := stdout
	if *asJSON {
		out = io.Discard
	}
	fig, err := budgettour.Run(ctx, budgettour.Config{Out: out, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(fig)
	}
	budgettour.Print(out, fig)
	return nil
}
