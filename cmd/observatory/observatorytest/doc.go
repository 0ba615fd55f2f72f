// Package observatorytest runs the real observatory binary for tests of
// other packages (the end-to-end pipeline test, the HUD's demo test): Build
// compiles ./cmd/observatory once per test binary, Start runs it with a
// command line, waits for its banner and /readyz, and stops it with SIGINT
// when the test ends, failing the test if it does not exit cleanly.
//
// It imports only the standard library and runs the go tool and the binary.
//
// # Concurrency
//
// A Process owns one goroutine that waits for the child to exit; Stop (or
// the test's cleanup) waits for it. Output buffers are safe to read while
// the child writes them.
package observatorytest
