package web

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
)

// TestSharedWriterStepsAside: on one CPU, a shared writer with many
// connections to write lets the CPU's other goroutines run every
// yieldEvery connections instead of holding it for the whole sweep: those
// are the goroutines that bring events in (NATS, the consumer, the hub's
// fold and tick), and at 10,000 subscribers each of their hops waited out
// a 10 ms slice of the sweep. Every connection still gets its frame.
func TestSharedWriterStepsAside(t *testing.T) {
	const n = 8 * yieldEvery
	ln := listenLoopback(t)
	frame := plainFrame([]byte(`{"op":"diff","scope":"*","seq":2}`))
	conns := make([]*conn, n)
	peers := make([]net.Conn, n)
	for i := range conns {
		peer, nc, rc := socketPair(t, ln)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		c := &conn{ctx: ctx, cancel: cancel, nc: nc, rc: rc, writing: true, n: 1}
		c.queue[0] = frame
		conns[i], peers[i] = c, peer
	}
	written := func() int {
		k := 0
		for _, c := range conns {
			c.mu.Lock()
			if c.n == 0 {
				k++
			}
			c.mu.Unlock()
		}
		return k
	}

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var sh wsShard
	for _, c := range conns {
		c.writers.Add(1)
		sh.schedule(c) // the first starts the writer, which waits for the CPU
	}
	k := written()
	for k == 0 {
		runtime.Gosched() // the writer runs until it steps aside
		k = written()
	}
	if k == n {
		t.Fatalf("the shared writer wrote all %d connections before any other goroutine could run", n)
	}
	for i, c := range conns {
		c.writers.Wait()
		got := make([]byte, len(frame))
		if _, err := io.ReadFull(peers[i], got); err != nil || !bytes.Equal(got, frame) {
			t.Fatalf("connection %d: read %q (%v), want the frame %q", i, got, err, frame)
		}
	}
	t.Logf("the writer stepped aside first after %d of %d connections", k, n)
}

// TestSharedWriteAllocatesNothing: a shared writer's write to a socket
// allocates nothing. At 10,000 subscribers there are 100,000 of them a
// second, on the CPU the collector shares.
func TestSharedWriteAllocatesNothing(t *testing.T) {
	peer, _, rc := socketPair(t, listenLoopback(t))
	go io.Copy(io.Discard, peer)
	b := wsBatches.Get().(*wsBatch)
	defer wsBatches.Put(b)
	frame := plainFrame([]byte(`{"op":"diff","scope":"*","seq":2}`))
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := b.writeNow(rc, frame); err != nil || n != len(frame) {
			t.Fatalf("wrote %d of %d bytes: %v", n, len(frame), err)
		}
	})
	if allocs != 0 {
		t.Errorf("a write allocates %.1f times, want 0", allocs)
	}
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// socketPair connects a peer to ln and returns it, the server's side and
// that side's RawConn; both are closed when the test ends.
func socketPair(t *testing.T, ln net.Listener) (peer, nc net.Conn, rc syscall.RawConn) {
	t.Helper()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	nc, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if rc, err = nc.(syscall.Conn).SyscallConn(); err != nil {
		t.Fatal(err)
	}
	return peer, nc, rc
}
