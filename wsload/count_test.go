package wsload_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/sagewai/observatory/wsload"
)

// serverFrame is an unmasked server frame of op with a payload of n bytes.
func serverFrame(op byte, n int) []byte {
	var b []byte
	switch {
	case n < 126:
		b = []byte{0x80 | op, byte(n)}
	case n <= 0xffff:
		b = []byte{0x80 | op, 126, 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10)
		b[0], b[1] = 0x80|op, 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	return append(b, bytes.Repeat([]byte{'x'}, n)...)
}

// blocking counts stream as the per-connection reader does.
func blocking(stream []byte) (frames, n int64, err error) {
	st := &wsload.Stats{}
	err = wsload.ReadFrames(bufio.NewReader(bytes.NewReader(stream)), false, st)
	return st.Frames.Load(), st.Bytes.Load(), err
}

// chunked feeds stream to a FrameCounter in pieces whose sizes come from
// cuts, as reads of a socket would return it.
func chunked(stream, cuts []byte) (frames, n int64, err error) {
	frames, n, _, err = chunkedAt(stream, cuts)
	return frames, n, err
}

// chunkedAt is chunked, and says whether the stream ended between frames.
func chunkedAt(stream, cuts []byte) (frames, n int64, between bool, err error) {
	var fc wsload.FrameCounter
	for i := 0; len(stream) > 0; i++ {
		k := len(stream)
		if len(cuts) > 0 {
			k = min(k, 1+int(cuts[i%len(cuts)]))
		}
		f, b, ferr := fc.Feed(stream[:k])
		frames, n = frames+f, n+b
		if ferr != nil {
			return frames, n, true, ferr
		}
		stream = stream[k:]
	}
	return frames, n, fc.Between(), nil
}

// TestFrameCounterCountsAsTheReaderDoes: the counting subscribers' reader,
// fed a stream in pieces of any size, counts the data frames and bytes
// that the blocking reader counts (pings are not counted), and stops at a
// close frame as it does.
func TestFrameCounterCountsAsTheReaderDoes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	var want int64
	for _, n := range []int{0, 1, 125, 126, 127, 4000, 65535, 65536, 70000} {
		stream = append(stream, serverFrame(0x1, n)...)
		want += int64(n)
	}
	for i := range 200 {
		n := rng.IntN(3000)
		stream = append(stream, serverFrame(0x2, n)...)
		want += int64(n)
		if i%50 == 0 { // pings are not frames of the stream
			stream = append(stream, serverFrame(0x9, 4)...)
		}
	}
	wantFrames := int64(9 + 200)
	for _, cuts := range [][]byte{nil, {0}, {1, 2, 9}, {255}, {7, 0, 200, 3}} {
		frames, n, err := chunked(stream, cuts)
		if err != nil || frames != wantFrames || n != want {
			t.Errorf("cuts %v: %d frames, %d bytes, %v; want %d, %d, no error", cuts, frames, n, err, wantFrames, want)
		}
	}
	closed := append(append(serverFrame(0x1, 300), serverFrame(0x8, 2)...), serverFrame(0x1, 10)...)
	frames, n, err := chunked(closed, []byte{3})
	if !errors.Is(err, wsload.ErrServerClosed) || frames != 1 || n != 300 {
		t.Errorf("a close frame: %d frames, %d bytes, %v; want 1, 300, %v", frames, n, err, wsload.ErrServerClosed)
	}
}

// FuzzFrameCounter holds the counter to the blocking reader on any byte
// stream: equal frames and bytes wherever the reader ends cleanly (at the
// end of a frame) or at a close frame.
func FuzzFrameCounter(f *testing.F) {
	f.Add(serverFrame(0x1, 130), []byte{0, 5})
	f.Add(append(serverFrame(0x1, 3), serverFrame(0x8, 0)...), []byte{1})
	f.Add(serverFrame(0x2, 70000), []byte{255, 2})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		wf, wn, werr := blocking(stream)
		gf, gn, between, gerr := chunkedAt(stream, cuts)
		if errors.Is(werr, wsload.ErrServerClosed) != errors.Is(gerr, wsload.ErrServerClosed) {
			t.Fatalf("close frame: reader %v, counter %v", werr, gerr)
		}
		if werr == io.EOF && between || errors.Is(werr, wsload.ErrServerClosed) {
			// The reader counts a frame once its payload is read, the
			// counter once its header is: equal where the stream ends
			// between frames.
			if wf != gf || wn != gn {
				t.Fatalf("reader %d frames %d bytes, counter %d frames %d bytes", wf, wn, gf, gn)
			}
		}
	})
}

// TestCountersReadSockets: Counters reads real loopback sockets from one
// goroutine, counting the bytes a subscriber's reader already held when it
// was added and every frame after; a server that closes a socket is a
// disconnect; Run returns once its context ends.
func TestCountersReadSockets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st := &wsload.Stats{}
	cnt, err := wsload.NewCounters(st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cnt.Run(ctx)
	}()
	const conns, perConn = 20, 50
	var servers []net.Conn
	var wantBytes int64
	for i := range conns {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, server)
		// The first frame arrives before the socket is handed over and
		// sits in the reader's buffer.
		first := serverFrame(0x1, 100+i)
		if _, err := server.Write(first); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(client)
		if _, err := br.Peek(len(first)); err != nil {
			t.Fatal(err)
		}
		wantBytes += int64(100 + i)
		if err := cnt.Add(client, br); err != nil {
			t.Fatal(err)
		}
	}
	for i, server := range servers {
		for j := range perConn - 1 {
			n := 10 + (i*j)%5000
			if _, err := server.Write(serverFrame(0x2, n)); err != nil {
				t.Fatal(err)
			}
			wantBytes += int64(n)
		}
	}
	await(t, func() bool { return st.Frames.Load() == conns*perConn && st.Bytes.Load() == wantBytes },
		func() string {
			return fmt.Sprintf("%d frames, %d bytes; want %d, %d", st.Frames.Load(), st.Bytes.Load(), conns*perConn, wantBytes)
		})
	servers[0].Close()
	await(t, func() bool { return st.Disconnects.Load() == 1 }, func() string { return fmt.Sprintf("%d disconnects, want 1", st.Disconnects.Load()) })
	cancel()
	<-done
	if got := st.Disconnects.Load(); got != 1 {
		t.Errorf("%d disconnects after the run ended, want 1 (closing at the end is not a disconnect)", got)
	}
}

// await polls cond until it holds, failing the test with what() after a
// bound that only a hang reaches.
func await(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
