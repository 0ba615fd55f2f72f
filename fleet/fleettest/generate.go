package fleettest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// Options shape a generated stream. Zero values mean the defaults.
type Options struct {
	// Projects are the tenants (default "acme", "globex", "initech").
	Projects []string
	// Start is about the stored time of the first message (default: a time
	// between 16:00 and 00:30 UTC on the day of Epoch(), chosen by the rng,
	// so that many seeds cross a UTC midnight and some do not).
	Start time.Time
	// ClockTicks mixes in clock ticks (fleet.ClockSubject) where the stream
	// is quiet, as servers publish them: up to six in each gap of more than
	// fleet.ClockEvery, on the interval boundaries, always the last one
	// before the next message. Without it the stream has none.
	ClockTicks bool
	// SharedIDs gives every project the same agent, mission, run and
	// worker ids (t-agent-01, t-m-0001, t-r-00001, t-w-01, ...), so that
	// tenants' ids collide the way they may in a real fleet, where nothing
	// stops two tenants from naming things alike (or a hostile one from
	// naming another's). Without it ids carry the project's name.
	SharedIDs bool
	// EdgeTimes stamps one event in a hundred about an hour (59 to 61
	// minutes) and one in two hundred about a day before it is stored, so
	// that late events land on the edges of the 1 h and 24 h windows.
	EdgeTimes bool
}

// DefaultProjects are the projects of a generated stream when Options has none.
var DefaultProjects = []string{"acme", "globex", "initech"}

// Models a generated llm.call uses. UnpricedModel is in no pricing table;
// the dated Sonnet name is priced through its prefix.
var (
	PricedModels  = []string{"claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "gpt-5-mini", "gemini-2.5-flash", "llama3.1"}
	UnpricedModel = "acme-finetune-7b"
)

// UnknownType is the type of the unknown events a generated stream carries.
const UnknownType = "custom.thing"

// Generate returns n messages of a realistic random stream for a few
// projects: workers joining, heartbeating and leaving; agents created and
// changing state; missions queued, claimed, progressing, completed, failed
// and retried; runs with priced and unpriced llm.call and tool.call events;
// budget notices; projects announced (project.created); and mixed in, the
// faults of a real stream: exact duplicates, late and future event times,
// unknown types and invalid messages of every rejection reason. At
// advances monotonically (it plays the stream's stored time) with
// occasional long gaps, so windows expire, workers go stale and offline,
// and some seeds run past a UTC midnight or a whole day.
func Generate(rng *rand.Rand, n int, opts Options) []Msg {
	g := &gen{rng: rng, tag: randTag(rng), ticks: opts.ClockTicks, sharedIDs: opts.SharedIDs, edgeTimes: opts.EdgeTimes}
	projects := opts.Projects
	if len(projects) == 0 {
		projects = DefaultProjects
	}
	for _, id := range projects {
		g.projects = append(g.projects, &proj{id: id})
	}
	g.at = opts.Start
	if g.at.IsZero() {
		e := Epoch().UTC()
		g.at = time.Date(e.Year(), e.Month(), e.Day(), 16, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(int64(8*time.Hour + 30*time.Minute))))
	}
	g.shared = "w-pool-" + g.tag
	for len(g.out) < n {
		g.step()
	}
	return g.out[:n]
}

type gen struct {
	rng      *rand.Rand
	tag      string // makes event ids unique across generated streams
	at       time.Time
	projects []*proj
	shared   string // a worker that serves every project
	out      []Msg
	valid    []Msg // accepted messages so far, for duplicates
	nextID   int

	ticks     bool // mix in clock ticks
	sharedIDs bool // every project names its agents, missions and runs alike
	edgeTimes bool // some late events an hour or a day late
}

type proj struct {
	id       string
	workers  []*worker
	agents   []*agent
	queued   []string
	active   []*mission
	runs     []*run
	nworker  int
	nagent   int
	nmission int
	nrun     int
}

type worker struct {
	id     string
	online bool
}

type agent struct {
	id, model string
	busy      bool
}

type mission struct {
	id, worker string
	pct        float64
}

type run struct {
	id, mission, model string
	agent              *agent
}

func randTag(rng *rand.Rand) string {
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	var b [6]byte
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b[:])
}

func (g *gen) pick(n int) int { return g.rng.IntN(n) }

func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

// gap is the stored-time distance to the next message.
func (g *gen) gap() time.Duration {
	switch r := g.rng.Float64(); {
	case r < 0.00015: // a quiet day: the 24 h windows empty
		return 20*time.Hour + time.Duration(g.rng.Int64N(int64(6*time.Hour)))
	case r < 0.01165: // a quiet spell: workers go stale, then offline
		return time.Minute + time.Duration(g.rng.Int64N(int64(9*time.Minute)))
	default:
		return time.Duration(g.rng.ExpFloat64() * float64(1500*time.Millisecond))
	}
}

// eventTime is the time a worker stamps on an event stored at g.at: a little
// earlier as a rule, sometimes much earlier (a late event, possibly from
// yesterday) and sometimes in the future (a fast clock).
func (g *gen) eventTime() time.Time {
	switch r := g.rng.Float64(); {
	case g.edgeTimes && r < 0.01:
		return g.at.Add(-time.Hour - time.Minute + time.Duration(g.rng.Int64N(int64(2*time.Minute))))
	case g.edgeTimes && r < 0.015:
		return g.at.Add(-24*time.Hour - time.Minute + time.Duration(g.rng.Int64N(int64(2*time.Minute))))
	case r < 0.03:
		return g.at.Add(-time.Duration(g.rng.Int64N(int64(3 * time.Hour))))
	case r < 0.04:
		return g.at.Add(time.Duration(1 + g.rng.Int64N(int64(15*time.Minute))))
	default:
		return g.at.Add(-time.Duration(g.rng.Int64N(int64(800 * time.Millisecond))))
	}
}

func (g *gen) id() string {
	g.nextID++
	return fmt.Sprintf("%s-%07d", g.tag, g.nextID)
}

// env is an event envelope as a JSON object, so that invalid variants can
// drop or change fields.
type env map[string]any

func (g *gen) env(typ string, p *proj) env {
	e := env{"id": g.id(), "type": typ, "time": g.timeString(g.eventTime()), "project_id": p.id}
	if g.chance(0.05) {
		e["worker_build"] = "2026.11." + fmt.Sprint(g.pick(30)) // unknown fields are ignored
	}
	return e
}

func (g *gen) timeString(t time.Time) string {
	if g.chance(0.1) {
		t = t.In(time.FixedZone("", (g.pick(25)-12)*3600))
	}
	return t.Format(time.RFC3339Nano)
}

func subjectOf(e env) string {
	return "fleet." + fmt.Sprint(e["project_id"]) + "." + fmt.Sprint(e["type"])
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fleettest: encode: " + err.Error())
	}
	return b
}

// emit appends a valid event.
func (g *gen) emit(e env) {
	m := Msg{Subject: subjectOf(e), Body: encode(e), At: g.at, Valid: true}
	g.out = append(g.out, m)
	g.valid = append(g.valid, m)
}

// emitInvalid appends a message DecodeEvent must reject.
func (g *gen) emitInvalid(subject string, body []byte) {
	g.out = append(g.out, Msg{Subject: subject, Body: body, At: g.at, Valid: false})
}

func (g *gen) step() {
	next := g.at.Add(g.gap())
	if g.ticks {
		g.clockTicks(next)
	}
	g.at = next
	switch r := g.rng.Float64(); {
	case r < 0.03 && len(g.valid) > 0:
		g.duplicate()
	case r < 0.05:
		g.unknown()
	case r < 0.09:
		g.invalid()
	default:
		g.normal(g.projects[g.pick(len(g.projects))])
	}
}

// clockTicks emits the clock ticks of the quiet time between the last
// message and the next one, stored at next: the interval boundaries in
// between, or six of them (the last always) when there are more.
func (g *gen) clockTicks(next time.Time) {
	first := g.at.Truncate(fleet.ClockEvery).Add(fleet.ClockEvery)
	if !first.Before(next) {
		return
	}
	k := int(next.Sub(first)/fleet.ClockEvery) + 1
	if first.Add(time.Duration(k-1) * fleet.ClockEvery).Equal(next) {
		k-- // a tick stored with the next message is no quieter than it
	}
	picks := []int{}
	if k <= 6 {
		for i := range k {
			picks = append(picks, i)
		}
	} else {
		chosen := map[int]bool{k - 1: true}
		for len(chosen) < 6 {
			chosen[g.pick(k-1)] = true
		}
		for i := range chosen {
			picks = append(picks, i)
		}
		slices.Sort(picks)
	}
	for _, i := range picks {
		g.out = append(g.out, Msg{Subject: fleet.ClockSubject, Body: []byte("{}"), At: first.Add(time.Duration(i) * fleet.ClockEvery)})
	}
}

// owner is the prefix of the ids p names its agents, missions and runs with.
func (g *gen) owner(p *proj) string {
	if g.sharedIDs {
		return "t"
	}
	return p.id
}

// duplicate re-publishes an earlier message unchanged (same id), as a
// publisher that retries after a lost acknowledgement does.
func (g *gen) duplicate() {
	var m Msg
	if g.chance(0.7) {
		m = g.valid[len(g.valid)-1-g.pick(min(len(g.valid), 20))]
	} else {
		m = g.valid[g.pick(len(g.valid))]
	}
	m.At = g.at
	g.out = append(g.out, m)
}

func (g *gen) unknown() {
	p := g.projects[g.pick(len(g.projects))]
	e := g.env(UnknownType, p)
	e["data"] = map[string]any{"note": "something a newer worker knows about", "n": g.pick(100)}
	g.emit(e)
}

func (g *gen) invalid() {
	p := g.projects[g.pick(len(g.projects))]
	e := g.llmEnv(p, nil, g.pricedModel())
	switch g.pick(6) {
	case 0: // bad JSON: a truncated body
		b := encode(e)
		g.emitInvalid(subjectOf(e), b[:1+g.pick(len(b)-2)])
	case 1: // oversize
		a := env{"id": g.id(), "type": fleet.TypeAgentCreated, "time": g.timeString(g.at), "project_id": p.id,
			"agent_id": p.id + "-agent-huge",
			"data":     map[string]any{"name": "huge", "description": strings.Repeat("x", fleet.MaxEventSize+g.pick(1024))}}
		g.emitInvalid(subjectOf(a), encode(a))
	case 2: // a required field missing
		field := []string{"id", "type", "time", "project_id"}[g.pick(4)]
		subject := subjectOf(e)
		delete(e, field)
		g.emitInvalid(subject, encode(e))
	case 3: // published on another project's subject
		other := "other"
		if len(g.projects) > 1 {
			for other == "other" || other == p.id {
				other = g.projects[g.pick(len(g.projects))].id
			}
		}
		g.emitInvalid("fleet."+other+"."+fleet.TypeLLMCall, encode(e))
	case 4: // a malformed project id
		e["project_id"] = "X-" + strings.ToUpper(p.id)
		g.emitInvalid(subjectOf(e), encode(e))
	case 5: // negative tokens
		e["data"].(map[string]any)["input_tokens"] = -1 - g.pick(500)
		g.emitInvalid(subjectOf(e), encode(e))
	}
}

func (g *gen) pricedModel() string { return PricedModels[g.pick(len(PricedModels))] }

// llmEnv is an llm.call of run r (or of no run when r is nil).
func (g *gen) llmEnv(p *proj, r *run, model string) env {
	e := g.env(fleet.TypeLLMCall, p)
	if r != nil {
		e["agent_id"], e["run_id"] = r.agent.id, r.id
		if r.mission != "" {
			e["mission_id"] = r.mission
		}
	}
	if g.chance(0.6) {
		// Workers stamp a mission's calls with its team and user, which
		// team and user budgets charge.
		e["team_id"], e["user_id"] = []string{"support", "research", "ops"}[g.pick(3)], fmt.Sprintf("u-%d", g.pick(20))
	}
	data := map[string]any{
		"provider":      providerOf(model),
		"model":         model,
		"input_tokens":  200 + g.pick(8000),
		"output_tokens": 20 + g.pick(2000),
		"latency_ms":    80 + g.pick(4000),
		"status":        "ok",
	}
	if g.chance(0.5) {
		data["cache_read_tokens"] = 1000 + g.pick(50_000)
	}
	if g.chance(0.2) {
		data["cache_write_tokens"] = 500 + g.pick(5000)
	}
	if g.chance(0.06) {
		data["status"] = []string{"error", "rate_limited", "timeout"}[g.pick(3)]
	}
	if g.chance(0.05) {
		data["cost_usd"] = 1000 // a worker's own figure: never trusted
	}
	e["data"] = data
	return e
}

func providerOf(model string) string {
	switch {
	case strings.HasPrefix(model, "claude"):
		return "anthropic"
	case strings.HasPrefix(model, "gpt"):
		return "openai"
	case strings.HasPrefix(model, "gemini"):
		return "google"
	case strings.HasPrefix(model, "llama"):
		return "ollama"
	}
	return "custom"
}

type action struct {
	weight float64
	do     func()
}

// normal emits one ordinary event of project p, chosen among what p's
// current state allows.
func (g *gen) normal(p *proj) {
	online := 0
	for _, w := range p.workers {
		if w.online {
			online++
		}
	}
	idle := []*agent{}
	for _, a := range p.agents {
		if !a.busy {
			idle = append(idle, a)
		}
	}
	acts := []action{
		{1, func() { g.budget(p) }},
		{0.4, func() { g.login(p) }},
		{1.5, func() { g.sharedHeartbeat(p) }},
		{1, func() { g.llmCall(p, nil) }},
		{0.1, func() { g.projectCreated(p) }},
	}
	if online < 2 || len(p.workers) < 6 {
		acts = append(acts, action{3, func() { g.workerJoined(p) }})
	}
	if len(p.agents) < 12 {
		acts = append(acts, action{2, func() { g.agentCreated(p) }})
	}
	if online > 0 {
		acts = append(acts, action{15, func() { g.heartbeat(p) }}, action{0.7, func() { g.workerLeft(p) }})
	}
	if len(p.agents) > 0 {
		acts = append(acts, action{6, func() { g.agentState(p) }})
	}
	if len(p.queued)+len(p.active) < 15 {
		acts = append(acts, action{6, func() { g.missionQueued(p) }})
	}
	if len(p.queued) > 0 && online > 0 {
		acts = append(acts, action{5, func() { g.missionClaimed(p) }})
	}
	if len(p.active) > 0 {
		acts = append(acts,
			action{8, func() { g.missionProgress(p) }},
			action{4, func() { g.missionDone(p, fleet.TypeMissionCompleted) }},
			action{1, func() { g.missionDone(p, fleet.TypeMissionFailed) }},
			action{1, func() { g.missionRetrying(p) }})
	}
	if len(idle) > 0 {
		acts = append(acts, action{6, func() { g.runStarted(p, idle[g.pick(len(idle))]) }})
	}
	if len(p.runs) > 0 {
		acts = append(acts,
			action{20, func() { g.llmCall(p, p.runs[g.pick(len(p.runs))]) }},
			action{8, func() { g.toolCall(p, p.runs[g.pick(len(p.runs))]) }},
			action{5, func() { g.runDone(p, fleet.TypeRunCompleted) }},
			action{1, func() { g.runDone(p, fleet.TypeRunFailed) }})
	}
	total := 0.0
	for _, a := range acts {
		total += a.weight
	}
	x := g.rng.Float64() * total
	for _, a := range acts {
		if x < a.weight {
			a.do()
			return
		}
		x -= a.weight
	}
	acts[len(acts)-1].do()
}

func (g *gen) workerJoined(p *proj) {
	var w *worker
	for _, c := range p.workers {
		if !c.online {
			w = c
			break
		}
	}
	if w == nil {
		p.nworker++
		w = &worker{id: fmt.Sprintf("%s-w-%02d", g.owner(p), p.nworker)}
		p.workers = append(p.workers, w)
	}
	w.online = true
	e := g.env(fleet.TypeWorkerJoined, p)
	e["worker_id"] = w.id
	e["data"] = map[string]any{"host": w.id + ".fleet.internal", "version": "1.4." + fmt.Sprint(g.pick(3)), "capacity": 1 + g.pick(8)}
	g.emit(e)
}

func (g *gen) onlineWorker(p *proj) *worker {
	var ws []*worker
	for _, w := range p.workers {
		if w.online {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	return ws[g.pick(len(ws))]
}

func (g *gen) heartbeat(p *proj) {
	w := g.onlineWorker(p)
	e := g.env(fleet.TypeWorkerHeartbeat, p)
	e["worker_id"] = w.id
	e["data"] = map[string]any{"state": []string{"idle", "busy", "busy", "draining"}[g.pick(4)],
		"active_missions": g.pick(4), "load": float64(g.pick(100)) / 100}
	g.emit(e)
}

// sharedHeartbeat is a heartbeat of the pool worker that serves every project.
func (g *gen) sharedHeartbeat(p *proj) {
	e := g.env(fleet.TypeWorkerHeartbeat, p)
	e["worker_id"] = g.shared
	e["data"] = map[string]any{"state": "busy", "active_missions": g.pick(8), "load": 0.75}
	g.emit(e)
}

func (g *gen) workerLeft(p *proj) {
	w := g.onlineWorker(p)
	w.online = false
	e := g.env(fleet.TypeWorkerLeft, p)
	e["worker_id"] = w.id
	e["data"] = map[string]any{"reason": []string{"shutdown", "drained", "scale-in"}[g.pick(3)]}
	g.emit(e)
}

func (g *gen) agentCreated(p *proj) {
	p.nagent++
	a := &agent{id: fmt.Sprintf("%s-agent-%02d", g.owner(p), p.nagent), model: g.pricedModel()}
	if g.chance(0.15) {
		a.model = UnpricedModel
	}
	p.agents = append(p.agents, a)
	e := g.env(fleet.TypeAgentCreated, p)
	e["agent_id"] = a.id
	e["data"] = map[string]any{"name": fmt.Sprintf("%s triager %d", p.id, p.nagent), "role": "triage",
		"model": a.model, "version": "3", "tools": []string{"search", "crm.lookup"}, "skills": []string{"summarize"},
		"description": "sorts the inbox"}
	g.emit(e)
}

func (g *gen) agentState(p *proj) {
	a := p.agents[g.pick(len(p.agents))]
	e := g.env(fleet.TypeAgentState, p)
	e["agent_id"] = a.id
	e["data"] = map[string]any{"state": []string{"idle", "thinking", "tool_call", "waiting", "error", "offline"}[g.pick(6)]}
	g.emit(e)
}

func (g *gen) missionQueued(p *proj) {
	p.nmission++
	id := fmt.Sprintf("%s-m-%04d", g.owner(p), p.nmission)
	p.queued = append(p.queued, id)
	e := g.env(fleet.TypeMissionQueued, p)
	e["mission_id"], e["team_id"], e["user_id"] = id, []string{"support", "research", "ops"}[g.pick(3)], fmt.Sprintf("u-%d", g.pick(20))
	var prio any = g.pick(5)
	if g.chance(0.5) {
		prio = []string{"low", "normal", "high"}[g.pick(3)]
	}
	e["data"] = map[string]any{"title": fmt.Sprintf("ticket #%d", 1000+g.pick(9000)), "priority": prio}
	g.emit(e)
}

func (g *gen) missionClaimed(p *proj) {
	i := g.pick(len(p.queued))
	id := p.queued[i]
	p.queued = append(p.queued[:i], p.queued[i+1:]...)
	w := g.onlineWorker(p)
	p.active = append(p.active, &mission{id: id, worker: w.id})
	e := g.env(fleet.TypeMissionClaimed, p)
	e["mission_id"], e["worker_id"] = id, w.id
	g.emit(e)
}

func (g *gen) missionProgress(p *proj) {
	m := p.active[g.pick(len(p.active))]
	m.pct = min(100, m.pct+float64(1+g.pick(30)))
	e := g.env(fleet.TypeMissionProgress, p)
	e["mission_id"], e["worker_id"] = m.id, m.worker
	e["data"] = map[string]any{"pct": m.pct, "step": []string{"plan", "search", "draft", "review"}[g.pick(4)]}
	g.emit(e)
}

func (g *gen) missionDone(p *proj, typ string) {
	i := g.pick(len(p.active))
	m := p.active[i]
	p.active = append(p.active[:i], p.active[i+1:]...)
	e := g.env(typ, p)
	e["mission_id"], e["worker_id"] = m.id, m.worker
	data := map[string]any{"duration_ms": 500 + g.pick(120_000)}
	if typ == fleet.TypeMissionFailed {
		data["error"] = "lease lost 3 times"
	}
	e["data"] = data
	g.emit(e)
}

func (g *gen) missionRetrying(p *proj) {
	i := g.pick(len(p.active))
	m := p.active[i]
	p.active = append(p.active[:i], p.active[i+1:]...)
	p.queued = append(p.queued, m.id)
	e := g.env(fleet.TypeMissionRetrying, p)
	e["mission_id"] = m.id
	g.emit(e)
}

func (g *gen) runStarted(p *proj, a *agent) {
	p.nrun++
	r := &run{id: fmt.Sprintf("%s-r-%05d", g.owner(p), p.nrun), agent: a, model: a.model}
	if len(p.active) > 0 && g.chance(0.7) {
		r.mission = p.active[g.pick(len(p.active))].id
	}
	a.busy = true
	p.runs = append(p.runs, r)
	e := g.env(fleet.TypeRunStarted, p)
	e["agent_id"], e["run_id"] = a.id, r.id
	if r.mission != "" {
		e["mission_id"] = r.mission
	}
	e["data"] = map[string]any{"model": r.model}
	g.emit(e)
}

func (g *gen) llmCall(p *proj, r *run) {
	model := g.pricedModel()
	if r != nil {
		model = r.model
	}
	if g.chance(0.05) {
		model = UnpricedModel
	}
	g.emit(g.llmEnv(p, r, model))
}

func (g *gen) toolCall(p *proj, r *run) {
	e := g.env(fleet.TypeToolCall, p)
	e["agent_id"], e["run_id"] = r.agent.id, r.id
	status := "ok"
	if g.chance(0.08) {
		status = "error"
	}
	e["data"] = map[string]any{"tool": []string{"search", "crm.lookup", "email.send"}[g.pick(3)], "latency_ms": 5 + g.pick(900), "status": status}
	g.emit(e)
}

func (g *gen) runDone(p *proj, typ string) {
	i := g.pick(len(p.runs))
	r := p.runs[i]
	p.runs = append(p.runs[:i], p.runs[i+1:]...)
	r.agent.busy = false
	e := g.env(typ, p)
	e["agent_id"], e["run_id"] = r.agent.id, r.id
	if r.mission != "" {
		e["mission_id"] = r.mission
	}
	data := map[string]any{"duration_ms": 200 + g.pick(60_000)}
	if typ == fleet.TypeRunFailed {
		data["error"] = "tool budget exhausted"
	}
	e["data"] = data
	g.emit(e)
}

// budget is a server-emitted budget notice about the project, one of its
// teams, or a global budget that the project's work reached (published
// under the project, as the budget gate does).
func (g *gen) budget(p *proj) {
	typ := fleet.TypeBudgetWarning
	switch r := g.rng.Float64(); {
	case r < 0.2:
		typ = fleet.TypeBudgetExceeded
	case r < 0.6:
		typ = fleet.TypeBudgetStatus
	}
	e := g.env(typ, p)
	limit := 5 + g.pick(200)
	spent := float64(limit) * (0.8 + g.rng.Float64()*0.4)
	scope, scopeID := "project", p.id
	switch r := g.rng.Float64(); {
	case r < 0.4:
		scope, scopeID = "team", []string{"support", "research", "ops"}[g.pick(3)]
		e["team_id"] = scopeID
	case r < 0.6:
		scope, scopeID = "global", ""
	}
	action := []string{"warn", "throttle", "stop"}[g.pick(3)]
	period := []string{"daily", "monthly"}[g.pick(2)]
	data := map[string]any{"scope": scope, "scope_id": scopeID, "period": period,
		"limit_usd": limit, "spent_usd": fmt.Sprintf("%.4f", spent), "action": action}
	if g.chance(0.8) {
		// Up to where the gate had charged: a few messages back, as a
		// follower a batch behind reports it (0: nothing charged yet).
		data["through_seq"] = max(0, len(g.out)-g.pick(8))
	}
	if typ == fleet.TypeBudgetStatus && g.chance(0.5) {
		data["warn_pct"] = 50 + g.pick(45)
	}
	if limit%2 == 0 {
		// The end of the period, as the gate reports it (most notices).
		day := g.at.UTC().Truncate(24 * time.Hour)
		end := day.AddDate(0, 0, 1)
		if period == "monthly" {
			end = time.Date(day.Year(), day.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		}
		data["resets_at"] = end.Format(time.RFC3339)
	}
	e["data"] = data
	g.emit(e)
}

// projectCreated is the admin API's announcement of the project (again,
// as a server that replays its registry would).
func (g *gen) projectCreated(p *proj) {
	e := g.env(fleet.TypeProjectCreated, p)
	e["data"] = map[string]any{"name": p.id, "created_by": "admin"}
	g.emit(e)
}

func (g *gen) login(p *proj) {
	typ := fleet.TypeLoginSucceeded
	if g.chance(0.3) {
		typ = fleet.TypeLoginFailed
	}
	e := g.env(typ, p)
	e["user_id"] = fmt.Sprintf("u-%d", g.pick(20))
	g.emit(e)
}
