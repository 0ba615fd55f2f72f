package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

const usage = `usage: observatory <command> [flags]

commands:
  serve   run the server: embedded NATS, the fold, /ws, /api/v1
  demo    serve plus fleet plus live in one process: real workers, three tenants, live traffic
  tail    print a scope's snapshot and diffs as JSON lines
  embed-token  print a short-lived embed token for one project's HUD iframe
  rotate-key   rotate the token signing keys; old tokens verify for --grace (24h)
  healthcheck  exit 0 if the server's readiness probe answers 200 (for container images)
  worker  a standalone worker: enrolls with an enrollment key, runs missions with the synthetic agent
  fleet   example 40: workers claiming missions of three tenants under load, with proof
  live    example 43: mixed-tenant HTTP traffic against a running server, with proof
  cost    example 34: cost-tagged work for two tenants, where the money went
  budget  example 12: user, team and project caps: warn, throttle, stop

Run "observatory <command> -h" for a command's flags.
`

// run is the whole program; main only adds the signal context and exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serveCmd(ctx, rest, getenv, stdout, stderr, false)
	case "demo":
		err = serveCmd(ctx, rest, getenv, stdout, stderr, true)
	case "tail":
		err = tailCmd(ctx, rest, getenv, stdout, stderr)
	case "embed-token":
		err = embedTokenCmd(ctx, rest, getenv, stdout, stderr)
	case "rotate-key":
		err = rotateKeyCmd(ctx, rest, getenv, stdout, stderr)
	case "live":
		err = liveCmd(ctx, rest, getenv, stdout, stderr)
	case "healthcheck":
		err = healthcheckCmd(ctx, rest, getenv, stdout, stderr)
	case "worker":
		err = workerCmd(ctx, rest, getenv, stdout, stderr)
	case "fleet":
		err = fleetCmd(ctx, rest, getenv, stdout, stderr)
	case "cost":
		err = costCmd(ctx, rest, getenv, stdout, stderr)
	case "budget":
		err = budgetCmd(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// envDefault returns the env twin of a flag, or def.
func envDefault(getenv func(string) string, name, def string) string {
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return v
	}
	return def
}
