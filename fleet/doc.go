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
// Tenants are kept apart in the fold itself: each project's agents,
// missions, runs, budgets and records of workers are its own, keyed by the
// ids it publishes, so the same id in two projects names two entities and
// no event of one project changes what another's view shows (a worker
// serving several projects has a record in each, and the whole fleet's
// view merges them). An event id is unique within its project. The whole
// fleet's view keys an agent or a mission "<project>/<id>" while its id is
// shared (docs/protocol.md). A global budget's notices, which the budget
// gate publishes under the project whose work reached it, carry the cap
// and every project's spend: a project's own scope shows that budget with
// its figures withheld and a ticker line without them (budget_view.go).
//
// Limits bound everything the fold grows from ids that events choose,
// per project where the entities are a project's (DefaultLimits: 1,000
// projects no project.created announced, 10,000 announced ones; per
// project 10,000 agents, 10,000 missions in flight, 1,000 workers, 1,000
// budgets, 4,096 open runs and finished mission ids; agents forgotten after
// 7 days without an event). An event past a bound is rejected with a
// reason (Effect) and changes nothing else. State.SetLimits sets them;
// like the liveness thresholds they are configuration that replicas share.
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
