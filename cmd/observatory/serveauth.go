package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/revoke"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// authFlags are serve's flags of credentials: where the signing keys are
// and the unauthenticated metrics listener.
type authFlags struct {
	keys        *keySource
	metricsAddr string
}

// addAuthFlags registers --signing-key-file and --metrics-addr on fs;
// dataDir is serve's --data-dir, read after parsing.
func addAuthFlags(fs *flag.FlagSet, getenv func(string) string, dataDir *string, a *authFlags) {
	a.keys = addKeyFlags(fs, getenv, dataDir)
	fs.StringVar(&a.metricsAddr, "metrics-addr", envDefault(getenv, "OBSERVATORY_METRICS_ADDR", ""),
		"serve GET /metrics without authentication on this address too, e.g. 127.0.0.1:9464, for a scraper on a private network; off by default (the main listener's /metrics needs an admin or metrics token) (env OBSERVATORY_METRICS_ADDR)")
}

// edgeAuth is what serve runs for credentials: the key ring (and the
// watch of its file), the shared revocations, and the metrics listener.
type edgeAuth struct {
	ring        *keyring.Ring
	path        string // the key file, "" for keys from the environment
	revocations *revoke.Store
	metrics     *http.Server
	metricsLn   net.Listener
	log         *slog.Logger
}

// setup reads (or makes) the signing keys, moves an older release's key
// out of NATS, opens the revocations and listens on --metrics-addr.
func (a *authFlags) setup(ctx context.Context, js jetstream.JetStream, metrics http.Handler, log *slog.Logger) (*edgeAuth, error) {
	now := time.Now()
	ring, path, made, err := a.keys.open(now)
	if err != nil {
		return nil, err
	}
	if ring, err = migrateLegacyKey(ctx, js, ring, path, made, now, log); err != nil {
		return nil, err
	}
	rev, err := revoke.Open(ctx, js, revoke.Config{MaxAge: auth.MaxLifetime, Logger: log})
	if err != nil {
		return nil, err
	}
	ea := &edgeAuth{ring: ring, path: path, revocations: rev, log: log}
	if a.metricsAddr != "" {
		if metrics == nil {
			return nil, errors.New("--metrics-addr: no metrics to serve")
		}
		if ea.metricsLn, err = net.Listen("tcp", a.metricsAddr); err != nil {
			return nil, fmt.Errorf("--metrics-addr: listen %s: %w", a.metricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		ea.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	}
	return ea, nil
}

// run runs, in g until ctx ends, the revocations' watch, the watch of
// the key file (a rotation reaches srv within a second) and the metrics
// listener.
func (ea *edgeAuth) run(ctx context.Context, g *errgroup.Group, srv *web.Server) {
	g.Go(func() error { return ea.revocations.Run(ctx) })
	if ea.path != "" {
		w := keyring.NewWatcher(ea.path, ea.ring, keyring.DefaultPoll, func(r *keyring.Ring) {
			if err := srv.SetKeys(r); err != nil {
				ea.log.Error("signing keys not loaded", "event", "auth.keys.load_failed", "file", ea.path, "error", err.Error())
			}
		}, func(err error) {
			ea.log.Warn("signing key file unreadable; the keys in service stay", "event", "auth.keys.read_failed", "file", ea.path, "error", err.Error())
		})
		g.Go(func() error { return w.Run(ctx) })
	}
	if ea.metrics != nil {
		g.Go(func() error {
			if err := ea.metrics.Serve(ea.metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics listener: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return ea.metrics.Shutdown(shutCtx)
		})
	}
}

// close closes the metrics listener if it was never served (serve failed
// before); after Run it is closed already.
func (ea *edgeAuth) close() {
	if ea.metricsLn != nil {
		ea.metricsLn.Close()
	}
}

// printBanner prints how /metrics is reached: with a bearer token on the
// main listener, and without one on --metrics-addr when it is set.
func (ea *edgeAuth) printBanner(w io.Writer) {
	fmt.Fprintf(w, "  metrics auth Authorization: Bearer <admin or metrics token>; mint a metrics token: POST /api/v1/metrics-tokens {\"name\":\"scraper\"} as admin\n")
	if ea.metricsLn != nil {
		fmt.Fprintf(w, "  metrics open http://%s/metrics (--metrics-addr, no authentication)\n", displayAddr(ea.metricsLn.Addr()))
	}
	if ea.path != "" {
		fmt.Fprintf(w, "  signing keys %s (key %s; rotate: observatory rotate-key --signing-key-file %s)\n", ea.path, ea.ring.Current().ID, ea.path)
	} else {
		fmt.Fprintf(w, "  signing keys from %s (key %s)\n", signingKeyEnv, ea.ring.Current().ID)
	}
}
