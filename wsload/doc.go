// Package wsload is the client side of /ws fan-out benchmarks: WebSocket
// subscribers made by hand (the HTTP upgrade, one masked subscribe frame,
// then a frame reader) so that thousands of them stay cheap for the
// machine that runs them, and the llm.call load they time. Most
// subscribers only count frames and bytes (Counters, or ReadFrames
// without probe); a probe decodes every frame and times each ticker
// entry against the publish time its event id carries (Publish writes
// ids b-<unix nanos>-<n>).
//
// tools/fanoutbench (scripts/bench-fanout.sh) and cmd/observatory's
// BenchmarkFanoutReplicas use it. It imports fleet (the seed events),
// nats.go's jetstream and, on Linux, golang.org/x/sys/unix (epoll), and
// reads /proc for a process's CPU and RSS.
//
// # Concurrency
//
// Stats is safe for concurrent use. Subscribe starts one goroutine per
// subscriber, counted by the caller's WaitGroup, that ends when the
// caller's context does (closing the socket) or the connection ends.
// Counters reads all its sockets from the one goroutine that calls Run;
// Add may be called beside it. Publish and Seed use the caller's
// goroutine and wait for JetStream's acknowledgements.
package wsload
