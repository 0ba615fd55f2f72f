// Package rig is the real Observatory pipeline, small, on which the
// examples run (`observatory cost`, `observatory budget` and `observatory
// fleet`, packages costreport, budgettour and fleetload): NATS (embedded in
// a temporary directory in operator mode, as serve runs its own, or an
// existing one), the FLEET and AUDIT streams, a hub folding FLEET, the
// budget ledger and the cost rollups (Pipeline), and on demand the real
// HTTP server wired to them as `observatory serve` wires it, on a loopback
// port with an admin password made for one run (Server). On the embedded
// NATS the server's enrollment gives workers their own NATS credentials,
// so the examples' workers run on what enrollment gives them.
//
// It also holds the draining of a NATS connection (Drain), which
// `observatory serve` shares. The server's token signing key is made for
// the run and kept in memory: signing keys are never stored in NATS.
//
// The package imports the project's stream, budget, web, fleet, natsauth
// and worker packages and the live package's API client; the example
// packages and the command import it, nothing else does.
//
// # Time
//
// Config.Now (default time.Now) stamps the events a Pipeline publishes and
// is the web server's and the ledger's clock. The fold, the ledger's
// periods and the cost rollups read the stream's stored time, which the
// NATS server stamps with its wall clock: Now must agree with it.
//
// # Concurrency
//
// Start runs the hub and the ledger in goroutines that Stop ends and waits
// for; StartServer serves HTTP in a goroutine that Server.Stop ends. The
// pipeline's parts are safe for concurrent use; Server's Login is not
// (call it before sharing the Server), its requests are.
package rig
