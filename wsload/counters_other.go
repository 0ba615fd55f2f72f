//go:build !linux

package wsload

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// Counters reads each counting subscriber on a goroutine of its own
// (Linux reads them all from one goroutine with epoll).
type Counters struct {
	st      *Stats
	wg      sync.WaitGroup
	closing atomic.Bool
	// mu guards conns.
	mu    sync.Mutex
	conns []net.Conn
}

// NewCounters returns Counters that count into st.
func NewCounters(st *Stats) (*Counters, error) {
	return &Counters{st: st}, nil
}

// Add reads conn, a subscribed connection from Dialer.Dial, until Run
// returns.
func (c *Counters) Add(conn net.Conn, br *bufio.Reader) error {
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := ReadFrames(br, false, c.st); err != nil && !c.closing.Load() {
			c.st.Disconnected(err)
		}
	}()
	return nil
}

// Run waits for ctx to end, then closes the connections and waits for
// their readers.
func (c *Counters) Run(ctx context.Context) {
	<-ctx.Done()
	c.closing.Store(true)
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}
