// Package fleetload is example 40, `observatory fleet` (DESIGN §8): real
// workers (package worker) claiming missions of several tenants from the
// MISSIONS work queue, the missions created through the real admin API at
// a steady rate, and the proof, read from what FLEET said and what the
// workers counted, that every mission ended exactly once and none crossed
// a tenant: throughput, claim latency percentiles, retries, missions lost
// and cross-tenant leaks (Figures, Problems).
//
// Run starts a small real pipeline (package rig: NATS, the streams, the
// fold, the budget ledger, the admin API on a loopback port and the lease
// dispatcher), sets the tenants up through the API, enrolls the workers
// with a key scoped to the run's tenants, creates the missions and waits
// for every one to end (or Config.Timeout). On the embedded NATS the
// workers run on the NATS credentials their enrollment gives them
// (worker.Enrolled: their projects' events and mission consumers, nothing
// else), as workers on other machines do. The command parses the flags,
// prints the proof (Print) or the JSON, and exits non-zero on a problem.
//
// The package imports fleet, stream, worker, live (the tenants) and rig;
// only the command and tests import it.
//
// # Time
//
// Config.Now (default time.Now) is the run's one clock: the start of the
// run, the time each mission's end was seen, the workers', the
// dispatcher's and the API's clocks. Waits (the workers getting ready,
// Config.Timeout) are timers.
//
// # Concurrency
//
// Run owns every goroutine it starts and returns after they have stopped:
// the dispatcher, one per worker, the mission posts (at most 64 at a time),
// the FLEET watcher's callback and the progress printer. The watcher's maps
// are guarded by its mutex.
package fleetload
