// Package auth holds Observatory's credentials: stateless signed tokens
// (Signer, Claims), the users who may log in with bcrypt-hashed passwords
// (Users), and the login slow-down that makes password guessing expensive
// (Limiter). It does no I/O and knows nothing of HTTP; package web decides
// where tokens travel (header, cookie, query) and what a role may see.
//
// A token is base64url(claims JSON) "." base64url(HMAC-SHA256(payload)),
// where the HMAC key is derived from the server's signing key. Tokens are
// not stored anywhere: every replica holding the same signing key accepts
// them, and they end only by expiring.
//
// auth imports fleet (for project ids), the standard library and
// golang.org/x/crypto/bcrypt.
//
// # Concurrency
//
// A Signer and a Users value are immutable after construction and safe for
// concurrent use. A Limiter is safe for concurrent use; one mutex guards its
// records, held only for map work, never across a password check.
package auth
