package web

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/protocol"
)

// queueSize is how many frames a connection holds for its writer.
const queueSize = 16

// readLimit bounds a client message; DecodeSubscribe refuses anything over
// protocol.MaxClientFrame with 4400, the library anything over readLimit
// with 1009.
const readLimit = 2 * protocol.MaxClientFrame

// serveWS is GET /ws: DESIGN §5. The Origin is checked before the upgrade;
// credentials are taken from the upgrade request and checked against each
// subscribe frame.
func (s *Server) serveWS(c echo.Context) error {
	r := c.Request()
	if !isUpgrade(r) {
		return errorf(CodeBadRequest, "GET /ws needs a WebSocket upgrade")
	}
	if !s.hosts.allowWSOrigin(r) {
		return errorf(CodeForbidden, "origin not allowed")
	}
	cred := credentialOf(r)
	cn, err := s.openConn(s.wsKey(r, cred))
	if err != nil {
		return err
	}
	// The tap keeps the hijacked socket for the write path and gives the
	// library small buffers (web/ws_wire.go).
	tap := &hijackTap{ResponseWriter: c.Response(), ctrl: &cn.ctrl}
	ws, err := websocket.Accept(tap, r, &websocket.AcceptOptions{
		// The server's preference first: a client offering both
		// versions speaks observatory.v2.
		Subprotocols: protocol.Subprotocols,
		// The Origin was checked above, against the server's own origins
		// and AllowedOrigins; the library's check (Origin == Host) is the
		// one a DNS-rebinding page passes.
		InsecureSkipVerify: true,
		// permessage-deflate, each message compressed alone, so that a
		// frame compressed once serves every connection of its scope
		// (web/ws_wire.go). Browsers offer it.
		CompressionMode: websocket.CompressionNoContextTakeover,
		// The guard's pings are queued frames (web/wsguard.go); their
		// pongs are reported here.
		OnPongReceived: func(context.Context, []byte) { cn.guard.pong() },
	})
	if err != nil {
		s.closeConn(cn)
		return nil // Accept has answered the handshake
	}
	cn.deflate = strings.Contains(tap.Header().Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	// The connection lives on a goroutine of its own with a small stack,
	// and the handler returns: an idle subscriber then costs one goroutine
	// blocked in a read, not the whole HTTP handler stack as well.
	start := time.Now()
	go func() {
		defer s.closeConn(cn)
		cn.run(ws, tap.conn, tap.locked, cred)
		s.log.Info("websocket closed", "event", "ws.closed", "route", "/ws",
			"duration_ms", float64(time.Since(start).Microseconds())/1000, "sagewai.project_id", projectOrGlobal(cn.scope))
	}()
	return nil
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// openConn registers a connection counted against key (wsKey), or
// refuses it with 429 when the server or key is at its cap.
func (s *Server) openConn(key string) (*conn, error) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	switch {
	case s.closing:
		return nil, errorf(CodeUnavailable, "the server is shutting down")
	case len(s.conns) >= s.cfg.MaxWSConns:
		return nil, errorf(CodeTooManyConns, "the server holds its most /ws connections (%d); retry later", s.cfg.MaxWSConns)
	case s.connsPer[key] >= s.cfg.MaxWSConnsPerCredential:
		return nil, errorf(CodeTooManyConns, "this credential holds its most /ws connections (%d); close one first", s.cfg.MaxWSConnsPerCredential)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{s: s, ctx: ctx, cancel: cancel, key: key, shard: s.writers.shard()}
	s.conns[c] = struct{}{}
	s.connsPer[key]++
	s.connsWG.Add(1)
	s.guard.startLocked(s)
	return c, nil
}

func (s *Server) closeConn(c *conn) {
	c.cancel()
	s.connsMu.Lock()
	delete(s.conns, c)
	if s.connsPer[c.key]--; s.connsPer[c.key] <= 0 {
		delete(s.connsPer, c.key)
	}
	s.connsMu.Unlock()
	s.connsWG.Done()
}

// conn is one /ws connection and the hub's Subscriber for it. The handler
// goroutine reads client frames; one writer at a time (a shared one, or a
// goroutine of the connection's own: web/ws_writers.go) writes the queued
// frames in order, straight to the socket (web/ws_wire.go). The hub's Send,
// Reset and Close only touch the queue under mu and never block.
type conn struct {
	s  *Server
	ws *websocket.Conn
	nc net.Conn // the hijacked socket under ws, for data frames
	// rc writes to nc without blocking (web/ws_writers.go); nil for TLS,
	// whose connections have a writer goroutine each.
	rc    syscall.RawConn
	shard *wsShard // the shared writer c waits for
	// ctrl is held while coder/websocket writes a control frame (which
	// may block on a full socket); a shared writer never waits for it.
	ctrl   sync.Mutex
	ctx    context.Context // ends the connection; cancelling it cuts the socket
	cancel context.CancelFunc
	key    string // what the connection counts against (wsKey)
	// deflate: the client negotiated permessage-deflate, and gets the
	// compressed form of frames (set before the connection runs).
	deflate bool
	guard   connGuard // expiry, revocation and pings (web/wsguard.go)

	// Owned by the handler goroutine.
	subscribed bool
	scope      string

	// mu guards the queue (of wire frames, web/ws_wire.go), the close
	// request, its timer and the writer state.
	mu       sync.Mutex
	queue    [queueSize][]byte
	head, n  int
	closing  *closeRequest
	cutTimer *time.Timer
	ping     bool           // a ping is due, ahead of the queue (sendPing)
	writing  bool           // a writer goroutine is draining the queue
	dead     bool           // the connection has ended: start no writer
	writers  sync.WaitGroup // the writer, if one is running
}

var _ protocol.Subscriber = (*conn)(nil)

// closeRequest is how the writer ends the connection: an optional error
// frame, then a close with status.
type closeRequest struct {
	frame  []byte
	status websocket.StatusCode
	reason string
}

// Send queues frame without blocking. It reports false, queueing nothing,
// when the queue is full. Once the connection is closing, frames are
// dropped (and Send reports true: there is nothing for the hub to do).
func (c *conn) Send(frame []byte) bool {
	wire := c.s.prepared.wire(frame, c.deflate)
	c.mu.Lock()
	if c.closing != nil {
		c.mu.Unlock()
		return true
	}
	if c.n == queueSize {
		c.mu.Unlock()
		return false
	}
	c.queue[(c.head+c.n)%queueSize] = wire
	c.n++
	c.kickLocked()
	c.mu.Unlock()
	return true
}

// sendPing has the writer send a ping (pingFrame) before the frames it
// holds, unless the connection is closing; it reports whether it will. The
// ping is kept apart from the queue, which a fresh snapshot or a scope
// switch empties, so that it is never dropped.
func (c *conn) sendPing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing != nil || c.dead {
		return false
	}
	c.ping = true
	c.kickLocked()
	return true
}

// Reset drops every queued frame and queues frame (a fresh snapshot).
func (c *conn) Reset(frame []byte) {
	wire := c.s.prepared.wire(frame, c.deflate)
	c.mu.Lock()
	if c.closing != nil {
		c.mu.Unlock()
		return
	}
	c.dropLocked()
	c.queue[c.head] = wire
	c.n = 1
	c.kickLocked()
	c.mu.Unlock()
}

// Close makes the writer drop what is queued, send an error frame of code
// and close with protocol.CloseCode(code).
func (c *conn) Close(code, message string) {
	c.closeWith(&closeRequest{
		frame:  protocol.EncodeError(code, message),
		status: websocket.StatusCode(protocol.CloseCode(code)),
		reason: code,
	})
}

// shutdown closes the connection with 1001 (going away), for Server.Shutdown.
func (c *conn) shutdown() {
	c.closeWith(&closeRequest{status: websocket.StatusGoingAway, reason: "server shutting down"})
}

// closeWith records the first close request and wakes the writer. If the
// writer is stuck in a write, or the peer never answers the close, the
// connection is cut after CloseTimeout.
func (c *conn) closeWith(req *closeRequest) {
	c.mu.Lock()
	if c.closing != nil {
		c.mu.Unlock()
		return
	}
	c.closing = req
	c.dropLocked()
	c.cutTimer = time.AfterFunc(c.s.cfg.CloseTimeout, c.cancel)
	c.kickLocked()
	c.mu.Unlock()
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing != nil
}

// waitClose waits until the writer has written the close, or the
// connection was cut.
func (c *conn) waitClose() {
	<-c.ctx.Done()
}

// drop empties the queue (when switching scopes).
func (c *conn) drop() {
	c.mu.Lock()
	c.dropLocked()
	c.mu.Unlock()
}

func (c *conn) dropLocked() {
	for ; c.n > 0; c.n-- {
		c.queue[c.head] = nil
		c.head = (c.head + 1) % queueSize
	}
	c.head = 0
}

// kickLocked gets a writer for the queue if there is something to write
// and none has it: the connection's shared writer (web/ws_writers.go), or
// for TLS a goroutine of its own. Writers exit when the queue is empty, so
// an idle subscriber holds none; there is never more than one at a time,
// so frames go out in order.
func (c *conn) kickLocked() {
	if c.writing || c.dead || c.ws == nil {
		return
	}
	c.writing = true
	c.writers.Add(1)
	if c.rc == nil {
		go c.drain()
		return
	}
	c.shard.schedule(c)
}

// next moves queued frames, oldest first, into b until it is full or the
// queue is empty or, once the queue is empty, returns the close request if
// there is one. With nothing to do it marks the writer stopped, under the
// same lock as Send checks it, and reports false.
func (c *conn) next(b *wsBatch) (*closeRequest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ping && c.closing == nil {
		b.add(pingFrame) // the batch is empty: it takes any frame
		c.ping = false
	}
	if c.n == 0 {
		if b.n > 0 {
			return nil, true // the ping alone
		}
		if c.closing == nil || c.dead {
			c.writing = false
			return nil, false
		}
		c.dead = true // the close is written once
		return c.closing, true
	}
	for c.n > 0 && b.add(c.queue[c.head]) {
		c.queue[c.head] = nil
		c.head = (c.head + 1) % queueSize
		c.n--
	}
	return nil, true
}

// drain writes queued frames in order until the queue is empty: all the
// frames queued when it looks, up to wsBatchSize bytes, with one write.
// Writes take no per-frame context (a context per write costs allocations
// on the hot path); a stuck write is aborted by cancelling c.ctx, which
// closes the socket.
func (c *conn) drain() {
	defer c.writers.Done()
	b := wsBatches.Get().(*wsBatch)
	defer wsBatches.Put(b)
	for {
		req, ok := c.next(b)
		if !ok {
			return
		}
		if req != nil {
			c.close(req)
			return
		}
		err := b.writeTo(c.nc)
		b.reset()
		if err != nil {
			c.cancel()
			c.stopWriting()
			return
		}
	}
}

// drainAfter writes rest (what a non-blocking write left of a batch),
// then drains the queue.
func (c *conn) drainAfter(rest []byte) {
	if _, err := c.nc.Write(rest); err != nil {
		c.cancel()
		c.stopWriting()
		c.writers.Done()
		return
	}
	c.drain()
}

// finish writes the close request, on the writer's own goroutine: the
// close handshake waits for the peer.
func (c *conn) finish(req *closeRequest) {
	defer c.writers.Done()
	c.close(req)
}

// close writes req's error frame, if any, and the close frame, and ends
// the connection.
func (c *conn) close(req *closeRequest) {
	if req.frame != nil {
		_, _ = c.nc.Write(plainFrame(req.frame))
	}
	_ = c.ws.Close(req.status, req.reason)
	c.cancel()
	c.stopWriting()
}

func (c *conn) stopWriting() {
	c.mu.Lock()
	c.writing, c.dead = false, true
	c.mu.Unlock()
}

// run serves the connection: it reads subscribe frames until the
// connection ends, then unsubscribes and waits for the writer.
func (c *conn) run(ws *websocket.Conn, nc net.Conn, ctrlLocked bool, cred credential) {
	var rc syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok && ctrlLocked {
		rc, _ = sc.SyscallConn() // nil on error: a goroutine writes
	}
	c.mu.Lock()
	c.ws, c.nc, c.rc = ws, nc, rc
	c.kickLocked() // anything queued before the socket was set
	c.mu.Unlock()
	stop := context.AfterFunc(c.ctx, func() { ws.CloseNow() })
	defer stop()
	ws.SetReadLimit(readLimit)
	defer func() {
		if c.subscribed {
			c.s.hub.Unsubscribe(c)
		}
		if !c.isClosing() {
			c.cancel() // the peer is gone: stop the writer now
		} else {
			c.waitClose()
		}
		c.mu.Lock()
		c.dead = true
		if c.cutTimer != nil {
			c.cutTimer.Stop()
		}
		c.mu.Unlock()
		c.writers.Wait()
		c.guard.stop()
	}()

	if !protocol.Known(ws.Subprotocol()) {
		c.Close(protocol.CodeBadRequest, "the "+protocol.Subprotocol+" or "+protocol.SubprotocolV2+" subprotocol is required")
		return
	}
	d := c.s.cfg.SubscribeTimeout
	first := time.AfterFunc(d, func() {
		c.Close(protocol.CodeBadRequest, fmt.Sprintf("no subscribe frame within %s", d))
	})
	defer first.Stop()
	for {
		typ, b, err := ws.Read(c.ctx)
		if err != nil || c.isClosing() {
			return
		}
		first.Stop()
		// The frame is handled on a goroutine of its own: checking a
		// credential and subscribing run deep call chains, and the stack
		// they grow would stay with this goroutine, which spends the
		// connection's life blocked in Read (4 KiB per idle subscriber).
		done := make(chan bool, 1)
		go func() { done <- c.handle(typ, b, ws.Subprotocol(), cred) }()
		if !<-done {
			return
		}
	}
}

// handle acts on a client frame; false ends the connection.
func (c *conn) handle(typ websocket.MessageType, b []byte, subprotocol string, cred credential) bool {
	if typ != websocket.MessageText {
		c.Close(protocol.CodeBadRequest, "frames must be JSON text")
		return false
	}
	req, err := protocol.DecodeSubscribe(b)
	if err != nil {
		c.Close(protocol.CodeBadRequest, err.Error())
		return false
	}
	req.Protocol = subprotocol
	return c.subscribe(req, cred)
}

// subscribe checks the credential against req (again on every subscribe
// frame: a scope switch gets the same checks as the first) and moves the
// subscription to req.Scope.
func (c *conn) subscribe(req protocol.Subscribe, cred credential) bool {
	keys := c.s.guard.keys.Load()
	cl, until, err := c.s.authenticateUntil(cred)
	if err != nil {
		c.Close(protocol.CodeUnauthorized, asError(err).Message)
		return false
	}
	scope, err := c.s.authorizeScope(c.ctx, cl, req.Scope, "/ws")
	if err != nil {
		e := asError(err)
		code := protocol.CodeForbidden
		if e.Code == CodeBadRequest {
			code = protocol.CodeBadRequest
		}
		c.Close(code, e.Message)
		return false
	}
	c.guard.setCredential(cred.token, cl, until, keys)
	if c.subscribed {
		c.s.hub.Unsubscribe(c)
		c.subscribed = false
		c.drop() // nothing of the old scope may follow the new snapshot
	}
	c.scope = scope
	if err := c.s.hub.Subscribe(c.ctx, c, req); err != nil {
		if c.ctx.Err() == nil {
			c.s.log.WarnContext(c.ctx, "hub subscribe failed", "event", "ws.subscribe_failed", "sagewai.project_id", projectOrGlobal(scope), "error", err.Error())
		}
		c.closeWith(&closeRequest{status: websocket.StatusTryAgainLater, reason: "hub unavailable"})
		return false
	}
	c.subscribed = true
	return true
}
