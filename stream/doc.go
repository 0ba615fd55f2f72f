// Package stream is Observatory's NATS adapter: the embedded NATS server
// with JetStream (or a connection to an existing cluster), the FLEET and
// AUDIT streams with dedupe on the event id, the Publisher, and the Hub.
//
// The Hub owns the fleet state. It consumes FLEET with an ordered consumer
// from the position its checkpoint holds, folds every message (rejecting
// invalid ones, and those past the fold's bounds, HubConfig.Limits, with a
// counted reason and at most one log line per reason every
// RejectLogEvery), and every tick
// builds at most one diff per scope, encodes it once per protocol version (a
// lane per version: its ring of diffs, and for observatory.v2 the patcher)
// and hands the same bytes to every subscriber of that scope and version. Each scope keeps a ring of its recent
// diffs so that a client that reconnects with {epoch, seq} gets what it
// missed; anything older gets a snapshot.
//
// EnsureStreams bounds FLEET and AUDIT by age and size (dropping their
// oldest messages), and AUDIT per subject too; StreamsConfig says why FLEET
// has no per-subject bound.
//
// Besides the hub, stream holds the other NATS adapters: the registry of
// projects, agents, missions and runs (KV buckets and the MISSIONS
// work-queue stream), the ProjectSet that follows the registry's projects
// (which telemetry asks for the real tenants' labels), the audit log
// reader, the cost rollups read back from FLEET, and the hub's metrics.
// The budget gate is package budget.
//
// stream imports fleet, protocol, nats.go, nats-server and the OTel metric API.
//
// # Concurrency
//
// Hub.Run is the one goroutine that owns the fleet.State, the scopes and the
// subscriber table; it starts one reader goroutine that moves messages from
// the consumer to it, and stops it before returning. Subscribe, Unsubscribe,
// Snapshot and View are safe from any goroutine: they are requests to Run
// and fail with ErrClosed once it has returned. Subscribers are called only
// from Run and must not block (protocol.Subscriber). Stats is safe from any
// goroutine. Snapshots are encoded at most once per scope per frame; a
// subscriber that joins while folded events await their diff is answered
// at the next tick, so that its snapshot and the diffs after it line up.
//
// ProjectSet.Run is one goroutine, owned by its caller, that follows the
// registry; Has and Len are safe from any goroutine.
//
// The hub takes its time (idle scopes, the resync window, checkpoint
// pacing, the spacing of rejection lines) from HubConfig.Now; the fold's
// own clock is FLEET's stored time.
//
// A slow subscriber never delays others: the hub only ever offers it a frame
// (Send); when its queue is full it gets a fresh snapshot instead (Reset),
// and after MaxResyncs of those within ResyncWindow it is closed with 4408.
package stream
