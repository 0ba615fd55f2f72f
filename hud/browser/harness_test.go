package browser_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/chromiumtest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/synth"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// ---------------------------------------------------------------- Chromium

func TestMain(m *testing.M) {
	code := m.Run()
	chromiumtest.Close()
	os.Exit(code)
}

// tab is one browser tab with its console recorded: any error or uncaught
// exception fails the test, unless allowed.
type tab struct {
	t   *testing.T
	ctx context.Context
	rec *chromiumtest.Tab

	mu      sync.Mutex
	allowed []*regexp.Regexp
}

// newTab opens a tab with a w×h viewport, in a fresh browser profile.
func newTab(t *testing.T, w, h int64) *tab {
	t.Helper()
	tb := &tab{t: t}
	// Registered first, so run last: after the tab has closed and its
	// console is complete.
	t.Cleanup(func() {
		if tb.rec != nil {
			tb.checkConsole()
		}
	})
	tb.rec = chromiumtest.OpenTab(t, chromiumtest.Browser(t, 1920, 1080), 4*time.Minute)
	tb.ctx = tb.rec.Ctx
	tb.do(chromedp.EmulateViewport(w, h))
	return tb
}

// allow lets console errors matching re pass (a refused WebSocket while
// the server is down is the browser's own report, not a page error).
func (tb *tab) allow(re string) {
	tb.mu.Lock()
	tb.allowed = append(tb.allowed, regexp.MustCompile(re))
	tb.mu.Unlock()
}

func (tb *tab) checkConsole() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, m := range tb.rec.Console() {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
			continue
		}
		ok := false
		for _, re := range tb.allowed {
			ok = ok || re.MatchString(m.Text)
		}
		if !ok {
			tb.t.Errorf("browser console %s (%s:%d): %s", m.Type, m.URL, m.Line+1, m.Text)
		}
	}
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into T.
func eval[T any](tb *tab, js string, opts ...chromedp.EvaluateOption) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		tb.t.Fatalf("evaluate %.60q: %v", js, err)
	}
	return v
}

func (tb *tab) location() string {
	tb.t.Helper()
	loc, err := chromedp.Run(tb.ctx, chromedp.Location())
	if err != nil {
		tb.t.Fatalf("location: %v", err)
	}
	return loc
}

// waitText waits until the element of sel shows want. It polls from Go
// rather than in the page, so that a navigation in between (a form post)
// does not end the wait.
func (tb *tab) waitText(sel, want string, d time.Duration) {
	tb.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent.trim() : '(none)'; })()`, sel)
	deadline := time.Now().Add(d)
	got := ""
	for time.Now().Before(deadline) {
		v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](js))
		if err == nil && v == want {
			return
		}
		if err == nil {
			got = v
		} else {
			got = err.Error()
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.t.Fatalf("%s never showed %q within %s (last: %q)", sel, want, d, got)
}

// waitTrue waits until the JavaScript expression cond is true in the page,
// polling from Go as waitText does.
func (tb *tab) waitTrue(what, cond string, d time.Duration) {
	tb.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](cond)); err == nil && v {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.t.Fatalf("%s: %s never became true within %s", what, cond, d)
}

// enableMetrics turns on Chromium's counters for the tab, measured in
// thread time (CPU seconds), so that a busy machine does not inflate them.
func (tb *tab) enableMetrics() {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, performance.Enable, performance.EnableParams{TimeDomain: performance.EnableTimeDomainThreadTicks}); err != nil {
		tb.t.Fatalf("Performance.enable: %v", err)
	}
}

// cpuMetrics reads the counters: ProcessTime (the renderer process, every
// thread), TaskDuration, ScriptDuration, RecalcStyleDuration,
// LayoutDuration (its main thread), in seconds.
func (tb *tab) cpuMetrics() map[string]float64 {
	tb.t.Helper()
	res, err := chromedp.Call(tb.ctx, performance.GetMetrics, cdp.Empty{})
	if err != nil {
		tb.t.Fatalf("Performance.getMetrics: %v", err)
	}
	out := map[string]float64{}
	for _, m := range res.Metrics {
		out[m.Name] = m.Value
	}
	return out
}

// screenshot keeps the viewport as a PNG under the artifacts directory.
func (tb *tab) screenshot(name string) string {
	tb.t.Helper()
	buf, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("screenshot: %v", err)
	}
	dir := artifactsDir(tb.t)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		tb.t.Fatalf("keep screenshot: %v", err)
	}
	tb.t.Logf("screenshot: %s", p)
	return p
}

// artifactsDir is $OBSERVATORY_ARTIFACTS, else observatory-artifacts in
// the system's temporary directory.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("OBSERVATORY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "observatory-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts dir: %v", err)
	}
	return dir
}

// ---------------------------------------------------------------- server

// rig is a real Observatory: NATS with JetStream, the hub folding FLEET,
// and web.Server on a loopback port. It can be stopped and started again
// on the same port.
type rig struct {
	t      *testing.T
	env    *streamtest.Env
	hubCfg stream.HubConfig
	cfg    web.Config

	srv  *web.Server
	hs   *http.Server
	addr string
	url  string
}

const adminPassword = "hud-admin-pass"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newRig(t *testing.T, edit func(*web.Config)) *rig {
	t.Helper()
	r := &rig{t: t, hubCfg: stream.HubConfig{Tick: 20 * time.Millisecond, Logger: quiet}}
	r.env = streamtest.Start(t, r.hubCfg)
	r.cfg = web.Config{
		AdminPassword: adminPassword,
		SigningKey:    bytes.Repeat([]byte("observatory-hud-test-key!"), 2),
		BcryptCost:    bcrypt.MinCost,
		Logger:        quiet,
	}
	if edit != nil {
		edit(&r.cfg)
	}
	r.serve("127.0.0.1:0")
	t.Cleanup(r.stop)
	return r
}

func (r *rig) serve(addr string) {
	r.t.Helper()
	srv, err := web.New(r.cfg, r.env.Hub, r.env.Publisher)
	if err != nil {
		r.t.Fatal(err)
	}
	var ln net.Listener
	for i := 0; ; i++ { // the port of a server just stopped may take a moment
		if ln, err = net.Listen("tcp", addr); err == nil || i == 50 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("listen %s: %v", addr, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	r.srv, r.hs, r.addr, r.url = srv, hs, ln.Addr().String(), "http://"+ln.Addr().String()
}

// stop shuts the server down: its sockets close with 1001 and the port
// refuses connections.
func (r *rig) stop() {
	if r.hs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		r.t.Errorf("web shutdown: %v", err)
	}
	if err := r.hs.Shutdown(ctx); err != nil {
		r.t.Errorf("http shutdown: %v", err)
	}
	r.hs = nil
}

// restart stops the server and the hub, runs down while they are gone,
// then starts a new hub and a new server on the same address.
func (r *rig) restart(down func()) {
	r.t.Helper()
	addr := r.addr
	r.stop()
	r.env.StopHub(r.t)
	down()
	r.env.StartHub(r.t, r.hubCfg)
	r.serve(addr)
}

// restartServer stops and starts the web server alone; the hub keeps its
// state and its recent frames.
func (r *rig) restartServer(down func()) {
	r.t.Helper()
	addr := r.addr
	r.stop()
	down()
	r.serve(addr)
}

// publish publishes evs to FLEET and waits until the hub has folded them.
func (r *rig) publish(evs ...fleet.Event) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var last uint64
	for _, ev := range evs {
		seq, err := r.env.Publisher.Publish(ctx, ev)
		if err != nil {
			r.t.Fatal(err)
		}
		last = seq
	}
	if last > 0 {
		streamtest.WaitSeq(r.t, r.env.Hub, last)
	}
}

// view is the fold's view of scope, as the hub holds it.
func (r *rig) view(scope string) (fleet.View, uint64) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, seq, err := r.env.Hub.View(ctx, scope)
	if err != nil {
		r.t.Fatal(err)
	}
	return v, seq
}

func (r *rig) adminToken() string {
	r.t.Helper()
	tok, _, err := r.srv.IssueToken(auth.RoleAdmin, "", 0)
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

func (r *rig) embedToken(project string) string {
	r.t.Helper()
	tok, _, err := r.srv.IssueEmbedToken(auth.RoleProject, project, 10*time.Minute)
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// login logs tb in through the form: /hud sends it to /login, the form
// posts, and the browser lands on /hud.
func (r *rig) login(tb *tab, path string) { loginAt(tb, r.url, path, adminPassword, 20*time.Second) }

// loginAt logs tb in as admin with password through the form of the
// server at base, and waits up to live for the page to say LIVE.
func loginAt(tb *tab, base, path, password string, live time.Duration) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(base + path))
	if loc := tb.location(); !strings.HasPrefix(loc, base+"/login") {
		tb.t.Fatalf("unauthenticated %s went to %s, want /login", path, loc)
	}
	tb.do(
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
	)
	tb.waitText("[data-testid=live-indicator]", "LIVE", live)
	if loc := tb.location(); !strings.HasPrefix(loc, base+"/hud") {
		tb.t.Fatalf("after the login the browser is at %s, want /hud", loc)
	}
}

// listen opens a loopback listener for a test server.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// ---------------------------------------------------------------- fleets

// sim drives a synthetic fleet (synth) on a simulated clock that ends at
// the wall clock, so that its events read as recent.
type sim struct {
	f   *synth.Fleet
	now time.Time
}

func newSim(seed uint64, cfg synth.Config, span time.Duration) *sim {
	cfg.Rand = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &sim{f: synth.New(cfg, nil), now: time.Now().UTC().Add(-span)}
}

// run advances the fleet by d and returns the events it produced.
func (s *sim) run(d time.Duration) []fleet.Event {
	var out []fleet.Event
	end := s.now.Add(d)
	for s.now.Before(end) {
		s.now = s.now.Add(250 * time.Millisecond)
		out = append(out, s.f.Step(s.now)...)
	}
	return out
}
