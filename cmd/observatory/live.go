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
	printLinks(out, base, o.grafana)
	stop := startLiveProgress(stderr, w, o.duration)
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
		printLive(stdout, f)
		printLinks(stdout, base, o.grafana)
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

func printLinks(w io.Writer, base, grafana string) {
	fmt.Fprintf(w, "  HUD      %s/hud\n", base)
	fmt.Fprintf(w, "  metrics  %s/metrics\n", base)
	fmt.Fprintf(w, "  Grafana  %s/d/observatory-sre (SRE) and %s/d/observatory-cfo (CFO), with the compose stack\n", grafana, grafana)
}

// startLiveProgress prints a progress line every second (in place on a
// terminal) until the returned stop is called.
func startLiveProgress(w io.Writer, wl *live.Workload, total time.Duration) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	tty := isTerminal(w)
	line := func() string {
		f := wl.Figures()
		var enq, refused int64
		for _, t := range f.ByTenant {
			enq += t.Enqueued
			refused += t.Refused
		}
		of := ""
		if total > 0 {
			of = " / " + total.String()
		}
		return fmt.Sprintf("live %s%s  http %d (%.1f/s)  4xx %d  5xx %d  missions %d queued, %d refused by budget  cross-tenant %d/%d refused",
			(time.Duration(f.DurationSec) * time.Second).Round(time.Second), of, f.HTTPCalls, f.RatePerSec, f.Status4xx, f.Status5xx,
			enq, refused, f.CrossTenantDenied, f.CrossTenantAttempts)
	}
	go func() {
		defer close(stopped)
		every := 5 * time.Second
		if tty {
			every = time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s\n", line())
				}
				return
			case <-t.C:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s", line())
				} else {
					fmt.Fprintln(w, line())
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// printLive prints the per-tenant table and the proof block of a workload.
func printLive(w io.Writer, f live.Figures) {
	fmt.Fprintln(w, "\nPer tenant")
	for _, t := range f.ByTenant {
		fmt.Fprintf(w, "  %-8s %4d missions enqueued  %4d completed  %3d failed  %3d refused by budget  %3d throttled  spent $%s\n",
			t.ProjectID, t.Enqueued, t.Completed, t.Failed, t.Refused, t.Throttled, t.SpendUSD.Cents())
	}
	fmt.Fprintln(w, "\nProof")
	fmt.Fprintf(w, "  HTTP calls          %d in %.0f s (%.1f/s)\n", f.HTTPCalls, f.DurationSec, f.RatePerSec)
	fmt.Fprintf(w, "  answers             %d 2xx, %d 4xx, %d 5xx\n", f.Status2xx, f.Status4xx, f.Status5xx)
	fmt.Fprintf(w, "  probes refused      %d with 401, %d with 404; %d wrong passwords refused\n", f.Probes401, f.Probes404, f.LoginsRefused)
	fmt.Fprintf(w, "  cross-tenant        %d attempts, %d refused with 403\n", f.CrossTenantAttempts, f.CrossTenantDenied)
	fmt.Fprintf(w, "  unexpected answers  %d\n", f.Unexpected)
	if f.FirstUnexpected != "" {
		fmt.Fprintf(w, "    the first: %s\n", f.FirstUnexpected)
	}
	b, _ := json.Marshal(f)
	fmt.Fprintf(w, "  %s\n", b)
}
