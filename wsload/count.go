package wsload

import (
	"encoding/binary"
	"errors"
)

// ErrServerClosed is a close frame from the server.
var ErrServerClosed = errors.New("server closed the connection")

const opClose = 0x8

// isData says whether op is a data frame's (continuation, text, binary)
// rather than a control frame's.
func isData(op byte) bool { return op <= 0x2 }

// FrameCounter counts the data frames and payload bytes of a server's
// WebSocket stream fed to it in pieces of any size, without keeping the
// payloads: the reader of Counters, which reads many sockets from one
// goroutine and so cannot block on one socket's next frame.
type FrameCounter struct {
	hdr  [10]byte // the header being collected (server frames are unmasked)
	hn   int      // bytes of hdr collected
	need uint64   // payload bytes still to skip
}

// Feed consumes b and returns the data frames whose header it completed
// and their payload bytes, or ErrServerClosed at a close frame.
func (c *FrameCounter) Feed(b []byte) (frames, bytes int64, err error) {
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
		if op == opClose {
			return frames, bytes, ErrServerClosed
		}
		c.need = n
		if isData(op) {
			frames++
			bytes += int64(n)
		}
	}
	return frames, bytes, nil
}

// Between says whether what was fed ended between two frames.
func (c *FrameCounter) Between() bool { return c.hn == 0 && c.need == 0 }
