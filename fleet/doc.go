// Package fleet is Observatory's domain: the event envelope workers publish
// (DESIGN §4), its validation, the pricing table and money in integer
// micro-dollars, and State, the pure deterministic fold of the event stream
// into agents, workers, missions in flight, per-project aggregates, budgets,
// posture and a ticker of recent events.
//
// Windows (runs and tokens over 24 h, errors over 1 h, spend today) and
// liveness (worker online/stale/offline, agent active) run on the fold's own
// clock: the newest stored time of the stream messages folded so far, never
// the wall clock. So the state at a given stream sequence is the same on
// every replica and after every restart, and a worker with a fast clock
// cannot move the windows.
//
// The liveness thresholds are StaleAfter (30 s) and OfflineAfter (2 min)
// unless State.SetLiveness sets others (stream.HubConfig passes them; tests
// use short ones). They are configuration, not state: checkpoints do not
// hold them, and replicas must agree on them. Because the clock moves only
// with stored messages, servers publish clock ticks (ClockSubject, one per
// ClockEvery, deduplicated across replicas by ClockID): State.Tick moves
// the clock on them, so a fleet where nothing else is published still
// sees its quiet workers turn stale and offline.
//
// fleet imports only the standard library and does no I/O.
//
// # Concurrency
//
// State is not safe for concurrent use: one goroutine owns it (stream.Hub).
// Values returned by View and Delta may share slices (tools, skills, recent
// runs, pools, models) and label maps with the State, which never modifies
// a slice or map in place but replaces it; so they may be handed to other
// goroutines and read there, and must be treated as read-only. Pricing is
// immutable and safe to share.
package fleet
