// Package worker is the embeddable worker runtime of the fleet (DESIGN §9):
// a Worker claims the missions of its projects from the MISSIONS work-queue
// stream, runs an agent on each and publishes the state events of DESIGN §4
// on FLEET; a Dispatcher turns a mission that lost its lease too often into
// mission.failed.
//
// Claims are pushed by JetStream: each project has one durable pull
// consumer, "workers-<project>", filtered on missions.<project> and shared
// by every worker of that project, consumed with Consume (no polling loop).
// A delivery is a claim holding a lease of Config.Lease (the consumer's
// AckWait), renewed with InProgress on every heartbeat while the mission
// runs. A lease that expires puts the mission back on the queue; the next
// claim publishes mission.retrying before mission.claimed. After MaxDeliver
// (3) deliveries JetStream gives up and emits a MAX_DELIVERIES advisory,
// which the Dispatcher answers with mission.failed.
//
// A worker only ever consumes the subjects of its own projects, so it cannot
// receive another project's mission; it checks anyway, and a mission whose
// project is not its subject's is terminated and counted in Stats.Leaks.
//
// A mission ends exactly once on FLEET: mission.completed and mission.failed
// carry a deterministic event id derived from the mission id (EndEventID),
// the same for every attempt, worker and dispatcher replica, so the FLEET
// dedupe window keeps only the first end.
//
// The package imports fleet (the domain), synth (the call profiles of its
// synthetic agent), stream (the publisher and stream
// names) and the NATS clients; nothing imports it but commands.
//
// # Concurrency
//
// Run owns every goroutine it starts and returns only after they have
// stopped. Per project it runs Capacity consume contexts, each fetching one
// message at a time and running its mission synchronously in the
// subscription's goroutine, so no claimed message waits unseen in a client
// buffer while its lease runs; a worker-wide semaphore of Capacity slots
// bounds the missions it runs at once across projects (a message waiting
// for a slot has its lease renewed). One heartbeat goroutine publishes
// worker.heartbeat and renews the leases of the active missions; the set of
// active missions is guarded by a mutex. Stats are atomic counters, safe to
// read at any time.
//
// Cancelling Run's context is an abrupt stop, as a crash looks to the
// fleet: missions are neither acknowledged nor ended, no worker.left is
// published, and their leases expire. Stop is the clean stop: the worker
// claims nothing new, lets the running missions end, publishes worker.left
// for each project and Run returns nil.
package worker
