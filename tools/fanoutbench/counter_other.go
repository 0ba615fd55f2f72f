//go:build !linux

package main

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// counters reads each counting subscriber on a goroutine of its own
// (Linux reads them all from one goroutine with epoll).
type counters struct {
	st      *stats
	lastErr *atomic.Value
	wg      sync.WaitGroup
	closing atomic.Bool
	mu      sync.Mutex
	conns   []net.Conn
}

func newCounters(st *stats, lastErr *atomic.Value) (*counters, error) {
	return &counters{st: st, lastErr: lastErr}, nil
}

func (c *counters) add(conn net.Conn, br *bufio.Reader) error {
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := readFrames(br, false, c.st); err != nil && !c.closing.Load() {
			c.st.disconnects.Add(1)
			c.lastErr.Store(err.Error())
		}
	}()
	return nil
}

func (c *counters) run(ctx context.Context) {
	<-ctx.Done()
	c.closing.Store(true)
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}
