// Package natsauth secures Observatory's NATS the way multi-tenant NATS
// deployments are secured (DESIGN §11.1): an operator, accounts and users,
// each a JWT signed with an nkey.
//
// The embedded server runs in operator mode (Authority.Configure): it
// trusts one operator, whose keys, with the system account's and the
// application account's, live as nkey seeds in a directory under
// --data-dir with mode 0600 (Embedded), and accepts only users whose JWT
// that account signed. Nothing connects anonymously. serve mints its own
// user; a worker gets, at enrollment, credentials (Creds: the text of a
// standard .creds file) that expire and allow only what User lists, plus
// its own inbox: typically publishing its projects' fleet subjects and
// consuming its projects' mission consumers (PullConsumer). For a NATS
// someone else operates, serve is given an account signing key (External)
// and mints the same users in that account.
//
// The same credentials authenticate a worker to Observatory's HTTP API
// where it needs more than NATS gives it (its pass counts): it sends its
// user JWT and a Proof, a signature with its seed of the one request
// (RequestMessage), which Authority.Check verifies against the JWT's key,
// issuer and expiry. The JWT alone is no credential: NATS sees it on every
// connect.
//
// natsauth imports nats-server (for the server's options), nats-io/jwt and
// nkeys; it knows no Observatory subject: callers say what a user may do.
//
// # Concurrency
//
// An Authority is immutable once made; its methods are safe for
// concurrent use.
package natsauth
