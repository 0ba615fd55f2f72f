package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/exportlease"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/ingest"
	"github.com/sagewai/observatory/rig"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/telemetry"
	"github.com/sagewai/observatory/web"
)

type serveConfig struct {
	addr          string
	dataDir       string
	natsListen    string
	natsURL       string
	origins       string
	embedOrigins  string
	adminPassword string
	tick          time.Duration
	fleetMaxAge   time.Duration
	syncAlways    bool
	logLevel      string
	logFile       string
	logFormat     string
	demo          demoOptions
	pricingFile   string
	holdTTL       time.Duration
	exportTTL     time.Duration
	nats          natsFlags
	edge          edgeConfig
	auth          authFlags
	bounds        boundsFlags
}

func serveFlags(name string, getenv func(string) string, stderr io.Writer, demo bool) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	fs.StringVar(&c.addr, "addr", env("OBSERVATORY_ADDR", defaultAddr), "HTTP listen address; beyond loopback it needs --public-url and a non-default --admin-password (env OBSERVATORY_ADDR)")
	fs.StringVar(&c.dataDir, "data-dir", env("OBSERVATORY_DATA_DIR", "./data"), "where the embedded NATS and checkpoints live (env OBSERVATORY_DATA_DIR)")
	fs.StringVar(&c.natsListen, "nats-listen", env("OBSERVATORY_NATS_LISTEN", stream.DefaultListen), "embedded NATS listen address (env OBSERVATORY_NATS_LISTEN)")
	fs.StringVar(&c.natsURL, "nats-url", env("OBSERVATORY_NATS_URL", ""), "use this NATS instead of embedding one: a URL or comma-separated cluster URLs (env OBSERVATORY_NATS_URL)")
	c.nats.register(fs, getenv)
	fs.StringVar(&c.origins, "allowed-origins", env("OBSERVATORY_ALLOWED_ORIGINS", ""), "comma-separated Origin patterns allowed on /ws besides the same host (env OBSERVATORY_ALLOWED_ORIGINS)")
	fs.StringVar(&c.embedOrigins, "embed-origins", env("OBSERVATORY_EMBED_ORIGINS", ""), "comma-separated origins allowed to frame the HUD (/hud?embed=1), e.g. https://admin.example.com; empty: none (env OBSERVATORY_EMBED_ORIGINS)")
	fs.StringVar(&c.adminPassword, "admin-password", env("OBSERVATORY_ADMIN_PASSWORD", "admin"), "password of the admin user (env OBSERVATORY_ADMIN_PASSWORD)")
	fs.DurationVar(&c.tick, "tick", envDuration(getenv, "OBSERVATORY_TICK", 100*time.Millisecond), "how often diffs are sent (env OBSERVATORY_TICK)")
	fs.DurationVar(&c.fleetMaxAge, "fleet-max-age", envDuration(getenv, "OBSERVATORY_FLEET_MAX_AGE", stream.FleetMaxAge), "how long FLEET keeps events (env OBSERVATORY_FLEET_MAX_AGE)")
	fs.BoolVar(&c.syncAlways, "nats-sync-always", env("OBSERVATORY_NATS_SYNC_ALWAYS", "") == "true", "fsync every JetStream write before acknowledging it (env OBSERVATORY_NATS_SYNC_ALWAYS=true)")
	fs.StringVar(&c.pricingFile, "pricing", env("OBSERVATORY_PRICING", ""), "a pricing table (JSON, the format of fleet/pricing.json) merged on top of the embedded one: its models replace the embedded entries of the same name (env OBSERVATORY_PRICING)")
	fs.DurationVar(&c.exportTTL, "export-lease-ttl", envDuration(getenv, "OBSERVATORY_EXPORT_LEASE_TTL", exportlease.DefaultTTL), "with --nats-url: how long the replica exporting the fleet's metrics, spans and business logs keeps that role without renewing it; the same on every replica (env OBSERVATORY_EXPORT_LEASE_TTL)")
	fs.DurationVar(&c.holdTTL, "reservation-ttl", envDuration(getenv, "OBSERVATORY_RESERVATION_TTL", budget.DefaultHoldTTL), "how long a budget reservation holds money when nobody settles or releases it (env OBSERVATORY_RESERVATION_TTL)")
	fs.StringVar(&c.logLevel, "log-level", env("OBSERVATORY_LOG_LEVEL", "info"), "debug, info, warn or error (env OBSERVATORY_LOG_LEVEL)")
	fs.StringVar(&c.logFile, "log-file", env("OBSERVATORY_LOG_FILE", ""), "append the log lines to this file; default <data-dir>/"+logFileName+" when stderr is a terminal (a live status block is drawn instead), else stderr; - for stderr (env OBSERVATORY_LOG_FILE)")
	fs.StringVar(&c.logFormat, "log-format", env("OBSERVATORY_LOG_FORMAT", telemetry.LogFormatJSON), "json or text (env OBSERVATORY_LOG_FORMAT)")
	if demo {
		fs.BoolVar(&c.demo.fresh, "fresh", env("OBSERVATORY_DEMO_FRESH", "") == "true", "empty --data-dir first and start from nothing; refused if it does not look like an observatory data dir (env OBSERVATORY_DEMO_FRESH=true)")
		fs.IntVar(&c.demo.workers, "workers", envInt(getenv, "OBSERVATORY_DEMO_WORKERS", 24), "workers serving the three tenants, run as goroutines (env OBSERVATORY_DEMO_WORKERS)")
		fs.Float64Var(&c.demo.missionRate, "mission-rate", envFloat(getenv, "OBSERVATORY_DEMO_MISSION_RATE", 1), "missions per second the tenants ask for (env OBSERVATORY_DEMO_MISSION_RATE)")
		fs.Float64Var(&c.demo.timeScale, "time-scale", envFloat(getenv, "OBSERVATORY_DEMO_TIME_SCALE", 0.5), "speed of the synthetic agents: 1 is real time, 0.5 runs a 20 s mission in 10 s (env OBSERVATORY_DEMO_TIME_SCALE)")
		fs.DurationVar(&c.demo.crossEvery, "cross-tenant-every", envDuration(getenv, "OBSERVATORY_DEMO_CROSS_TENANT_EVERY", time.Minute), "interval of the workload's cross-tenant attempts, which the server refuses and audits (0: none) (env OBSERVATORY_DEMO_CROSS_TENANT_EVERY)")
	}
	edgeFlags(fs, getenv, &c.edge, demo)
	addAuthFlags(fs, getenv, &c.dataDir, &c.auth)
	c.bounds.register(fs, getenv)
	if demo {
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "usage: observatory demo [flags]\n\n%s\nflags:\n", demoDataNote)
			fs.PrintDefaults()
		}
	}
	return fs, c
}

func envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	if v := strings.TrimSpace(getenv(name)); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// serveCmd runs `observatory serve`, or `observatory demo` with the
// synthetic fleet publishing into the same stream.
func serveCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, demo bool) error {
	began := time.Now() // the demo's time to alive and the status block's uptime count from here
	name := "serve"
	if demo {
		name = "demo"
	}
	fs, c := serveFlags(name, getenv, stderr, demo)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", name, fs.Args())
	}
	if err := c.edge.check(ctx, name, c.addr, c.adminPassword); err != nil {
		return err
	}
	if err := c.bounds.check(); err != nil {
		return usagef("%s: %v", name, err)
	}
	if demo {
		switch {
		case c.demo.workers < 1 || c.demo.workers > 500:
			return errors.New("demo: want --workers between 1 and 500")
		case c.demo.missionRate <= 0 || c.demo.missionRate > 1000:
			return errors.New("demo: want --mission-rate above 0 and at most 1000")
		case c.demo.timeScale <= 0 || c.demo.timeScale > 10:
			return errors.New("demo: want --time-scale above 0 and at most 10")
		case c.demo.crossEvery < 0:
			return errors.New("demo: --cross-tenant-every must not be negative")
		}
		c.demo.crossEvery = crossEvery(c.demo.crossEvery)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("%s: --log-level: %w", name, err)
	}
	if err := checkLogFormat(c.logFormat); err != nil {
		return usagef("%s: %v", name, err)
	}
	if c.demo.fresh {
		if err := freshDataDir(c.dataDir); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	// The log file is closed after telemetry shut down (defers run last
	// first), so that the last lines reach it.
	logs, err := openLogSink(c.logFile, c.dataDir, stderr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer logs.close()
	// Telemetry first, so that everything logs through it; shut down last,
	// so that what is queued is flushed after everything else stopped.
	// On an external NATS several replicas may fold one stream: what is
	// derived from it is exported by the holder of the exporter lease.
	shared := c.natsURL != ""
	tel, err := telemetry.Setup(ctx, getenv, telemetry.Options{LogOutput: logs.w, LogLevel: level, LogFormat: c.logFormat, SharedExport: shared})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	log := tel.Logger()
	defer func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(shutCtx); err != nil {
			log.Warn("telemetry not flushed", "event", "otel.shutdown.failed", "error", err.Error())
		}
	}()

	pricing, err := loadPricing(c.pricingFile)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}

	// The embedded NATS runs in operator mode and serve connects as its
	// own user (natsplane.go).
	dp, err := openDataPlane(c, name, log)
	if err != nil {
		return err
	}
	defer dp.close()
	nc := dp.nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// On a cluster every stream and bucket gets --nats-replicas.
	if js, err = stream.WithReplicas(js, c.nats.replicas); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := stream.EnsureStreams(setupCtx, js, c.bounds.streams(stream.StreamsConfig{FleetMaxAge: c.fleetMaxAge, MaxStore: dp.maxStore()})); err != nil {
		return err
	}
	// The signing keys live in a file (or the environment), never in
	// NATS; an older release's key is moved out of it.
	edgeAuth, err := c.auth.setup(setupCtx, js, tel.MetricsHandler(), log)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer edgeAuth.close()
	registry, err := stream.OpenRegistry(setupCtx, js, stream.RegistryConfig{})
	if err != nil {
		return err
	}
	// The projects of the admin API's registry keep their own metric
	// labels whatever ids a flood of events makes up.
	projects := stream.NewProjectSet(registry.Records)
	workers, err := dp.workers(setupCtx, js)
	if err != nil {
		return err
	}
	pub := stream.NewPublisher(js)
	hub := stream.NewHub(js, stream.HubConfig{
		Tick:        c.tick,
		Checkpoints: stream.NewCheckpoints(filepath.Join(c.dataDir, "checkpoints")),
		Logger:      log,
		Pricing:     pricing,
		Observe:     tel.ObserveFleet,
		Extra:       tel, // the domain counters continue across restarts
		Limits:      c.bounds.limits,
	})
	if err := hub.RegisterMetrics(tel.MeterProvider()); err != nil {
		return fmt.Errorf("hub metrics: %w", err)
	}
	var lease *exportlease.Lease
	if shared {
		lease, err = exportlease.Open(setupCtx, js, tel.Handoff(), exportlease.Config{TTL: c.exportTTL, Logger: log,
			Ready: func() bool { return hub.Ready() == nil }})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	ledger, err := budget.NewLedger(setupCtx, js, budget.Config{Pricing: pricing, Auditor: pub, Events: pub, Logger: log, HoldTTL: c.holdTTL})
	if err != nil {
		return err
	}
	traces, err := ingest.New(ingest.Config{Publisher: pub, MeterProvider: tel.MeterProvider(), Logger: log})
	if err != nil {
		return err
	}
	if err := tel.WatchFleet(telemetry.FleetSource{
		View: hub.View, Live: func() bool { return hub.Ready() == nil }, Registered: projects.Has,
		Budgets: func(ctx context.Context) ([]fleet.BudgetStanding, error) { return ledger.Budgets(ctx, "") },
	}); err != nil {
		return err
	}
	srv, err := web.New(c.edge.apply(web.Config{
		AllowedOrigins: splitList(c.origins),
		EmbedOrigins:   splitList(c.embedOrigins),
		AdminPassword:  c.adminPassword,
		Keys:           edgeAuth.ring,
		Revocations:    edgeAuth.revocations,
		Logger:         log,
		Records:        registry.Records,
		Work:           registry.Work,
		Events:         pub,
		Missions:       registry.Missions,
		AuditLog:       stream.NewAuditLog(js),
		Budgets:        ledger,
		BudgetStore:    ledger,
		Costs:          stream.NewCosts(js, pricing),
		Workers:        workers,
		Traces:         traces,
		Metrics:        tel.MetricsHandler(),
		MeterProvider:  tel.MeterProvider(),
		TracerProvider: tel.TracerProvider(),
	}), hub, pub)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("%s: listen %s: %w", name, c.addr, err)
	}
	httpSrv := srv.HTTPServer()

	// The demo's fleet and workload stop first, while the server still
	// answers; only then does the server stop (serveCtx).
	serveCtx, stopServe := ctx, context.CancelFunc(func() {})
	if demo {
		serveCtx, stopServe = context.WithCancel(context.WithoutCancel(ctx))
	}
	defer stopServe()
	g, gctx := errgroup.WithContext(serveCtx)
	g.Go(func() error { return projects.Run(gctx) })
	// The hub starts once the registry's projects are known, so that the
	// replay's series are labelled as they will stay.
	g.Go(func() error {
		if err := projects.Wait(gctx); err != nil {
			return err
		}
		return hub.Run(gctx)
	})
	g.Go(func() error { return ledger.Run(gctx) })
	if lease != nil {
		g.Go(func() error { return lease.Run(gctx) })
	}
	// Clock ticks let the fold's clock move when nothing else is published
	// (quiet workers turn stale and offline); replicas' ticks dedupe.
	g.Go(func() error { return stream.NewClock(pub, 0, log).Run(gctx) })
	g.Go(func() error { return serveHTTP(httpSrv, ln) })
	edgeAuth.run(gctx, g, srv)
	g.Go(func() error {
		<-gctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The sockets first (http.Server does not track hijacked ones), then HTTP.
		wsErr := srv.Shutdown(shutCtx)
		return errors.Join(wsErr, httpSrv.Shutdown(shutCtx))
	})
	var d *demoRun
	if demo {
		d = &demoRun{o: c.demo, nc: nc, js: js, pub: pub, hub: hub, base: "http://" + displayAddr(ln.Addr()), password: c.adminPassword, enrolled: dp.authority != nil, log: log, began: began}
		g.Go(func() error {
			defer stopServe()
			dctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(gctx, cancel)
			defer stop()
			return d.run(dctx)
		})
	}
	printBanner(stdout, name, ln.Addr(), c, dp)
	logs.printBanner(stdout, c.logFormat)
	edgeAuth.printBanner(stdout)
	printTelemetry(stdout, ln.Addr(), tel)
	if demo {
		fmt.Fprintf(stdout, "  fleet        %d workers, three tenants (acme, globex, initech), %g missions/s through the admin API; Ctrl-C prints the proof\n",
			c.demo.workers, c.demo.missionRate)
	}
	// On a terminal a status block redrawn in place follows the banner;
	// it stops on Ctrl-C (or when the server stops), leaving its last
	// frame above the proof.
	status := newStatusBlock(stdout, logs, name, c.edge.baseURL(ln.Addr())+"/hud", c.adminPassword == "admin", began, hub, log)
	if status != nil {
		fmt.Fprintln(stdout)
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stopWithServer := context.AfterFunc(gctx, cancel)
		defer stopWithServer()
		status.start(sctx)
	}

	err = g.Wait()
	status.stop()
	if lease != nil {
		// The hub has stopped: export what it made, then hand the lease on
		// with marks that cover it, so the next exporter starts at once
		// and sends nothing twice.
		relCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if ferr := tel.ForceFlush(relCtx); ferr != nil {
			log.Warn("telemetry not flushed before the exporter lease was released", "event", "otel.flush.failed", "error", ferr.Error())
		}
		if rerr := lease.Release(relCtx); rerr != nil {
			log.Warn("exporter lease not released; another replica takes over when it expires", "event", "exporter.lease.release_failed", "error", rerr.Error())
		}
		cancel()
	}
	rig.Drain(nc)
	if d != nil {
		d.proof(stdout)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintf(stdout, "observatory %s stopped at seq %d\n", name, hub.Stats().Seq)
	return nil
}

func printBanner(w io.Writer, name string, addr net.Addr, c *serveConfig, dp *dataPlane) {
	base := c.edge.baseURL(addr)
	fmt.Fprintf(w, "observatory %s: serving %s%s\n", name, base, c.edge.listening(addr))
	fmt.Fprintf(w, "  live stream  %s/ws (subprotocol observatory.v2, or observatory.v1)\n", strings.Replace(base, "http", "ws", 1))
	fmt.Fprintf(w, "  fleet API    %s/api/v1/fleet\n", base)
	fmt.Fprintf(w, "  HUD          %s/hud\n", base)
	if c.adminPassword == "admin" {
		fmt.Fprintf(w, "  login        admin / admin (dev default; set --admin-password or OBSERVATORY_ADMIN_PASSWORD)\n")
	} else {
		fmt.Fprintf(w, "  login        admin / (the password you set)\n")
	}
	dp.printBanner(w, c.dataDir)
	fmt.Fprintf(w, "  follow it    go run ./cmd/observatory tail --url %s/ws\n", strings.Replace(base, "http", "ws", 1))
}

// printTelemetry adds where the metrics are and where OTLP goes.
func printTelemetry(w io.Writer, addr net.Addr, tel *telemetry.Telemetry) {
	fmt.Fprintf(w, "  metrics      http://%s/metrics\n", displayAddr(addr))
	if u := tel.TracesURL(); u != "" {
		fmt.Fprintf(w, "  OTLP traces  %s\n", u)
	}
	if u := tel.LogsURL(); u != "" {
		fmt.Fprintf(w, "  OTLP logs    %s\n", u)
	}
}

// displayAddr turns a wildcard listen address into one a browser can open.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
