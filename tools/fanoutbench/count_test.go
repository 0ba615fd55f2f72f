package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
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
	st := &stats{}
	err = readFrames(bufio.NewReader(bytes.NewReader(stream)), false, st)
	return st.frames.Load(), st.bytes.Load(), err
}

// chunked feeds stream to a frameCounter in pieces whose sizes come from
// cuts, as reads of a socket would return it.
func chunked(stream, cuts []byte) (frames, n int64, err error) {
	frames, n, _, err = chunkedAt(stream, cuts)
	return frames, n, err
}

// chunkedAt is chunked, and says whether the stream ended between frames.
func chunkedAt(stream, cuts []byte) (frames, n int64, between bool, err error) {
	var fc frameCounter
	for i := 0; len(stream) > 0; i++ {
		k := len(stream)
		if len(cuts) > 0 {
			k = min(k, 1+int(cuts[i%len(cuts)]))
		}
		f, b, ferr := fc.feed(stream[:k])
		frames, n = frames+f, n+b
		if ferr != nil {
			return frames, n, true, ferr
		}
		stream = stream[k:]
	}
	return frames, n, fc.hn == 0 && fc.need == 0, nil
}

// TestFrameCounterCountsAsTheReaderDoes: the counting subscribers' reader,
// fed a stream in pieces of any size, counts the frames and bytes that
// the blocking reader counts, and stops at a close frame as it does.
func TestFrameCounterCountsAsTheReaderDoes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	var want int64
	for _, n := range []int{0, 1, 125, 126, 127, 4000, 65535, 65536, 70000} {
		stream = append(stream, serverFrame(0x1, n)...)
		want += int64(n)
	}
	for range 200 {
		n := rng.IntN(3000)
		stream = append(stream, serverFrame(0x2, n)...)
		want += int64(n)
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
	if !errors.Is(err, errServerClosed) || frames != 1 || n != 300 {
		t.Errorf("a close frame: %d frames, %d bytes, %v; want 1, 300, %v", frames, n, err, errServerClosed)
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
		if errors.Is(werr, errServerClosed) != errors.Is(gerr, errServerClosed) {
			t.Fatalf("close frame: reader %v, counter %v", werr, gerr)
		}
		if werr == io.EOF && between || errors.Is(werr, errServerClosed) {
			// The reader counts a frame once its payload is read, the
			// counter once its header is: equal where the stream ends
			// between frames.
			if wf != gf || wn != gn {
				t.Fatalf("reader %d frames %d bytes, counter %d frames %d bytes", wf, wn, gf, gn)
			}
		}
	})
}
