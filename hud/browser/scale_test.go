package browser_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// bigFleet is 10 projects of 50 agents and 5 workers each, with 200
// missions in flight: 40 queued, 20 claimed, 140 running on an agent.
type bigFleet struct {
	rng      *rand.Rand
	now      time.Time
	agents   []string // project/agent
	running  []string // missions with a run
	pct      map[string]float64
	project  map[string]string // mission → project
	agentOf  map[string]string // mission → agent
	runOf    map[string]string // mission → run
	projects []string
}

func newBigFleet() (*bigFleet, []fleet.Event) {
	b := &bigFleet{rng: rand.New(rand.NewPCG(7, 11)), now: time.Now().UTC().Add(-time.Minute),
		pct: map[string]float64{}, project: map[string]string{}, agentOf: map[string]string{}, runOf: map[string]string{}}
	var evs []fleet.Event
	tick := func() time.Time { b.now = b.now.Add(time.Millisecond); return b.now }
	for p := range 10 {
		pid := fmt.Sprintf("tenant%02d", p)
		b.projects = append(b.projects, pid)
		for w := range 5 {
			evs = append(evs, fleettest.WorkerJoined(pid, fmt.Sprintf("w-%s-%d", pid, w), tick()))
		}
		for a := range 50 {
			id := fmt.Sprintf("%s-agent-%02d", pid, a)
			b.agents = append(b.agents, pid+"/"+id)
			evs = append(evs, fleettest.AgentCreated(pid, id, "claude-haiku-4-5", tick()))
		}
		for m := range 20 {
			mid := fmt.Sprintf("m-%s-%02d", pid, m)
			b.project[mid] = pid
			evs = append(evs, fleettest.MissionQueued(pid, mid, "Mission "+mid, tick()))
			if m < 4 {
				continue // stays queued
			}
			evs = append(evs, fleettest.MissionClaimed(pid, mid, fmt.Sprintf("w-%s-%d", pid, m%5), tick()))
			if m < 6 {
				continue // claimed, no run yet
			}
			agent := fmt.Sprintf("%s-agent-%02d", pid, m*3%50)
			run := "r-" + mid
			b.agentOf[mid], b.runOf[mid] = agent, run
			b.running = append(b.running, mid)
			evs = append(evs, fleettest.RunStarted(pid, agent, run, mid, "claude-haiku-4-5", tick()))
		}
	}
	return b, evs
}

// step returns one tick of a busy fleet: missions progress, agents call
// models and tools and change state.
func (b *bigFleet) step(n int) []fleet.Event {
	var evs []fleet.Event
	for range n {
		b.now = b.now.Add(time.Millisecond)
		switch b.rng.IntN(4) {
		case 0, 1:
			mid := b.running[b.rng.IntN(len(b.running))]
			b.pct[mid] = min(99, b.pct[mid]+float64(1+b.rng.IntN(9)))
			evs = append(evs, fleettest.MissionProgress(b.project[mid], mid, b.pct[mid], b.now))
		case 2:
			mid := b.running[b.rng.IntN(len(b.running))]
			evs = append(evs, fleettest.LLMCall(b.project[mid], b.agentOf[mid], b.runOf[mid], "claude-haiku-4-5",
				int64(500+b.rng.IntN(2000)), int64(100+b.rng.IntN(500)), 0, 0, b.now))
		default:
			pa := b.agents[b.rng.IntN(len(b.agents))]
			var pid, id string
			fmt.Sscanf(pa, "%8s/%s", &pid, &id)
			states := []string{fleet.AgentIdle, fleet.AgentThinking, fleet.AgentToolCall, fleet.AgentWaiting}
			evs = append(evs, fleettest.AgentState(pid, id, states[b.rng.IntN(len(states))], b.now))
		}
	}
	return evs
}

// frameStats are measured in the page while the fleet runs.
type frameStats struct {
	Flushes int `json:"flushes"`
	// FlushesWithoutDiff are repaints of held-back ticker lines (at most
	// four a second) or of a click, with no diff since the last repaint.
	FlushesWithoutDiff int     `json:"flushesWithoutDiff"`
	FlushMs            float64 `json:"flushMs"`
	MaxFlushMs         float64 `json:"maxFlushMs"`
	SnapshotFlushMs    float64 `json:"snapshotFlushMs"`
	Diffs              int     `json:"diffs"`
	Frames             []float64
	LongTasks          []float64
	Mutations          []float64
}

// loadAverage is the machine's 1-minute load average, for the log.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}

// TestScale500Agents200Missions renders a fleet of 500 agents with 200
// missions in flight and keeps it live under about 300 events a second.
// It measures, in the page, what each batched repaint costs: in CPU time
// (Chromium's thread-time counters, which a busy machine does not
// inflate) and in DOM nodes touched, and checks the figures against the
// fold at the end. Wall-clock frame times are logged, not asserted: on a
// shared machine they measure the neighbours.
func TestScale500Agents200Missions(t *testing.T) {
	r := newRig(t, nil)
	b, evs := newBigFleet()
	r.publish(evs...)
	v, _ := r.view(fleet.ScopeAll)
	if len(v.Agents) != 500 || len(v.Missions) != 200 {
		t.Fatalf("the fleet has %d agents and %d missions in flight, want 500 and 200", len(v.Agents), len(v.Missions))
	}
	html := r.fetchHUD("")
	if n := html.Find("[data-testid=agent-roster] > li").Length(); n != 500 {
		t.Fatalf("the server rendered %d roster rows, want 500", n)
	}

	tb := newTab(t, 1920, 1080)
	tb.enableMetrics()
	start := time.Now()
	r.login(tb, "/hud")
	waitState(tb, 20*time.Second, func() pageState { v, _ := r.view(fleet.ScopeAll); return expect(v, fleet.ScopeAll, true, nil, "") })
	snap := eval[float64](tb, `window.observatoryHUD.stats.snapshotFlushMs || window.observatoryHUD.stats.maxFlushMs`)
	t.Logf("login to a page equal to the fold: %s; the script's first repaint of the 500-agent snapshot took %.1f ms (wall clock)",
		time.Since(start).Round(time.Millisecond), snap)

	// Measure from here: what each repaint costs in CPU and how much of the
	// DOM it touches, how regular the animation frames stay, long tasks.
	eval[bool](tb, `(() => {
	  const s = window.observatoryHUD.stats; s.flushes = 0; s.flushMs = 0; s.maxFlushMs = 0; s.diffs = 0;
	  window.__frames = []; window.__long = []; window.__mut = [];
	  let last = performance.now(), n = 0;
	  const loop = (t) => { window.__frames.push(t - last); last = t; if (window.__frames.length < 100000) requestAnimationFrame(loop); };
	  requestAnimationFrame(loop);
	  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask' });
	  // Mutation records are delivered after each repaint: one batch per repaint.
	  new MutationObserver((recs) => window.__mut.push(recs.length))
	    .observe(document.getElementById('hud'), { subtree: true, childList: true, attributes: true, characterData: true });
	  return true; })()`)
	before := tb.cpuMetrics()
	const seconds = 10
	sent := 0
	for range seconds * 10 {
		tickStart := time.Now()
		batch := b.step(30)
		r.publish(batch...)
		sent += len(batch)
		time.Sleep(max(0, 100*time.Millisecond-time.Since(tickStart)))
	}
	after := tb.cpuMetrics()
	waitState(tb, 20*time.Second, func() pageState { v, _ := r.view(fleet.ScopeAll); return expect(v, fleet.ScopeAll, true, nil, "") })
	st := eval[frameStats](tb, `(() => { const s = window.observatoryHUD.stats;
	  return { flushes: s.flushes, flushesWithoutDiff: s.flushesWithoutDiff, flushMs: s.flushMs, maxFlushMs: s.maxFlushMs, snapshotFlushMs: s.snapshotFlushMs, diffs: s.diffs,
	    Frames: window.__frames.slice(1), LongTasks: window.__long, Mutations: window.__mut }; })()`)
	cpu := func(k string) float64 { return (after[k] - before[k]) * 1000 } // ms of CPU over the run
	perFlush := func(k string) float64 { return cpu(k) / float64(max(1, st.Flushes)) }
	sorted := func(xs []float64) func(p float64) float64 {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		return func(p float64) float64 {
			if len(xs) == 0 {
				return 0
			}
			return xs[min(len(xs)-1, int(p*float64(len(xs))))]
		}
	}
	frame := sorted(st.Frames)
	mut := sorted(st.Mutations)
	t.Logf("500 agents, 200 missions, %d events in %d s (load average %s): %d diffs applied in %d repaints (%d of them without a diff)",
		sent, seconds, loadAverage(), st.Diffs, st.Flushes, st.FlushesWithoutDiff)
	t.Logf("CPU (thread time) per repaint: script %.1f ms, style %.1f ms, layout %.1f ms, main thread %.1f ms; renderer, all threads, %.0f ms per second",
		perFlush("ScriptDuration"), perFlush("RecalcStyleDuration"), perFlush("LayoutDuration"), perFlush("TaskDuration"), cpu("ProcessTime")/seconds)
	t.Logf("DOM mutations per repaint: p50 %.0f, p95 %.0f, max %.0f (the page holds %d elements)",
		mut(0.5), mut(0.95), mut(1), eval[int](tb, `document.getElementsByTagName('*').length`))
	t.Logf("wall clock (inflated by a busy machine): repaint mean %.1f ms, max %.1f ms; frame interval p50 %.1f ms, p95 %.1f ms; %d long tasks",
		st.FlushMs/float64(max(1, st.Flushes)), st.MaxFlushMs, frame(0.5), frame(0.95), len(st.LongTasks))

	// Every repaint that follows diffs takes all of them (at most one
	// per diff), and the ticker's held-back lines add at most four
	// repaints a second.
	if withDiffs := st.Flushes - st.FlushesWithoutDiff; withDiffs == 0 || st.Diffs < withDiffs {
		t.Errorf("%d repaints with diffs for %d diffs: repaints are not batched per frame", withDiffs, st.Diffs)
	}
	if st.FlushesWithoutDiff > 4*(seconds+20) { // the run, and up to 20 s waiting for its last state
		t.Errorf("%d repaints without a diff over %d s: the ticker is repainted more than four times a second", st.FlushesWithoutDiff, seconds)
	}
	// The CPU figures above are reported, not asserted: a timed assertion
	// fails on a busy machine without the page being any slower (the
	// measured ranges are in docs/performance.md). What is asserted is
	// work that does not depend on the machine: batching and DOM writes.
	// A repaint touches what changed, not the page: a full re-render would
	// rewrite thousands of nodes (500 roster rows, 1,500 graph nodes).
	if m := mut(0.95); m > 600 {
		t.Errorf("95th percentile repaint rewrites %.0f DOM nodes: the page re-renders more than changed", m)
	}
	tb.screenshot("hud-500-agents-1920x1080.png")
}
