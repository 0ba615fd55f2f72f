// Package protocol is the /ws wire protocol of DESIGN §5, shared by the
// server side (stream builds frames, web carries them) and by subscribers
// (observatory tail, tests, other Go programs): the frame types, the client's
// subscribe frame and its validation, close codes, the Subscriber contract
// between the hub and a connection, and Mirror, a client-side copy of a
// scope's state that applies snapshots and diffs exactly as the protocol says.
//
// protocol imports fleet and the standard library only.
//
// # Concurrency
//
// Frames are values. A Mirror is not safe for concurrent use. Subscriber
// implementations must make Send, Reset and Close safe to call from the hub's
// goroutine while their own writer goroutine drains them.
package protocol
