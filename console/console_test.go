package console_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/console"
	"github.com/sagewai/observatory/console/consoletest"
	"github.com/sagewai/observatory/fleet"
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time           { return c.t }
func (c *clock) advance(d time.Duration)  { c.t = c.t.Add(d) }
func usd(dollars float64) fleet.Micros    { return fleet.Micros(dollars * fleet.MicrosPerUSD) }
func banner(s *consoletest.Screen, n int) { writeLines(s, n, "banner line") }

func writeLines(s *consoletest.Screen, n int, prefix string) {
	for i := range n {
		fmt.Fprintf(s, "%s %d\r\n", prefix, i+1)
	}
}

// ttyWriter turns "\n" into "\r\n" as a terminal's ONLCR does.
type ttyWriter struct{ s *consoletest.Screen }

func (w ttyWriter) Write(p []byte) (int, error) {
	w.s.Write([]byte(strings.ReplaceAll(string(p), "\n", "\r\n")))
	return len(p), nil
}

func threeTenants() []console.Tenant {
	return []console.Tenant{
		{Project: "acme", SpendToday: usd(1.234), Budget: &console.Budget{Spent: usd(1.234), Limit: usd(5), Pct: 24.68, Period: fleet.PeriodDaily, Status: "ok", Action: fleet.ActionWarn}},
		{Project: "globex", SpendToday: usd(0.45), Budget: &console.Budget{Spent: usd(0.45), Limit: usd(0.5), Pct: 90, Period: fleet.PeriodDaily, Status: "warning", Action: fleet.ActionThrottle}},
		{Project: "initech", SpendToday: usd(0.1)},
	}
}

// TestBlockRedrawsInPlace draws the block under a banner five times, a
// second apart: each frame replaces the last one where it stood (the
// banner stays, the output uses no more lines than the first frame did),
// the uptime counts the seconds and the rate is the events folded per
// second between two frames.
func TestBlockRedrawsInPlace(t *testing.T) {
	scr := consoletest.NewScreen(120, 30)
	banner(scr, 5)
	clk := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	folded := int64(1000)
	b := console.New(console.Config{
		Out: ttyWriter{scr}, Title: "observatory demo", Hint: "Ctrl-C stops it and prints the proof",
		Footer: []string{"  HUD          http://127.0.0.1:3001/hud"},
		Now:    clk.now,
		Figures: func(context.Context) console.Figures {
			return console.Figures{Live: true, Seq: uint64(folded) + 7, Folded: folded, Subscribers: 2,
				MissionsInFlight: 3, WorkersOnline: 23, Workers: 24, Tenants: threeTenants()}
		},
	})
	ctx := context.Background()
	var used int
	for i := range 5 {
		if err := b.Draw(ctx); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			used = scr.Used()
		}
		lines := scr.Lines()
		for j := range 5 {
			if want := fmt.Sprintf("banner line %d", j+1); lines[j] != want {
				t.Fatalf("frame %d: line %d is %q, want the banner's %q", i+1, j+1, lines[j], want)
			}
		}
		if got := scr.Used(); got != used {
			t.Fatalf("frame %d: the output uses %d lines, the first frame %d: the block did not redraw in place", i+1, got, used)
		}
		if want := fmt.Sprintf("  uptime       %ds", i); lines[6] != want {
			t.Errorf("frame %d: %q, want %q", i+1, lines[6], want)
		}
		clk.advance(time.Second)
		folded += 150
	}
	want := []string{
		"observatory demo: Ctrl-C stops it and prints the proof",
		"  uptime       4s",
		"  fold         live at seq 1607, 150.0 events/s folded",
		"  fleet        3 missions in flight, 23 of 24 workers online, 2 subscribers",
		"  acme         $1.23 spent today; budget $1.23 of $5.00 daily, 24.7% ok, warns at the limit",
		"  globex       $0.45 spent today; budget $0.45 of $0.50 daily, 90.0% warning, throttles at the limit",
		"  initech      $0.10 spent today; no budget",
		"  HUD          http://127.0.0.1:3001/hud",
	}
	if d := cmp.Diff(want, scr.Lines()[5:5+len(want)]); d != "" {
		t.Errorf("the block (-want +got):\n%s", d)
	}
	if got := strings.Join(scr.Lines()[5+len(want):], ""); got != "" {
		t.Errorf("something under the block: %q", got)
	}
	if scr.Unknown() != 0 {
		t.Errorf("%d escape sequences a terminal may not understand", scr.Unknown())
	}
}

// TestBlockShrinks checks that a frame shorter than the last one leaves
// none of the last one's lines below it.
func TestBlockShrinks(t *testing.T) {
	scr := consoletest.NewScreen(120, 30)
	tenants := threeTenants()
	b := console.New(console.Config{Out: ttyWriter{scr}, Title: "t", Figures: func(context.Context) console.Figures {
		return console.Figures{Tenants: tenants}
	}})
	if err := b.Draw(context.Background()); err != nil {
		t.Fatal(err)
	}
	tenants = tenants[:1]
	if err := b.Draw(context.Background()); err != nil {
		t.Fatal(err)
	}
	text := scr.Text()
	if strings.Contains(text, "globex") || strings.Contains(text, "initech") {
		t.Errorf("the rows of the longer frame are still on screen:\n%s", text)
	}
	if !strings.Contains(text, "acme") {
		t.Errorf("the short frame is not on screen:\n%s", text)
	}
}

// TestBlockFitsTerminal draws many tenants on a small terminal: no line
// wraps and the block fits the height, so it still redraws in place, and
// the tenants left out are counted.
func TestBlockFitsTerminal(t *testing.T) {
	const cols, rows = 40, 9
	scr := consoletest.NewScreen(cols, rows)
	var tenants []console.Tenant
	for i := range 20 {
		tenants = append(tenants, console.Tenant{Project: fmt.Sprintf("project-%02d", i), SpendToday: usd(float64(i))})
	}
	clk := &clock{t: time.Unix(0, 0)}
	b := console.New(console.Config{Out: ttyWriter{scr}, Title: "observatory serve", Hint: "a long hint that does not fit in forty columns",
		Footer: []string{"  HUD          http://127.0.0.1:3001/hud"}, Now: clk.now, Size: func() (int, int) { return cols, rows },
		Figures: func(context.Context) console.Figures { return console.Figures{Tenants: tenants} }})
	var used int
	for i := range 3 {
		if err := b.Draw(context.Background()); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			used = scr.Used()
		}
		if scr.Used() != used || scr.Scrolled() != 0 {
			t.Fatalf("frame %d: used %d lines (first frame %d), %d scrolled off", i+1, scr.Used(), used, scr.Scrolled())
		}
		clk.advance(time.Second)
	}
	lines := scr.Lines()
	if used != rows-1 {
		t.Errorf("the block took %d lines of a %d-line terminal, want %d", used, rows, rows-1)
	}
	for _, l := range lines {
		if len([]rune(l)) >= cols {
			t.Errorf("line %q fills the width: it may wrap", l)
		}
	}
	if !strings.Contains(scr.Text(), "and 18 more projects") {
		t.Errorf("the tenants left out are not counted:\n%s", scr.Text())
	}
	if !strings.HasPrefix(lines[rows-2], "  HUD          http://") {
		t.Errorf("the footer is not the block's last line:\n%s", scr.Text())
	}
}

// TestBlockProblemKeepsLastFigures: when the fleet figures cannot be read
// the block says why and keeps showing the last ones it had.
func TestBlockProblemKeepsLastFigures(t *testing.T) {
	scr := consoletest.NewScreen(120, 30)
	problem := ""
	b := console.New(console.Config{Out: ttyWriter{scr}, Title: "t", Figures: func(context.Context) console.Figures {
		if problem != "" {
			return console.Figures{Seq: 9, Problem: problem}
		}
		return console.Figures{Live: true, Seq: 8, WorkersOnline: 4, Workers: 4, Tenants: threeTenants()[:1]}
	}})
	b.Draw(context.Background())
	problem = "context deadline exceeded"
	b.Draw(context.Background())
	text := scr.Text()
	for _, want := range []string{"at seq 9", "figures not read: context deadline exceeded", "4 of 4 workers online", "acme"} {
		if !strings.Contains(text, want) {
			t.Errorf("the block lacks %q:\n%s", want, text)
		}
	}
}

// notifyScreen is a screen that says when it was written to.
type notifyScreen struct {
	ttyWriter
	wrote chan struct{}
}

func (n notifyScreen) Write(p []byte) (int, error) {
	n.ttyWriter.Write(p)
	n.wrote <- struct{}{}
	return len(p), nil
}

// TestRunStopsLeavingLastFrame runs the block on injected ticks, stops
// it, and prints below it as the demo prints its proof: the last frame,
// marked stopped, stays on screen above what follows.
func TestRunStopsLeavingLastFrame(t *testing.T) {
	scr := consoletest.NewScreen(100, 30)
	banner(scr, 3)
	out := notifyScreen{ttyWriter{scr}, make(chan struct{}, 1)}
	clk := &clock{t: time.Unix(100, 0)}
	tick := make(chan time.Time)
	b := console.New(console.Config{Out: out, Title: "observatory demo", Hint: "running", Now: clk.now, Tick: tick,
		Figures: func(context.Context) console.Figures { return console.Figures{Live: true, Tenants: threeTenants()} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	await := func(what string) {
		t.Helper()
		select {
		case <-out.wrote:
		case err := <-done:
			t.Fatalf("Run returned %v before %s", err, what)
		case <-time.After(time.Minute): // a hang bound only
			t.Fatalf("no frame %s", what)
		}
	}
	await("at start")
	for i := range 3 {
		clk.advance(time.Second)
		tick <- time.Time{}
		await(fmt.Sprintf("after tick %d", i+1))
	}
	clk.advance(time.Second)
	cancel()
	await("when stopped")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after its context ended")
	}
	fmt.Fprint(out.ttyWriter, "\nProof\n")
	lines := scr.Lines()
	want := []string{"banner line 1", "banner line 2", "banner line 3", "observatory demo: stopped", "  uptime       4s"}
	if d := cmp.Diff(want, lines[:len(want)]); d != "" {
		t.Errorf("the screen's top (-want +got):\n%s", d)
	}
	proof := -1
	for i, l := range lines {
		if l == "Proof" {
			proof = i
		}
	}
	if proof < 0 || !strings.HasPrefix(lines[proof-2], "  initech") {
		t.Errorf("the proof is not printed right below the last frame:\n%s", scr.Text())
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("terminal gone") }

// TestRunReturnsWriteError: a terminal that went away ends Run.
func TestRunReturnsWriteError(t *testing.T) {
	b := console.New(console.Config{Out: errWriter{}, Tick: make(chan time.Time)})
	if err := b.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "terminal gone") {
		t.Errorf("Run = %v, want the write error", err)
	}
}
