// Package web is Observatory's HTTP edge: the echo server with its routes,
// authentication (tokens, the session cookie, embed tokens, logins with a
// slow-down), tenant checks, the JSON error shape and the one table mapping
// error codes to statuses, the structured access log, health probes, and
// /ws, which carries the hub's frames to browsers and other subscribers
// (DESIGN §5), the HUD pages (/hud, /login, /static), the admin API under
// /api/v1 (projects, agents, missions, runs, tokens, audit, budgets, costs;
// docs/api.md), and the HTTP metrics and server spans (GET /metrics).
//
// Every request first passes the edge checks (DESIGN §11.2): the Host must
// be a public URL's or, on a loopback connection, a loopback name
// (hosts.go, 421 otherwise); cookie-authenticated writes must come from
// the server's own pages as JSON (csrf.go, 403 csrf); forwarded headers
// count only from trusted proxies (proxies.go). HTTPServer gives the
// http.Server with the timeouts, the header limit and TLS (limits.go,
// tls.go); /ws sockets are capped per credential and in all.
//
// Tokens are verified with a key ring (Config.Keys, replaced by SetKeys
// when its file changes: keys.go) and refused once revoked
// (Config.Revocations, shared by the replicas; DELETE /api/v1/tokens/{id}
// and /logout: revoke.go). GET /metrics wants an admin or a metrics token
// (metrics_auth.go). A /ws stream ends with 4401 when its credential
// expires, is revoked or its key retires, and a peer that stops answering
// pings is cut (wsguard.go).
//
// web imports fleet, protocol, hud, static, web/auth, echo, coder/websocket
// and the OTel API. It never imports stream: it declares what it needs (Hub,
// the only source of frames; Auditor; the registry, mission queue, audit
// log, budget gate and cost stores of the admin API) and cmd wires the real
// ones in; a missing one turns its routes into 503. Credentials live in the
// subpackage web/auth, which knows nothing of HTTP.
//
// # Concurrency
//
// Request handlers run on net/http's goroutines and share only immutable
// configuration, the token Signer, the Users and the login Limiter (which
// locks its own state).
//
// Each /ws connection runs on a goroutine of its own, started by the
// upgrade handler (which then returns): it reads client frames, each
// handled on a short-lived goroutine so that the reading one keeps a small
// stack, and talks to the hub (Subscribe, Unsubscribe). Frames are written
// by one writer at a time, so they go out in order: one of GOMAXPROCS
// shared writers, which writes a connection's whole queue (up to 64 KiB)
// with one non-blocking write straight to the hijacked socket
// (ws_writers.go), or, for a full socket, a close or TLS, a goroutine of
// the connection's own that may block; writers exist only while there is
// something to write. Each hub frame's wire form (header, and the
// permessage-deflate payload for clients that negotiated it) is built once
// and shared by every connection (ws_wire.go). coder/websocket keeps the
// handshake, reads and the close; its control-frame writes hold a
// per-connection mutex that shared writers only TryLock, and both sides'
// writes are whole net.Conn writes, so they never interleave inside a
// frame. Between them and the hub sits the connection's queue of at most
// 16 shared, never-modified frames, guarded by one mutex: the hub's Send,
// Reset and Close only take that mutex and never block. A full queue makes
// Send return false; the hub then Resets (a fresh snapshot) or Closes
// ("slow", 4408). Every close (an error frame then a close code) is done by
// a writer goroutine of the connection's own. Each connection has one
// context: cancelling it (the peer went away, a close that outlasts
// CloseTimeout, a late pong, Server.Shutdown) closes the socket, which
// aborts a stuck write; no context is made per frame. The connection's
// goroutine unsubscribes from the hub and waits for its writer before it
// ends, and Server.Shutdown waits for every connection.
//
// One sweeper goroutine per Server runs while there are /ws connections
// (started by the first, ending when it finds none or the server's context
// ends; Shutdown waits for it): every SweepInterval it closes the
// connections whose credential ended, has the connections' writers send
// the pings that are due (ahead of their queues, which a snapshot may
// empty), and cuts the connections whose pong is late (pongs are reported
// by coder/websocket's OnPongReceived).
package web
