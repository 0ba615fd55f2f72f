package web

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// Writing without a goroutine per frame. A connection with frames queued
// is handed to one of a few shared writers (one per CPU the runtime uses),
// which writes each ready connection's queue with one non-blocking
// write(2). Only a connection whose socket is full (a slow peer), that is
// closing, or that is TLS gets a goroutine of its own (conn.drain), which
// may block. At 10,000 subscribers a tick used to start and end 10,000
// goroutines; now it wakes a writer per CPU.
//
// A writer runs while it has connections to write and ends when it has
// none, like the per-connection writers before it: an idle server holds
// no writer goroutine.

// yieldEvery is how many connections a shared writer writes before it
// lets the other goroutines of its CPU run. A sweep over 10,000 sockets
// takes tens of milliseconds; without yielding, the runtime would let it
// hold the CPU for 10 ms slices, and each hop of an event on its way in
// (NATS, the consumer, the hub's fold and tick) would wait out a slice.
// 32 writes are a few hundred microseconds (docs/performance.md).
const yieldEvery = 32

// wsWriters are a server's shared writers.
type wsWriters struct {
	shards []wsShard
	next   atomic.Uint32 // the shard of the next connection
}

// wsShard is one shared writer and the connections waiting for it.
type wsShard struct {
	mu      sync.Mutex
	ready   []*conn // connections with frames queued, in the order they got them
	spare   []*conn // the list the writer last emptied, reused
	running bool    // a goroutine is writing this shard's connections
}

func newWSWriters() *wsWriters {
	return &wsWriters{shards: make([]wsShard, runtime.GOMAXPROCS(0))}
}

// shard picks the shard of a new connection, in turn.
func (w *wsWriters) shard() *wsShard {
	return &w.shards[int(w.next.Add(1))%len(w.shards)]
}

// schedule queues c for the shard's writer and starts it if it is not
// running.
func (sh *wsShard) schedule(c *conn) {
	sh.mu.Lock()
	sh.ready = append(sh.ready, c)
	start := !sh.running
	sh.running = true
	sh.mu.Unlock()
	if start {
		go sh.run()
	}
}

// run writes the ready connections until there are none.
func (sh *wsShard) run() {
	b := wsBatches.Get().(*wsBatch)
	defer wsBatches.Put(b)
	for {
		sh.mu.Lock()
		ready := sh.ready
		if len(ready) == 0 {
			sh.running = false
			sh.mu.Unlock()
			return
		}
		sh.ready, sh.spare = sh.spare[:0], nil
		sh.mu.Unlock()
		for i, c := range ready {
			c.writeReady(b)
			ready[i] = nil
			if i%yieldEvery == yieldEvery-1 {
				runtime.Gosched()
			}
		}
		sh.mu.Lock()
		sh.spare = ready[:0]
		sh.mu.Unlock()
	}
}

// writeReady writes c's queue without blocking until it is empty, or
// hands c to a goroutine of its own (drain) for what would block.
func (c *conn) writeReady(b *wsBatch) {
	for {
		req, ok := c.next(b)
		if !ok {
			c.writers.Done()
			return
		}
		if req != nil {
			go c.finish(req)
			return
		}
		out := b.bytes()
		// While the library writes a control frame (it may be blocked on
		// a full socket) nothing is written here: the whole batch is
		// handed off like a write the socket did not take.
		n, err := 0, error(nil)
		if c.ctrl.TryLock() {
			n, err = b.writeNow(c.rc, out)
			c.ctrl.Unlock()
		}
		switch {
		case err != nil:
			b.reset()
			c.cancel()
			c.stopWriting()
			c.writers.Done()
			return
		case n < len(out):
			// The rest, then the queue, on a goroutine that may block.
			// (b is the shard's: the rest is copied.)
			rest := append([]byte(nil), out[n:]...)
			b.reset()
			go c.drainAfter(rest)
			return
		}
		b.reset()
	}
}

// writeNow writes p to the socket with one non-blocking write(2), and
// returns how much of it went (0 when the socket is full). The function
// rc.Write calls is made once per batch (rawWrite): a closure made for
// each write escaped to the heap, and at 10,000 subscribers those were
// 30 % of everything the server allocated, which the collector then had
// to reclaim on the same CPU.
func (b *wsBatch) writeNow(rc syscall.RawConn, p []byte) (int, error) {
	w := &b.raw
	w.p = p
	err := rc.Write(w.fn)
	n, werr := w.n, w.err
	w.p, w.err = nil, nil
	if err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) {
		return 0, nil
	}
	return max(n, 0), werr
}

// rawWrite is one non-blocking write(2) of p, for syscall.RawConn.Write.
type rawWrite struct {
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool // w.write, made once
}

func (w *rawWrite) write(fd uintptr) bool {
	for {
		w.n, w.err = syscall.Write(int(fd), w.p)
		if !errors.Is(w.err, syscall.EINTR) {
			return true // one attempt: never wait for the socket
		}
	}
}
