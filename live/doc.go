// Package live is the mixed-tenant HTTP workload of `observatory live` and
// `observatory demo` (DESIGN §8): it drives a running Observatory server
// through its public API as an admin and as three tenants would, so that
// every HUD widget, board panel and alert has real data.
//
// A Workload first sets the tenants up (login, projects, agents, budgets,
// one project token per tenant, all idempotent so that it can run again
// on the same data), then starts with a roll call (every user of every
// tenant asks for one mission of each of the tenant's agents), and until
// its duration ends or its context is cancelled sends at steady rates: missions created with each tenant's
// own token (the workers, if any, run them), reads of the tenants' routes
// and of the admin's, periodic logins and token renewals, a new agent now
// and then, a trickle of probes that must be refused with 401 or 404, and
// one cross-tenant attempt per CrossTenantEvery that must be refused with
// 403. Every answer is checked against the status the request expects;
// Figures counts them, with per-tenant missions enqueued, refused by a
// budget, throttled, completed and failed (read from the server's fold).
//
// Print, PrintLinks and StartProgress are the command's output: the proof
// block, where to look, and the progress line.
//
// The package imports fleet (ids, money, pricing), protocol (the fleet
// snapshot) and synth (the call profiles that give each model a realistic
// worst-case estimate), and speaks HTTP; nothing imports it but commands,
// the example packages' rig and tests.
//
// # Time
//
// Config.Now (default time.Now) dates the run's start and end, from which
// the figures' duration and rate come. The waits (the server catching up
// in Setup, Drain's bound, the grace of requests in flight) are timers.
//
// # Concurrency
//
// Run owns every goroutine it starts and returns after they have stopped:
// one scheduling loop and, per request, a short-lived goroutine bounded by
// a semaphore, so that a slow answer never delays the schedule. When Run's
// context ends the schedule stops and the requests in flight get
// InflightGrace to finish, so that the figures count every answer the
// server gave. Counters are atomic; the tokens are guarded by a mutex;
// Figures is safe to call at any time, also while Run is running.
package live
