package chromiumtest_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sagewai/observatory/chromiumtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	chromiumtest.Close()
	os.Exit(code)
}

// TestMissingChromiumFailsWithAdvice checks what the browser tests say
// when there is no Chromium: they fail (never skip) and say how to get it.
func TestMissingChromiumFailsWithAdvice(t *testing.T) {
	old := chromiumtest.DefaultPath
	chromiumtest.DefaultPath = "/nonexistent/chromium"
	defer func() { chromiumtest.DefaultPath = old }()
	t.Setenv("PATH", t.TempDir())
	t.Setenv(chromiumtest.PathEnv, "")
	if _, err := chromiumtest.Path(); err == nil || !strings.Contains(err.Error(), "make deps") {
		t.Fatalf("Path without a browser: %v; want an error that says to run make deps", err)
	}
	t.Setenv(chromiumtest.PathEnv, "/nonexistent/chrome")
	if _, err := chromiumtest.Path(); err == nil || !strings.Contains(err.Error(), "make deps") {
		t.Fatalf("Path with a wrong %s: %v; want an error that says to run make deps", chromiumtest.PathEnv, err)
	}
}

// TestTabsRecordTheirConsoleApart: what a page logs is in its tab's
// Console (the browser tests fail on a page's console errors from it),
// with its level, and not in another tab's.
func TestTabsRecordTheirConsoleApart(t *testing.T) {
	browser := chromiumtest.Browser(t, 800, 600)
	a := chromiumtest.OpenTab(t, browser, time.Minute)
	b := chromiumtest.OpenTab(t, browser, time.Minute)
	if err := chromedp.Do(a.Ctx, chromedp.Navigate(`data:text/html,<script>console.error("from-a")</script>`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b.Ctx, chromedp.Navigate(`data:text/html,<script>console.log("from-b")</script>`)); err != nil {
		t.Fatal(err)
	}
	wait := func(tab *chromiumtest.Tab, text string) chromedp.ConsoleMessage {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, m := range tab.Console() {
				if m.Text == text {
					return m
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("the tab's console never said %q; it said %+v", text, tab.Console())
		return chromedp.ConsoleMessage{}
	}
	if m := wait(a, "from-a"); m.Type != chromedp.ConsoleError {
		t.Errorf("console.error recorded as %q, want %q", m.Type, chromedp.ConsoleError)
	}
	wait(b, "from-b")
	for _, m := range a.Console() {
		if m.Text == "from-b" {
			t.Errorf("tab a recorded tab b's console: %+v", m)
		}
	}
}

// TestConsoleCompleteAtTheEnd: a message a page logs in a test's last
// moment is recorded by the time the test's cleanups run, so a harness
// that fails on console errors sees it.
func TestConsoleCompleteAtTheEnd(t *testing.T) {
	browser := chromiumtest.Browser(t, 800, 600)
	for i := range 5 {
		var tab *chromiumtest.Tab
		t.Run("tab", func(t *testing.T) {
			tab = chromiumtest.OpenTab(t, browser, time.Minute)
			if _, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[bool](`(console.error("last words"), true)`)); err != nil {
				t.Fatal(err)
			}
		})
		got := tab.Console()
		if len(got) != 1 || got[0].Text != "last words" || got[0].Type != chromedp.ConsoleError {
			t.Fatalf("round %d: the closed tab's console holds %+v, want the one error it logged last", i, got)
		}
	}
}
