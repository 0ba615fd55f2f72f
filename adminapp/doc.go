// Package adminapp is an example admin app that frames Observatory's HUD:
// the smallest thing a product team would build to show each of its users
// the live view of their own project inside its own pages (issue 16,
// docs/embedding.md).
//
// It owns its own sign-in (a fixed list of demo users from Config, each
// bound to one Observatory project, kept in an HMAC-signed cookie), and a
// page that frames <observatory>/hud?embed=1&project=P&embed_token=T for
// the signed-in user's project. The embed token is minted on the server
// side, through POST /api/v1/projects/{p}/embed-tokens, with the
// Observatory admin login the app holds (Observatory has no narrower role
// that may mint embed tokens); the browser never sees that credential.
// The page rolls the token over before it expires, and mints a new one at
// once when the framed HUD reports (window.postMessage) that its token was
// refused. Tokens are never logged; the log names their ids.
//
// The package imports the standard library only. It is an example: users
// and their passwords come from configuration, sessions are signed with a
// key that is random per process unless one is given, and there is no
// login slow-down.
//
// # Concurrency
//
// An App is an http.Handler safe for concurrent use. Its one piece of
// mutable state is the Observatory session token, guarded by a mutex and
// renewed by whichever request finds it refused; it starts no goroutine.
package adminapp
