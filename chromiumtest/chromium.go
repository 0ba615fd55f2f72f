package chromiumtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// DefaultPath is where Debian's chromium package installs the browser.
var DefaultPath = "/usr/bin/chromium"

// PathEnv names the variable that points the tests at another browser.
const PathEnv = "OBSERVATORY_CHROMIUM"

// Path finds the browser: $OBSERVATORY_CHROMIUM, DefaultPath, or chromium
// on the PATH. Without one its error says how to install it.
func Path() (string, error) {
	if p := os.Getenv(PathEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (unset it, or run `make deps` to install Debian's chromium)", PathEnv, p, err)
		}
		return p, nil
	}
	if _, err := os.Stat(DefaultPath); err == nil {
		return DefaultPath, nil
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", errors.New("the browser tests need Chromium, and there is none at " + DefaultPath +
		" or on the PATH: run `make deps` (it installs Debian's chromium with apt-get)")
}

// shared is the one browser of the test binary.
var shared struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel func()
	err    error
}

// Browser returns the test binary's browser, started by the first call
// with a window of width×height; later calls get the same browser (their
// size is not applied: a tab sets its own viewport). It fails tb when
// there is no Chromium or it does not start.
//
// Site isolation stays on: a cross-site iframe runs in a process of its
// own, as in users' browsers, and is reached as its own target.
func Browser(tb testing.TB, width, height int) context.Context {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.ctx == nil && shared.err == nil {
		shared.ctx, shared.cancel, shared.err = start(width, height)
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.ctx
}

func start(width, height int) (context.Context, func(), error) {
	path, err := Path()
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(width, height),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	// The first navigation starts the browser; it gets no timeout, or the
	// timeout would end the browser with it.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		bcancel()
		acancel()
		return nil, nil, fmt.Errorf("start %s: %w", path, err)
	}
	return bctx, func() { bcancel(); acancel() }, nil
}

// Close ends the browser, if one was started. TestMain calls it after
// m.Run.
func Close() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cancel != nil {
		shared.cancel()
		shared.ctx, shared.cancel = nil, nil
	}
}

// Tab is one browser tab, in a browser context of its own, with its
// console recorded.
type Tab struct {
	// Ctx drives the tab (chromedp.Run, chromedp.Do); it ends when the
	// tab's time is up or the test ends.
	Ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
	flushed chan struct{} // closed when the console has said flushMarker
}

// flushMarker is what a closing tab logs last: the browser reports a
// target's console in order, so once the marker is recorded, every
// message the page logged before it is too.
const flushMarker = "chromiumtest: the tab is closing"

// flushTimeout bounds the wait for flushMarker at a tab's close.
const flushTimeout = 10 * time.Second

// OpenTab opens a tab in browser (Browser's context) in a fresh browser
// context, and closes it when the test ends; the tab's Ctx ends after
// timeout at the latest. When the test's cleanups run, those registered
// before OpenTab run after the tab has closed and its console is complete.
func OpenTab(tb testing.TB, browser context.Context, timeout time.Duration) *Tab {
	tb.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		tb.Fatalf("open a tab: %v", err)
	}
	tctx, tcancel := context.WithTimeout(ctx, timeout)
	t := &Tab{Ctx: tctx, flushed: make(chan struct{})}
	msgs := chromedp.Console(tctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Text == flushMarker {
				close(t.flushed)
				continue
			}
			t.mu.Lock()
			t.console = append(t.console, m)
			t.mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		t.flush()
		tcancel()
		<-done
		cancel()
	})
	return t
}

// flush waits until the console messages the page logged so far are
// recorded: a page error in a test's last moment still fails it. A tab
// whose time is up, or whose page does not answer, is closed as it is.
func (t *Tab) flush() {
	if t.Ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(t.Ctx, flushTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(console.debug(`+strconv.Quote(flushMarker)+`), true)`)); err != nil {
		return
	}
	select {
	case <-t.flushed:
	case <-ctx.Done():
	}
}

// Console returns what the tab's console has said so far, oldest first.
func (t *Tab) Console() []chromedp.ConsoleMessage {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), t.console...)
}
