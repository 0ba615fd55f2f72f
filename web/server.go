package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/web/auth"
)

// Hub is the fleet stream: the only source of frames.
type Hub interface {
	// Subscribe registers sub for req.Scope; the hub then Sends it the
	// snapshot (or the diffs since req.Resume) and every later diff. For one
	// subscriber, the hub handles Unsubscribe and Subscribe in call order.
	Subscribe(ctx context.Context, sub protocol.Subscriber, req protocol.Subscribe) error
	// Unsubscribe removes sub; unknown (or already closed) subscribers are
	// ignored.
	Unsubscribe(sub protocol.Subscriber)
	// Snapshot returns an encoded protocol.Snapshot frame of scope.
	Snapshot(ctx context.Context, scope string) ([]byte, error)
	// Ready reports nil once the hub has caught up with the stream.
	Ready() error
}

// Auditor publishes security and business events to the AUDIT stream.
type Auditor interface {
	Audit(ctx context.Context, ev fleet.Event) error
}

// SessionCookie is the name of the HUD's session cookie (HttpOnly,
// SameSite=Lax), which carries a session token.
const SessionCookie = "observatory_session"

// Token lifetimes.
const (
	DefaultTokenTTL      = 12 * time.Hour
	DefaultEmbedTokenTTL = 15 * time.Minute
	MaxEmbedTokenTTL     = time.Hour
)

// Config configures a Server. Zero values mean the defaults given.
type Config struct {
	// AllowedOrigins lists the Origin patterns a browser may open /ws from,
	// besides the server's own origins (PublicURLs'; on loopback, the
	// loopback names'). A pattern is matched with path.Match against the
	// origin's host, or against scheme://host if the pattern contains "://".
	AllowedOrigins []string
	// PublicURLs are the addresses browsers and clients use to reach the
	// server, scheme://host[:port] (ParsePublicURL): the Host headers it
	// answers (others get 421 misdirected; health probes and /metrics are
	// exempt) and its own origins, which cookie-authenticated writes and
	// /ws must come from. On a connection that arrived on a loopback
	// address, loopback names (localhost, 127.0.0.1, [::1]) with that
	// connection's port are answered too; with no PublicURLs, they are
	// all the server answers.
	PublicURLs []string
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Proto count (ParseTrustedProxies); empty: no forwarded
	// header counts, the peer is the client.
	TrustedProxies []netip.Prefix
	// TLSCertFile and TLSKeyFile (PEM), when both are set, make
	// HTTPServer serve HTTPS; the pair is read again when the files
	// change. Answers over HTTPS (directly, or through a trusted proxy
	// saying so) carry HSTS, and the session cookie is Secure.
	TLSCertFile string
	TLSKeyFile  string
	// HTTP server limits (HTTPServer): ReadHeaderTimeout (10 s),
	// ReadTimeout (1 min), WriteTimeout (1 min), IdleTimeout (2 min),
	// MaxHeaderBytes (64 KiB). /ws connections are not bound by the read
	// and write timeouts.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// MaxWSConns caps the open /ws connections (10000) and
	// MaxWSConnsPerCredential those of one credential (a token; 100),
	// connections without a valid one counting per client address. An
	// upgrade over a cap is refused with 429 too_many_connections.
	MaxWSConns              int
	MaxWSConnsPerCredential int
	// EmbedOrigins lists who may frame the HUD (/hud?embed=1) in an
	// iframe: CSP frame-ancestors sources, 'self' or scheme://host[:port].
	// Empty means nobody (frame-ancestors 'none' and X-Frame-Options DENY).
	EmbedOrigins []string
	// AdminUser and AdminPassword are the admin login ("admin", "admin").
	AdminUser     string
	AdminPassword string
	// SigningKey signs tokens: at least 32 bytes of secret, required. Every
	// replica behind one load balancer needs the same key.
	SigningKey []byte
	// Keys, when set, is the ring of signing keys (package keyring) used
	// instead of SigningKey: its current key signs, its retiring keys
	// still verify. SetKeys replaces it while the server runs.
	Keys *keyring.Ring
	// Revocations is the set of revoked token ids every replica shares
	// (revoke.Store); nil means tokens cannot be revoked: DELETE
	// /api/v1/tokens/{id} answers 503 and /logout only drops the cookie.
	Revocations Revocations
	// /ws keep-alive and credential checks (web/wsguard.go): a /ws
	// connection is pinged every PingInterval (25 s) and cut when its
	// pong does not come within PongTimeout (30 s); every SweepInterval
	// (250 ms) the connections are checked, and those whose credential
	// expired (on Now) or was revoked are closed with 4401.
	PingInterval  time.Duration
	PongTimeout   time.Duration
	SweepInterval time.Duration
	// TokenTTL is how long a login session lasts (12 h).
	TokenTTL time.Duration
	// Logger receives the access log and errors (slog.Default()); give it a
	// JSON handler.
	Logger *slog.Logger
	// Now is the server's clock (time.Now), and the only one any of its
	// time decisions read: the issue and expiry of tokens, embed tokens
	// and enrollment keys, their checks, the session cookie's lifetime,
	// the login slow-down, the times of records and events the admin API
	// writes and the default window of cost reports. Only durations read
	// the monotonic wall clock: timeouts and the latency in logs and
	// metrics.
	Now func() time.Time
	// MaxBodyBytes bounds request bodies (1 MiB); larger ones get 413.
	MaxBodyBytes int64
	// BcryptCost hashes passwords (bcrypt.DefaultCost).
	BcryptCost int
	// Login slow-down: after LoginMaxFailures (5) failed logins within
	// LoginWindow (15 min) for one user name from one client address, or
	// LoginMaxFailuresPerAddr (20) from one client address (an IPv6
	// address's /64), logins from there are refused for LoginLockout
	// (30 s), doubling with each further failure up to LoginMaxLockout
	// (15 min). No count is kept of a user name alone: failures in its
	// name elsewhere never lock a user out.
	LoginMaxFailures        int
	LoginMaxFailuresPerAddr int
	LoginWindow             time.Duration
	LoginLockout            time.Duration
	LoginMaxLockout         time.Duration
	// SubscribeTimeout is how long a /ws client has to send its first
	// subscribe frame (5 s).
	SubscribeTimeout time.Duration
	// CloseTimeout bounds closing a /ws connection: sending its error frame
	// and the close handshake (5 s). A connection still stuck after that is
	// cut.
	CloseTimeout time.Duration

	// The admin API (docs/api.md). A route whose dependency is nil answers
	// 503 unavailable. Records keeps projects and agents, Work missions
	// and runs; Events publishes to FLEET; Missions is the MISSIONS work
	// queue; AuditLog reads AUDIT back for GET /api/v1/audit.
	Records  RecordStore
	Work     RecordStore
	Events   EventPublisher
	Missions MissionQueue
	AuditLog AuditReader
	// Budgets is the budget gate missions and runs pass before they start;
	// nil means no budgets: nothing is ever refused.
	Budgets BudgetGate
	// FoldWait bounds how long completing a run that holds a reservation
	// waits for the fold to price the run (5 s).
	FoldWait time.Duration

	// Budgets and costs (web/budgets.go, web/costs.go). BudgetStore serves
	// /api/v1/budgets; Costs serves GET /api/v1/projects/{project}/costs.
	// Nil answers 503 unavailable.
	BudgetStore BudgetStore
	Costs       CostStore

	// Workers is what enrollment does for a worker's data plane: its
	// mission consumers, NATS credentials and pass counts
	// (web/workers.go). The zero value makes none of them.
	Workers WorkersConfig

	// Traces folds OTLP trace exports at POST /v1/traces (web/ingest.go,
	// package ingest); nil answers 503 unavailable.
	Traces TraceIngester

	// Telemetry (web/metrics.go, web/tracing.go). Metrics, when set, is
	// served at GET /metrics (the Prometheus exposition). MeterProvider,
	// when set, records the HTTP server metrics and counts logins and
	// cross-tenant denials. TracerProvider, when set, makes one server
	// span per request (health probes excepted). Nil means none.
	Metrics        http.Handler
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

func (cfg *Config) setDefaults() {
	if cfg.AdminUser == "" {
		cfg.AdminUser = "admin"
	}
	if cfg.AdminPassword == "" {
		cfg.AdminPassword = "admin"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.SubscribeTimeout <= 0 {
		cfg.SubscribeTimeout = 5 * time.Second
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 5 * time.Second
	}
	cfg.setEdgeDefaults()
	cfg.setGuardDefaults()
}

// Server is Observatory's HTTP server: the routes, auth, tenant checks and
// the /ws connections. Serve its Handler with an http.Server; call Shutdown
// to end the /ws connections, which http.Server.Shutdown does not track.
type Server struct {
	cfg     Config
	hub     Hub
	audit   Auditor
	log     *slog.Logger
	signer  *auth.Signer
	users   *auth.Users
	limiter *auth.Limiter
	echo    *echo.Echo
	obs     *observability
	hosts   *hostPolicy // the hosts answered, the origins trusted
	proxies *proxyTrust // whose forwarded headers count
	certs   *certLoader // the TLS certificate, nil without TLS

	// ctx is the parent of every /ws connection's context; cancel cuts them.
	ctx    context.Context
	cancel context.CancelFunc

	// connsMu guards conns, connsPer (the open connections per wsKey)
	// and closing; connsWG counts the connections.
	connsMu  sync.Mutex
	conns    map[*conn]struct{}
	connsPer map[string]int
	closing  bool
	connsWG  sync.WaitGroup

	guard    wsGuard        // the /ws sweeper (web/wsguard.go)
	prepared preparedFrames // the hub's frames as written (web/ws_wire.go)
	writers  *wsWriters     // the shared writers (web/ws_writers.go)
}

// New returns a Server reading frames from hub and publishing audit events
// to audit.
func New(cfg Config, hub Hub, audit Auditor) (*Server, error) {
	if hub == nil || audit == nil {
		return nil, errors.New("web: new: a hub and an auditor are required")
	}
	cfg.setDefaults()
	if err := checkEmbedOrigins(cfg.EmbedOrigins); err != nil {
		return nil, fmt.Errorf("web: new: %w", err)
	}
	hosts, err := newHostPolicy(cfg.PublicURLs, cfg.AllowedOrigins)
	if err != nil {
		return nil, fmt.Errorf("web: new: %w", err)
	}
	certs, err := newCertLoader(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("web: new: %w", err)
	}
	signer, err := newSigner(cfg)
	if err != nil {
		return nil, fmt.Errorf("web: new: %w", err)
	}
	users, err := auth.NewUsers(cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("web: new: %w", err)
	}
	if err := users.Add(cfg.AdminUser, cfg.AdminPassword, auth.RoleAdmin, ""); err != nil {
		return nil, fmt.Errorf("web: new: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		hub:     hub,
		audit:   audit,
		log:     cfg.Logger,
		signer:  signer,
		users:   users,
		limiter: auth.NewLimiter(cfg.LoginMaxFailures, cfg.LoginWindow, cfg.LoginLockout, cfg.LoginMaxLockout),
		conns:   map[*conn]struct{}{},
		hosts:   hosts,
		proxies: newProxyTrust(cfg.TrustedProxies),
		certs:   certs,

		connsPer: map[string]int{},
	}
	if s.obs, err = newObservability(cfg); err != nil {
		return nil, fmt.Errorf("web: new: %w", err)
	}
	if s.obs.metrics != nil {
		s.audit = countingAuditor{Auditor: audit, s: s}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.writers = newWSWriters()
	s.echo = s.routes()
	return s, nil
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(slogWriter{s.log})
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor, e.SchemeExtractor = s.proxies.clientIP, s.proxies.scheme
	e.Use(s.telemetryMiddleware()...)
	e.Use(s.accessLog, s.recoverPanic(), securityHeaders, s.checkHost, s.checkCSRF, s.limitBody)
	if s.cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(s.cfg.Metrics), s.requireMetricsToken)
	}

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/ws", s.serveWS)
	s.hudRoutes(e)

	api := e.Group("/api/v1")
	api.POST("/auth/login", s.login, noStore)
	api.GET("/fleet", s.fleet, noStore, s.requireAuth)
	s.adminRoutes(api)
	s.budgetRoutes(api)
	s.costRoutes(api)
	s.tokenRoutes(api)
	s.workerRoutes(api)
	s.ingestRoutes(e)
	return e
}

// Handler returns the server's http.Handler (the echo instance).
func (s *Server) Handler() http.Handler { return s.echo }

// Shutdown closes every /ws connection with 1001 (going away) and waits for
// them to end, cutting those still open when ctx ends. New connections are
// refused from the start, and /readyz reports 503.
func (s *Server) Shutdown(ctx context.Context) error {
	s.connsMu.Lock()
	s.closing = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.connsMu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() {
		s.connsWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		s.guard.wait()
		return nil
	case <-ctx.Done():
		s.cancel()
		s.guard.wait()
		<-done
		return fmt.Errorf("web: shutdown: %w", ctx.Err())
	}
}

func (s *Server) shuttingDown() bool {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	return s.closing
}

// IssueToken mints an API token of role (auth.RoleAdmin, or
// auth.RoleProject with project) valid for ttl (TokenTTL when ttl <= 0).
func (s *Server) IssueToken(role, project string, ttl time.Duration) (token string, expires time.Time, err error) {
	if ttl <= 0 {
		ttl = s.cfg.TokenTTL
	}
	return s.issue(subjectFor("api", role, project), role, project, auth.KindAPI, ttl)
}

// IssueEmbedToken mints a read-only embed token, the only kind accepted in
// a URL (?embed_token=), and only on GET routes and /ws. ttl defaults to
// DefaultEmbedTokenTTL and may not exceed MaxEmbedTokenTTL.
func (s *Server) IssueEmbedToken(role, project string, ttl time.Duration) (token string, expires time.Time, err error) {
	if ttl <= 0 {
		ttl = DefaultEmbedTokenTTL
	}
	if ttl > MaxEmbedTokenTTL {
		return "", time.Time{}, fmt.Errorf("web: issue embed token: ttl %s exceeds %s", ttl, MaxEmbedTokenTTL)
	}
	return s.issue(subjectFor("embed", role, project), role, project, auth.KindEmbed, ttl)
}

func subjectFor(kind, role, project string) string {
	if role == auth.RoleAdmin {
		return kind + ":admin"
	}
	return kind + ":" + project
}

func (s *Server) issue(subject, role, project, kind string, ttl time.Duration) (string, time.Time, error) {
	tok, _, exp, err := s.issueWithID(subject, role, project, kind, ttl)
	return tok, exp, err
}

// slogWriter forwards echo's own log lines (rare: "response already
// committed") to the server's logger.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("echo", "event", "http.echo", "line", strings.TrimSpace(string(p)))
	return len(p), nil
}
