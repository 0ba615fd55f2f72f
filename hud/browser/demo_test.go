package browser_test

import (
	"testing"
	"time"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
)

// TestDemoHUD runs the README's first command, the real `observatory
// demo` process (real workers, the live workload, budgets), and reads its
// HUD in Chromium: within 10 s of the start the page is LIVE and shows the
// workers online, the three tenants, a budget gauge per tenant, missions
// in flight and the event ticker moving; no console error.
func TestDemoHUD(t *testing.T) {
	bin := observatorytest.Build(t)
	p := observatorytest.Start(t, bin, nil, "demo", "--addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--workers", "12", "--time-scale", "0.2", "--mission-rate", "3")
	tb := newTab(t, 1920, 1080)
	deadline := p.Started.Add(10 * time.Second)
	loginAt(tb, p.Base, "/hud", "admin", time.Until(deadline))
	tb.waitText("[data-testid=kpi-workers-online]", "12", time.Until(deadline))
	alive := func() bool {
		return eval[bool](tb, `(() => {
			const tabs = [...document.querySelectorAll('[data-testid=tenant-tab]')].map((e) => e.dataset.scope);
			const gauges = document.querySelectorAll('[data-testid=budget-gauge]').length;
			const ticker = document.querySelectorAll('[data-testid=ticker] li').length;
			const roster = document.querySelectorAll('[data-testid=agent-roster] li').length;
			return ['acme', 'globex', 'initech'].every((s) => tabs.includes(s)) && gauges === 3 && ticker > 10 && roster >= 8;
		})()`)
	}
	for !alive() {
		if time.Now().After(deadline) {
			tb.screenshot("hud-demo-not-alive-1920x1080.png")
			t.Fatalf("10 s after the start the demo's HUD lacks tenants, budget gauges, ticker entries or agents")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the demo's HUD alive %s after the start", time.Since(p.Started).Round(time.Millisecond))
	// Let it run a little, so the screenshot shows missions on the graph.
	first := eval[string](tb, `document.querySelector('[data-testid=ticker] li').textContent`)
	for eval[string](tb, `document.querySelector('[data-testid=ticker] li').textContent`) == first {
		if time.Since(p.Started) > 30*time.Second {
			t.Fatal("the ticker stopped moving")
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.screenshot("hud-demo-1920x1080.png")
	tb.checkConsole()
}
