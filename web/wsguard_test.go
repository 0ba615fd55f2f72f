package web_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// fastSweep checks the /ws connections every 5 ms.
func fastSweep(c *web.Config) { c.SweepInterval = 5 * time.Millisecond }

// TestWSClosesWhenTokenExpires: a /ws stream lasts while its token is
// valid on the server's clock and ends with an unauthorized error frame
// and 4401 the moment it expires (issue 12 finding 5: an expired embed
// token kept receiving diffs).
func TestWSClosesWhenTokenExpires(t *testing.T) {
	for _, kind := range []string{auth.KindAPI, auth.KindEmbed} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, fastSweep)
			var tok, query string
			var header http.Header
			var err error
			if kind == auth.KindAPI {
				tok, _, err = e.srv.IssueToken(auth.RoleProject, "acme", time.Minute)
				header = bearer(tok)
			} else {
				tok, _, err = e.srv.IssueEmbedToken(auth.RoleProject, "acme", time.Minute)
				query = "?embed_token=" + tok
			}
			if err != nil {
				t.Fatal(err)
			}
			c := e.mustDial(t, query, header)
			send(t, c, subscribeFrame("acme"))
			sub := e.hub.nextSub(t)
			mustRead(t, c) // the snapshot

			// A second before expiry the stream still flows.
			e.clock.Advance(59 * time.Second)
			if !sub.sub.Send(diffFrame("acme", 0, 1)) {
				t.Fatal("the connection's queue refused a diff")
			}
			if h := head(t, mustRead(t, c)); h.Op != protocol.OpDiff {
				t.Fatalf("a second before expiry: %+v, want the diff", h)
			}
			e.clock.Advance(time.Second)
			code, status := closedWith(t, c)
			if code != protocol.CodeUnauthorized || status != protocol.CloseUnauthorized {
				t.Fatalf("at expiry: error %q, close %d; want unauthorized, 4401", code, status)
			}
			e.hub.waitUnsub(t, sub.sub)
		})
	}
}

// TestWSClosesWhenKeyRetires: a stream under a token of a key rotated out
// lasts through the key's grace and ends with 4401 when the grace ends,
// or at once when the key leaves the ring.
func TestWSClosesWhenKeyRetires(t *testing.T) {
	ring, err := keyring.New(fleettest.Epoch())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *web.Config) { fastSweep(c); c.Keys = ring })
	open := func() (*websocket.Conn, subscription) {
		c := e.mustDial(t, "", bearer(e.adminToken(t)))
		send(t, c, subscribeFrame("*"))
		sub := e.hub.nextSub(t)
		mustRead(t, c)
		return c, sub
	}
	graced, gracedSub := open()
	dropped, droppedSub := open()

	rotated, err := ring.Rotate(e.clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SetKeys(rotated); err != nil {
		t.Fatal(err)
	}
	if e.srv.KeyID() != rotated.Current().ID {
		t.Errorf("the server signs with %s after the rotation, want %s", e.srv.KeyID(), rotated.Current().ID)
	}
	e.clock.Advance(59 * time.Minute)
	gracedSub.sub.Send(diffFrame("*", 0, 1))
	if h := head(t, mustRead(t, graced)); h.Op != protocol.OpDiff {
		t.Fatalf("within the grace: %+v, want the diff", h)
	}
	e.clock.Advance(time.Minute)
	if code, status := closedWith(t, graced); code != protocol.CodeUnauthorized || status != protocol.CloseUnauthorized {
		t.Errorf("when the grace ended: %q %d, want unauthorized 4401", code, status)
	}
	e.hub.waitUnsub(t, gracedSub.sub)

	// The old key is dropped from the ring (rotate-key --drop-old).
	fresh, freshSub := open() // a token of the new key
	if err := e.srv.SetKeys(rotated.Retire()); err != nil {
		t.Fatal(err)
	}
	if code, status := closedWith(t, dropped); code != protocol.CodeUnauthorized || status != protocol.CloseUnauthorized {
		t.Errorf("the old key dropped: %q %d, want unauthorized 4401", code, status)
	}
	e.hub.waitUnsub(t, droppedSub.sub)
	freshSub.sub.Send(diffFrame("*", 0, 2))
	if h := head(t, mustRead(t, fresh)); h.Op != protocol.OpDiff {
		t.Errorf("a token of the new key after the old was dropped: %+v, want the diff", h)
	}
}

// TestWSPingsQuietConnection: a quiet connection gets a ping every
// PingInterval and, answering them, stays open.
func TestWSPingsQuietConnection(t *testing.T) {
	e := newEnv(t, func(c *web.Config) {
		fastSweep(c)
		c.PingInterval, c.PongTimeout = 20*time.Millisecond, hangBound
	})
	var pings atomic.Int64
	five := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/ws", &websocket.DialOptions{
		Subprotocols: []string{protocol.Subprotocol},
		HTTPHeader:   bearer(e.adminToken(t)),
		OnPingReceived: func(context.Context, []byte) bool {
			if pings.Add(1) == 5 {
				close(five)
			}
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	send(t, c, subscribeFrame("*"))
	sub := e.hub.nextSub(t)
	frames := make(chan []byte, 8)
	go func() {
		defer close(frames)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			frames <- b
		}
	}()
	<-frames // the snapshot
	select {
	case <-five:
	case <-time.After(hangBound):
		t.Fatalf("%d pings in %s", pings.Load(), hangBound)
	}
	sub.sub.Send(diffFrame("*", 0, 1))
	select {
	case b, ok := <-frames:
		if !ok || head(t, b).Op != protocol.OpDiff {
			t.Fatalf("after 5 pings: %q %v, want the diff on an open connection", b, ok)
		}
	case <-time.After(hangBound):
		t.Fatal("no diff after the pings")
	}
	if e.hub.count() != 1 {
		t.Errorf("%d subscribers, want the one still open", e.hub.count())
	}
}

// TestWSDropsPeerThatStopsPonging: a client that keeps reading but
// answers no ping is cut once PongTimeout passes after a ping.
func TestWSDropsPeerThatStopsPonging(t *testing.T) {
	e := newEnv(t, func(c *web.Config) {
		fastSweep(c)
		c.PingInterval, c.PongTimeout = 20*time.Millisecond, 100*time.Millisecond
	})
	var pings atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/ws", &websocket.DialOptions{
		Subprotocols:   []string{protocol.Subprotocol},
		HTTPHeader:     bearer(e.adminToken(t)),
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return false },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	send(t, c, subscribeFrame("*"))
	sub := e.hub.nextSub(t)
	for {
		if _, _, err = c.Read(ctx); err != nil {
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("the connection was never cut: %v", err)
	}
	e.hub.waitUnsub(t, sub.sub)
	if pings.Load() == 0 {
		t.Error("cut without a ping")
	}
	if !strings.Contains(e.logs.String(), `"event":"ws.pong_timeout"`) {
		t.Errorf("no ws.pong_timeout in the log:\n%s", e.logs.String())
	}
}

// TestWSDropsSilentRawPeer: a raw TCP client that completes the
// handshake and then never reads, writes nor pongs is cut after a ping
// goes unanswered for PongTimeout.
func TestWSDropsSilentRawPeer(t *testing.T) {
	e := newEnv(t, func(c *web.Config) {
		fastSweep(c)
		c.PingInterval, c.PongTimeout = 20*time.Millisecond, 100*time.Millisecond
		c.SubscribeTimeout = time.Hour // only the pings may end it
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var nonce [16]byte
	rand.Read(nonce[:])
	req := "GET /ws HTTP/1.1\r\nHost: " + strings.TrimPrefix(e.url, "http://") + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(nonce[:]) + "\r\n" +
		"Sec-WebSocket-Protocol: " + protocol.Subprotocol + "\r\nAuthorization: Bearer " + e.adminToken(t) + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(hangBound)) // bounds a hang only
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", res.Status)
	}
	// From here the client is silent: it only reads what the server sends.
	var sawPing bool
	var readErr error
	for readErr == nil {
		var hdr [2]byte
		if _, readErr = io.ReadFull(br, hdr[:]); readErr != nil {
			break
		}
		if hdr[0]&0x0f == 0x9 {
			sawPing = true
		}
		_, readErr = io.CopyN(io.Discard, br, int64(hdr[1]&0x7f))
	}
	var ne net.Error
	if errors.As(readErr, &ne) && ne.Timeout() {
		t.Fatalf("the server never cut the silent peer (ping seen: %v)", sawPing)
	}
	if !sawPing {
		t.Errorf("cut (%v) without a ping", readErr)
	}
	streamtest.Eventually(t, hangBound, func() bool { return strings.Contains(e.logs.String(), `"event":"ws.pong_timeout"`) },
		"no ws.pong_timeout logged")
}
