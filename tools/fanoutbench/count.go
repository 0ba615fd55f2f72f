package main

import (
	"encoding/binary"
	"errors"
)

// errServerClosed is a close frame from the server.
var errServerClosed = errors.New("server closed the connection")

// frameCounter counts the frames and payload bytes of a server's
// WebSocket stream fed to it in pieces of any size, without keeping the
// payloads: the counting subscribers' reader, which reads many sockets
// from one goroutine and so cannot block on one socket's next frame.
type frameCounter struct {
	hdr  [10]byte // the header being collected (server frames are unmasked)
	hn   int      // bytes of hdr collected
	need uint64   // payload bytes still to skip
}

// feed consumes b and returns the frames whose header it completed and
// the bytes of their payloads, or errServerClosed at a close frame.
func (c *frameCounter) feed(b []byte) (frames, bytes int64, err error) {
	for len(b) > 0 {
		if c.need > 0 {
			k := min(c.need, uint64(len(b)))
			c.need -= k
			b = b[k:]
			continue
		}
		c.hdr[c.hn] = b[0]
		c.hn++
		b = b[1:]
		if c.hn < 2 {
			continue
		}
		size := 2
		switch c.hdr[1] & 0x7f {
		case 126:
			size = 4
		case 127:
			size = 10
		}
		if c.hn < size {
			continue
		}
		var n uint64
		switch size {
		case 2:
			n = uint64(c.hdr[1] & 0x7f)
		case 4:
			n = uint64(binary.BigEndian.Uint16(c.hdr[2:4]))
		default:
			n = binary.BigEndian.Uint64(c.hdr[2:10])
		}
		op := c.hdr[0] & 0x0f
		c.hn = 0
		if op == 0x8 {
			return frames, bytes, errServerClosed
		}
		c.need = n
		frames++
		bytes += int64(n)
	}
	return frames, bytes, nil
}
