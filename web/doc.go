// Package web is Observatory's HTTP edge: the echo server with its routes,
// authentication (tokens, the session cookie, embed tokens, logins with a
// slow-down), tenant checks, the JSON error shape and the one table mapping
// error codes to statuses, the structured access log, health probes, and
// /ws, which carries the hub's frames to browsers and other subscribers
// (DESIGN §5). Routes of this stage: POST /api/v1/auth/login,
// GET /api/v1/fleet, GET /ws, GET /healthz, GET /readyz.
//
// web imports fleet, protocol, web/auth, echo and coder/websocket. It never
// imports stream: it declares what it needs, Hub (the only source of
// frames) and Auditor (the AUDIT stream), and cmd wires the real ones in.
// Credentials live in the subpackage web/auth, which knows nothing of HTTP.
//
// # Concurrency
//
// Request handlers run on net/http's goroutines and share only immutable
// configuration, the token Signer, the Users and the login Limiter (which
// locks its own state).
//
// Each /ws connection has two goroutines, both owned by its handler: the
// handler goroutine itself reads client frames and talks to the hub
// (Subscribe, Unsubscribe), and one writer goroutine writes frames in
// order. Between them and the hub sits the connection's queue of at most
// 32 shared, never-modified frames, guarded by one mutex: the hub's Send,
// Reset and Close only take that mutex and never block. A full queue makes
// Send return false; the hub then Resets (a fresh snapshot) or Closes
// ("slow", 4408). Every close (an error frame then a close code) is done by
// the writer. Each connection has one context: cancelling it (the peer
// went away, a close that outlasts CloseTimeout, Server.Shutdown) closes the
// socket, which aborts a stuck write; no context is made per frame. The
// handler unsubscribes from the hub and waits for the writer before it
// returns, and Server.Shutdown waits for every handler.
package web
