package web_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// TestWSCredentials: every way of presenting a token, good and bad. A bad
// one gets an unauthorized error frame and 4401 after the subscribe frame.
func TestWSCredentials(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.adminToken(t)
	session := e.sessionToken(t)
	embed := e.embedToken(t, auth.RoleProject, "acme")
	expired, _, err := e.srv.IssueToken(auth.RoleAdmin, "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	cookie := func(tok string) http.Header { return http.Header{"Cookie": {web.SessionCookie + "=" + tok}} }

	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
		scope  string
		ok     bool
	}{
		{name: "no token", scope: "*"},
		{name: "garbage", header: bearer("garbage"), scope: "*"},
		{name: "tampered", header: bearer(flipLast(admin)), scope: "*"},
		{name: "expired", header: bearer(expired), scope: "*"},
		{name: "bearer", header: bearer(admin), scope: "*", ok: true},
		{name: "session cookie", header: cookie(session), scope: "*", ok: true},
		{name: "api token in the cookie", header: cookie(admin), scope: "*"},
		{name: "embed token in the URL", query: "?embed_token=" + embed, scope: "acme", ok: true},
		{name: "api token in the URL", query: "?embed_token=" + admin, scope: "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.mustDial(t, tc.query, tc.header)
			send(t, c, subscribeFrame(tc.scope))
			if !tc.ok {
				code, status := closedWith(t, c)
				if code != protocol.CodeUnauthorized || status != protocol.CloseUnauthorized {
					t.Fatalf("got error %q and close %d, want unauthorized and 4401", code, status)
				}
				return
			}
			sub := e.hub.nextSub(t)
			if sub.req.Scope != tc.scope {
				t.Errorf("hub got scope %q, want %q", sub.req.Scope, tc.scope)
			}
			if h := head(t, mustRead(t, c)); h.Op != protocol.OpSnapshot || h.Scope != tc.scope {
				t.Errorf("first frame %+v, want the snapshot of %q", h, tc.scope)
			}
			c.Close(websocket.StatusNormalClosure, "")
			e.hub.waitUnsub(t, sub.sub)
		})
	}
	if e.hub.count() != 0 {
		t.Errorf("%d subscribers left", e.hub.count())
	}
	if strings.Contains(e.logs.String(), embed) || strings.Contains(e.logs.String(), admin) {
		t.Error("a token appears in the log")
	}
}

func TestWSBadFrames(t *testing.T) {
	e := newEnv(t, nil)
	admin := bearer(e.adminToken(t))
	for _, tc := range []struct {
		name  string
		frame string
		typ   websocket.MessageType
	}{
		{"not JSON", `subscribe please`, websocket.MessageText},
		{"wrong op", `{"op":"snapshot","scope":"*"}`, websocket.MessageText},
		{"bad scope", `{"op":"subscribe","scope":"ACME!"}`, websocket.MessageText},
		{"unknown field", `{"op":"subscribe","scope":"*","x":1}`, websocket.MessageText},
		{"resume without epoch", `{"op":"subscribe","scope":"*","resume":{"seq":3}}`, websocket.MessageText},
		{"too large", `{"op":"subscribe","scope":"*","pad":"` + strings.Repeat("x", protocol.MaxClientFrame) + `"}`, websocket.MessageText},
		{"binary", subscribeFrame("*"), websocket.MessageBinary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.mustDial(t, "", admin)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.Write(ctx, tc.typ, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			code, status := closedWith(t, c)
			if code != protocol.CodeBadRequest || status != protocol.CloseBadRequest {
				t.Fatalf("got error %q and close %d, want bad_request and 4400", code, status)
			}
		})
	}
	if e.hub.count() != 0 {
		t.Errorf("a bad frame reached the hub")
	}
}

func TestWSSilentClient(t *testing.T) {
	e := newEnv(t, func(c *web.Config) { c.SubscribeTimeout = 50 * time.Millisecond })
	c := e.mustDial(t, "", bearer(e.adminToken(t)))
	code, status := closedWith(t, c)
	if code != protocol.CodeBadRequest || status != protocol.CloseBadRequest {
		t.Fatalf("got error %q and close %d, want bad_request and 4400", code, status)
	}
}

func TestWSNeedsSubprotocol(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/ws", &websocket.DialOptions{
		HTTPHeader: bearer(e.adminToken(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	code, status := closedWith(t, c)
	if code != protocol.CodeBadRequest || status != protocol.CloseBadRequest {
		t.Fatalf("got error %q and close %d, want bad_request and 4400", code, status)
	}
}

func TestWSOrigin(t *testing.T) {
	e := newEnv(t, func(c *web.Config) {
		c.AllowedOrigins = []string{"hud.example.com", "https://*.sagewai.dev"}
	})
	admin := e.adminToken(t)
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true}, // not a browser
		{e.url, true},
		{"https://hud.example.com", true},
		{"http://hud.example.com", true},
		{"https://team.sagewai.dev", true},
		{"http://team.sagewai.dev", false}, // the pattern names the scheme
		{"https://evil.example", false},
		{"null", false},
	} {
		t.Run(tc.origin, func(t *testing.T) {
			h := bearer(admin)
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			c, res, err := e.dial(t, "", h)
			if tc.ok {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				c.Close(websocket.StatusNormalClosure, "")
				return
			}
			if err == nil {
				t.Fatal("a foreign origin was upgraded")
			}
			if res == nil || res.StatusCode != http.StatusForbidden {
				t.Fatalf("dial: %v (response %v), want 403", err, res)
			}
		})
	}
	// The refusal comes in the JSON error shape, before any upgrade.
	res := e.do(t, "GET", "/ws", "", http.Header{
		"Origin": {"https://evil.example"}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
	})
	if res.status != 403 || res.errorCode(t) != "forbidden" {
		t.Errorf("foreign origin: %d %s", res.status, res.body)
	}
	if e.hub.count() != 0 {
		t.Error("a refused origin reached the hub")
	}
}

// TestWSTenantIsolation: a project token asking for another scope (first,
// or by switching) is refused with 4403 and audited.
func TestWSTenantIsolation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames []string
		denied string // the scope refused
	}{
		{"first frame", []string{subscribeFrame("globex")}, "globex"},
		{"all projects", []string{subscribeFrame("*")}, "*"},
		{"switching", []string{subscribeFrame("acme"), subscribeFrame("globex")}, "globex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.mustDial(t, "", bearer(e.token(t, auth.RoleProject, "acme")))
			for _, f := range tc.frames {
				send(t, c, f)
			}
			code, status := closedWith(t, c)
			if code != protocol.CodeForbidden || status != protocol.CloseForbidden {
				t.Fatalf("got error %q and close %d, want forbidden and 4403", code, status)
			}
			want := []auditRecord{{fleet.TypeCrossAccess, "acme", "api:acme", map[string]string{
				"subject": "api:acme", "scope": tc.denied, "route": "/ws",
			}}}
			if diff := cmp.Diff(want, e.audit.records(t)); diff != "" {
				t.Errorf("audit events (-want +got):\n%s", diff)
			}
			waitFor(t, func() bool { return e.hub.count() == 0 }, "the hub still holds the subscriber")
		})
	}
}

// TestWSSwitchScope: an admin moves from one scope to another; the hub
// sees Unsubscribe then Subscribe, and the client the new snapshot.
func TestWSSwitchScope(t *testing.T) {
	e := newEnv(t, nil)
	c := e.mustDial(t, "", bearer(e.adminToken(t)))
	send(t, c, subscribeFrame("acme"))
	first := e.hub.nextSub(t)
	if h := head(t, mustRead(t, c)); h.Scope != "acme" {
		t.Fatalf("first snapshot of %q", h.Scope)
	}
	send(t, c, subscribeFrame("*"))
	e.hub.waitUnsub(t, first.sub)
	if second := e.hub.nextSub(t); second.req.Scope != "*" || second.sub != first.sub {
		t.Errorf("second subscription %+v", second.req)
	}
	if h := head(t, mustRead(t, c)); h.Op != protocol.OpSnapshot || h.Scope != "*" {
		t.Errorf("after the switch: %+v, want the snapshot of *", h)
	}
	if e.hub.count() != 1 {
		t.Errorf("hub holds %d subscriptions, want 1", e.hub.count())
	}
}

// subscribed dials as admin, subscribes to scope and reads the snapshot.
func subscribed(t *testing.T, e *env, scope string) (*websocket.Conn, protocol.Subscriber) {
	t.Helper()
	c := e.mustDial(t, "", bearer(e.adminToken(t)))
	send(t, c, subscribeFrame(scope))
	sub := e.hub.nextSub(t).sub
	if h := head(t, mustRead(t, c)); h.Op != protocol.OpSnapshot || h.Scope != scope {
		t.Fatalf("first frame %+v, want the snapshot of %q", h, scope)
	}
	return c, sub
}

// TestWSFramesInOrder: what the hub Sends arrives whole and in order; a
// protocol.Mirror applies it without a gap.
func TestWSFramesInOrder(t *testing.T) {
	e := newEnv(t, nil)
	c, sub := subscribed(t, e, "*")
	var m protocol.Mirror
	if _, err := m.Apply(snapshotFrame("*", 0)); err != nil {
		t.Fatal(err)
	}
	const n = 200
	// The sender waits for the client to read a frame whenever the queue is
	// full: while frames are queued, reads keep coming, and each one was
	// taken off the queue.
	reads := make(chan struct{}, 1)
	go func() {
		for i := uint64(0); i < n; i++ {
			f := diffFrame("*", i, i+1)
			for !sub.Send(f) {
				<-reads
			}
		}
	}()
	for m.Seq < n {
		if _, err := m.Apply(mustRead(t, c)); err != nil {
			t.Fatalf("at seq %d: %v", m.Seq, err)
		}
		select {
		case reads <- struct{}{}:
		default:
		}
	}
	if m.Diffs != n {
		t.Errorf("applied %d diffs, want %d", m.Diffs, n)
	}
}

// TestWSSlowSubscriber: a client that stops reading fills its queue; Send
// then reports false without blocking, and Reset drops what is queued so
// that the fresh snapshot comes next.
func TestWSSlowSubscriber(t *testing.T) {
	e := newEnv(t, nil)
	c, sub := subscribed(t, e, "*")
	big := []byte(`{"op":"diff","pad":"` + strings.Repeat("x", 1<<20) + `"}`)
	sent := 0
	for sub.Send(big) {
		sent++
		if sent > 10_000 {
			t.Fatal("Send never reported a full queue")
		}
	}
	sub.Reset(snapshotFrame("*", 99))
	if !sub.Send(diffFrame("*", 99, 100)) {
		t.Fatal("Send after Reset refused")
	}
	received := 0
	for {
		h := head(t, mustRead(t, c))
		if h.Op == protocol.OpSnapshot {
			if h.Seq != 99 {
				t.Fatalf("snapshot at %d, want 99", h.Seq)
			}
			break
		}
		received++
	}
	if received >= sent {
		t.Errorf("all %d queued frames arrived before the snapshot: nothing was dropped", sent)
	}
	if h := head(t, mustRead(t, c)); h.Op != protocol.OpDiff || h.Seq != 100 {
		t.Errorf("after the snapshot: %+v, want the diff to 100", h)
	}
	t.Logf("sent %d big frames; %d reached the client before the reset", sent, received)
}

// TestWSCloseSlow: the hub closing a subscriber as slow sends the error
// frame and closes with 4408; the connection then unsubscribes.
func TestWSCloseSlow(t *testing.T) {
	e := newEnv(t, nil)
	c, sub := subscribed(t, e, "acme")
	sub.Send(diffFrame("acme", 0, 1))
	sub.Close(protocol.CodeSlow, "too slow")
	if !sub.Send(diffFrame("acme", 1, 2)) {
		t.Error("Send on a closing subscriber reported a full queue")
	}
	var ops []string
	var status websocket.StatusCode
	for {
		b, err := read(t, c)
		if err != nil {
			status = websocket.CloseStatus(err)
			break
		}
		h := head(t, b)
		ops = append(ops, h.Op+" "+h.Code)
	}
	if status != protocol.CloseSlow {
		t.Errorf("close %d, want 4408", status)
	}
	// The diff queued before Close may or may not have been written; the
	// error frame is last, and nothing after it.
	if len(ops) == 0 || ops[len(ops)-1] != "error slow" || len(ops) > 2 {
		t.Errorf("frames %q, want [diff] then the slow error", ops)
	}
	e.hub.waitUnsub(t, sub)
	// The upgrade is logged when it happens (101); the end of the connection
	// with the scope it served.
	waitFor(t, func() bool { return strings.Contains(e.logs.String(), `"route":"/ws","status":101`) }, "no access log line for /ws")
	waitFor(t, func() bool { return strings.Contains(e.logs.String(), `"event":"ws.closed"`) }, "no log line for the end of /ws")
	for _, l := range e.logs.lines(t) {
		if l["event"] == "ws.closed" && l["sagewai.project_id"] != "acme" {
			t.Errorf("the end of /ws logged with project %v, want acme", l["sagewai.project_id"])
		}
	}
}

// TestWSHubRefuses: when the hub cannot subscribe (still catching up), the
// client is told to come back later with 1013.
func TestWSHubRefuses(t *testing.T) {
	e := newEnv(t, nil)
	e.hub.setNotReady(errors.New("catching up"))
	c := e.mustDial(t, "", bearer(e.adminToken(t)))
	send(t, c, subscribeFrame("*"))
	if code, status := closedWith(t, c); code != "" || status != websocket.StatusTryAgainLater {
		t.Errorf("got error frame %q and close %d, want no frame and 1013", code, status)
	}
}

// TestWSShutdown: Shutdown closes open connections with 1001 and refuses
// new ones.
func TestWSShutdown(t *testing.T) {
	e := newEnv(t, nil)
	c, sub := subscribed(t, e, "*")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- e.srv.Shutdown(ctx) }()
	if _, status := closedWith(t, c); status != websocket.StatusGoingAway {
		t.Errorf("close %d, want 1001", status)
	}
	if err := <-errc; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	e.hub.waitUnsub(t, sub)
	if _, res, err := e.dial(t, "", bearer(e.adminToken(t))); err == nil || res == nil || res.StatusCode != 503 {
		t.Errorf("dial after Shutdown: %v %v, want 503", err, res)
	}
	if res := e.do(t, "GET", "/readyz", "", nil); res.status != 503 {
		t.Errorf("/readyz after Shutdown: %d", res.status)
	}
}

// TestWSStuckWriteIsCut: a client that stops reading, closed as slow, is
// cut after CloseTimeout even though the connection's writer is stuck in
// the write of a frame that cannot go out. The frame is far larger than
// what the socket buffers between the two ends hold (both made small), so
// the write cannot finish while the client does not read; the server's
// socket is watched, and the test fails unless it saw that write start,
// and end short, with an error, once the connection was cut.
func TestWSStuckWriteIsCut(t *testing.T) {
	const closeTimeout = 100 * time.Millisecond
	watch := &watchListener{bigWrites: make(chan *bigWrite, 1)}
	e := newEnvOn(t, func(c *web.Config) { c.CloseTimeout = closeTimeout }, func(l net.Listener) net.Listener {
		watch.Listener = l
		return watch
	})
	// A client whose socket takes little before it stops the sender.
	dialer := &net.Dialer{}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := c.(*net.TCPConn).SetReadBuffer(smallBuffer); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/ws", &websocket.DialOptions{
		Subprotocols: []string{protocol.Subprotocol}, HTTPHeader: bearer(e.adminToken(t)), HTTPClient: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	send(t, c, subscribeFrame("*"))
	sub := e.hub.nextSub(t).sub
	if h := head(t, mustRead(t, c)); h.Op != protocol.OpSnapshot {
		t.Fatalf("first frame %+v, want the snapshot", h)
	}
	// From here on the client reads nothing.
	big := []byte(`{"op":"diff","pad":"` + strings.Repeat("x", bigFrame) + `"}`)
	if !sub.Send(big) {
		t.Fatal("Send of one frame to an empty queue refused")
	}
	var w *bigWrite
	select {
	case w = <-watch.bigWrites:
	case <-time.After(hangBound):
		t.Fatal("the big frame never reached the server's socket")
	}
	select {
	case <-w.done:
		t.Fatalf("the %d-byte write finished (n %d, err %v) while the client read nothing: the socket buffers took it, and there is no stuck write to cut", w.size, w.n, w.err)
	default:
	}

	closed := time.Now()
	sub.Close(protocol.CodeSlow, "too slow")
	e.hub.waitUnsub(t, sub) // the handler ended
	select {
	case <-w.done:
	case <-time.After(hangBound):
		t.Fatal("the stuck write was never aborted")
	}
	if w.err == nil || w.n >= w.size {
		t.Fatalf("the stuck write ended with %d of %d bytes and error %v: it was not cut", w.n, w.size, w.err)
	}
	// A lower bound that cannot flake: the cut timer starts inside Close.
	if d := w.ended.Sub(closed); d < closeTimeout {
		t.Errorf("the write was cut %s after the close, before CloseTimeout (%s)", d, closeTimeout)
	}
}

// Sizes for TestWSStuckWriteIsCut: the socket buffers asked for at both
// ends, and a frame far larger than anything they can hold (Linux caps
// autotuned buffers at a few MiB, and an explicit size turns autotuning
// off).
const (
	smallBuffer = 4 << 10
	bigFrame    = 32 << 20
)

// watchListener hands out connections that report their first write of
// at least bigFrame bytes on bigWrites. Its server side asks for a small
// send buffer.
type watchListener struct {
	net.Listener
	bigWrites chan *bigWrite
}

func (l *watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.SetWriteBuffer(smallBuffer); err != nil {
			c.Close()
			return nil, err
		}
	}
	return &watchedConn{Conn: c, bigWrites: l.bigWrites}, nil
}

// bigWrite is one write of a watchedConn: its size, and once done is
// closed, what it wrote, its error and when it ended.
type bigWrite struct {
	size  int
	done  chan struct{}
	n     int
	err   error
	ended time.Time
}

type watchedConn struct {
	net.Conn
	bigWrites chan *bigWrite
}

func (c *watchedConn) Write(p []byte) (int, error) {
	if len(p) < bigFrame/2 {
		return c.Conn.Write(p)
	}
	w := &bigWrite{size: len(p), done: make(chan struct{})}
	select {
	case c.bigWrites <- w:
	default:
	}
	w.n, w.err = c.Conn.Write(p)
	w.ended = time.Now()
	close(w.done)
	return w.n, w.err
}

// waitFor waits until cond holds, failing the test after hangBound.
func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	streamtest.Eventually(t, hangBound, cond, msg)
}
