// Package lbtest runs a real load balancer for tests: Debian's nginx (the
// binary `make deps` installs with apt) in front of several replicas of
// serve, for HTTP and /ws, with the configuration docs/deploy.md shows
// (Snippet renders both). A test starts it on a free loopback port with
// its own prefix, configuration, logs, pid and temporary files in a
// temporary directory, never as a daemon and never touching the system's
// nginx, and it stops when the test ends.
//
// The package owns the nginx process and its directory; the replicas
// behind it are the test's. It imports only the standard library.
//
// # Concurrency
//
// A Balancer owns one goroutine that waits for nginx to exit; Stop (or
// the test's cleanup) ends nginx and waits for it. A Balancer's methods
// are safe to call from any goroutine.
package lbtest
