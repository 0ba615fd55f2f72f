package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/natsauth"
)

// Stream names, subjects and defaults of DESIGN §3.
const (
	FleetStream    = "FLEET"
	AuditStream    = "AUDIT"
	FleetSubjects  = "fleet.>"
	AuditSubjects  = "audit.>"
	DedupeWindow   = 2 * time.Minute
	FleetMaxAge    = 7 * 24 * time.Hour
	AuditMaxAge    = 90 * 24 * time.Hour
	DefaultListen  = "127.0.0.1:4222"
	readyTimeout   = 10 * time.Second
	maxStreamMsgSz = 1 << 20
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// StoreDir is where JetStream keeps its files (the --data-dir).
	StoreDir string
	// Listen is host:port for other processes; port 0 picks a free one.
	Listen string
	// SyncAlways makes JetStream fsync every write before acknowledging it.
	// Off, a process crash loses nothing but a machine crash can lose the
	// last writes (NATS fsyncs every 2 minutes by default).
	SyncAlways bool
	// Authority, when set, runs the server in operator mode with its trust
	// chain (natsauth.Authority.Configure): no anonymous or unscoped client
	// connects, and JetStream keeps its data in the application account.
	// JetStream data an older release left in the global account ($G) is
	// moved to the application account before the server starts, once.
	// Nil runs an open server, for tests and benchmarks only.
	Authority *natsauth.Authority
	// Logger receives the server's notices (the move above); nil discards
	// them.
	Logger *slog.Logger
}

// StartServer starts an embedded NATS server with JetStream and waits until
// it accepts connections. The caller shuts it down with Shutdown.
func StartServer(cfg ServerConfig) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cmpOr(cfg.Listen, DefaultListen))
	if err != nil {
		return nil, fmt.Errorf("start nats: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("start nats: port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	dir := filepath.Join(cmpOr(cfg.StoreDir, "data"), "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	opts := &server.Options{
		ServerName: "observatory",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: maxStreamMsgSz,
	}
	if cfg.Authority != nil {
		if err := cfg.Authority.Configure(opts); err != nil {
			return nil, fmt.Errorf("start nats: %w", err)
		}
		moved, err := adoptGlobalAccount(dir, cfg.Authority.AccountID())
		if err != nil {
			return nil, fmt.Errorf("start nats: %w", err)
		}
		if moved && cfg.Logger != nil {
			cfg.Logger.Warn("JetStream data of the global account moved to the application account (first start in operator mode)",
				"event", "nats.account_migrated", "account", cfg.Authority.AccountID())
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("start nats on %s: not ready after %s", cfg.Listen, readyTimeout)
	}
	return ns, nil
}

// Connect connects to url (one URL or several, comma-separated), or
// in-process to ns when ns is not nil, with opts after its own (the
// credentials, TLS). Its errors name the URL without userinfo, and never
// carry a password that url or the client's error held.
func Connect(url string, ns *server.Server, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if ns != nil {
		all = append(all, nats.InProcessServer(ns))
		url = ns.ClientURL()
	}
	nc, err := nats.Connect(url, append(all, opts...)...)
	if err != nil {
		return nil, RedactError(fmt.Errorf("connect nats %s: %w", RedactURL(url), err), url)
	}
	return nc, nil
}

// Default sizes of the streams.
const (
	// FleetMaxBytes bounds FLEET (8 GiB: at about 600 bytes an event, 14
	// million events, a week of a fleet doing 20 a second).
	FleetMaxBytes = 8 << 30
	// AuditMaxBytes bounds AUDIT (1 GiB).
	AuditMaxBytes = 1 << 30
	// AuditMaxMsgsPerSubject bounds what AUDIT keeps of one subject,
	// audit.<project>.<type> (250,000: a tenth of what 1 GiB holds).
	AuditMaxMsgsPerSubject = 250_000
)

// StreamsConfig sets the retention of the streams. Zero values mean the
// defaults; a negative size or count means no bound.
//
// Both streams drop their oldest messages to stay within their bytes
// (DiscardOld), so a flood of events shortens the history they keep
// instead of refusing new events. FLEET has no per-subject bound on
// purpose: it is a log the fold replays from its start, and dropping one
// subject's (one project's, one type's) old messages while keeping the
// others would make a fresh replica fold a different fleet than one that
// saw them; only dropping the oldest messages of all keeps FLEET a true
// suffix of the log. The fold's own memory is bounded by fleet.Limits.
// AUDIT is not replayed: it is searched, so there a per-subject bound fits
// and keeps a flood of one kind of event (failed logins, say, which anyone
// can cause) from pushing every other kind out.
type StreamsConfig struct {
	FleetMaxAge time.Duration // default 7 days
	AuditMaxAge time.Duration // default 90 days
	// FleetMaxBytes and AuditMaxBytes bound the streams' sizes (defaults
	// FleetMaxBytes, AuditMaxBytes).
	FleetMaxBytes, AuditMaxBytes int64
	// AuditMaxMsgsPerSubject bounds the messages AUDIT keeps of one
	// subject (default AuditMaxMsgsPerSubject).
	AuditMaxMsgsPerSubject int64
	// MaxStore, when positive, is what JetStream may store on this server
	// (the embedded server's JetStreamConfig().MaxStore: three quarters of
	// the disk that was free when it started). JetStream reserves each
	// stream's max bytes out of it and refuses a stream that does not fit,
	// so the default sizes shrink to fit in half of it; sizes set
	// explicitly are used as they are.
	MaxStore int64
}

// sizes returns the streams' max bytes (-1: no bound) and AUDIT's max
// messages per subject.
func (c StreamsConfig) sizes() (fleet, audit, perSubject int64) {
	fleet, audit, perSubject = cmpOr(c.FleetMaxBytes, FleetMaxBytes), cmpOr(c.AuditMaxBytes, AuditMaxBytes),
		cmpOr(c.AuditMaxMsgsPerSubject, AuditMaxMsgsPerSubject)
	if room := c.MaxStore / 2; room > 0 {
		// Shrink the defaults, in proportion, to fit; never below 64 MiB.
		fit := func(v, set int64) int64 {
			if set != 0 || fleet+audit <= room {
				return v
			}
			return max(int64(float64(v)*float64(room)/float64(FleetMaxBytes+AuditMaxBytes)), 64<<20)
		}
		fleet, audit = fit(fleet, c.FleetMaxBytes), fit(audit, c.AuditMaxBytes)
	}
	unbounded := func(v int64) int64 {
		if v < 0 {
			return -1
		}
		return v
	}
	return unbounded(fleet), unbounded(audit), unbounded(perSubject)
}

// EnsureStreams creates or updates the FLEET and AUDIT streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamsConfig) error {
	fleetBytes, auditBytes, perSubject := cfg.sizes()
	for _, sc := range []jetstream.StreamConfig{
		{Name: FleetStream, Subjects: []string{FleetSubjects}, Storage: jetstream.FileStorage,
			MaxAge: cmpOr(cfg.FleetMaxAge, FleetMaxAge), MaxBytes: fleetBytes, Discard: jetstream.DiscardOld,
			Duplicates: DedupeWindow, Description: "Observatory fleet events (DESIGN §3)"},
		{Name: AuditStream, Subjects: []string{AuditSubjects}, Storage: jetstream.FileStorage,
			MaxAge: cmpOr(cfg.AuditMaxAge, AuditMaxAge), MaxBytes: auditBytes, MaxMsgsPerSubject: perSubject,
			Discard: jetstream.DiscardOld, Duplicates: DedupeWindow, Description: "Observatory audit events (DESIGN §3)"},
	} {
		if err := createOrUpdateStream(ctx, js, sc); err != nil {
			if isStorageExceeded(err) {
				return fmt.Errorf("ensure stream %s: max bytes %d do not fit in what JetStream may store here "+
					"(a stream's max bytes are reserved out of it): give the stream a smaller size: %w", sc.Name, sc.MaxBytes, err)
			}
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// createOrUpdateStream creates or updates a stream, waiting while a
// cluster cannot place it yet: a replica that starts beside a NATS cluster
// that is still forming (a meta leader elected by two nodes of three
// refuses an R3 stream until the third joins) waits for it until ctx
// ends, instead of failing its start.
func createOrUpdateStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	_, err := whileForming(ctx, func() (jetstream.Stream, error) { return js.CreateOrUpdateStream(ctx, sc) })
	return err
}

// whileForming calls op until it succeeds, fails for another reason than
// a cluster that cannot place or serve a stream yet (isClusterForming), or
// ctx ends; it waits 100 ms between the first tries, doubling up to 2 s.
func whileForming[T any](ctx context.Context, op func() (T, error)) (T, error) {
	wait := 100 * time.Millisecond
	for {
		v, err := op()
		if err == nil || !isClusterForming(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// JetStream's "no suitable peers for placement" (JSClusterNoPeersErr) and
// "JetStream system temporarily unavailable" (JSClusterNotAvailErr), which
// nats.go names no constants for.
const (
	errCodeNoPeers      jetstream.ErrorCode = 10005
	errCodeNotAvailable jetstream.ErrorCode = 10008
)

// isClusterForming reports whether err says the cluster cannot place or
// serve a stream yet.
func isClusterForming(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == errCodeNoPeers || apiErr.ErrorCode == errCodeNotAvailable
	}
	return errors.Is(err, nats.ErrNoResponders)
}

// errCodeStorageExceeded is JetStream's "insufficient storage resources
// available" (nats-server's JSStorageResourcesExceededErr), which nats.go
// names no constant for.
const errCodeStorageExceeded jetstream.ErrorCode = 10047

// isStorageExceeded reports whether err is errCodeStorageExceeded.
func isStorageExceeded(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStorageExceeded
}

// Epoch names the lineage of the FLEET stream: it changes when the stream
// is deleted and created again, so sequences of another lineage are never
// mistaken for ours.
func Epoch(ctx context.Context, js jetstream.JetStream) (string, error) {
	s, err := js.Stream(ctx, FleetStream)
	if err != nil {
		return "", fmt.Errorf("epoch: %w", err)
	}
	info := s.CachedInfo()
	return strconv.FormatInt(info.Created.UnixNano(), 36), nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// ErrClosed is returned by Hub calls made after the hub stopped.
var ErrClosed = errors.New("hub closed")
