package adminapp_test

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/adminapp"
)

// Expressions evaluated in the framed HUD.
const (
	liveJS   = `(() => { const e = document.querySelector('[data-testid=live-indicator]'); return e ? e.textContent.trim() : '(none)'; })()`
	rosterJS = `JSON.stringify([...document.querySelectorAll('[data-testid=agent-roster] .agent-name')].map((e) => e.textContent.trim()).sort())`
	tabsJS   = `JSON.stringify([...document.querySelectorAll('[data-testid=tenant-tab]')].map((e) => e.dataset.scope))`
	bannerJS = `(() => { const e = document.getElementById('hud-alert'); return e ? e.textContent : ''; })()`
	bodyJS   = `document.body.textContent`
)

// frameToken reads the embed token from the address the app page put in
// its iframe.
func frameToken(tb *tab) string {
	tb.t.Helper()
	src := eval[string](tb, `document.querySelector('[data-testid=hud-frame]').src`)
	u, err := url.Parse(src)
	if err != nil {
		tb.t.Fatalf("frame address %q: %v", src, err)
	}
	if u.Query().Get("embed") != "1" || u.Query().Get("project") == "" {
		tb.t.Fatalf("frame address %s: want /hud?embed=1&project=...", u.Redacted())
	}
	return u.Query().Get("embed_token")
}

// checkLogNeverHasTokens fails if the app's log holds any of tokens; it
// must hold their minting, by id.
func checkLogNeverHasTokens(t *testing.T, a *app, tokens ...string) {
	t.Helper()
	log := a.log.String()
	for _, tok := range tokens {
		if tok == "" {
			t.Fatal("no embed token to look for")
		}
		if strings.Contains(log, tok) {
			t.Errorf("the app's log holds an embed token")
		}
		// The signature alone would be as bad as the whole token.
		if sig := tok[strings.LastIndex(tok, ".")+1:]; strings.Contains(log, sig) {
			t.Errorf("the app's log holds an embed token's signature")
		}
	}
	if strings.Contains(log, "embed_token=") {
		t.Errorf("the app's log holds a frame address: %s", log)
	}
	if n := strings.Count(log, `"event":"adminapp.embed_token.minted"`); n < len(tokens) {
		t.Errorf("the app's log has %d minting records, want at least %d:\n%s", n, len(tokens), log)
	}
}

// TestFramedHUDIsLiveAndShowsOnlyTheUsersProject: alice signs in to the
// admin app (its own origin) and sees acme's HUD framed and LIVE; an acme
// event appears in the frame, a globex event never does, nor a tab for
// globex; the app's log has no token.
func TestFramedHUDIsLiveAndShowsOnlyTheUsersProject(t *testing.T) {
	ln, origin := listenApp(t)
	o := startObservatory(t, origin)
	o.publish(agent("acme", "acme-scout-1"), agent("globex", "globex-spy-1"))
	a := startApp(t, o, ln, origin, false, nil)

	tb := newTab(t)
	a.signIn(tb, "alice", alicePassword)
	if got := eval[string](tb, `document.querySelector('[data-testid=project]').textContent`); got != "acme" {
		t.Errorf("the app page names project %q, want acme", got)
	}
	hud := o.url + "/hud?"
	tb.waitFrame(hud, "the live indicator", liveJS, "LIVE")
	tb.waitFrame(hud, "the roster", rosterJS, `["acme-scout-1"]`)

	// Live: events published now reach the frame; globex's first, so that
	// by the time acme's shows, a leak of globex's would have too.
	o.publish(agent("globex", "globex-spy-2"), agent("acme", "acme-scout-2"))
	tb.waitFrame(hud, "the roster", rosterJS, `["acme-scout-1","acme-scout-2"]`)
	if tabs, _ := tb.inFrame(hud, tabsJS); tabs != `["acme"]` {
		t.Errorf("tenant tabs %s, want only acme's", tabs)
	}
	if body, _ := tb.inFrame(hud, bodyJS); strings.Contains(body, "globex") {
		t.Errorf("the framed HUD mentions globex")
	}
	tb.screenshotWithFrame(hud, "adminapp-acme-1440x900.png")
	tok := frameToken(tb)
	checkLogNeverHasTokens(t, a, tok)
}

// TestOriginNotAllowedCannotFrame: the same app on an origin that is not
// in --embed-origins gets a token, but the browser refuses to render the
// HUD in its frame (CSP frame-ancestors).
func TestOriginNotAllowedCannotFrame(t *testing.T) {
	_, allowed := listenApp(t)
	ln, foreign := listenApp(t)
	o := startObservatory(t, allowed)
	o.publish(agent("acme", "acme-scout-1"))
	a := startApp(t, o, ln, foreign, false, nil)

	tb := newTab(t)
	a.signIn(tb, "alice", alicePassword)
	m := tb.waitConsole(regexp.MustCompile(`^Framing '` + regexp.QuoteMeta(o.url) + `/' violates .*"frame-ancestors ` + regexp.QuoteMeta(allowed) + `".*blocked`))
	t.Logf("console %s: %s", m.Type, m.Text)
	// Chromium puts an error page in the frame's place; whatever the frame
	// holds, it is not the HUD.
	if v, ok := tb.inFrame(o.url, `String(document.getElementById('hud') !== null)`); ok && v != "false" {
		t.Errorf("the HUD renders in a frame of %s, which --embed-origins does not list", foreign)
	}
	if n := eval[int](tb, `document.querySelectorAll('[data-testid=hud-frame]').length`); n != 1 {
		t.Errorf("the foreign app page has %d frames, want its one (refused) frame", n)
	}
}

// TestExpiredTokenShowsBannerAndAppRecovers: when the frame's embed token
// expires, the HUD shows its banner and tells the page; the page asks the
// app for a new token, and the frame is LIVE again and follows events.
func TestExpiredTokenShowsBannerAndAppRecovers(t *testing.T) {
	ln, origin := listenApp(t)
	o := startObservatory(t, origin)
	o.publish(agent("acme", "acme-scout-1"))
	a := startApp(t, o, ln, origin, true, func(c *adminapp.Config) { c.TTL = 5 * time.Minute })

	tb := newTab(t)
	a.signIn(tb, "alice", alicePassword)
	hud := o.url + "/hud?"
	tb.waitFrame(hud, "the live indicator", liveJS, "LIVE")
	first := frameToken(tb)

	// Past the token's expiry on Observatory's clock, the stream ends with
	// 4401: the banner, and a refresh request from the page.
	o.clock.Advance(5*time.Minute + time.Second)
	select {
	case <-a.refreshes:
	case <-time.After(hangBound):
		t.Fatal("the page never asked the app for a new token after the HUD's token expired")
	}
	tb.waitFrame(hud, "the banner", `String(`+bannerJS+`.startsWith('The embed token is invalid or has expired'))`, "true")
	tb.screenshotWithFrame(hud, "adminapp-expired-1440x900.png")
	if live, _ := tb.inFrame(hud, liveJS); live != "RECONNECTING" {
		t.Errorf("with an expired token the indicator shows %q, want RECONNECTING", live)
	}
	if got := eval[string](tb, `document.getElementById('hud-status').textContent`); !strings.Contains(got, "expired") {
		t.Errorf("the app's status line says %q, want that access expired", got)
	}

	a.release <- struct{}{}
	tb.waitTrue("the new frame", `!document.querySelector('[data-testid=hud-frame]').src.includes(`+strconv.Quote(url.QueryEscape(first))+`)`)
	tb.waitFrame(hud, "the live indicator", liveJS, "LIVE")
	if banner, _ := tb.inFrame(hud, bannerJS); banner != "" {
		t.Errorf("the new frame shows the banner %q", banner)
	}
	o.publish(agent("acme", "acme-scout-2"))
	tb.waitFrame(hud, "the roster", rosterJS, `["acme-scout-1","acme-scout-2"]`)
	second := frameToken(tb)
	if second == first {
		t.Fatal("the app framed the expired token again")
	}
	checkLogNeverHasTokens(t, a, first, second)
	if !strings.Contains(a.log.String(), `"reason":"refused"`) {
		t.Errorf("the app's log does not say the token was renewed because the HUD refused it:\n%s", a.log)
	}
}

// TestTokenRollsOverBeforeItExpires: the page mints the next token when
// the app says (four fifths of the ttl by default; two seconds here), so
// the frame moves to a fresh token without ever showing the banner.
func TestTokenRollsOverBeforeItExpires(t *testing.T) {
	ln, origin := listenApp(t)
	o := startObservatory(t, origin)
	o.publish(agent("acme", "acme-scout-1"))
	a := startApp(t, o, ln, origin, false, func(c *adminapp.Config) { c.TTL, c.RefreshAfter = 5*time.Minute, 2*time.Second })

	tb := newTab(t)
	a.signIn(tb, "alice", alicePassword)
	hud := o.url + "/hud?"
	tb.waitFrame(hud, "the live indicator", liveJS, "LIVE")
	first := frameToken(tb)
	tb.waitTrue("the next frame", `!document.querySelector('[data-testid=hud-frame]').src.includes(`+strconv.Quote(url.QueryEscape(first))+`)`)
	tb.waitFrame(hud, "the live indicator", liveJS, "LIVE")
	if banner, _ := tb.inFrame(hud, bannerJS); banner != "" {
		t.Errorf("after the roll-over the frame shows the banner %q", banner)
	}
	second := frameToken(tb)
	checkLogNeverHasTokens(t, a, first, second)
	if !strings.Contains(a.log.String(), `"reason":"scheduled"`) {
		t.Errorf("the app's log does not say the token was renewed on schedule:\n%s", a.log)
	}
}
