package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sagewai/observatory/live"
)

// liveOptions are the flags of `observatory live`.
type liveOptions struct {
	url, user, password, grafana string
	duration, crossEvery, drain  time.Duration
	probeEvery                   time.Duration
	missionRate, readRate        float64
	asJSON                       bool
	seed                         uint64
}

// liveCmd runs `observatory live`: the mixed-tenant HTTP workload against a
// running server, then the proof block.
func liveCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("live", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	var o liveOptions
	fs.StringVar(&o.url, "url", env("OBSERVATORY_URL", "http://localhost:3001"), "the server (env OBSERVATORY_URL)")
	fs.StringVar(&o.user, "user", env("OBSERVATORY_USER", "admin"), "the admin user (env OBSERVATORY_USER)")
	fs.StringVar(&o.password, "password", env("OBSERVATORY_ADMIN_PASSWORD", "admin"), "the admin's password (env OBSERVATORY_ADMIN_PASSWORD)")
	fs.StringVar(&o.grafana, "grafana-url", env("OBSERVATORY_GRAFANA_URL", "http://localhost:3000"), "where the Grafana board is, for the printed links (env OBSERVATORY_GRAFANA_URL)")
	fs.DurationVar(&o.duration, "duration", envDuration(getenv, "OBSERVATORY_LIVE_DURATION", 3*time.Minute), "how long to run (env OBSERVATORY_LIVE_DURATION)")
	fs.DurationVar(&o.crossEvery, "cross-tenant-every", envDuration(getenv, "OBSERVATORY_LIVE_CROSS_TENANT_EVERY", time.Minute), "interval of the cross-tenant attempts, which the server must refuse (0: none) (env OBSERVATORY_LIVE_CROSS_TENANT_EVERY)")
	fs.DurationVar(&o.drain, "drain", envDuration(getenv, "OBSERVATORY_LIVE_DRAIN", 30*time.Second), "at the end, wait this long at most for the run's missions to end (env OBSERVATORY_LIVE_DRAIN)")
	fs.DurationVar(&o.probeEvery, "probe-every", envDuration(getenv, "OBSERVATORY_LIVE_PROBE_EVERY", 5*time.Second), "interval of the probes the server must refuse with 401 or 404 (env OBSERVATORY_LIVE_PROBE_EVERY)")
	fs.Float64Var(&o.missionRate, "mission-rate", envFloat(getenv, "OBSERVATORY_LIVE_MISSION_RATE", 1), "missions per second over all tenants (env OBSERVATORY_LIVE_MISSION_RATE)")
	fs.Float64Var(&o.readRate, "read-rate", envFloat(getenv, "OBSERVATORY_LIVE_READ_RATE", 4), "reads per second over all tenants and the admin (env OBSERVATORY_LIVE_READ_RATE)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the workload (0: random)")
	fs.BoolVar(&o.asJSON, "json", false, "print only the figures, as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("live: unexpected arguments %q", fs.Args())
	case o.duration <= 0:
		return errors.New("live: want a positive --duration")
	case o.crossEvery < 0 || o.drain < 0:
		return errors.New("live: --cross-tenant-every and --drain must not be negative")
	case o.probeEvery <= 0:
		return errors.New("live: want a positive --probe-every")
	case o.missionRate <= 0 || o.missionRate > 1000 || o.readRate <= 0 || o.readRate > 1000:
		return errors.New("live: want --mission-rate and --read-rate above 0 and at most 1000")
	}
	w, err := live.New(live.Config{
		BaseURL: o.url, User: o.user, Password: o.password, Duration: o.duration,
		MissionRate: o.missionRate, ReadRate: o.readRate, CrossTenantEvery: crossEvery(o.crossEvery), ProbeEvery: o.probeEvery, Seed: o.seed,
	})
	if err != nil {
		return err
	}
	out := stdout
	if o.asJSON {
		out = io.Discard
	}
	base := strings.TrimRight(o.url, "/")
	fmt.Fprintf(out, "observatory live: %s of mixed-tenant traffic against %s (%g missions/s, %g reads/s)\n", o.duration, base, o.missionRate, o.readRate)
	if err := w.Setup(ctx); err != nil {
		return err
	}
	live.PrintLinks(out, base, o.grafana)
	stop := live.StartProgress(stderr, isTerminal(stderr), w, o.duration)
	err = w.Run(ctx)
	stop()
	if err != nil {
		return err
	}
	if ctx.Err() == nil {
		w.Drain(ctx, o.drain)
	}
	f := w.Figures()
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(f); err != nil {
			return err
		}
	} else {
		live.Print(stdout, f)
		live.PrintLinks(stdout, base, o.grafana)
	}
	if p := f.Problems(); len(p) > 0 {
		return errors.New("live: " + strings.Join(p, "; "))
	}
	return nil
}

// envFloat returns the env twin of a number flag, or def.
func envFloat(getenv func(string) string, name string, def float64) float64 {
	if v, err := strconv.ParseFloat(strings.TrimSpace(getenv(name)), 64); err == nil {
		return v
	}
	return def
}

// crossEvery maps the flag (0: none) to live.Config's (negative: none).
func crossEvery(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
