package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/chromedp/chromedp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/synth"
	"github.com/sagewai/observatory/web"
)

// hooks are the data-testid hooks of DESIGN §6 that every HUD carries.
var hooks = []string{
	"kpi-active-agents", "kpi-runs-24h", "kpi-tokens-24h", "kpi-spend-today", "kpi-errors-1h",
	"kpi-missions-in-flight", "live-indicator", "tenant-tab", "agent-roster", "topology", "dossier", "ticker",
	"budget-gauge",
}

// budgets are budget notices for two of the demo's three projects: acme
// past its warn threshold, globex over its cap.
func budgets(now time.Time) []fleet.Event {
	return []fleet.Event{
		fleettest.ProjectBudget(fleet.TypeBudgetWarning, "acme", 25_000_000, 21_250_000, fleet.ActionWarn, now),
		fleettest.ProjectBudget(fleet.TypeBudgetExceeded, "globex", 10_000_000, 10_400_000, fleet.ActionStop, now),
	}
}

// waitState polls the page until it shows want (as diffState sees it), and
// fails with the difference if it never does.
func waitState(tb *tab, d time.Duration, want func() pageState) pageState {
	tb.t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := eval[pageState](tb, readJS)
		diff := diffState(got, want())
		if diff == "" {
			return got
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("after %s the page does not show the fold's figures (-want +got):\n%s", d, diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fetchHUD gets the server-rendered page with an admin token.
func (r *rig) fetchHUD(query string) *goquery.Document {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.url+"/hud"+query, nil)
	req.Header.Set("Authorization", "Bearer "+r.adminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		r.t.Fatalf("GET /hud%s: %s\n%s", query, resp.Status, b)
	}
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return doc
}

// TestHUDFollowsTheFold is the HUD's main path: log in through the form,
// find every hook, see LIVE, check that the first paint and the live page
// show exactly the fold's figures, follow a stream of events, open a
// dossier, and keep screenshots at both screen sizes.
func TestHUDFollowsTheFold(t *testing.T) {
	r := newRig(t, nil)
	s := newSim(1, synth.Config{}, 3*time.Minute)
	r.publish(s.run(2 * time.Minute)...)
	r.publish(budgets(s.now)...)

	// The first paint, before any script: right from the server.
	v, _ := r.view(fleet.ScopeAll)
	first := readHTML(r.fetchHUD(""))
	if diff := diffState(first, expect(v, fleet.ScopeAll, true, nil, "")); diff != "" {
		t.Fatalf("server-rendered page differs from the fold (-want +got):\n%s", diff)
	}
	if first.Live != "RECONNECTING" {
		t.Errorf("before the script runs the indicator shows %q, want RECONNECTING", first.Live)
	}

	tb := newTab(t, 1920, 1080)
	r.login(tb, "/hud")
	for _, h := range hooks {
		if n := eval[int](tb, fmt.Sprintf(`document.querySelectorAll('[data-testid=%q]').length`, h)); n == 0 {
			t.Errorf("hook %s is missing", h)
		}
	}
	if n := eval[int](tb, `document.querySelectorAll('[data-testid=tenant-tab]').length`); n != 4 {
		t.Errorf("%d tenant tabs, want 4 (all + acme, globex, initech)", n)
	}
	if n := eval[int](tb, `document.querySelectorAll('[data-testid=budget-gauge]').length`); n != 2 {
		t.Errorf("%d budget gauges, want 2 (acme and globex have budgets)", n)
	}
	live := waitState(tb, 10*time.Second, func() pageState { v, _ := r.view(fleet.ScopeAll); return expect(v, fleet.ScopeAll, true, nil, "") })
	// The script places every node where the server did.
	if diff := diffState(live, first); diff != "" {
		t.Errorf("the live page moved nodes the server placed (-server +live):\n%s", diff)
	}

	// The stream moves on: KPIs, roster, graph and ticker follow.
	for range 3 {
		r.publish(s.run(5 * time.Second)...)
		waitState(tb, 10*time.Second, func() pageState { v, _ := r.view(fleet.ScopeAll); return expect(v, fleet.ScopeAll, true, nil, "") })
	}
	if got := eval[string](tb, `document.querySelector('[data-kpi="runs-24h"] .spark-line').getAttribute('points')`); strings.Count(got, ",") < 2 {
		t.Errorf("the runs sparkline has no history after several diffs: points %q", got)
	}

	// A click on an agent opens its dossier, which follows the fold too.
	v, _ = r.view(fleet.ScopeAll)
	pick := rosterAgent(v, 5)
	tb.do(chromedp.Click(chromedp.CSS(`[data-testid=agent-roster] li[data-agent-id="` + pick + `"]`)))
	r.publish(s.run(5 * time.Second)...)
	waitState(tb, 10*time.Second, func() pageState { v, _ := r.view(fleet.ScopeAll); return expect(v, fleet.ScopeAll, true, nil, pick) })

	tb.screenshot("hud-1920x1080.png")
	tb.do(chromedp.EmulateViewport(1280, 720))
	// Laid out at the new size: the viewport reports it, and two animation
	// frames have run since (the page's resize handling and a repaint).
	tb.waitTrue("the viewport is 1280×720", `innerWidth === 1280 && innerHeight === 720`, 10*time.Second)
	eval[bool](tb, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`, chromedp.EvalAwaitPromise)
	tb.screenshot("hud-1280x720.png")
	// Nothing of the deck may spill out of a 1280×720 screen.
	if over := eval[string](tb, `(() => { const o = []; for (const s of ['.deck', '.top', '.tabs', '[data-testid=topology]', '[data-testid=dossier]', '[data-testid=ticker]']) {
	  const r = document.querySelector(s).getBoundingClientRect(); if (r.right > innerWidth + 1 || r.bottom > innerHeight + 1) o.push(s + ' ' + Math.round(r.right) + 'x' + Math.round(r.bottom)); } return o.join(', '); })()`); over != "" {
		t.Errorf("at 1280×720 these overflow the screen: %s", over)
	}
}

// rosterAgent returns the id of the i-th agent of the roster.
func rosterAgent(v fleet.View, i int) string {
	rows := expect(v, fleet.ScopeAll, true, nil, "").Roster
	return rows[i%len(rows)].ID
}

// TestTenantTabShowsOnlyThatProject switches tabs: the page re-subscribes
// with the project's scope and shows nothing of the others.
func TestTenantTabShowsOnlyThatProject(t *testing.T) {
	r := newRig(t, nil)
	s := newSim(2, synth.Config{}, 3*time.Minute)
	r.publish(s.run(90 * time.Second)...)
	r.publish(budgets(s.now)...)
	tb := newTab(t, 1920, 1080)
	r.login(tb, "/hud")
	projects := []string{"acme", "globex", "initech"}
	for _, p := range []string{"globex", "acme"} {
		tb.do(chromedp.Click(chromedp.CSS(`[data-testid=tenant-tab][data-scope="` + p + `"]`)))
		got := waitState(tb, 10*time.Second, func() pageState { v, _ := r.view(p); return expect(v, p, true, projects, "") })
		for _, row := range got.Roster {
			if !strings.HasPrefix(row.ID, p+"-") {
				t.Errorf("tab %s shows agent %s", p, row.ID)
			}
		}
		for _, e := range got.Ticker {
			if e.Project != p {
				t.Errorf("tab %s shows event %s of %s", p, e.ID, e.Project)
			}
		}
		if loc := tb.location(); !strings.HasSuffix(loc, "/hud?project="+p) {
			t.Errorf("after choosing %s the URL is %s", p, loc)
		}
		r.publish(s.run(5 * time.Second)...)
		waitState(tb, 10*time.Second, func() pageState { v, _ := r.view(p); return expect(v, p, true, projects, "") })
	}
	tb.screenshot("hud-tenant-acme-1920x1080.png")
	tb.do(chromedp.Click(chromedp.CSS(`[data-testid=tenant-tab][data-scope="*"]`)))
	waitState(tb, 10*time.Second, func() pageState { v, _ := r.view(fleet.ScopeAll); return expect(v, fleet.ScopeAll, true, nil, "") })
}

// TestReconnectsAndResumes stops the server and its hub under a live page,
// publishes while they are gone, and starts them again: the page shows
// RECONNECTING, then LIVE, then the fold's figures.
func TestReconnectsAndResumes(t *testing.T) {
	r := newRig(t, nil)
	s := newSim(3, synth.Config{}, 3*time.Minute)
	r.publish(s.run(60 * time.Second)...)
	tb := newTab(t, 1920, 1080)
	// While the server is down the browser reports each refused socket.
	tb.allow(`^WebSocket connection to 'ws://[^']+/ws' failed`)
	r.login(tb, "/hud")
	want := func() pageState { v, _ := r.view(fleet.ScopeAll); return expect(v, fleet.ScopeAll, true, nil, "") }
	waitState(tb, 10*time.Second, want)

	r.restart(func() {
		tb.waitText("[data-testid=live-indicator]", "RECONNECTING", 10*time.Second)
		evs := s.run(10 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, ev := range evs {
			if _, err := r.env.Publisher.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		// Two more reconnect attempts fail while the server is down.
		n := eval[int](tb, `window.observatoryHUD.stats.reconnects`)
		tb.waitTrue("two reconnect attempts failed", fmt.Sprintf(`window.observatoryHUD.stats.reconnects >= %d`, n+2), 20*time.Second)
		if got := eval[string](tb, `document.querySelector('[data-testid=live-indicator]').textContent`); got != "RECONNECTING" {
			t.Errorf("with the server down the indicator shows %q", got)
		}
	})
	streamtest.WaitReady(t, r.env.Hub)
	tb.waitText("[data-testid=live-indicator]", "LIVE", 30*time.Second)
	waitState(tb, 15*time.Second, want)
	if n := eval[int](tb, `window.observatoryHUD.stats.reconnects`); n < 1 {
		t.Errorf("the page counted %d reconnects", n)
	}
	r.publish(s.run(5 * time.Second)...)
	waitState(tb, 10*time.Second, want)
}

// TestResumesFromWhereItStood restarts the web server alone: the hub still
// holds the frames the page missed, so the page resumes from its epoch and
// seq and gets those diffs, not a new snapshot.
func TestResumesFromWhereItStood(t *testing.T) {
	r := newRig(t, nil)
	s := newSim(6, synth.Config{}, 3*time.Minute)
	r.publish(s.run(60 * time.Second)...)
	tb := newTab(t, 1280, 720)
	tb.allow(`^WebSocket connection to 'ws://[^']+/ws' failed`)
	r.login(tb, "/hud")
	want := func() pageState { v, _ := r.view(fleet.ScopeAll); return expect(v, fleet.ScopeAll, true, nil, "") }
	waitState(tb, 10*time.Second, want)
	snapshots := eval[int](tb, `window.observatoryHUD.stats.snapshots`)
	r.restartServer(func() {
		tb.waitText("[data-testid=live-indicator]", "RECONNECTING", 10*time.Second)
		r.publish(s.run(5 * time.Second)...)
	})
	tb.waitText("[data-testid=live-indicator]", "LIVE", 30*time.Second)
	waitState(tb, 15*time.Second, want)
	if got := eval[int](tb, `window.observatoryHUD.stats.snapshots`); got != snapshots {
		t.Errorf("the page took %d snapshots across the restart; a resume should have brought diffs only", got-snapshots)
	}
	if gaps := eval[int](tb, `window.observatoryHUD.stats.gaps`); gaps != 0 {
		t.Errorf("the page saw %d gaps", gaps)
	}
}

// TestBurstAgreesWithFleetAPI publishes a burst and checks that the HUD
// and GET /api/v1/fleet, two readers of one fold, show the same figures at
// the same seq.
func TestBurstAgreesWithFleetAPI(t *testing.T) {
	r := newRig(t, nil)
	s := newSim(4, synth.Config{Workers: 9, Agents: 6, MissionEvery: 150 * time.Millisecond}, 4*time.Minute)
	r.publish(s.run(20 * time.Second)...)
	tb := newTab(t, 1920, 1080)
	r.login(tb, "/hud")
	burst := s.run(2 * time.Minute)
	burst = append(burst, budgets(s.now)...)
	r.publish(burst...)
	t.Logf("burst of %d events", len(burst))

	req, _ := http.NewRequest(http.MethodGet, r.url+"/api/v1/fleet?scope=*", nil)
	req.Header.Set("Authorization", "Bearer "+r.adminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var snap protocol.Snapshot
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := waitState(tb, 20*time.Second, func() pageState { return expect(snap.State, fleet.ScopeAll, true, nil, "") })
	if got.Seq != fmt.Sprint(snap.Seq) {
		t.Errorf("the page stands at seq %s, /api/v1/fleet at %d", got.Seq, snap.Seq)
	}
}

// TestEmbedTokenSeesOnlyItsProject opens the chromeless HUD with an embed
// token of acme: it shows acme alone, and neither the page nor the socket
// can be turned to globex.
func TestEmbedTokenSeesOnlyItsProject(t *testing.T) {
	r := newRig(t, func(c *web.Config) { c.EmbedOrigins = []string{"https://admin.example.com"} })
	s := newSim(5, synth.Config{}, 3*time.Minute)
	r.publish(s.run(60 * time.Second)...)
	tok := r.embedToken("acme")
	tb := newTab(t, 1280, 720)
	tb.allow(`Failed to load resource: the server responded with a status of 403`)
	tb.do(chromedp.Navigate(r.url + "/hud?embed=1&embed_token=" + url.QueryEscape(tok)))
	tb.waitText("[data-testid=live-indicator]", "LIVE", 20*time.Second)
	got := waitState(tb, 10*time.Second, func() pageState { v, _ := r.view("acme"); return expect(v, "acme", false, []string{"acme"}, "") })
	if got.Chrome {
		t.Error("the embedded page shows the chrome")
	}
	tb.screenshot("hud-embed-acme-1280x720.png")

	// The socket: a subscribe to globex with the same token is refused.
	code := eval[float64](tb, `new Promise((resolve) => {
	  const ws = new WebSocket('ws://' + location.host + '/ws?embed_token=' + encodeURIComponent(new URLSearchParams(location.search).get('embed_token')), 'observatory.v1');
	  ws.onopen = () => ws.send(JSON.stringify({op: 'subscribe', scope: 'globex'}));
	  ws.onmessage = (e) => { const f = JSON.parse(e.data); if (f.op !== 'error') resolve(-1); };
	  ws.onclose = (e) => resolve(e.code);
	})`, chromedp.EvalAwaitPromise)
	if code != 4403 {
		t.Errorf("an acme embed token subscribing to globex: close code %v, want 4403", code)
	}
	// The page: ?project=globex is refused.
	tb.do(chromedp.Navigate(r.url + "/hud?embed=1&project=globex&embed_token=" + url.QueryEscape(tok)))
	if n := eval[int](tb, `document.querySelectorAll('[data-testid=error-page]').length`); n != 1 {
		t.Error("an acme embed token opened globex's HUD")
	}
}

// TestForeignOriginCannotOpenTheSocket runs a page on another origin that
// tries to open the HUD's socket: the browser never gets it open.
func TestForeignOriginCannotOpenTheSocket(t *testing.T) {
	r := newRig(t, nil)
	foreign := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><title>elsewhere</title>")
	})}
	ln := listen(t)
	go foreign.Serve(ln)
	t.Cleanup(func() { foreign.Close() })
	tb := newTab(t, 1280, 720)
	tb.allow(`^WebSocket connection to 'ws://[^']+/ws' failed`)
	tb.do(chromedp.Navigate("http://" + ln.Addr().String() + "/"))
	res := eval[string](tb, fmt.Sprintf(`new Promise((resolve) => {
	  const ws = new WebSocket(%q, 'observatory.v1');
	  ws.onopen = () => resolve('open');
	  ws.onclose = (e) => resolve('closed ' + e.code);
	})`, strings.Replace(r.url, "http", "ws", 1)+"/ws"), chromedp.EvalAwaitPromise)
	if res != "closed 1006" {
		t.Errorf("a page on another origin opening /ws: %s, want closed 1006 (refused before the upgrade)", res)
	}
}
