package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/lbtest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// The keep-alive tests run the real /ws server with a shorter ping than
// serve's (which has no flag for it) behind nginx with a shorter idle
// timeout, in the same proportion as production (a 25 s ping under a
// 60 s proxy_read_timeout), so that several idle timeouts pass in
// seconds rather than minutes.
const (
	lbIdleTimeout  = 2 * time.Second        // nginx's proxy_read_timeout
	lbPingInterval = 500 * time.Millisecond // web.Config.PingInterval
)

// pingServer is the real /ws server (web over a real hub on an embedded
// NATS) behind nginx.
type pingServer struct {
	env   *streamtest.Env
	lb    *lbtest.Balancer
	logs  *syncBuffer // the server's JSON log
	token string      // an admin token
}

// startPingServer runs the server with the /ws keep-alive given behind
// nginx with proxy_read_timeout idle.
func startPingServer(t *testing.T, ping, pong, idle time.Duration) *pingServer {
	t.Helper()
	env := streamtest.Start(t, stream.HubConfig{Tick: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	logs := &syncBuffer{}
	srv, err := web.New(web.Config{
		SigningKey:   bytes.Repeat([]byte("k"), 32),
		BcryptCost:   4,
		Logger:       slog.New(slog.NewJSONHandler(logs, nil)),
		PingInterval: ping,
		PongTimeout:  pong,
	}, env.Hub, env.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
	})
	token, _, err := srv.IssueToken(auth.RoleAdmin, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lb := lbtest.Start(t, lbtest.Config{Upstreams: []string{ts.Listener.Addr().String()}, ReadTimeout: idle})
	return &pingServer{env: env, lb: lb, logs: logs, token: token}
}

// quietWS is a browser-like /ws client through the balancer: it reads
// all the time (so it answers pings, as browsers do) and counts them.
type quietWS struct {
	c      *websocket.Conn
	pings  atomic.Int64
	frames chan []byte
	closed chan error // the read error that ended the connection
}

func dialQuiet(t *testing.T, s *pingServer) *quietWS {
	t.Helper()
	q := &quietWS{frames: make(chan []byte, 64), closed: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.lb.Addr+"/ws", &websocket.DialOptions{
		Subprotocols:   []string{protocol.Subprotocol},
		HTTPHeader:     http.Header{"Authorization": {"Bearer " + s.token}},
		OnPingReceived: func(context.Context, []byte) bool { q.pings.Add(1); return true },
	})
	if err != nil {
		t.Fatalf("dial /ws through nginx: %v", err)
	}
	q.c = c
	t.Cleanup(func() { c.CloseNow() })
	sub, _ := json.Marshal(protocol.Subscribe{Op: protocol.OpSubscribe, Scope: fleet.ScopeAll})
	if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				q.closed <- err
				return
			}
			q.frames <- b
		}
	}()
	select {
	case b := <-q.frames:
		var h struct{ Op string }
		if json.Unmarshal(b, &h); h.Op != protocol.OpSnapshot {
			t.Fatalf("first frame %.200s, want the snapshot", b)
		}
	case err := <-q.closed:
		t.Fatalf("closed before the snapshot: %v", err)
	case <-time.After(hangBound):
		t.Fatal("no snapshot")
	}
	return q
}

// TestQuietWSBehindNginx: behind nginx with an idle timeout, a /ws that
// carries nothing is cut after that timeout when the server does not
// ping, and stays open across five idle timeouts when it pings (the
// client answering, as a browser does), still delivering the next diff.
func TestQuietWSBehindNginx(t *testing.T) {
	t.Run("without pings nginx cuts it", func(t *testing.T) {
		s := startPingServer(t, time.Hour, time.Hour, lbIdleTimeout)
		q := dialQuiet(t, s)
		start := time.Now()
		select {
		case err := <-q.closed:
			t.Logf("nginx cut the quiet /ws after %s (proxy_read_timeout %s): %v", time.Since(start).Round(time.Millisecond), lbIdleTimeout, err)
		case <-time.After(hangBound):
			t.Fatalf("a quiet /ws without pings was still open %s behind a %s proxy_read_timeout: the test's nginx does not cut idle connections", hangBound, lbIdleTimeout)
		}
		if n := len(q.frames); n != 0 {
			t.Errorf("%d frames arrived: the connection was not quiet", n)
		}
	})

	t.Run("with pings it stays open", func(t *testing.T) {
		s := startPingServer(t, lbPingInterval, hangBound, lbIdleTimeout)
		q := dialQuiet(t, s)
		window := 5 * lbIdleTimeout
		select {
		case err := <-q.closed:
			t.Fatalf("the /ws was cut despite the server's pings (%d answered): %v\nnginx:\n%s", q.pings.Load(), err, s.lb.ErrorLog())
		case b := <-q.frames:
			t.Fatalf("a frame arrived on the quiet connection, which then proves nothing: %.200s", b)
		case <-time.After(window):
		}
		if n := q.pings.Load(); n < int64(window/lbIdleTimeout) {
			t.Errorf("%d pings in %s, want at least one per idle timeout", n, window)
		}
		t.Logf("open after %s of quiet behind a %s proxy_read_timeout, %d pings answered", window, lbIdleTimeout, q.pings.Load())

		// The same connection still delivers what happens next.
		var ev fleet.Event
		for _, m := range fleettest.Generate(mrand.New(mrand.NewPCG(3, 4)), 20, fleettest.Options{Start: time.Now()}) {
			if e, err := fleet.DecodeEvent(m.Subject, m.Body); err == nil {
				ev = e
				break
			}
		}
		if _, err := s.env.Publisher.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-q.frames:
			var h struct{ Op string }
			if json.Unmarshal(b, &h); h.Op != protocol.OpDiff {
				t.Fatalf("after the quiet: %.200s, want a diff", b)
			}
		case err := <-q.closed:
			t.Fatalf("cut after the quiet: %v", err)
		case <-time.After(hangBound):
			t.Fatal("no diff after the quiet")
		}
	})
}

// maskedText is a client's WebSocket text frame (masked, as clients must
// send them) of a payload under 126 bytes.
func maskedText(payload []byte) []byte {
	var key [4]byte
	rand.Read(key[:])
	f := append([]byte{0x81, 0x80 | byte(len(payload))}, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// TestDeadWSPeerBehindNginx: a /ws client behind nginx (with its usual
// 60 s idle timeout) that subscribes and then vanishes without a FIN (it
// stops reading and answering, its socket left open) is dropped by the
// server once a ping goes unanswered for PongTimeout, logged as
// ws.pong_timeout, and nginx then lets go of the client's side too. The
// server's pings alone would keep nginx's idle timer from ever firing, so
// without the pong timeout such peers would pile up.
func TestDeadWSPeerBehindNginx(t *testing.T) {
	const pong = 2 * time.Second
	s := startPingServer(t, lbPingInterval, pong, 0)
	conn, err := net.Dial("tcp", s.lb.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var nonce [16]byte
	rand.Read(nonce[:])
	req := "GET /ws HTTP/1.1\r\nHost: " + s.lb.Addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(nonce[:]) + "\r\n" +
		"Sec-WebSocket-Protocol: " + protocol.Subprotocol + "\r\nAuthorization: Bearer " + s.token + "\r\n\r\n"
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
		t.Fatalf("handshake through nginx: %s", res.Status)
	}
	sub, _ := json.Marshal(protocol.Subscribe{Op: protocol.OpSubscribe, Scope: fleet.ScopeAll})
	if _, err := conn.Write(maskedText(sub)); err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, hangBound, func() bool { return s.env.Hub.Stats().Subscribers == 1 }, "the raw client never subscribed")

	// From here the peer is gone: it neither reads nor answers.
	start := time.Now()
	streamtest.Eventually(t, hangBound, func() bool { return s.env.Hub.Stats().Subscribers == 0 },
		"the server still holds the vanished peer")
	t.Logf("the vanished peer was dropped %s after it went silent (ping every %s, pong timeout %s)",
		time.Since(start).Round(time.Millisecond), lbPingInterval, pong)
	if !strings.Contains(s.logs.String(), `"event":"ws.pong_timeout"`) {
		t.Errorf("dropped without ws.pong_timeout in the server's log:\n%s", s.logs.String())
	}
	if strings.Contains(s.lb.ErrorLog(), "timed out") {
		t.Errorf("nginx timed the connection out, not the server:\n%s", s.lb.ErrorLog())
	}
	// nginx closes the client's side once the server closed its own:
	// what was queued for the peer, then EOF.
	_, err = io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("nginx kept the vanished peer's connection open after the server dropped it")
	}
}
