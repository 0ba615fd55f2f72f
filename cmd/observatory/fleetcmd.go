package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/sagewai/observatory/fleetload"
	"github.com/sagewai/observatory/live"
)

// fleetCmd runs `observatory fleet` (package fleetload): workers claiming
// missions created through the admin API at a steady rate, for several
// tenants, and the proof that every mission ended once and none crossed a
// tenant.
func fleetCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	var c fleetload.Config
	var asJSON, processes bool
	fs.IntVar(&c.Workers, "workers", envInt(getenv, "OBSERVATORY_FLEET_WORKERS", 24), "workers, run as goroutines, or as processes with --worker-processes (env OBSERVATORY_FLEET_WORKERS)")
	fs.BoolVar(&processes, "worker-processes", env("OBSERVATORY_FLEET_WORKER_PROCESSES", "") == "true", "run each worker as a process of this binary (observatory worker) instead of a goroutine (env OBSERVATORY_FLEET_WORKER_PROCESSES=true)")
	fs.IntVar(&c.Tenants, "tenants", envInt(getenv, "OBSERVATORY_FLEET_TENANTS", len(live.DefaultTenants())), "tenants, 1 to 3: acme, globex, initech (env OBSERVATORY_FLEET_TENANTS)")
	fs.IntVar(&c.Missions, "missions", envInt(getenv, "OBSERVATORY_FLEET_MISSIONS", 300), "missions in all (env OBSERVATORY_FLEET_MISSIONS)")
	fs.Float64Var(&c.Rate, "rate", 20, "missions per second created through the admin API")
	fs.Float64Var(&c.TimeScale, "time-scale", 0.02, "speed of the synthetic agent: 1 is real time, 0.02 runs a 10 s mission in 200 ms")
	fs.StringVar(&c.NATSURL, "nats-url", env("OBSERVATORY_NATS_URL", ""), "run against this NATS instead of an embedded one in a temporary directory (env OBSERVATORY_NATS_URL)")
	fs.StringVar(&c.NATSCreds, "nats-creds", env("OBSERVATORY_NATS_CREDS", ""), "with --nats-url: the credentials file of a user allowed what the example does (env OBSERVATORY_NATS_CREDS)")
	fs.DurationVar(&c.Timeout, "timeout", 3*time.Minute, "give up waiting for the missions to end after this long")
	fs.Uint64Var(&c.Seed, "seed", 40, "seed of the workload")
	fs.BoolVar(&asJSON, "json", false, "print only the figures, as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("fleet: unexpected arguments %q", fs.Args())
	case c.Workers < 1 || c.Workers > 2000:
		return errors.New("fleet: want --workers between 1 and 2000")
	case c.Tenants < 1 || c.Tenants > len(live.DefaultTenants()):
		return fmt.Errorf("fleet: want --tenants between 1 and %d", len(live.DefaultTenants()))
	case c.Missions < 1 || c.Missions > 100_000:
		return errors.New("fleet: want --missions between 1 and 100000")
	case c.Rate <= 0 || c.Rate > 10_000:
		return errors.New("fleet: want --rate above 0 and at most 10000")
	case c.TimeScale <= 0 || c.TimeScale > 10:
		return errors.New("fleet: want --time-scale above 0 and at most 10")
	case c.Timeout <= 0:
		return errors.New("fleet: want a positive --timeout")
	}
	if processes {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("fleet: --worker-processes runs this binary: %w", err)
		}
		c.WorkerCommand = []string{exe, "worker"}
	}
	c.Out, c.Progress, c.TTY = stdout, stderr, isTerminal(stderr)
	if asJSON {
		c.Out = io.Discard
	}
	fig, err := fleetload.Run(ctx, c)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(fig); err != nil {
			return err
		}
	} else {
		fleetload.Print(stdout, fig)
	}
	if p := fig.Problems(); len(p) > 0 {
		return errors.New("fleet: " + strings.Join(p, "; "))
	}
	return nil
}

// isTerminal says whether w is a terminal. Being a character device is
// not enough: /dev/null is one, and output sent there must not get the
// redrawn progress lines and status block of a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
