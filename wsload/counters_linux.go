package wsload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Counters reads every counting subscriber's socket from one goroutine
// woken by epoll, instead of a goroutine and a 4 KiB buffer each: at
// 10,000 subscribers a goroutine per socket kept a load generator's core
// busy with the scheduler, and a publisher sharing that scheduler queued
// behind every reader the network poller had just woken.
type Counters struct {
	epfd int
	st   *Stats
	// mu guards conns (by descriptor) while Add runs beside the loop.
	mu    sync.Mutex
	conns map[int32]*FrameCounter
}

// NewCounters returns Counters that count into st.
func NewCounters(st *Stats) (*Counters, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	return &Counters{epfd: epfd, st: st, conns: map[int32]*FrameCounter{}}, nil
}

// Add takes over conn, a subscribed connection (from Dialer.Dial) whose
// reader br may hold the first bytes of its stream: it counts those, then
// reads the socket in Run's loop. conn is closed; its socket lives on in
// a duplicate descriptor that the loop owns.
func (c *Counters) Add(conn net.Conn, br *bufio.Reader) error {
	defer conn.Close()
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return errors.New("counters: not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, derr = unix.Dup(int(s)) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return err
	}
	fc := &FrameCounter{}
	if buffered, _ := br.Peek(br.Buffered()); len(buffered) > 0 {
		if !c.count(fc, buffered) {
			unix.Close(fd)
			return nil
		}
	}
	c.mu.Lock()
	c.conns[int32(fd)] = fc
	c.mu.Unlock()
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		c.drop(int32(fd))
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// count feeds b to fc and adds what it counted; false when the server
// closed the connection (counted as a disconnect).
func (c *Counters) count(fc *FrameCounter, b []byte) bool {
	frames, n, err := fc.Feed(b)
	c.st.Frames.Add(frames)
	c.st.Bytes.Add(n)
	if err != nil {
		c.st.Disconnected(err)
		return false
	}
	return true
}

func (c *Counters) drop(fd int32) {
	c.mu.Lock()
	delete(c.conns, fd)
	c.mu.Unlock()
	unix.Close(int(fd))
}

// yieldEvery is how many reads the loop makes before it lets the
// process's other goroutines have the CPU, as the server's shared writer
// does.
const yieldEvery = 32

// Run reads the sockets as they become readable until ctx ends, then
// closes them all.
func (c *Counters) Run(ctx context.Context) {
	defer c.close()
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 256<<10)
	reads := 0
	for ctx.Err() == nil {
		n, err := unix.EpollWait(c.epfd, events, 100)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			c.st.SetLastError("epoll: " + err.Error())
			return
		}
		for _, ev := range events[:n] {
			c.mu.Lock()
			fc := c.conns[ev.Fd]
			c.mu.Unlock()
			if fc == nil {
				continue
			}
			m, err := unix.Read(int(ev.Fd), buf)
			switch {
			case m > 0:
				if !c.count(fc, buf[:m]) {
					c.drop(ev.Fd)
				}
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			case err != nil:
				c.st.Disconnected(err)
				c.drop(ev.Fd)
			default: // end of stream
				if ctx.Err() == nil {
					c.st.Disconnected(errors.New("the server closed the socket"))
				}
				c.drop(ev.Fd)
			}
			if reads++; reads%yieldEvery == 0 {
				runtime.Gosched()
			}
		}
	}
}

func (c *Counters) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for fd := range c.conns {
		unix.Close(int(fd))
	}
	clear(c.conns)
	unix.Close(c.epfd)
}
