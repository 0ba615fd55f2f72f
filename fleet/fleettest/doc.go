// Package fleettest helps test code that consumes the fleet event stream.
//
// It builds events the way a worker sends them (a JSON body on a
// fleet.<project>.<type> subject, decoded with fleet.DecodeEvent), generates
// realistic random streams for a few projects with the faults a real stream
// carries (duplicates, late and future timestamps, unknown types and invalid
// messages), and folds a stream into a fleet.State the reference way.
// Model is a second, deliberately naive statement of the fold's rules: it
// recomputes every figure from the whole list of messages folded so far,
// so that tests check fleet.State against the rules and not only against
// itself. Epoch, Clock and ClockEnv are the one test clock of the suites.
//
// Generate is deterministic: the same *rand.Rand state and options give the
// same messages, so a failing seed can be replayed.
//
// fleettest imports fleet and the standard library only; it is meant for
// tests (of fleet, stream, web, ...) and never for production code.
//
// # Concurrency
//
// Generate, Fold and the constructors keep no shared state except an atomic
// counter for default event ids; they are safe to call from parallel tests.
// A *rand.Rand passed to Generate must not be shared while Generate runs.
// Model.Derive keeps nothing between calls and only reads the records it
// is given; a Derived is read-only once returned.
package fleettest
