// Package auth holds Observatory's credentials: stateless signed tokens
// (Signer, Claims), the users who may log in with bcrypt-hashed passwords
// (Users), and the login slow-down that makes password guessing expensive
// (Limiter). It does no I/O and knows nothing of HTTP; package web decides
// where tokens travel (header, cookie, query), what a role may see and
// which token ids are revoked.
//
// A token is kid "." base64url(claims JSON) "." base64url(HMAC-SHA256 of
// the two), where kid names the key of the Signer's ring (package
// keyring) that signed it and the HMAC key is derived from that key. The
// claims carry a token id (jti) that a revocation names. A token verifies
// with the key its kid names while that key is in the ring and not
// retired; an unknown kid is refused. Tokens of releases before key ids
// (payload "." signature, no jti) verify with the ring's legacy key
// alone, until it retires. Tokens are not stored anywhere: every replica
// holding the same ring accepts them. Every kind of token has a lifetime
// cap (LifetimeCap), checked when it is signed and when it verifies.
// Enrollment keys are signed the same way (EnrollPrefix, kid, payload,
// signature) with a MAC key of their own.
//
// auth imports fleet (for project ids), keyring, the standard library
// and golang.org/x/crypto/bcrypt.
//
// # Concurrency
//
// A Signer is safe for concurrent use; SetRing swaps its ring atomically
// (a token is checked against one ring, the old or the new). A Users
// value is immutable after construction and safe for concurrent use. A
// Limiter is safe for concurrent use; one mutex guards its records, held
// only for map work, never across a password check.
package auth
