package web

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// The /ws write path: the hub's frames go straight to the hijacked socket,
// framed here, while coder/websocket keeps the handshake, the reads, the
// pings and pongs and the close handshake.
//
// Why: coder/websocket writes each message through the connection's
// bufio.Writer (net/http's 4 KiB one) and flushes it, so a 6 KB diff is two
// write(2) calls and a burst of k queued diffs is 2k of them. On loopback a
// write(2) also runs the receiver's TCP path, and the server's profile at
// 5,000 subscribers was two thirds write(2). Writing every queued frame of a
// connection with one write(2) (each frame still its own WebSocket message)
// makes the syscalls per frame fall as the load rises.
//
// Why it is safe beside the library: net.Conn writes are serialised (the
// poll descriptor's write lock, or tls.Conn's output lock) and each is
// written whole, so frames written here and the library's control frames
// (one Write each: a control frame fits its small write buffer, see
// wsWriteBuffer) never interleave inside a frame. Nothing else writes data
// messages through the library.

// wsBatchSize is the most bytes one write(2) carries when a connection has
// several frames queued; a larger frame is written on its own, header and
// payload with one writev(2). A writer blocked on a full socket (a slow
// peer, until the hub closes it as slow and CloseTimeout cuts it) holds its
// batch buffer: up to this much memory per stalled connection, beside the
// megabytes the kernel's send buffer holds for it.
const wsBatchSize = 64 << 10

// maxFrameHeader is the longest header of an unmasked server frame: the
// opcode byte, the 127 marker and an 8-byte length.
const maxFrameHeader = 10

// Sizes of the buffered reader and writer coder/websocket keeps for a
// connection's whole life. The writer only carries control frames (at most
// 125 bytes of payload, RFC 6455 §5.5) now that data frames bypass it, and
// the reader only client frames (subscribe requests, pongs, the close):
// net/http's 4 KiB each would be 8 KiB per idle subscriber.
const (
	wsWriteBuffer = 256
	wsReadBuffer  = 512
)

// wsBatch is a writer's scratch: the frames it took off the queue and the
// bytes it writes for them. Batches are pooled: only a connection that is
// writing holds one, so an idle subscriber costs none.
type wsBatch struct {
	frames [queueSize][]byte
	n      int
	size   int // the bytes of frames[:n] with their headers
	buf    []byte
}

var wsBatches = sync.Pool{New: func() any { return &wsBatch{buf: make([]byte, 0, wsBatchSize)} }}

// add takes frame into the batch if it fits, or if the batch is empty (a
// frame larger than wsBatchSize goes out alone).
func (b *wsBatch) add(frame []byte) bool {
	size := maxFrameHeader + len(frame)
	if b.n > 0 && (b.n == len(b.frames) || b.size+size > wsBatchSize) {
		return false
	}
	b.frames[b.n] = frame
	b.n++
	b.size += size
	return true
}

// reset forgets the frames so that the pool holds no reference to them.
func (b *wsBatch) reset() {
	clear(b.frames[:b.n])
	b.n, b.size = 0, 0
	b.buf = b.buf[:0]
}

// writeTo writes the batch's frames to nc as unmasked text messages: one
// Write for frames that fit the buffer, or a header and payload pair for
// one larger frame.
func (b *wsBatch) writeTo(nc net.Conn) error {
	if b.n == 1 && b.size > wsBatchSize {
		f := b.frames[0]
		bufs := net.Buffers{appendFrameHeader(b.buf[:0], len(f)), f}
		_, err := bufs.WriteTo(nc)
		return err
	}
	out := b.buf[:0]
	for _, f := range b.frames[:b.n] {
		out = appendFrameHeader(out, len(f))
		out = append(out, f...)
	}
	b.buf = out
	_, err := nc.Write(out)
	return err
}

// appendFrameHeader appends the header of a final, unmasked text frame of
// n bytes (RFC 6455 §5.2).
func appendFrameHeader(b []byte, n int) []byte {
	const finText = 0x80 | 0x1
	switch {
	case n <= 125:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, finText, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, finText, 127), uint64(n))
	}
}

// hijackTap hands coder/websocket the hijacked connection with small
// buffers (wsReadBuffer, wsWriteBuffer) and keeps the net.Conn for the
// write path.
type hijackTap struct {
	http.ResponseWriter
	conn net.Conn
}

var _ http.Hijacker = (*hijackTap)(nil)

// Hijack hijacks the underlying connection. Buffers that hold bytes
// already (a client that sent a frame right behind its upgrade request)
// are kept as they are.
func (t *hijackTap) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(t.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	if brw.Reader.Buffered() == 0 {
		brw.Reader = bufio.NewReaderSize(nc, wsReadBuffer)
	}
	if brw.Writer.Buffered() == 0 {
		brw.Writer = bufio.NewWriterSize(nc, wsWriteBuffer)
	}
	t.conn = nc
	return nc, brw, nil
}

// Unwrap lets http.ResponseController reach the echo response.
func (t *hijackTap) Unwrap() http.ResponseWriter { return t.ResponseWriter }
