// Package protocol is the /ws wire protocol of DESIGN §5, shared by the
// server side (stream builds frames, web carries them) and by subscribers
// (observatory tail, tests, other Go programs): the frame types, the client's
// subscribe frame and its validation, close codes, the Subscriber contract
// between the hub and a connection, Mirror, a client-side copy of a
// scope's state that applies snapshots and diffs exactly as the protocol
// says, and Patcher, which encodes a scope's observatory.v2 diffs (only the
// fields that changed) from the same fleet.Delta a v1 diff carries.
//
// protocol imports fleet and the standard library only.
//
// # Concurrency
//
// Frames are values. A Mirror or a Patcher is not safe for concurrent use
// (the hub's goroutine owns each scope's Patcher). Subscriber
// implementations must make Send, Reset and Close safe to call from the hub's
// goroutine while their own writer goroutine drains them.
package protocol
