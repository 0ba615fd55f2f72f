// Package worker is the embeddable worker runtime of the fleet (DESIGN §9):
// a Worker claims the missions of its projects and pools from the MISSIONS
// work-queue stream, runs an agent on each and publishes the state events
// of DESIGN §4 on FLEET; a Dispatcher fails the missions nobody will run.
//
// # Claims and leases
//
// Claims are pushed by JetStream: each (project, pool) has one durable
// pull consumer, shared by every worker of that project and pool and
// consumed with Consume (no polling loop). The default pool's missions are
// on missions.<project> (DESIGN §3's subject, where external programs
// publish), consumed by "workers-<project>"; a named pool's on
// missions.<project>.<pool>, consumed by "workers-<project>@<pool>". Each
// consumer filters exactly its subject, so the work-queue filters never
// overlap, and "@" occurs in no project or pool id, so no two pairs share
// a consumer name (with "-" project acme-gpu and pool gpu of acme would).
// A delivery is a claim holding a lease of Config.Lease (the consumer's
// AckWait), renewed with InProgress on every heartbeat while the mission
// runs. A lease that expires puts the mission back on the queue; the next
// claim publishes mission.retrying before mission.claimed.
//
// # Matching
//
// Project and pool are matched by subject: a worker consumes only the
// subjects of its projects and pools (Config.Pools; none means the default
// pool), so it cannot receive another project's mission; it checks anyway,
// and a mission whose project or pool is not its subject's is terminated
// and counted in Stats.Leaks. Model and labels are matched by the worker
// (Mismatch): a mission on a model the worker does not serve
// (Config.Models; none means every model), or requiring a label it does not
// offer with that value (Config.Labels), is never run by it.
//
// A delivery the worker does not match is passed on: the worker adds one
// to the mission's pass count (Passes, compare-and-swap, keyed by the
// mission's project and MISSIONS sequence: see Enrollment and credentials
// for where it is kept) and only then NAKs it with a delay
// (Config.SkipDelay, doubling per pass up to MaxSkipDelay), so that
// another worker gets it. JetStream counts every delivery, passes
// included, so the runtime counts attempts itself: a first delivery is
// attempt 1 without any lookup (the claim path of a homogeneous fleet is
// unchanged); a redelivery's attempt is its delivery count less its
// passes. A pass therefore never costs a mission one of its MaxAttempts
// (3): the worker that receives a mission after three lost leases fails it
// itself ("lease lost 3 times", mission.failed with the EndEventID) without
// running it. The consumers do not bound deliveries (MaxDeliver -1):
// passes are bounded in time, not in count. A mission that only a busy
// worker matches bounces among the others for as long as that worker's
// backlog lasts and is run when it is free, however many passes that
// takes. A mission that waited Config.MatchWait (20 min) since it was
// queued and is delivered to a worker that does not match it is failed by
// that worker, with a reason that says what nobody offered: "no worker
// matches the mission (pool gpu, model gpt-5, label region=eu): passed on
// 41 times in 20m0.5s". Model and labels are a check for a mostly
// homogeneous pool; a scarce kind of worker deserves its own pool, which
// routes by subject and never bounces.
//
// A mission on a subject no worker has ever consumed (a pool or a project
// without a consumer) is never delivered at all; the Dispatcher sweeps
// MISSIONS every SweepEvery (1 min) and fails those that waited longer
// than UnservedAfter (10 min): "no worker serves pool gpu of project acme".
// A subject whose workers all left keeps its consumer, and its missions
// wait for workers to come back, as a queue's do (until MISSIONS' max age).
//
// # Enrollment and credentials
//
// With Config.Enroll set (EnrollHTTP for the admin API's POST
// /api/v1/workers/enroll with an enrollment key), Run enrolls before it
// claims anything and then claims only the projects and pools the grant
// allows: the intersection of what it asked for and what the key covers.
// The server announces an enrolled worker (worker.joined in each granted
// project), so the worker does not announce itself again; a worker
// without Enroll publishes its own worker.joined.
//
// A worker runs in one of two modes. A trusted worker (New) is given a
// connection that may do anything (in process with the server, tests,
// embedders): it makes its own consumers (EnsureConsumer) and counts
// passes in the KV bucket stream.MissionSkipsBucket (KVPasses). An
// enrolled worker (Enrolled) is what runs on other machines: it connects
// with the NATS credentials of its grant (DESIGN §11.1), whose user may
// publish only its projects' fleet subjects (with JetStream acks on its
// own inbox, nats.CustomInboxPrefix of natsauth.InboxPrefix), consume only
// the mission consumers of its (project, pool) pairs (info, next, ack,
// nak, in-progress, term: natsauth.PullConsumer) and read only its inbox.
// It manages no stream or consumer and reads no KV bucket: the server
// makes the grant's consumers at enrollment, with the lease the worker
// asked for, and the worker binds to them (CONSUMER.INFO).
//
// Its pass counts go through the server instead (HTTPPasses: POST, GET
// and DELETE /api/v1/workers/{id}/passes), which keeps them in the same
// bucket with the same compare-and-swap. The worker authenticates with
// what enrollment gave it and nothing more: its user JWT as the bearer
// token and, per request, a proof signed with the user's nkey seed
// (natsauth.Proof: method, URI, body hash, time), so the JWT alone, which
// NATS sees on every connect, is not a credential. The server accepts a
// proof only for the worker of the path and only for the projects whose
// events the JWT may publish. Other designs were weighed. Letting
// workers use the KV bucket: NATS permits a bucket's subjects, not its
// keys' owners, so any worker could rewrite another project's counts (and
// a count inflated for a mission makes its lost leases look like passes,
// so it is retried forever). Publishing passes as FLEET events
// (fleet.<p>.mission.passed, which the worker may publish) or counting
// attempts from mission.claimed: reading either back needs a consumer on
// FLEET, which carries every tenant's events. Passes happen only on
// mismatches and are read only on redeliveries, so an HTTP round trip
// there costs the claim path of a homogeneous fleet nothing.
//
// The credentials expire with the enrollment key, at most
// web.MaxWorkerCredsTTL (24 h) after enrollment. An enrolled worker stops
// cleanly two leases before they expire (its running missions end, then
// worker.left) and Run returns an error wrapping ErrCredentialsExpired:
// run it under something that enrolls it again. Should they expire under
// it anyway, it stops abruptly (leases expire, missions go back to the
// queue). A grant without credentials (an external NATS whose operator
// gave serve no account signing key) does not start an enrolled worker
// (ErrNoCredentials).
//
// # Ends
//
// A mission ends exactly once on FLEET: mission.completed and
// mission.failed carry a deterministic event id derived from the mission id
// (EndEventID), the same for every attempt, worker and dispatcher replica,
// so the FLEET dedupe window keeps only the first end.
//
// The package imports fleet (the domain), synth (the call profiles of its
// synthetic agent), stream (the publisher, stream names and subjects),
// natsauth (credentials and proofs) and the NATS clients; nothing imports
// it but commands, the examples and tests.
//
// # Concurrency
//
// Run owns every goroutine it starts and returns only after they have
// stopped. Per (project, pool) it runs Capacity consume contexts, each
// fetching one message at a time and running its mission synchronously in
// the subscription's goroutine, so no claimed message waits unseen in a
// client buffer while its lease runs; a worker-wide semaphore of Capacity
// slots bounds the missions it runs at once across projects and pools (a
// message waiting for a slot has its lease renewed). One heartbeat
// goroutine publishes worker.heartbeat and renews the leases of the active
// missions; the set of active missions is guarded by a mutex. Stats are
// atomic counters, safe to read at any time. Config.Enroll is called once,
// from Run, before any goroutine starts; an enrolled worker's connection,
// JetStream context and pass counter are set then and read-only after.
//
// Cancelling Run's context is an abrupt stop, as a crash looks to the fleet:
// missions are neither acknowledged nor ended, no worker.left is published,
// and their leases expire. Stop is the clean stop: the worker claims nothing
// new (a delivery that arrives or waits for a slot after Stop is handed back
// unstarted: counted as a pass, so it costs the mission no attempt, and
// NAKed with SkipDelay, by when the worker's consumers are gone), lets the
// running missions end, publishes worker.left for each project and Run
// returns nil. HandBack is the clean stop that does not wait for the running
// missions: it cancels their agents (the agents run on a context of their
// own, which only HandBack and Run's context cancel), ends each run with
// agent.run.failed and NAKs each message, so another worker claims the
// mission at once, as its next attempt; then worker.left, and Run returns
// nil. A process that stops on a signal calls Stop, and HandBack when its
// grace period ends (`observatory worker --grace`).
//
// The Dispatcher's Run is one goroutine that runs the sweep on its ticker
// and handles JetStream's MAX_DELIVERIES advisories (a backstop for
// consumers that bound deliveries, made by hand or by an older release);
// several replicas may run.
package worker
