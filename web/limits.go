package web

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/sagewai/observatory/web/auth"
)

// Defaults of the HTTP server's limits (Config).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultWriteTimeout      = time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxWSConns        = 10000
	DefaultMaxWSConnsPerKey  = 100
	// DefaultLoginMaxFailuresPerAddr is how many failed logins one client
	// address may have within LoginWindow, whatever the user names, before
	// it is locked: more than one user's (LoginMaxFailures), as several
	// people may share an address behind a NAT.
	DefaultLoginMaxFailuresPerAddr = 20
)

func (cfg *Config) setEdgeDefaults() {
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxWSConns <= 0 {
		cfg.MaxWSConns = DefaultMaxWSConns
	}
	if cfg.MaxWSConnsPerCredential <= 0 {
		cfg.MaxWSConnsPerCredential = DefaultMaxWSConnsPerKey
	}
	if cfg.LoginMaxFailures <= 0 {
		cfg.LoginMaxFailures = auth.DefaultMaxFailures
	}
	if cfg.LoginMaxFailuresPerAddr <= 0 {
		cfg.LoginMaxFailuresPerAddr = DefaultLoginMaxFailuresPerAddr
	}
}

// HTTPServer returns an http.Server for the server's handler with its
// limits: ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout and
// MaxHeaderBytes, HTTP/1.1 only (/ws needs a connection it can take
// over). With TLSCertFile and TLSKeyFile, TLSConfig is set (TLS 1.2 at
// least, the certificate read again when its files change): serve it
// with ServeTLS(ln, "", ""). The deadlines the timeouts set do not reach
// /ws connections: taking a connection over (Hijack) clears them, and a
// socket then lives as long as its pings are answered.
func (s *Server) HTTPServer() *http.Server {
	hs := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
	}
	hs.Protocols.SetHTTP1(true)
	if s.certs != nil {
		hs.TLSConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.certs.get,
			NextProtos:     []string{"http/1.1"},
		}
	}
	return hs
}

// wsKey is what a /ws connection counts against for the per-credential
// cap: its token's id, or for a token without one (signed before tokens
// had ids) a digest of the token. A connection without a valid
// credential counts against its client address: it is closed at its
// first subscribe frame, but holds a socket until then.
func (s *Server) wsKey(r *http.Request, cred credential) string {
	if cl, err := s.authenticate(cred); err == nil {
		if cl.ID != "" {
			return "jti:" + cl.ID
		}
		sum := sha256.Sum256([]byte(cred.token))
		return "token:" + hex.EncodeToString(sum[:16])
	}
	return "addr:" + addrKey(s.proxies.clientIP(r))
}

// addrKey is the key of a client address for limits: an IPv4 address,
// or an IPv6 address's /64, which one client usually holds whole.
func addrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// loginLimits are the keys a password login counts against: the user at
// that client address, and the client address. There is no key of the
// user alone, so that nobody can lock a user out by failing logins in
// its name from elsewhere; guessing from many addresses is slowed down
// per address, and by bcrypt.
func (s *Server) loginLimits(username, addr string) []auth.Limit {
	a := addrKey(addr)
	return []auth.Limit{
		{Key: "user\x00" + username + "\x00" + a, Max: s.cfg.LoginMaxFailures},
		{Key: "addr\x00" + a, Max: s.cfg.LoginMaxFailuresPerAddr},
	}
}
