package web

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/web/auth"
)

// Defaults of the /ws keep-alive and credential checks (DESIGN §11.2: a
// ping at least every 30 s, a peer whose pong does not come within 30 s
// is closed). A ping is sent on the first check at or after PingInterval,
// so the interval is below 30 s by more than a SweepInterval.
const (
	DefaultPingInterval  = 25 * time.Second
	DefaultPongTimeout   = 30 * time.Second
	DefaultSweepInterval = 250 * time.Millisecond
)

func (cfg *Config) setGuardDefaults() {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = DefaultPongTimeout
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
}

// wsGuard is the server's sweeper of /ws connections: one goroutine,
// running while there are connections, that closes those whose
// credential expired or was revoked and pings those that are due. It
// costs one pass over the connections per SweepInterval, not a timer or
// a goroutine per connection.
type wsGuard struct {
	// running is guarded by Server.connsMu: a sweeper is started with the
	// first connection and ends when it finds none.
	running bool
	wg      sync.WaitGroup
	// keys counts the ring changes (SetKeys): a connection whose token
	// was verified with an older ring is verified again.
	keys atomic.Uint64
}

// startLocked starts the sweeper if none runs. The caller holds connsMu.
func (g *wsGuard) startLocked(s *Server) {
	if g.running {
		return
	}
	g.running = true
	g.wg.Add(1)
	go s.sweep()
}

// wait waits for the sweeper to end (after the server's context ended, or
// its last connection closed).
func (g *wsGuard) wait() { g.wg.Wait() }

// sweep checks every connection each SweepInterval until there are none
// or the server's context ends.
func (s *Server) sweep() {
	defer s.guard.wg.Done()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	var conns []*conn
	for {
		select {
		case <-s.ctx.Done():
			s.connsMu.Lock()
			s.guard.running = false
			s.connsMu.Unlock()
			return
		case <-t.C:
		}
		s.connsMu.Lock()
		if len(s.conns) == 0 {
			s.guard.running = false
			s.connsMu.Unlock()
			return
		}
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.connsMu.Unlock()
		// The credential's expiry is a time decision (the server's clock);
		// the ping interval is a duration (the monotonic clock).
		now, mono := s.cfg.Now(), time.Now()
		for i, c := range conns {
			c.check(now, mono)
			conns[i] = nil
		}
		conns = conns[:0]
	}
}

// connGuard is a connection's state for the sweeper.
type connGuard struct {
	// mu guards the fields below.
	mu sync.Mutex
	// The credential the connection streams under, valid when has: its
	// token and claims, until when it verifies (on the server's clock)
	// and the ring change it was verified at.
	has     bool
	token   string
	claims  auth.Claims
	until   time.Time
	keys    uint64
	pingAt  time.Time // monotonic: when the next ping is due; zero: not set yet
	pinging bool      // a ping waits for its pong
	pongBy  time.Time // monotonic: when a ping that got no pong cuts the connection
	stopped bool      // the connection ended: start no ping
}

// setCredential records the credential the connection now streams
// under, verified at ring change keys.
func (g *connGuard) setCredential(token string, cl auth.Claims, until time.Time, keys uint64) {
	g.mu.Lock()
	g.has, g.token, g.claims, g.until, g.keys = true, token, cl, until, keys
	g.mu.Unlock()
}

// stop ends the guard's checks of the connection.
func (g *connGuard) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
}

// pong records that the peer answered (coder/websocket calls it from the
// connection's Read).
func (g *connGuard) pong() {
	g.mu.Lock()
	g.pinging = false
	g.mu.Unlock()
}

// reverify verifies the connection's token again after a ring change.
func (c *conn) reverify() {
	g := &c.guard
	keys := c.s.guard.keys.Load()
	g.mu.Lock()
	if !g.has || g.keys == keys {
		g.mu.Unlock()
		return
	}
	token := g.token
	g.mu.Unlock()
	_, until, err := c.s.verifyUntil(token)
	g.mu.Lock()
	g.keys = keys
	if err != nil {
		g.until = time.Time{} // check closes it
	} else {
		g.until = until
	}
	g.mu.Unlock()
}

// check closes the connection with 4401 if its credential expired at now
// (or its signing key retired, or left the ring) or was revoked, and
// starts a ping if one is due at mono.
func (c *conn) check(now, mono time.Time) {
	c.reverify()
	g := &c.guard
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return
	}
	if g.has {
		reason := ""
		switch {
		case !now.Before(g.claims.ExpiresAt):
			reason = "token expired"
		case !now.Before(g.until):
			reason = "token no longer valid: its signing key was retired"
		case c.s.revoked(g.claims.ID):
			reason = "token revoked"
		}
		if reason != "" {
			g.has = false
			project := g.claims.Project
			g.mu.Unlock()
			c.s.log.Info("websocket credential ended", "event", "ws.credential_ended", "route", "/ws",
				"reason", reason, "sagewai.project_id", projectOrGlobal(project))
			c.Close(protocol.CodeUnauthorized, reason)
			return
		}
	}
	switch {
	case g.pingAt.IsZero():
		g.pingAt = mono.Add(c.s.cfg.PingInterval)
	case g.pinging && !mono.Before(g.pongBy):
		// A peer that does not answer a ping cannot take a close
		// handshake either: the connection is cut.
		g.stopped = true
		project := g.claims.Project
		g.mu.Unlock()
		c.s.log.Info("websocket peer gone", "event", "ws.pong_timeout", "route", "/ws",
			"timeout_ms", c.s.cfg.PongTimeout.Milliseconds(), "sagewai.project_id", projectOrGlobal(project))
		c.cancel()
		return
	case !g.pinging && !mono.Before(g.pingAt):
		// The ping is written by the connection's writer like a frame:
		// no goroutine waits for the pong, which the connection's reader
		// reports (pong).
		if c.sendPing() {
			g.pinging = true
			g.pingAt = mono.Add(c.s.cfg.PingInterval)
			g.pongBy = mono.Add(c.s.cfg.PongTimeout)
		}
	}
	g.mu.Unlock()
}

// pingFrame is a ping with no payload (RFC 6455 §5.5.2), as written.
var pingFrame = []byte{0x80 | 0x9, 0}

func (c *conn) guardProject() string {
	c.guard.mu.Lock()
	defer c.guard.mu.Unlock()
	return c.guard.claims.Project
}
