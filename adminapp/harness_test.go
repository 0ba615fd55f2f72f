package adminapp_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/adminapp"
	"github.com/sagewai/observatory/chromiumtest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// hangBound bounds waits that only a broken system would reach; no
// outcome depends on it.
const hangBound = time.Minute

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// jsonLogger logs JSON lines to w, as cmd/adminapp does to stderr.
func jsonLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// ---------------------------------------------------------------- Observatory

const obsPassword = "observatory-admin-pass"

// observatory is a real Observatory in process: NATS with JetStream, the
// hub folding FLEET, the project registry and web.Server on a loopback
// port, on the suites' test clock (fleettest.Epoch, which the Makefile's
// clock check moves years away): tokens are issued and expire by it.
type observatory struct {
	t     *testing.T
	env   *streamtest.Env
	clock *fleettest.Clock
	srv   *web.Server
	url   string
}

// startObservatory starts one that lets embedOrigins frame its HUD, with
// the projects acme and globex.
func startObservatory(t *testing.T, embedOrigins ...string) *observatory {
	t.Helper()
	env := streamtest.Start(t, stream.HubConfig{Tick: 20 * time.Millisecond, Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	reg, err := stream.OpenRegistry(ctx, env.JS, stream.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	o := &observatory{t: t, env: env, clock: fleettest.NewClock()}
	o.srv, err = web.New(web.Config{
		AdminPassword: obsPassword,
		SigningKey:    bytes.Repeat([]byte("adminapp-test-signing-key"), 2),
		BcryptCost:    bcrypt.MinCost,
		Logger:        quiet,
		Now:           o.clock.Now,
		EmbedOrigins:  embedOrigins,
		Records:       reg.Records,
		Events:        env.Publisher,
		SweepInterval: 20 * time.Millisecond,
	}, env.Hub, env.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	hs := &http.Server{Handler: o.srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	o.url = "http://" + ln.Addr().String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := o.srv.Shutdown(ctx); err != nil {
			t.Errorf("observatory shutdown: %v", err)
		}
		_ = hs.Shutdown(ctx)
	})
	admin, _, err := o.srv.IssueToken(auth.RoleAdmin, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"acme", "globex"} {
		req, _ := http.NewRequest(http.MethodPost, o.url+"/api/v1/projects", strings.NewReader(fmt.Sprintf(`{"id":%q,"name":%q}`, p, p)))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("create project %s: %s", p, res.Status)
		}
	}
	return o
}

// publish publishes evs to FLEET and waits until the hub has folded them.
func (o *observatory) publish(evs ...fleet.Event) {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	var last uint64
	for _, ev := range evs {
		seq, err := o.env.Publisher.Publish(ctx, ev)
		if err != nil {
			o.t.Fatal(err)
		}
		last = seq
	}
	streamtest.WaitSeq(o.t, o.env.Hub, last)
}

// agent is an agent.created event of project, named name.
func agent(project, name string) fleet.Event {
	return fleettest.AgentCreated(project, name, "gpt-4o-mini", time.Now().UTC())
}

// ---------------------------------------------------------------- the app

// syncBuffer is a bytes.Buffer safe for one writer and many readers: the
// app's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// app is an admin app on its own origin, http://localhost:port, another
// site than Observatory's http://127.0.0.1:port; its log is kept.
type app struct {
	url string
	log *syncBuffer
	// refreshes, when not nil, gets each POST /embed/refresh before the
	// app serves it, and the request waits for a value on release.
	refreshes chan struct{}
	release   chan struct{}
}

const alicePassword = "alice-pass-1"

// listenApp opens the app's listener first, so that Observatory can be
// told its origin.
func listenApp(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln := listen(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return ln, "http://localhost:" + port
}

// startApp serves an admin app on ln for o, with alice (acme) and bob
// (globex). gated makes it hold each refresh until the test releases it.
func startApp(t *testing.T, o *observatory, ln net.Listener, origin string, gated bool, edit func(*adminapp.Config)) *app {
	t.Helper()
	a := &app{url: origin, log: &syncBuffer{}}
	cfg := adminapp.Config{
		ObservatoryURL: o.url,
		AdminPassword:  obsPassword,
		Users: []adminapp.User{
			{Name: "alice", Password: alicePassword, Project: "acme"},
			{Name: "bob", Password: "bob-pass-2", Project: "globex"},
		},
		Title:  "Acme Admin",
		Logger: jsonLogger(a.log),
		Now:    o.clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	h, err := adminapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler = h
	if gated {
		a.refreshes, a.release = make(chan struct{}, 16), make(chan struct{})
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/embed/refresh" {
				a.refreshes <- struct{}{}
				select {
				case <-a.release:
				case <-r.Context().Done():
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		if a.release != nil {
			close(a.release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	})
	return a
}

// signIn signs tb in to the app as user and waits for the app page.
func (a *app) signIn(tb *tab, user, password string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(a.url + "/"))
	if loc := tb.location(); loc != a.url+"/signin" {
		tb.t.Fatalf("the app without a session is at %s, want its sign-in page", loc)
	}
	tb.do(
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("signin-submit")),
	)
	tb.waitTrue("the app page", `document.querySelector('[data-testid=hud-frame]') !== null`)
}

// ---------------------------------------------------------------- Chromium

func TestMain(m *testing.M) {
	code := m.Run()
	chromiumtest.Close()
	os.Exit(code)
}

// tab is a browser tab with its console recorded.
type tab struct {
	t   *testing.T
	ctx context.Context
	rec *chromiumtest.Tab
	// frames are contexts attached to the tab's cross-site iframes.
	frames map[target.ID]context.Context
}

func newTab(t *testing.T) *tab {
	t.Helper()
	// The framed HUD, another site, runs in a process of its own, as in
	// users' browsers, and the tests reach it as its own target.
	rec := chromiumtest.OpenTab(t, chromiumtest.Browser(t, 1440, 900), 4*time.Minute)
	return &tab{t: t, ctx: rec.Ctx, rec: rec, frames: map[target.ID]context.Context{}}
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

func (tb *tab) location() string {
	tb.t.Helper()
	loc, err := chromedp.Run(tb.ctx, chromedp.Location())
	if err != nil {
		tb.t.Fatalf("location: %v", err)
	}
	return loc
}

// eval evaluates a JavaScript expression in the tab's page.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("evaluate %.60q: %v", js, err)
	}
	return v
}

// waitTrue polls the page from Go until cond is true.
func (tb *tab) waitTrue(what, cond string) {
	tb.t.Helper()
	deadline := time.Now().Add(hangBound)
	for time.Now().Before(deadline) {
		if v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](cond)); err == nil && v {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.t.Fatalf("%s: %s never became true", what, cond)
}

// inFrame evaluates js (a string expression) in the tab's iframe whose
// address starts with prefix. The HUD is another site than the app, so
// Chromium runs it in a process of its own, listed as a target of type
// "iframe": the tab's DOM does not reach into it, a context attached to
// it does. ok is false while there is no such frame.
func (tb *tab) inFrame(prefix, js string, opts ...chromedp.EvaluateOption) (string, bool) {
	tb.t.Helper()
	infos, err := chromedp.Targets(tb.ctx)
	if err != nil {
		return "", false
	}
	bc := chromedp.FromContext(tb.ctx).BrowserContextID
	for _, info := range infos {
		if info.Type != "iframe" || info.BrowserContextID != bc || !strings.HasPrefix(info.URL, prefix) {
			continue
		}
		fctx, ok := tb.frames[info.TargetID]
		if !ok {
			var cancel context.CancelFunc
			// Detach on cancel: closing the target would remove the frame.
			fctx, cancel = chromedp.NewContext(tb.ctx, chromedp.WithTargetID(info.TargetID), chromedp.WithDetachOnCancel())
			tb.t.Cleanup(cancel)
			tb.frames[info.TargetID] = fctx
		}
		v, err := chromedp.Run(fctx, chromedp.Evaluate[string](js, opts...))
		if err != nil {
			return "", false
		}
		return v, true
	}
	return "", false
}

// waitFrame polls the frame until js gives want, and fails with the last
// value if it never does.
func (tb *tab) waitFrame(prefix, what, js, want string) {
	tb.t.Helper()
	deadline := time.Now().Add(hangBound)
	last := "(no frame)"
	for time.Now().Before(deadline) {
		if v, ok := tb.inFrame(prefix, js); ok {
			if v == want {
				return
			}
			last = v
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.t.Fatalf("the framed HUD never showed %s %q (last: %q)", what, want, last)
}

// waitConsole waits until the tab's console has a message matching re.
func (tb *tab) waitConsole(re *regexp.Regexp) chromedp.ConsoleMessage {
	tb.t.Helper()
	deadline := time.Now().Add(hangBound)
	for time.Now().Before(deadline) {
		for _, m := range tb.rec.Console() {
			if re.MatchString(m.Text) {
				return m
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.t.Fatalf("the console never said %s; it said:\n%s", re, tb.consoleText())
	return chromedp.ConsoleMessage{}
}

func (tb *tab) consoleText() string {
	var b strings.Builder
	for _, m := range tb.rec.Console() {
		fmt.Fprintf(&b, "%s %s: %s\n", m.Type, m.URL, m.Text)
	}
	return b.String()
}

// screenshot keeps the viewport as a PNG in $OBSERVATORY_ARTIFACTS (else
// observatory-artifacts in the system's temporary directory), for a person
// to look at.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	buf, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("OBSERVATORY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "observatory-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot: %s", p)
}

// screenshotWithFrame brings the tab to the front and waits until the
// frame has painted twice more, then keeps a screenshot: without that,
// the page's picture of a cross-site frame was seen lagging seconds
// behind the frame's own document (no banner in the picture while the
// frame's DOM held it).
func (tb *tab) screenshotWithFrame(prefix, name string) {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, page.BringToFront, cdp.Empty{}); err != nil {
		tb.t.Fatalf("bring the tab to the front: %v", err)
	}
	v, ok := tb.inFrame(prefix, `new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r('painted'))))`, chromedp.EvalAwaitPromise)
	if !ok || v != "painted" {
		tb.t.Fatalf("the frame did not paint: %q", v)
	}
	tb.screenshot(name)
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
