package web_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/protocol"
)

// TestWSQueuedFramesShareAWrite: frames that queue while the connection's
// writer is busy go out together, with one write to the socket, and arrive
// as separate messages, whole and in order. This is what keeps a loaded
// server's syscalls per frame falling as the load rises
// (docs/performance.md, "Fan-out over /ws").
func TestWSQueuedFramesShareAWrite(t *testing.T) {
	gate, c, sub := gatedSubscriber(t)
	const n = 12 // below the connection's queue of 16
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = diffFrame("*", uint64(i), uint64(i+1))
	}
	writes := sendBehindHeldWrite(t, gate, sub, frames)
	got := readN(t, c, n)
	if diff := cmp.Diff(asStrings(frames), asStrings(got)); diff != "" {
		t.Fatalf("frames (-sent +received):\n%s", diff)
	}
	// The held write carried the first frame; the other 11 were queued
	// behind it and take one more.
	if w := writes.Load(); w != 2 {
		t.Errorf("%d frames took %d socket writes, want 2", n, w)
	}
}

// TestWSFrameSizes: frames on both sides of each WebSocket length encoding
// (7-bit, 16-bit, 64-bit) and larger than a write batch, queued together,
// arrive byte for byte and in order.
func TestWSFrameSizes(t *testing.T) {
	gate, c, sub := gatedSubscriber(t)
	sizes := []int{1, 125, 126, 127, 65535, 65536, 30 << 10, 1, 40 << 10, 200 << 10, 125, 64 << 10, 2}
	frames := make([][]byte, len(sizes))
	for i, n := range sizes {
		frames[i] = bytes.Repeat([]byte{byte('a' + i)}, n)
	}
	sendBehindHeldWrite(t, gate, sub, frames)
	got := readN(t, c, len(frames))
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Errorf("frame %d: got %d bytes starting %.8q, want %d bytes of %q", i, len(got[i]), got[i], sizes[i], rune('a'+i))
		}
	}
}

// gatedSubscriber is a connection subscribed to "*" on a server whose
// socket writes can be held (gateListener).
func gatedSubscriber(t *testing.T) (*gateListener, *websocket.Conn, protocol.Subscriber) {
	t.Helper()
	gate := &gateListener{}
	e := newEnvOn(t, nil, func(l net.Listener) net.Listener {
		gate.Listener = l
		return gate
	})
	c, sub := subscribed(t, e, "*")
	return gate, c, sub
}

// sendBehindHeldWrite sends frames[0], holds its socket write, sends the
// rest while it is held (they queue behind it), then lets it through. It
// returns the count of socket writes from the held one on.
func sendBehindHeldWrite(t *testing.T, gate *gateListener, sub protocol.Subscriber, frames [][]byte) *atomic.Int64 {
	t.Helper()
	writes := gate.holdWrites()
	defer gate.release() // also when a check below fails: a held write would hang the cleanup
	if !sub.Send(frames[0]) {
		t.Fatal("Send to an empty queue refused")
	}
	gate.waitHeld(t)
	for _, f := range frames[1:] {
		if !sub.Send(f) {
			t.Fatal("Send refused with the queue below its cap")
		}
	}
	return writes
}

func readN(t *testing.T, c *websocket.Conn, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		out[i] = mustRead(t, c)
	}
	return out
}

func asStrings(frames [][]byte) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = string(f)
	}
	return out
}

// gateListener hands out connections whose writes can be held: after
// holdWrites, the next write on any of them waits until release, and
// every write from then on is counted.
type gateListener struct {
	net.Listener
	mu     sync.Mutex
	hold   chan struct{} // closed by release; nil: writes pass
	held   chan struct{} // gets a value when a write is held
	writes *atomic.Int64 // writes since holdWrites
}

func (l *gateListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &gatedConn{Conn: c, l: l}, nil
}

// holdWrites holds the next write and counts writes from now on.
func (l *gateListener) holdWrites() *atomic.Int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hold, l.held, l.writes = make(chan struct{}), make(chan struct{}, 1), new(atomic.Int64)
	return l.writes
}

// waitHeld waits until a write is held.
func (l *gateListener) waitHeld(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	held := l.held
	l.mu.Unlock()
	select {
	case <-held:
	case <-time.After(hangBound):
		t.Fatal("no write reached the socket")
	}
}

// release lets the held write through; later writes pass. Releasing
// twice does nothing more.
func (l *gateListener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hold != nil {
		close(l.hold)
		l.hold = nil
	}
}

type gatedConn struct {
	net.Conn
	l *gateListener
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	hold, held, writes := c.l.hold, c.l.held, c.l.writes
	c.l.mu.Unlock()
	if writes != nil {
		writes.Add(1)
	}
	if hold != nil {
		select {
		case held <- struct{}{}:
		default:
		}
		<-hold
	}
	return c.Conn.Write(p)
}

// TestWSDeflate: a client that negotiates permessage-deflate (browsers
// all do), and so sends its subscribe frame compressed, gets the same
// messages as one that does not, in far fewer bytes
// on the wire; frames too small to gain, or that shrink little, arrive
// whole too (TestPreparedFrames checks which form each gets).
func TestWSDeflate(t *testing.T) {
	e := newEnv(t, nil)
	dial := func(deflate bool) (*websocket.Conn, protocol.Subscriber, *atomic.Int64) {
		t.Helper()
		read, compressed := new(atomic.Int64), new(atomic.Bool)
		mode := websocket.CompressionDisabled
		if deflate {
			mode = websocket.CompressionNoContextTakeover
		}
		ctx, cancel := context.WithTimeout(context.Background(), hangBound)
		defer cancel()
		c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/ws", &websocket.DialOptions{
			Subprotocols:    []string{protocol.SubprotocolV2},
			HTTPHeader:      bearer(e.adminToken(t)),
			CompressionMode: mode,
			// Browsers compress every message they send once the
			// extension is on, however small: so does this client, its
			// subscribe frame included, which the server must inflate.
			CompressionThreshold: 1,
			HTTPClient: &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				return &countingConn{Conn: nc, read: read, compressed: compressed}, err
			}}},
		})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		c.SetReadLimit(-1)
		if got := strings.Contains(res.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate"); got != deflate {
			t.Fatalf("permessage-deflate negotiated: %v, want %v", got, deflate)
		}
		send(t, c, subscribeFrame("*"))
		sub := e.hub.nextSub(t).sub
		mustRead(t, c) // the snapshot
		if compressed.Load() != deflate {
			t.Fatalf("subscribe frame compressed: %v, want %v", compressed.Load(), deflate)
		}
		return c, sub, read
	}
	plain, plainSub, plainRead := dial(false)
	zipped, zippedSub, zippedRead := dial(true)

	// A diff whose ticker repeats itself, as ticker text does; a frame
	// under the compression threshold; one of random letters, which
	// shrinks little.
	var ticker strings.Builder
	for i := range 300 {
		fmt.Fprintf(&ticker, `{"seq":%d,"type":"llm.call","project_id":"acme","level":"info","text":"agent a-%d called gpt-5"},`, i, i%7)
	}
	big := []byte(`{"op":"diff","scope":"*","ticker":[` + strings.TrimSuffix(ticker.String(), ",") + `]}`)
	noise := make([]byte, 3000)
	for i := range noise {
		noise[i] = byte('a' + rand.IntN(26))
	}
	frames := [][]byte{big, diffFrame("*", 1, 2), []byte(`"` + string(noise) + `"`), big}
	before := [2]int64{plainRead.Load(), zippedRead.Load()}
	for _, f := range frames {
		if !plainSub.Send(f) || !zippedSub.Send(f) {
			t.Fatal("Send refused with an empty queue")
		}
	}
	for name, c := range map[string]*websocket.Conn{"plain": plain, "deflate": zipped} {
		if diff := cmp.Diff(asStrings(frames), asStrings(readN(t, c, len(frames)))); diff != "" {
			t.Fatalf("%s client's frames (-sent +received):\n%s", name, diff)
		}
	}
	p, z := plainRead.Load()-before[0], zippedRead.Load()-before[1]
	if p < int64(2*len(big)) {
		t.Fatalf("the plain client read %d bytes for %d bytes of frames", p, 2*len(big))
	}
	if z*3 > p {
		t.Errorf("the deflate client read %d bytes, the plain one %d: want at most a third", z, p)
	}
}

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	read *atomic.Int64
	// compressed is set when the client writes a data frame with RSV1,
	// permessage-deflate's mark (each Write after the HTTP upgrade
	// starts with a frame's first byte).
	compressed *atomic.Bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	if len(p) > 0 && p[0]&0x40 != 0 && p[0]&0x0f <= 0x2 && c.compressed != nil {
		c.compressed.Store(true)
	}
	return c.Conn.Write(p)
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// TestWSStalledPeerHoldsUpNoOne: a peer that stops reading fills its
// socket; the shared writers hand it to a goroutine of its own, and every
// other subscriber (some on the same shared writer, whichever it is) keeps
// getting its frames.
func TestWSStalledPeerHoldsUpNoOne(t *testing.T) {
	e := newEnv(t, nil)
	_, stalled := subscribed(t, e, "*") // never read again
	others := make([]*websocket.Conn, 2*runtime.GOMAXPROCS(0)+1)
	subs := make([]protocol.Subscriber, len(others))
	for i := range others {
		others[i], subs[i] = subscribed(t, e, "*")
	}
	// Far more than a socket's buffers hold: the stalled peer's writes
	// would block.
	big := []byte(`{"op":"diff","pad":"` + strings.Repeat("x", 4<<20) + `"}`)
	for range 8 {
		if !stalled.Send(big) {
			break
		}
	}
	for round := range 5 {
		f := diffFrame("*", uint64(round), uint64(round+1))
		for i, sub := range subs {
			if !sub.Send(f) {
				t.Fatalf("round %d: subscriber %d's queue is full", round, i)
			}
		}
		for i, c := range others {
			if got := mustRead(t, c); !bytes.Equal(got, f) {
				t.Fatalf("round %d: subscriber %d got %.60q, want %q", round, i, got, f)
			}
		}
	}
}
