package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/worker"
)

// natsFlags are serve's flags for its NATS besides --nats-url and
// --nats-listen (DESIGN §11.1, docs/deploy.md).
type natsFlags struct {
	creds      string // serve's own user on an external NATS
	signingKey string // an account signing key to mint workers' users with
	tlsCA      string
	tlsCert    string
	tlsKey     string
	advertise  string // the URL workers dial, when not the one serve uses
	replicas   int    // of every stream and bucket serve creates
}

func (n *natsFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	env := func(k string) string { return envDefault(getenv, k, "") }
	fs.StringVar(&n.creds, "nats-creds", env("OBSERVATORY_NATS_CREDS"), "with --nats-url: the credentials file of serve's own NATS user (env OBSERVATORY_NATS_CREDS)")
	fs.StringVar(&n.signingKey, "nats-account-signing-key", env("OBSERVATORY_NATS_ACCOUNT_SIGNING_KEY"), "with --nats-url and --nats-creds: a seed file (SA...) of a signing key of serve's account, to mint enrolled workers' credentials; without it enrollment gives workers none (env OBSERVATORY_NATS_ACCOUNT_SIGNING_KEY)")
	fs.StringVar(&n.tlsCA, "nats-tls-ca", env("OBSERVATORY_NATS_TLS_CA"), "with --nats-url: the CA file that signs the NATS servers' certificates (env OBSERVATORY_NATS_TLS_CA)")
	fs.StringVar(&n.tlsCert, "nats-tls-cert", env("OBSERVATORY_NATS_TLS_CERT"), "with --nats-url: serve's client certificate file, for NATS servers that verify clients (env OBSERVATORY_NATS_TLS_CERT)")
	fs.StringVar(&n.tlsKey, "nats-tls-key", env("OBSERVATORY_NATS_TLS_KEY"), "the key file of --nats-tls-cert (env OBSERVATORY_NATS_TLS_KEY)")
	fs.IntVar(&n.replicas, "nats-replicas", envInt(getenv, "OBSERVATORY_NATS_REPLICAS", 1), "with --nats-url: replicas of every stream and key-value bucket serve creates, e.g. 3 on a three-node cluster (env OBSERVATORY_NATS_REPLICAS)")
	fs.StringVar(&n.advertise, "nats-advertise", env("OBSERVATORY_NATS_ADVERTISE"), "the NATS URL(s) enrolled workers are told to dial, without userinfo; default the embedded server's client URL or --nats-url (env OBSERVATORY_NATS_ADVERTISE)")
}

// check refuses flags that mean nothing together.
func (n *natsFlags) check(natsURL string) error {
	if natsURL == "" {
		for flag, v := range map[string]string{"--nats-creds": n.creds, "--nats-account-signing-key": n.signingKey,
			"--nats-tls-ca": n.tlsCA, "--nats-tls-cert": n.tlsCert, "--nats-tls-key": n.tlsKey} {
			if v != "" {
				return fmt.Errorf("%s is for an external NATS (--nats-url); the embedded one makes its own keys under --data-dir", flag)
			}
		}
	}
	if n.replicas < 1 || n.replicas > stream.MaxReplicas {
		return fmt.Errorf("--nats-replicas %d: want 1 to %d", n.replicas, stream.MaxReplicas)
	}
	if natsURL == "" && n.replicas > 1 {
		return errors.New("--nats-replicas is for a NATS cluster (--nats-url); the embedded server is one node")
	}
	if n.signingKey != "" && n.creds == "" {
		return errors.New("--nats-account-signing-key needs --nats-creds: workers are minted in the account of serve's own user")
	}
	if (n.tlsCert == "") != (n.tlsKey == "") {
		return errors.New("--nats-tls-cert and --nats-tls-key go together")
	}
	if u := stream.RedactURL(n.advertise); u != n.advertise {
		return errors.New("--nats-advertise must not carry userinfo: workers get their own credentials")
	}
	return nil
}

// dataPlane is serve's NATS: the embedded server in operator mode or an
// external one, serve's own connection, and the authority that mints
// enrolled workers' credentials (nil when there is none).
type dataPlane struct {
	ns        *server.Server
	nc        *nats.Conn
	authority *natsauth.Authority
	// url is what serve dialled, without userinfo; workerURL what workers
	// are told to dial.
	url, workerURL string
	embedded       bool
}

// maxStore is what the embedded JetStream may store (0 for an external
// NATS), so the streams' default sizes fit the disk.
func (dp *dataPlane) maxStore() int64 {
	if dp.ns == nil {
		return 0
	}
	if c := dp.ns.JetStreamConfig(); c != nil {
		return c.MaxStore
	}
	return 0
}

// natsKeysDir is where the embedded server's trust chain lives under
// --data-dir (mode 0700, each key 0600).
func natsKeysDir(dataDir string) string { return filepath.Join(dataDir, "keys", "nats") }

// openDataPlane starts the embedded NATS in operator mode (or dials the
// external one) and connects serve as its own user. Its errors never
// carry a password of --nats-url.
func openDataPlane(c *serveConfig, name string, log *slog.Logger) (*dataPlane, error) {
	n := &c.nats
	if err := n.check(c.natsURL); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dp := &dataPlane{}
	if c.natsURL == "" {
		a, err := natsauth.Embedded(natsKeysDir(c.dataDir))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ns, err := stream.StartServer(stream.ServerConfig{StoreDir: c.dataDir, Listen: c.natsListen, SyncAlways: c.syncAlways,
			Authority: a, Logger: log})
		if err != nil {
			return nil, err
		}
		// serve's own user may do everything in the account; it never
		// leaves the process (the connection is in process).
		creds, err := a.Creds(natsauth.User{Name: "observatory-" + name, Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
		if err != nil {
			ns.Shutdown()
			return nil, err
		}
		tok, seed, err := natsauth.Parse(creds)
		if err != nil {
			ns.Shutdown()
			return nil, err
		}
		if dp.nc, err = stream.Connect("", ns, "observatory-"+name, nats.UserJWTAndSeed(tok, seed)); err != nil {
			ns.Shutdown()
			return nil, err
		}
		dp.ns, dp.authority, dp.embedded = ns, a, true
		dp.url = ns.ClientURL()
		dp.workerURL = cmpOr(n.advertise, dp.url)
		return dp, nil
	}

	var opts []nats.Option
	var creds []byte
	if n.creds != "" {
		var err error
		if creds, err = os.ReadFile(n.creds); err != nil {
			return nil, fmt.Errorf("%s: --nats-creds: %w", name, err)
		}
		opts = append(opts, nats.UserCredentials(n.creds))
	}
	if n.tlsCA != "" {
		opts = append(opts, nats.RootCAs(n.tlsCA))
	}
	if n.tlsCert != "" {
		opts = append(opts, nats.ClientCert(n.tlsCert, n.tlsKey))
	}
	if n.signingKey != "" {
		key, err := os.ReadFile(n.signingKey)
		if err != nil {
			return nil, fmt.Errorf("%s: --nats-account-signing-key: %w", name, err)
		}
		account, err := natsauth.AccountOf(creds)
		if err != nil {
			return nil, fmt.Errorf("%s: --nats-creds: %w", name, err)
		}
		if dp.authority, err = natsauth.External(key, account); err != nil {
			return nil, fmt.Errorf("%s: --nats-account-signing-key: %w", name, err)
		}
	}
	nc, err := stream.Connect(c.natsURL, nil, "observatory-"+name, opts...)
	if err != nil {
		return nil, err
	}
	dp.nc = nc
	dp.url = stream.RedactURL(c.natsURL)
	dp.workerURL = cmpOr(n.advertise, dp.url)
	return dp, nil
}

// close drains serve's connection and stops the embedded server.
func (dp *dataPlane) close() {
	dp.nc.Close()
	if dp.ns != nil {
		dp.ns.Shutdown()
	}
}

// workers is what enrollment gives workers on this data plane: the
// consumers of their grant, their credentials (when serve can mint them)
// and their pass counts.
func (dp *dataPlane) workers(ctx context.Context, js jetstream.JetStream) (web.WorkersConfig, error) {
	skips, err := stream.MissionSkips(ctx, js)
	if err != nil {
		return web.WorkersConfig{}, err
	}
	return web.WorkersConfig{
		Authority: dp.authority,
		NATSURL:   dp.workerURL,
		Consumers: worker.NewConsumers(js),
		Passes:    worker.NewKVPasses(skips),
	}, nil
}

// printBanner prints where the NATS is, never with credentials.
func (dp *dataPlane) printBanner(w io.Writer, dataDir string) {
	switch {
	case dp.embedded:
		fmt.Fprintf(w, "  NATS         %s (embedded, operator mode: no anonymous clients; keys in %s, data in %s)\n", dp.url, natsKeysDir(dataDir), dataDir)
	case dp.authority != nil:
		fmt.Fprintf(w, "  NATS         %s (workers get credentials in account %s)\n", dp.url, dp.authority.AccountID())
	default:
		fmt.Fprintf(w, "  NATS         %s (no --nats-account-signing-key: enrolled workers get no NATS credentials)\n", dp.url)
	}
	if dp.workerURL != dp.url {
		fmt.Fprintf(w, "  workers dial %s\n", dp.workerURL)
	}
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
