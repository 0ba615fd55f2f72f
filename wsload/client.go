package wsload

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Dialer opens subscribers of one server with one credential.
type Dialer struct {
	Host     string // host:port of the server
	Token    string // a bearer token that may read the scopes asked for
	Protocol string // the /ws subprotocol asked for
	// Deflate offers permessage-deflate with no context takeover, as
	// browsers do; frames are then counted as they arrive, compressed.
	Deflate bool
}

// Dial opens a WebSocket by hand (the HTTP upgrade, then one masked text
// frame with the subscribe request for scope) and returns the
// connection, with a reader that may already hold its first frames.
func (d Dialer) Dial(scope string) (net.Conn, *bufio.Reader, error) {
	conn, err := net.Dial("tcp", d.Host)
	if err != nil {
		return nil, nil, err
	}
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n"+
		"%sAuthorization: Bearer %s\r\n\r\n", d.Host, base64.StdEncoding.EncodeToString(key), d.Protocol, extensions(d.Deflate), d.Token)
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	payload := []byte(`{"op":"subscribe","scope":"` + scope + `"}`)
	frame := []byte{0x81, 0x80 | byte(len(payload)), 1, 2, 3, 4}
	for i, b := range payload {
		frame = append(frame, b^frame[2+i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, br, nil
}

func extensions(deflate bool) string {
	if !deflate {
		return ""
	}
	return "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"
}

// Subscribe dials a subscriber of scope and reads its frames on a
// goroutine of its own (counted by wg) until ctx ends; a disconnect
// before that is counted in st. A probe decodes its frames and times
// their ticker entries.
func Subscribe(ctx context.Context, wg *sync.WaitGroup, d Dialer, scope string, probe bool, st *Stats) error {
	conn, br, err := d.Dial(scope)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer conn.Close()
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		if err := ReadFrames(br, probe, st); err != nil && ctx.Err() == nil {
			st.Disconnected(err)
		}
	}()
	return nil
}

// Stats is what a set of subscribers received. The counters are read
// and added to directly.
type Stats struct {
	// Frames and Bytes count data frames and their payload bytes (as they
	// came over the wire); Snapshots the snapshots probes decoded;
	// Disconnects the subscribers lost before their context ended.
	Frames, Bytes, Snapshots, Disconnects atomic.Int64

	// mu guards lat and lastErr.
	mu      sync.Mutex
	lat     []float64
	lastErr string
}

// Reset zeroes the frame, byte and snapshot counts and the latencies, at
// the start of a measurement.
func (s *Stats) Reset() {
	s.Frames.Store(0)
	s.Bytes.Store(0)
	s.Snapshots.Store(0)
	s.mu.Lock()
	s.lat = s.lat[:0]
	s.mu.Unlock()
}

// Latencies returns the probes' publish-to-receive times in
// milliseconds, sorted.
func (s *Stats) Latencies() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.lat)
	slices.Sort(out)
	return out
}

// AddLatencies adds times measured elsewhere (another process's probes).
func (s *Stats) AddLatencies(ms []float64) {
	s.mu.Lock()
	s.lat = append(s.lat, ms...)
	s.mu.Unlock()
}

// Disconnected counts a lost subscriber and keeps why.
func (s *Stats) Disconnected(err error) {
	s.Disconnects.Add(1)
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// LastError is why a subscriber was last disconnected ("" if none was).
func (s *Stats) LastError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// SetLastError keeps e as the last disconnect's reason (from another
// process's report); an empty e changes nothing.
func (s *Stats) SetLastError(e string) {
	if e == "" {
		return
	}
	s.mu.Lock()
	s.lastErr = e
	s.mu.Unlock()
}

// ReadFrames reads server frames until the connection ends. Probes decode
// each data frame and time its ticker entries; the others discard the
// payload. It returns ErrServerClosed at a close frame.
func ReadFrames(br *bufio.Reader, probe bool, st *Stats) error {
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return err
		}
		op, compressed := hdr[0]&0x0f, hdr[0]&0x40 != 0
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[:2]); err != nil {
				return err
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(br, hdr[:8]); err != nil {
				return err
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if op == opClose {
			return ErrServerClosed
		}
		recv := time.Now()
		if !probe || !isData(op) {
			if _, err := br.Discard(int(n)); err != nil {
				return err
			}
		} else {
			buf = slices.Grow(buf[:0], int(n))[:n]
			if _, err := io.ReadFull(br, buf); err != nil {
				return err
			}
			frame := buf
			if compressed {
				var err error
				if frame, err = inflate(buf); err != nil {
					return err
				}
			}
			observe(frame, recv, st)
		}
		if isData(op) {
			st.Frames.Add(1)
			st.Bytes.Add(int64(n))
		}
	}
}

// inflate undoes permessage-deflate (RFC 7692 §7.2.2): the payload, the
// 00 00 ff ff its sender removed, and a final empty block.
func inflate(payload []byte) ([]byte, error) {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("inflate a frame: %w", err)
	}
	return b, nil
}

// observe counts a snapshot, or times the ticker entries of a diff whose
// ids carry their publish time (b-<unix nanos>-<n>).
func observe(frame []byte, recv time.Time, st *Stats) {
	var f struct {
		Op     string `json:"op"`
		Ticker []struct {
			ID string `json:"id"`
		} `json:"ticker"`
	}
	if json.Unmarshal(frame, &f) != nil {
		return
	}
	if f.Op == "snapshot" {
		st.Snapshots.Add(1)
		return
	}
	var lat []float64
	for _, e := range f.Ticker {
		parts := strings.Split(e.ID, "-")
		if len(parts) != 3 || parts[0] != "b" {
			continue
		}
		if ns, err := strconv.ParseInt(parts[1], 10, 64); err == nil {
			lat = append(lat, float64(recv.UnixNano()-ns)/1e6)
		}
	}
	st.AddLatencies(lat)
}
