package stream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	ns, err := server.NewServer(&server.Options{
		ServerName: "observatory",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: maxStreamMsgSz,
	})
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

// Connect connects to url, or in-process to ns when ns is not nil.
func Connect(url string, ns *server.Server, name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if ns != nil {
		opts = append(opts, nats.InProcessServer(ns))
		url = ns.ClientURL()
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", url, err)
	}
	return nc, nil
}

// StreamsConfig sets the retention of the streams.
type StreamsConfig struct {
	FleetMaxAge time.Duration // default 7 days
	AuditMaxAge time.Duration // default 90 days
}

// EnsureStreams creates or updates the FLEET and AUDIT streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamsConfig) error {
	for _, sc := range []jetstream.StreamConfig{
		{Name: FleetStream, Subjects: []string{FleetSubjects}, Storage: jetstream.FileStorage,
			MaxAge: cmpOr(cfg.FleetMaxAge, FleetMaxAge), Duplicates: DedupeWindow,
			Description: "Observatory fleet events (DESIGN §3)"},
		{Name: AuditStream, Subjects: []string{AuditSubjects}, Storage: jetstream.FileStorage,
			MaxAge: cmpOr(cfg.AuditMaxAge, AuditMaxAge), Duplicates: DedupeWindow,
			Description: "Observatory audit events (DESIGN §3)"},
	} {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return nil
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
