// Package exportlease chooses which replica exports what is derived from
// the fleet stream (DESIGN §11.3): the fold's domain metrics, the spans
// and the business log records of fleet events. Every replica folds the
// same stream; exactly one at a time holds the lease and exports, so a
// domain counter summed over every scraped replica is the fleet's figure
// and no span or record is sent twice.
//
// The lease is one key of a JetStream key-value bucket whose entries
// expire after the lease's TTL (the bucket's max age, counted by the NATS
// server, so replicas' clocks never decide who holds it). The holder
// renews it well within the TTL with a compare-and-swap on its revision,
// writing in it how far its export has gone (telemetry.Marks), at once
// when they move. The others watch the key: each report lets them drop
// what the holder has exported. A holder that shuts down flushes its
// export and writes its final marks in a record naming no holder, which
// one of the others takes at once with a compare-and-swap; a holder that
// dies stops renewing, the key expires, and one of the others creates it.
// Either way the new holder continues from the last marks reported. A
// holder whose write fails holds what it makes from then on (so a
// successor starting from the last marks written sends nothing twice but
// the batch in flight), exports it when a write succeeds again, and after
// half the TTL without one stops holding the lease before anyone else can
// take it. A replica whose hub is still replaying never takes the lease.
//
// Under R3, a compare-and-swap can be refused with a spurious "wrong last
// sequence" at high update rates (nats-server #7281): the holder reads
// the key back from the stream's leader and keeps the lease when the
// record is still its own.
//
// exportlease imports telemetry (Marks) and nats.go's jetstream. Lease.Run
// is one goroutine; Release is called after it returned.
package exportlease
