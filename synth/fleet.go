package synth

import (
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// Fleet is a running synthetic fleet. New builds one; Run or Step drive it.
type Fleet struct {
	cfg     Config
	publish func(context.Context, fleet.Event) error
	rng     *rand.Rand

	projects []*project
	workers  []*worker

	started bool
	stopped bool
	queue   actions
	flying  map[string]*mission // queued or running, by id
	pending []*mission          // queued and not yet claimed, oldest first
	order   uint64              // insertion order of actions, for ties
	out     []fleet.Event       // events emitted by the current Step
}

type project struct {
	mix     ProjectMix
	agents  []*agent
	workers []*worker
	queued  int // missions of the project in pending
}

type agent struct {
	id      string
	project *project
	role    role
	model   string
	prof    CallProfile
	ready   bool // agent.created sent
	busy    bool // running a mission, or recovering from a failed one
	queued  int  // missions waiting for it
}

func (a *agent) load() int {
	if a.busy {
		return a.queued + 1
	}
	return a.queued
}

type worker struct {
	id       string
	host     string
	pools    []string
	projects []*project
	online   bool
	active   int
}

type mission struct {
	id, runID, traceID string
	title, priority    string
	user               string
	project            *project
	agent              *agent
	worker             *worker
	queuedAt, started  time.Time
	step               int
	llmCalls           int
	tool               string // the last tool called
	failStep           int    // the step that fails, or -1
	runEnded           bool   // agent.run.completed or failed sent
	state              string
}

// New returns a synthetic fleet that hands its events to publish. Nothing
// happens until Run or Step.
func New(cfg Config, publish func(context.Context, fleet.Event) error) *Fleet {
	cfg.defaults()
	f := &Fleet{cfg: cfg, publish: publish, rng: cfg.Rand, flying: map[string]*mission{}}
	pricing := fleet.DefaultPricing()
	for _, mix := range cfg.Projects {
		p := &project{mix: mix}
		roles := catalog(mix.Team)
		for i := 0; i < cfg.Agents; i++ {
			r := roles[i%len(roles)]
			id := mix.ID + "-" + mix.Team + "-" + r.slug
			if n := i / len(roles); n > 0 {
				id += fmt.Sprintf("-%d", n+1)
			}
			model := mix.Models[0]
			if r.fast {
				model = mix.Models[len(mix.Models)-1]
			}
			p.agents = append(p.agents, &agent{id: id, project: p, role: r, model: model, prof: ProfileOf(model, pricing)})
		}
		f.projects = append(f.projects, p)
	}
	np := len(f.projects)
	for i := 0; i < cfg.Workers; i++ {
		w := &worker{id: fmt.Sprintf("w-%02d", i+1)}
		// With at least as many workers as projects, each worker serves
		// one project; with fewer, each serves several.
		if cfg.Workers >= np {
			w.projects = []*project{f.projects[i%np]}
		} else {
			for j := i; j < np; j += cfg.Workers {
				w.projects = append(w.projects, f.projects[j])
			}
		}
		w.host, w.pools = fmt.Sprintf("node-%02d.fleet.internal", i+1), []string{"default"}
		for _, p := range w.projects {
			p.workers = append(p.workers, w)
			for _, a := range p.agents {
				if a.prof.Provider == "local" {
					w.host, w.pools = fmt.Sprintf("gpu-%02d.fleet.internal", i+1), []string{"gpu", "local-models"}
				}
			}
		}
		f.workers = append(f.workers, w)
	}
	return f
}

// StopTimeout bounds publishing the events of Stop when Run ends.
const StopTimeout = 2 * time.Second

// Run publishes the fleet's events in real time until ctx ends. Then it
// publishes, best effort within StopTimeout, what Stop returns (so that a
// HUD is not left with missions that will never finish), and returns nil.
// It returns an error only when publish fails while ctx is still live.
func (f *Fleet) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			f.publishStop(ctx)
			return nil
		case <-timer.C:
		}
		for _, ev := range f.Step(f.cfg.Now()) {
			if err := f.publish(ctx, ev); err != nil {
				if ctx.Err() != nil {
					f.publishStop(ctx)
					return nil
				}
				return fmt.Errorf("synth: publish %s %s: %w", ev.Type, ev.ID, err)
			}
		}
		next := f.Next()
		if next.IsZero() { // stopped: nothing will ever be due
			<-ctx.Done()
			return nil
		}
		timer.Reset(max(next.Sub(f.cfg.Now()), 0))
	}
}

// publishStop publishes the events of Stop under a fresh StopTimeout.
// Failures are ignored: the process is going away, and the missions left
// behind are what a crashed worker leaves too.
func (f *Fleet) publishStop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopTimeout)
	defer cancel()
	for _, ev := range f.Stop(f.cfg.Now()) {
		if f.publish(ctx, ev) != nil {
			return
		}
	}
}

// Stop ends the fleet at now, as workers shutting down would: every
// mission in flight fails (its run first, if it started) with "worker shut
// down", and every worker leaves. Later calls of Step and Stop return
// nothing.
func (f *Fleet) Stop(now time.Time) []fleet.Event {
	if !f.started || f.stopped {
		f.stopped = true
		return nil
	}
	f.stopped = true
	f.queue = nil
	const reason = "worker shut down"
	for _, id := range slices.Sorted(maps.Keys(f.flying)) {
		m := f.flying[id]
		if !m.started.IsZero() && !m.runEnded {
			f.emit(now, fleet.TypeRunFailed, f.missionMeta(m), fleet.Outcome{DurationMS: msSince(m.started, now), Error: reason})
		}
		f.emit(now, fleet.TypeMissionFailed, f.missionMeta(m), fleet.Outcome{DurationMS: msSince(m.queuedAt, now), Error: reason})
	}
	for _, w := range f.workers {
		if w.online {
			for _, p := range w.projects {
				f.emit(now, fleet.TypeWorkerLeft, meta{project: p, worker: w.id}, fleet.WorkerLeft{Reason: "shutdown"})
			}
		}
	}
	out := f.out
	f.out = nil
	return out
}

// Step advances the simulation to now and returns the events due, oldest
// first. The first call starts the fleet at now: workers join, agents are
// created, and missions begin a second later. Times passed to Step must
// not go backwards. After Stop, Step returns nothing.
func (f *Fleet) Step(now time.Time) []fleet.Event {
	if f.stopped {
		return nil
	}
	if !f.started {
		f.started = true
		f.start(now.UTC())
	}
	for len(f.queue) > 0 && !f.queue[0].at.After(now) {
		a := heap.Pop(&f.queue).(action)
		a.fn(a.at)
	}
	out := f.out
	f.out = nil
	return out
}

// Next returns when the next event is due: the zero time before the first
// Step and after Stop.
func (f *Fleet) Next() time.Time {
	if len(f.queue) == 0 {
		return time.Time{}
	}
	return f.queue[0].at
}

// action is one scheduled piece of the simulation.
type action struct {
	at    time.Time
	order uint64
	fn    func(now time.Time)
}

type actions []action

func (q actions) Len() int { return len(q) }
func (q actions) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].order < q[j].order
}
func (q actions) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *actions) Push(x any)   { *q = append(*q, x.(action)) }
func (q *actions) Pop() any {
	old := *q
	a := old[len(old)-1]
	old[len(old)-1] = action{}
	*q = old[:len(old)-1]
	return a
}

func (f *Fleet) at(t time.Time, fn func(now time.Time)) {
	f.order++
	heap.Push(&f.queue, action{at: t, order: f.order, fn: fn})
}

// ms returns a random duration between lo and hi milliseconds.
func (f *Fleet) ms(lo, hi int) time.Duration {
	return time.Duration(lo+f.rng.IntN(hi-lo+1)) * time.Millisecond
}

func (f *Fleet) start(t0 time.Time) {
	for i, w := range f.workers {
		f.at(t0.Add(time.Duration(i)*70*time.Millisecond), func(now time.Time) { f.join(now, w) })
	}
	n := 0
	for _, p := range f.projects {
		for _, a := range p.agents {
			f.at(t0.Add(300*time.Millisecond+time.Duration(n)*40*time.Millisecond), func(now time.Time) { f.createAgent(now, a) })
			n++
		}
	}
	f.at(t0.Add(time.Second), f.spawn)
}

// meta is the envelope of an event apart from id, type, time and data.
type meta struct {
	project               *project
	user, worker, agent   string
	mission, run, traceID string
}

func (f *Fleet) emit(t time.Time, typ string, m meta, data any) {
	ev := fleet.Event{
		ID: ulid(t, f.rng), Type: typ, Time: t.UTC(), ProjectID: m.project.mix.ID, TeamID: m.project.mix.Team,
		UserID: m.user, WorkerID: m.worker, AgentID: m.agent, MissionID: m.mission, RunID: m.run,
		TraceID: m.traceID, SpanID: hexID(f.rng, 8),
	}
	if ev.UserID == "" {
		ev.UserID = m.project.mix.Users[0]
	}
	if ev.TraceID == "" {
		ev.TraceID = hexID(f.rng, 16)
	}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			panic("synth: encode " + typ + ": " + err.Error()) // payloads are plain structs
		}
		ev.Data = b
	}
	f.out = append(f.out, ev)
}

// Workers.

func (f *Fleet) join(now time.Time, w *worker) {
	w.online = true
	for _, p := range w.projects {
		f.emit(now, fleet.TypeWorkerJoined, meta{project: p, worker: w.id},
			fleet.WorkerJoined{Host: w.host, Version: "0.9.3", Capacity: WorkerCapacity, Pools: w.pools})
	}
	f.at(now.Add(HeartbeatEvery), func(now time.Time) { f.heartbeat(now, w) })
	f.dispatch(now)
}

func (f *Fleet) heartbeat(now time.Time, w *worker) {
	state := "idle"
	if w.active > 0 {
		state = "busy"
	}
	load := 0.05 + 0.85*float64(w.active)/WorkerCapacity + 0.08*f.rng.Float64()
	for _, p := range w.projects {
		f.emit(now, fleet.TypeWorkerHeartbeat, meta{project: p, worker: w.id},
			fleet.WorkerHeartbeat{State: state, ActiveMissions: w.active, Load: math.Round(load*100) / 100})
	}
	f.at(now.Add(HeartbeatEvery), func(now time.Time) { f.heartbeat(now, w) })
}

// Agents.

func (f *Fleet) createAgent(now time.Time, a *agent) {
	a.ready = true
	r := a.role
	f.emit(now, fleet.TypeAgentCreated, meta{project: a.project, agent: a.id}, fleet.AgentCreated{
		Name: a.id, Role: r.role, Model: a.model, Version: fmt.Sprintf("1.%d.%d", 2+len(r.tools), len(r.skills)),
		Tools: r.tools, Skills: r.skills, Description: r.description,
	})
	f.dispatch(now)
}

func (f *Fleet) agentState(now time.Time, m *mission, state string) {
	if m.state == state {
		return
	}
	m.state = state
	f.emit(now, fleet.TypeAgentState, f.missionMeta(m), fleet.AgentStateChange{State: state})
}

// Missions.

func (f *Fleet) missionMeta(m *mission) meta {
	mt := meta{project: m.project, user: m.user, agent: m.agent.id, mission: m.id, run: m.runID, traceID: m.traceID}
	if m.worker != nil {
		mt.worker = m.worker.id
	}
	if m.started.IsZero() {
		mt.run = ""
	}
	return mt
}

// spawn queues a new mission for a project chosen by weight, then
// schedules the next one.
func (f *Fleet) spawn(now time.Time) {
	gap := time.Duration(f.rng.ExpFloat64() * float64(f.cfg.MissionEvery))
	gap = min(max(gap, f.cfg.MissionEvery/4), 3*f.cfg.MissionEvery).Round(time.Millisecond)
	defer f.at(now.Add(gap), f.spawn)

	p := f.pickProject()
	if p.queued >= 2*len(p.agents) {
		return // the project's queue is long enough: its users wait
	}
	// Route to the less loaded of two agents picked at random.
	a, b := p.agents[f.rng.IntN(len(p.agents))], p.agents[f.rng.IntN(len(p.agents))]
	if b.load() < a.load() {
		a = b
	}
	suffix := strings.ToLower(hexID(f.rng, 5))
	m := &mission{
		id: "m-" + suffix, runID: "r-" + suffix, traceID: hexID(f.rng, 16),
		title:   strings.Replace(a.role.titles[f.rng.IntN(len(a.role.titles))], "%d", fmt.Sprint(1000+f.rng.IntN(90000)), 1),
		user:    p.mix.Users[f.rng.IntN(len(p.mix.Users))],
		project: p, agent: a, queuedAt: now, failStep: -1,
	}
	switch x := f.rng.Float64(); {
	case x < 0.05:
		m.priority = "urgent"
	case x < 0.25:
		m.priority = "high"
	case x < 0.35:
		m.priority = "low"
	default:
		m.priority = "normal"
	}
	if f.rng.Float64() < FailureRate {
		m.failStep = f.rng.IntN(len(a.role.steps))
	}
	f.emit(now, fleet.TypeMissionQueued, f.missionMeta(m), fleet.MissionQueued{Title: m.title, Priority: fleet.Priority(m.priority)})
	f.pending = append(f.pending, m)
	f.flying[m.id] = m
	p.queued++
	a.queued++
	f.dispatch(now)
}

func (f *Fleet) pickProject() *project {
	var sum float64
	for _, p := range f.projects {
		sum += p.mix.Weight
	}
	x := f.rng.Float64() * sum
	for _, p := range f.projects {
		if x < p.mix.Weight {
			return p
		}
		x -= p.mix.Weight
	}
	return f.projects[len(f.projects)-1]
}

// dispatch hands queued missions, oldest first whatever their project, to
// their agents, when free, on the least loaded worker of their project
// with room.
func (f *Fleet) dispatch(now time.Time) {
	kept := f.pending[:0]
	for _, m := range f.pending {
		w := f.freeWorker(m.project)
		if w == nil || !m.agent.ready || m.agent.busy {
			kept = append(kept, m)
			continue
		}
		m.agent.busy, m.worker = true, w
		w.active++
		m.project.queued--
		m.agent.queued--
		f.at(now.Add(f.ms(20, 250)), func(now time.Time) { f.claim(now, m) })
	}
	clear(f.pending[len(kept):])
	f.pending = kept
}

func (f *Fleet) freeWorker(p *project) *worker {
	var best *worker
	for _, w := range p.workers {
		if w.online && w.active < WorkerCapacity && (best == nil || w.active < best.active) {
			best = w
		}
	}
	return best
}

func (f *Fleet) claim(now time.Time, m *mission) {
	f.emit(now, fleet.TypeMissionClaimed, f.missionMeta(m), nil)
	f.at(now.Add(f.ms(80, 400)), func(now time.Time) { f.startRun(now, m) })
}

func (f *Fleet) startRun(now time.Time, m *mission) {
	m.started = now
	m.state = fleet.AgentThinking // agent.run.started sets it
	f.emit(now, fleet.TypeRunStarted, f.missionMeta(m), fleet.RunStarted{Model: m.agent.model})
	f.at(now.Add(f.ms(30, 150)), func(now time.Time) { f.startStep(now, m) })
}

// op is one thing an agent does within a step.
type op int

const (
	opLLM op = iota
	opTool
	opWait
)

func (f *Fleet) startStep(now time.Time, m *mission) {
	steps := m.agent.role.steps
	f.emit(now, fleet.TypeMissionProgress, f.missionMeta(m),
		fleet.MissionProgress{Pct: math.Round(float64(100*m.step)/float64(len(steps))*10) / 10, Step: steps[m.step]})
	plan := []op{opLLM}
	if f.rng.Float64() < 0.7 {
		if f.rng.Float64() < 0.15 {
			plan = append(plan, opWait)
		}
		plan = append(plan, opTool)
		if f.rng.Float64() < 0.6 {
			plan = append(plan, opLLM)
		}
	}
	f.runOps(now.Add(f.ms(10, 60)), m, plan)
}

// runOps does plan's first op and schedules the rest; after the last one
// the mission goes on to its next step, or finishes.
func (f *Fleet) runOps(now time.Time, m *mission, plan []op) {
	f.at(now, func(now time.Time) {
		last := len(plan) == 1
		fail := last && m.step == m.failStep
		var done time.Time
		switch plan[0] {
		case opLLM:
			f.agentState(now, m, fleet.AgentThinking)
			done = f.llmCall(now, m, fail)
		case opTool:
			f.agentState(now, m, fleet.AgentToolCall)
			done = f.toolCall(now, m, fail)
		case opWait:
			f.agentState(now, m, fleet.AgentWaiting)
			done = now.Add(f.ms(800, 3000))
		}
		switch {
		case fail:
			msg := f.failure(m, plan[0])
			f.at(done.Add(f.ms(20, 80)), func(now time.Time) { f.finish(now, m, msg) })
		case !last:
			f.runOps(done.Add(f.ms(5, 40)), m, plan[1:])
		case m.step+1 < len(m.agent.role.steps):
			m.step++
			f.at(done.Add(f.ms(20, 120)), func(now time.Time) { f.startStep(now, m) })
		default:
			f.at(done.Add(f.ms(20, 120)), func(now time.Time) { f.finish(now, m, "") })
		}
	})
}

// llmCall schedules the llm.call event of a call that starts now and
// returns when it ends.
func (f *Fleet) llmCall(now time.Time, m *mission, fail bool) time.Time {
	pr := m.agent.prof
	// The prompt grows as the run goes on: later steps carry more context.
	grow := float64(m.step) / float64(len(m.agent.role.steps))
	in := pr.InMin + int64(float64(pr.InMax-pr.InMin)*(0.15+0.55*grow+0.3*f.rng.Float64()))
	outFrac := f.rng.Float64()
	out := pr.OutMin + int64(float64(pr.OutMax-pr.OutMin)*outFrac)
	lat := pr.LatMin + (pr.LatMax-pr.LatMin)*(0.6*outFrac+0.4*f.rng.Float64())
	c := fleet.LLMCall{Provider: pr.Provider, Model: m.agent.model, InputTokens: min(in, pr.InMax),
		OutputTokens: out, LatencyMS: math.Round(lat), Status: "ok"}
	if pr.Cache {
		if m.llmCalls == 0 {
			c.CacheWriteTokens = 1500 + f.rng.Int64N(2500) // system prompt and tool schemas
		} else {
			c.CacheReadTokens = 1500 + f.rng.Int64N(2500) + int64(m.llmCalls)*(300+f.rng.Int64N(900))
		}
	}
	if fail {
		c.Status, c.OutputTokens = "error", 0
		c.LatencyMS = math.Round(c.LatencyMS / 3)
	}
	m.llmCalls++
	done := now.Add(time.Duration(c.LatencyMS) * time.Millisecond)
	f.at(done, func(now time.Time) { f.emit(now, fleet.TypeLLMCall, f.missionMeta(m), c) })
	return done
}

// toolCall schedules the tool.call event of a call that starts now and
// returns when it ends. Now and then a call fails and is retried.
func (f *Fleet) toolCall(now time.Time, m *mission, fail bool) time.Time {
	tools := m.agent.role.tools
	tool := tools[f.rng.IntN(len(tools))]
	m.tool = tool
	lat := float64(f.ms(60, 1400)) / float64(time.Millisecond)
	if strings.HasPrefix(tool, "python.") || strings.HasPrefix(tool, "ssh.") || strings.HasPrefix(tool, "k8s.rollout") {
		lat *= 2.5
	}
	status := "ok"
	if fail {
		status = "error"
	} else if f.rng.Float64() < 0.03 {
		// A transient error: the call is retried once and succeeds.
		first := now.Add(time.Duration(lat) * time.Millisecond)
		c := fleet.ToolCall{Tool: tool, LatencyMS: math.Round(lat), Status: "error"}
		f.at(first, func(now time.Time) { f.emit(now, fleet.TypeToolCall, f.missionMeta(m), c) })
		now = first.Add(f.ms(200, 600))
	}
	c := fleet.ToolCall{Tool: tool, LatencyMS: math.Round(lat), Status: status}
	done := now.Add(time.Duration(lat) * time.Millisecond)
	f.at(done, func(now time.Time) { f.emit(now, fleet.TypeToolCall, f.missionMeta(m), c) })
	return done
}

// finish ends the run and the mission: completed when errMsg is empty,
// failed otherwise. The worker slot is free at once; the agent goes idle
// right after a success and after a short recovery in the error state
// after a failure.
func (f *Fleet) finish(now time.Time, m *mission, errMsg string) {
	runType, missionType := fleet.TypeRunCompleted, fleet.TypeMissionCompleted
	if errMsg != "" {
		runType, missionType = fleet.TypeRunFailed, fleet.TypeMissionFailed
	}
	f.emit(now, runType, f.missionMeta(m), fleet.Outcome{DurationMS: msSince(m.started, now), Error: errMsg})
	m.runEnded = true
	f.at(now.Add(f.ms(5, 30)), func(now time.Time) {
		f.emit(now, missionType, f.missionMeta(m), fleet.Outcome{DurationMS: msSince(m.queuedAt, now), Error: errMsg})
		m.worker.active--
		delete(f.flying, m.id)
		recovery := f.ms(5, 20)
		if errMsg != "" {
			f.agentState(now, m, fleet.AgentError)
			recovery += f.ms(2000, 5000)
		}
		f.dispatch(now)
		f.at(now.Add(recovery), func(now time.Time) {
			f.agentState(now, m, fleet.AgentIdle)
			m.agent.busy = false
			f.dispatch(now)
		})
	})
}

// failure returns the error message of a mission whose last op failed.
func (f *Fleet) failure(m *mission, what op) string {
	if what == opTool {
		return fmt.Sprintf(toolErrors[f.rng.IntN(len(toolErrors))], m.tool)
	}
	return llmErrors[f.rng.IntN(len(llmErrors))]
}

func msSince(from, to time.Time) float64 {
	return float64(to.Sub(from).Milliseconds())
}
