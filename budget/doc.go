// Package budget is the money gate: budgets, their spend per UTC period
// window and the reservations of work in flight, kept in NATS KV buckets
// with compare-and-swap (DESIGN §10, docs/budgets.md).
//
// A Ledger answers Reserve (hold the estimated cost on every budget that
// applies, or refuse with the harshest action), Preflight (the same
// decision without a hold), Settle and Release. Its follower reads FLEET
// and charges the real cost of every llm.call, priced with the fold's
// table, drawing it from the work's hold and releasing the rest when the
// mission or run ends. It publishes budget.warning, budget.throttled and
// budget.exceeded (AUDIT and FLEET) and a periodic budget.status per budget
// (FLEET), so the HUD shows every budget's standing. A global budget's
// events go under the project whose work or spend reached it, with the
// cap and the fleet's spend for the admin; the fold and the audit route
// withhold those figures from the project's own scope (DESIGN §11.2), and
// no budget.status is published for a global budget.
//
// Any number of Ledgers, in any number of processes, may share the
// buckets: every write is a compare-and-swap on one ledger entry, so two
// writers racing for the last dollar of a stop cap cannot both win.
//
// Package budgettest reads a ledger bucket's whole history back and checks
// the cap at every revision, for the tests that prove it under
// concurrency.
//
// budget imports fleet (the pure decision, windows and pricing), stream
// (FLEET's name, its epoch and the message pump) and nats.go.
//
// # Concurrency
//
// Ledger.Run owns the goroutines of the ledger (the budgets watcher, the
// FLEET follower, the audit and status publishers) and returns when ctx
// ends and they have stopped. Every other method is safe from any
// goroutine; within one process, writers of one ledger entry take turns
// (keyLocks) so that compare-and-swap retries stay rare.
package budget
