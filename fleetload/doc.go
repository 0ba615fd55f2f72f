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
// else), as workers on other machines do. With Config.WorkerCommand
// (`observatory fleet --worker-processes`) each worker is an
// `observatory worker` process instead of a goroutine: it gets the key in
// its environment, enrolls over HTTP like any other, and is stopped with
// SIGTERM at the end (a clean stop: worker.left); its counts are read from
// the JSON line it ends its output with, and one that does not exit
// cleanly is a problem of the run. The command parses the flags, prints
// the proof (Print) or the JSON, and exits non-zero on a problem.
//
// The package imports fleet, stream, worker, live (the tenants) and rig,
// and runs the observatory binary it is given; only the command and tests
// import it.
//
// # Time
//
// Config.Now (default time.Now) is the run's one clock: the start of the
// run, the time each mission's end was seen, the in-process workers', the
// dispatcher's and the API's clocks (worker processes keep the wall
// clock). Waits (the workers getting ready, Config.Timeout) are timers.
//
// # Concurrency
//
// Run owns every goroutine it starts and returns after they have stopped:
// the dispatcher, one per worker (running it, or waiting for its
// process), the mission posts (at most 64 at a time), the FLEET watcher's
// callback and the progress printer. The watcher's maps are guarded by its
// mutex. Worker processes are stopped, and killed after a bound, before
// Run returns; on Linux they are also in a process group of their own (a
// Ctrl-C reaches only the example, which stops them) and get SIGTERM
// should the example die first.
package fleetload
