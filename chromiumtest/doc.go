// Package chromiumtest gives a test binary's browser tests their one real
// headless Chromium (Debian's chromium, driven with chromedp) and tabs in
// it whose console is recorded. The HUD's browser tests (hud/browser) and
// the admin app's (adminapp) both use it.
//
// Chromium is a prerequisite (`make deps` installs it): without it the
// tests fail with an error that says so, they never skip. Path finds it;
// Browser starts it on first use; the test binary's TestMain calls Close
// after the tests ran. Each Tab lives in a browser context of its own, so
// no cookie of one test reaches another.
//
// The package owns the browser process; the pages in it are the tests'.
//
// # Concurrency
//
// Browser and Close are safe to call from any goroutine; a Tab records its
// console on a goroutine of its own until the tab closes, and Console is
// safe to call from any goroutine.
package chromiumtest
