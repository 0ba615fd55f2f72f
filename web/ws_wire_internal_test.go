package web

import (
	"bytes"
	"compress/flate"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestPreparedFrames: a frame is prepared once and every connection gets
// the same bytes; a deflate connection gets the compressed form, which
// inflates back to the frame, unless the frame is too small to gain or
// does not shrink, when it gets the plain one.
func TestPreparedFrames(t *testing.T) {
	var p preparedFrames
	text := []byte(`{"op":"diff","ticker":[` + strings.Repeat(`{"type":"llm.call","text":"agent a-1 called gpt-5"},`, 40) + `{}]}`)
	noise := make([]byte, 4096)
	for i := range noise {
		noise[i] = byte(rand.IntN(256))
	}
	small := []byte(`{"op":"diff","scope":"*","seq":2}`)

	plain := p.wire(text, false)
	if want := plainFrame(text); !bytes.Equal(plain, want) {
		t.Fatalf("plain form %.20q, want %.20q", plain, want)
	}
	zipped := p.wire(text, true)
	if &p.wire(text, false)[0] != &plain[0] || &p.wire(text, true)[0] != &zipped[0] {
		t.Error("a frame asked for again was prepared again: connections do not share its bytes")
	}
	if zipped[0] != finText|rsv1 || len(zipped) >= len(plain)/3 {
		t.Fatalf("deflated form: first byte %#x, %d bytes for %d plain", zipped[0], len(zipped), len(plain))
	}
	payload := zipped[2:]
	switch zipped[1] {
	case 126:
		payload = zipped[4:]
	case 127:
		payload = zipped[10:]
	}
	r := flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, text) {
		t.Fatalf("inflated %d bytes (err %v), want the %d of the frame", len(got), err, len(text))
	}
	for name, f := range map[string][]byte{"incompressible": noise, "small": small} {
		if got := p.wire(f, true); !bytes.Equal(got, plainFrame(f)) {
			t.Errorf("%s frame: a deflate connection got %d bytes starting %#x, want the plain frame", name, len(got), got[0])
		}
	}
}
