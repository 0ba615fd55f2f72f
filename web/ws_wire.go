package web

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
)

// The /ws write path: the hub's frames (and the guard's pings) go straight
// to the hijacked socket, framed here, while coder/websocket keeps the
// handshake, the reads, the pongs and the close handshake.
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
// wsWriteBuffer) never interleave inside a frame; a shared writer's
// non-blocking write(2) runs under the same lock, and only while it holds
// the connection's ctrl mutex (web/ws_writers.go). Nothing else writes data
// messages through the library.

// wsBatchSize is the most bytes one write(2) carries when a connection has
// several frames queued; a larger frame is written on its own. A writer
// blocked on a full socket (a slow peer, until the hub closes it as slow
// and CloseTimeout cuts it) holds its batch buffer: up to this much memory
// per stalled connection, beside the megabytes the kernel's send buffer
// holds for it.
const wsBatchSize = 64 << 10

// Sizes of the buffered reader and writer coder/websocket keeps for a
// connection's whole life. The writer only carries control frames (at most
// 125 bytes of payload, RFC 6455 §5.5) now that data frames bypass it, and
// the reader only client frames (subscribe requests, pongs, the close):
// net/http's 4 KiB each would be 8 KiB per idle subscriber.
const (
	wsWriteBuffer = 256
	wsReadBuffer  = 512
)

// wsBatch is a writer's scratch: the wire frames it took off the queue and
// the bytes it writes for them. Batches are pooled: only a connection that
// is writing holds one, so an idle subscriber costs none.
type wsBatch struct {
	frames [queueSize][]byte
	n      int
	size   int // the bytes of frames[:n]
	buf    []byte
	raw    rawWrite // a shared writer's write(2) (web/ws_writers.go)
}

var wsBatches = sync.Pool{New: func() any {
	b := &wsBatch{buf: make([]byte, 0, wsBatchSize)}
	b.raw.fn = b.raw.write
	return b
}}

// add takes a wire frame into the batch if it fits, or if the batch is
// empty (a frame larger than wsBatchSize goes out alone).
func (b *wsBatch) add(wire []byte) bool {
	if b.n > 0 && (b.n == len(b.frames) || b.size+len(wire) > wsBatchSize) {
		return false
	}
	b.frames[b.n] = wire
	b.n++
	b.size += len(wire)
	return true
}

// reset forgets the frames so that the pool holds no reference to them.
func (b *wsBatch) reset() {
	clear(b.frames[:b.n])
	b.n, b.size = 0, 0
	b.buf = b.buf[:0]
}

// bytes returns what the batch writes: a lone frame as it is (the bytes
// every connection of its scope shares), several copied into the batch's
// buffer.
func (b *wsBatch) bytes() []byte {
	if b.n == 1 {
		return b.frames[0]
	}
	out := b.buf[:0]
	for _, f := range b.frames[:b.n] {
		out = append(out, f...)
	}
	b.buf = out
	return out
}

// writeTo writes the batch's frames to nc with one Write.
func (b *wsBatch) writeTo(nc net.Conn) error {
	_, err := nc.Write(b.bytes())
	return err
}

// Frame header bits (RFC 6455 §5.2): a final text frame, and RSV1, which
// marks a compressed message (RFC 7692 §6).
const (
	finText = 0x80 | 0x1
	rsv1    = 0x40
)

// appendFrameHeader appends the header of a final, unmasked text frame of
// n bytes (RFC 6455 §5.2), compressed if first has rsv1.
func appendFrameHeader(b []byte, first byte, n int) []byte {
	switch {
	case n <= 125:
		return append(b, first, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, first, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, first, 127), uint64(n))
	}
}

// plainFrame is payload as one uncompressed text frame, header included.
func plainFrame(payload []byte) []byte {
	return append(appendFrameHeader(make([]byte, 0, maxFrameHeader+len(payload)), finText, len(payload)), payload...)
}

// maxFrameHeader is the longest header of an unmasked server frame: the
// opcode byte, the 127 marker and an 8-byte length.
const maxFrameHeader = 10

// Prepared frames. The hub hands the same frame to every subscriber of a
// scope and protocol version; what goes on the wire for it (the header, and
// for a client that negotiated permessage-deflate the compressed payload)
// is built once, by the first connection that queues it, and every other
// connection writes the same bytes. Gorilla calls this a prepared message.
//
// Compression is RFC 7692's permessage-deflate with no context takeover on
// either side (coder/websocket negotiates it, web/ws.go): each message is
// compressed alone, so one compressed form serves every connection. A v2
// diff at scope "*" is mostly ticker text and shrinks several times; on
// loopback and on a real network alike, the bytes a frame costs to write
// are most of what a subscriber costs the server.

// deflateMin is the smallest frame worth compressing; smaller ones (a
// resume's empty diff, a heartbeat posture) go out plain, which a
// permessage-deflate peer accepts (RSV1 clear).
const deflateMin = 256

// preparedSlots is how many recent frames the cache keeps. The hub sends a
// frame to all of its subscribers before it encodes the next one, so a few
// slots are enough; a frame evicted early only costs a second preparation.
const preparedSlots = 4

// preparedFrames is the cache of prepared frames, shared by a server's
// connections.
type preparedFrames struct {
	mu    sync.Mutex
	slots [preparedSlots]prepared
	next  int
	fw    *flate.Writer
	out   bytes.Buffer
}

// prepared is one frame's wire forms. src keeps the frame alive, so that
// its address cannot be reused by another frame while it is cached.
type prepared struct {
	src      []byte
	plain    []byte
	deflated []byte // nil until a deflate connection asks for it
}

// wire returns frame's bytes on the wire, header included: compressed for
// a connection that negotiated permessage-deflate when that is smaller.
// The result is shared; nobody may write to it.
func (p *preparedFrames) wire(frame []byte, deflate bool) []byte {
	if len(frame) == 0 {
		return plainFrame(frame)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.lookup(frame)
	if e == nil {
		e = &p.slots[p.next]
		p.next = (p.next + 1) % preparedSlots
		*e = prepared{src: frame, plain: plainFrame(frame)}
	}
	if !deflate || len(frame) < deflateMin {
		return e.plain
	}
	if e.deflated == nil {
		e.deflated = p.deflate(frame)
		if len(e.deflated) >= len(e.plain) {
			e.deflated = e.plain
		}
	}
	return e.deflated
}

// lookup finds frame's slot by identity: the hub shares one slice among
// the subscribers it sends it to.
func (p *preparedFrames) lookup(frame []byte) *prepared {
	for i := range p.slots {
		e := &p.slots[i]
		if len(e.src) == len(frame) && &e.src[0] == &frame[0] {
			return e
		}
	}
	return nil
}

// deflate compresses payload alone (RFC 7692 §7.2.1: a raw DEFLATE stream
// flushed to a byte boundary, its final empty block's 00 00 ff ff
// removed) and frames it with RSV1 set.
func (p *preparedFrames) deflate(payload []byte) []byte {
	p.out.Reset()
	if p.fw == nil {
		// BestSpeed: a frame is compressed once per scope per tick, but
		// a snapshot of a large fleet is half a megabyte.
		p.fw, _ = flate.NewWriter(&p.out, flate.BestSpeed)
	} else {
		p.fw.Reset(&p.out)
	}
	_, _ = p.fw.Write(payload) // a bytes.Buffer takes every write
	_ = p.fw.Flush()
	z := bytes.TrimSuffix(p.out.Bytes(), []byte{0, 0, 0xff, 0xff})
	return append(appendFrameHeader(make([]byte, 0, maxFrameHeader+len(z)), finText|rsv1, len(z)), z...)
}

// hijackTap hands coder/websocket the hijacked connection with small
// buffers (wsReadBuffer, wsWriteBuffer) and keeps the net.Conn for the
// write path. The library's own writes (control frames) go through
// lib, which holds the connection's ctrl mutex while it writes: a shared
// writer that finds it held leaves the connection to a goroutine of its
// own instead of waiting behind a write that may block
// (web/ws_writers.go).
type hijackTap struct {
	http.ResponseWriter
	ctrl *sync.Mutex
	conn net.Conn
	// locked: the library's writes take ctrl (false only if net/http's
	// writer held bytes at the hijack and had to be kept).
	locked bool
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
		brw.Writer = bufio.NewWriterSize(lockedWriter{w: nc, mu: t.ctrl}, wsWriteBuffer)
		t.locked = true
	}
	t.conn = nc
	return nc, brw, nil
}

// Unwrap lets http.ResponseController reach the echo response.
func (t *hijackTap) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// lockedWriter holds mu while it writes.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
