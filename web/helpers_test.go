package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// testHub is a hub that records its subscribers and lets the test push
// frames to them. Like the real hub, Subscribe sends the scope's snapshot
// first.
type testHub struct {
	mu           sync.Mutex
	subs         map[protocol.Subscriber]protocol.Subscribe
	notReady     error // returned by Ready, and by Subscribe
	panicOnSnap  bool
	subscribed   chan subscription
	unsubscribed chan protocol.Subscriber
	// snapshots gets a value each time Snapshot is called, before it takes
	// mu (a test holding mu keeps the call waiting); it drops what does
	// not fit.
	snapshots chan struct{}
}

type subscription struct {
	sub protocol.Subscriber
	req protocol.Subscribe
}

func newTestHub() *testHub {
	return &testHub{
		subs:         map[protocol.Subscriber]protocol.Subscribe{},
		subscribed:   make(chan subscription, 64),
		unsubscribed: make(chan protocol.Subscriber, 64),
		snapshots:    make(chan struct{}, 1),
	}
}

func (h *testHub) Subscribe(ctx context.Context, sub protocol.Subscriber, req protocol.Subscribe) error {
	h.mu.Lock()
	if h.notReady != nil {
		h.mu.Unlock()
		return h.notReady
	}
	h.subs[sub] = req
	h.mu.Unlock()
	sub.Send(snapshotFrame(req.Scope, 0))
	h.subscribed <- subscription{sub, req}
	return nil
}

func (h *testHub) Unsubscribe(sub protocol.Subscriber) {
	h.mu.Lock()
	_, ok := h.subs[sub]
	delete(h.subs, sub)
	h.mu.Unlock()
	if ok {
		h.unsubscribed <- sub
	}
}

func (h *testHub) Snapshot(ctx context.Context, scope string) ([]byte, error) {
	select {
	case h.snapshots <- struct{}{}:
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.panicOnSnap {
		panic("snapshot exploded")
	}
	return snapshotFrame(scope, 7), nil
}

func (h *testHub) Ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.notReady
}

func (h *testHub) setNotReady(err error) {
	h.mu.Lock()
	h.notReady = err
	h.mu.Unlock()
}

func (h *testHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// hangBound bounds how long a test waits for something that is bound to
// happen: it only turns a hang into a failure, and decides nothing else.
const hangBound = 10 * time.Second

// nextSub waits for the next Subscribe.
func (h *testHub) nextSub(t *testing.T) subscription {
	t.Helper()
	select {
	case s := <-h.subscribed:
		return s
	case <-time.After(hangBound):
		t.Fatal("no subscription reached the hub")
		return subscription{}
	}
}

// waitUnsub waits for sub to be unsubscribed.
func (h *testHub) waitUnsub(t *testing.T, sub protocol.Subscriber) {
	t.Helper()
	timeout := time.After(hangBound)
	for {
		select {
		case s := <-h.unsubscribed:
			if s == sub {
				return
			}
		case <-timeout:
			t.Fatal("the subscriber was never unsubscribed")
		}
	}
}

func snapshotFrame(scope string, seq uint64) []byte {
	b, err := json.Marshal(protocol.Snapshot{Op: protocol.OpSnapshot, Scope: scope, Epoch: "E", Seq: seq})
	if err != nil {
		panic(err)
	}
	return b
}

func diffFrame(scope string, prev, seq uint64) []byte {
	b, err := json.Marshal(protocol.Diff{Op: protocol.OpDiff, Scope: scope, Epoch: "E", Prev: prev, Seq: seq})
	if err != nil {
		panic(err)
	}
	return b
}

// testAuditor records the events published, and whether each was valid.
type testAuditor struct {
	mu     sync.Mutex
	events []fleet.Event
}

func (a *testAuditor) Audit(ctx context.Context, ev fleet.Event) error {
	if err := ev.Validate(); err != nil {
		panic("invalid audit event: " + err.Error())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

func (a *testAuditor) all() []fleet.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]fleet.Event(nil), a.events...)
}

// auditRecord is the part of an audit event a test checks (id and time
// vary).
type auditRecord struct {
	Type, ProjectID, UserID string
	Data                    map[string]string
}

func (a *testAuditor) records(t *testing.T) []auditRecord {
	t.Helper()
	var out []auditRecord
	ids := map[string]bool{}
	for _, ev := range a.all() {
		if ids[ev.ID] {
			t.Errorf("audit id %s used twice", ev.ID)
		}
		ids[ev.ID] = true
		var data map[string]string
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatalf("audit data %s: %v", ev.Data, err)
		}
		out = append(out, auditRecord{ev.Type, ev.ProjectID, ev.UserID, data})
	}
	return out
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// lines decodes the JSON log lines.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

const adminPassword = "correct horse"

// env is one Server over loopback with a test hub, auditor and clock.
type env struct {
	srv   *web.Server
	hub   *testHub
	audit *testAuditor
	clock *fleettest.Clock // the server's clock, from fleettest.Epoch
	logs  *syncBuffer
	url   string
}

func newEnv(t *testing.T, edit func(*web.Config)) *env {
	t.Helper()
	return newEnvOn(t, edit, nil)
}

// newEnvOn is newEnv with the server's listener wrapped by wrap (nil
// keeps it as it is), for a test that watches the server's sockets.
func newEnvOn(t *testing.T, edit func(*web.Config), wrap func(net.Listener) net.Listener) *env {
	t.Helper()
	e := &env{
		hub:   newTestHub(),
		audit: &testAuditor{},
		clock: fleettest.NewClock(),
		logs:  &syncBuffer{},
	}
	cfg := web.Config{
		AdminPassword: adminPassword,
		SigningKey:    bytes.Repeat([]byte("k"), 32),
		Logger:        slog.New(slog.NewJSONHandler(e.logs, nil)),
		Now:           e.clock.Now,
		BcryptCost:    bcrypt.MinCost,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := web.New(cfg, e.hub, e.audit)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ts := httptest.NewUnstartedServer(srv.Handler())
	if wrap != nil {
		ts.Listener = wrap(ts.Listener)
	}
	ts.Start()
	e.url = ts.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.Close()
	})
	return e
}

// issuedAt is the issue time of a token or key minted now: the server's
// clock in whole seconds, as tokens carry it.
func (e *env) issuedAt() time.Time { return e.clock.Now().UTC().Truncate(time.Second) }

func (e *env) token(t *testing.T, role, project string) string {
	t.Helper()
	tok, _, err := e.srv.IssueToken(role, project, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) embedToken(t *testing.T, role, project string) string {
	t.Helper()
	tok, _, err := e.srv.IssueEmbedToken(role, project, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// sessionToken logs in as the admin.
func (e *env) sessionToken(t *testing.T) string {
	t.Helper()
	res := e.do(t, http.MethodPost, "/api/v1/auth/login", `{"username":"admin","password":"`+adminPassword+`"}`, nil)
	if res.status != http.StatusOK {
		t.Fatalf("login: %d %s", res.status, res.body)
	}
	var tr struct{ Token string }
	if err := json.Unmarshal(res.body, &tr); err != nil {
		t.Fatal(err)
	}
	return tr.Token
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errorCode returns the code of a JSON error body, failing the test if the
// body does not have the error shape.
func (r response) errorCode(t testing.TB) string {
	t.Helper()
	code, _ := r.errorOf(t)
	return code
}

// errorOf returns the code and message of a JSON error body, failing the
// test if the body does not have the error shape.
func (r response) errorOf(t testing.TB) (code, message string) {
	t.Helper()
	var b struct {
		Error struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("body %q is not {\"error\":{\"code\",\"message\"}}: %v", r.body, err)
	}
	return b.Error.Code, b.Error.Message
}

// goWords matches what an error message says in Go's words rather than
// the API's: a Go type (web.loginRequest, map[string]string, int64), the
// text of a json or strconv error, fleet's own parse errors.
var goWords = regexp.MustCompile(`Go (value|struct)|json: |strconv\.|\bweb\.[a-zA-Z]|\bfleet\.[A-Z]|parse usd|map\[|\[\][a-z]|\b(u?int(8|16|32|64)?|float(32|64)|bool)\b`)

// quoted matches a double-quoted string as %q writes it: the part of a
// message that echoes the client's input, which may say anything.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// goInternals returns the first Go words in msg outside the input it
// quotes, or "".
func goInternals(msg string) string {
	return goWords.FindString(quoted.ReplaceAllString(msg, `""`))
}

func (e *env) do(t *testing.T, method, path, body string, header http.Header) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// dial opens /ws with the subprotocol and header; query is appended to the URL.
func (e *env) dial(t *testing.T, query string, header http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/ws"+query, &websocket.DialOptions{
		Subprotocols: []string{protocol.Subprotocol},
		HTTPHeader:   header,
	})
	if err == nil {
		c.SetReadLimit(-1)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, res, err
}

// mustDial dials and fails the test on error.
func (e *env) mustDial(t *testing.T, query string, header http.Header) *websocket.Conn {
	t.Helper()
	c, _, err := e.dial(t, query, header)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func subscribeFrame(scope string) string {
	return `{"op":"subscribe","scope":"` + scope + `"}`
}

func send(t *testing.T, c *websocket.Conn, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func read(t *testing.T, c *websocket.Conn) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	_, b, err := c.Read(ctx)
	return b, err
}

func mustRead(t *testing.T, c *websocket.Conn) []byte {
	t.Helper()
	b, err := read(t, c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

// frameHead is the part of a server frame the tests look at.
type frameHead struct {
	Op      string `json:"op"`
	Scope   string `json:"scope,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

func head(t *testing.T, b []byte) frameHead {
	t.Helper()
	var h frameHead
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	return h
}

// closedWith reads until the connection closes and returns the error frame
// it got before the close and the close status.
func closedWith(t *testing.T, c *websocket.Conn) (errCode string, status websocket.StatusCode) {
	t.Helper()
	for {
		b, err := read(t, c)
		if err != nil {
			return errCode, websocket.CloseStatus(err)
		}
		if h := head(t, b); h.Op == protocol.OpError {
			errCode = h.Code
		}
	}
}

// adminToken is a shortcut for an admin API token.
func (e *env) adminToken(t *testing.T) string { return e.token(t, auth.RoleAdmin, "") }
