// Package browser holds the HUD's browser tests: real headless Chromium
// (Debian's chromium, driven with chromedp) against a real server (web.New
// over the real NATS and hub of stream/streamtest). The tests log in
// through the form, watch the page follow the stream, and compare every
// figure it shows with the fold's own view. Chromium is a prerequisite
// (`make deps` installs it); without it the tests fail, they never skip.
package browser
