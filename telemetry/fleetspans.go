package telemetry

import (
	"container/list"
	"context"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagewai/observatory/fleet"
)

// Span attribute keys of the fleet spans besides the GenAI ones.
const (
	genAIAgentID        = "gen_ai.agent.id"
	genAIToolName       = "gen_ai.tool.name"
	genAIInputTokens    = "gen_ai.usage.input_tokens"
	genAIOutputTokens   = "gen_ai.usage.output_tokens"
	genAICacheRead      = "gen_ai.usage.cache_read.input_tokens"
	genAICacheCreation  = "gen_ai.usage.cache_creation.input_tokens"
	attrCostUSD         = "sagewai.cost_usd"
	attrPriced          = "sagewai.priced"
	attrRunID           = "sagewai.run.id"
	attrMissionID       = "sagewai.mission.id"
	attrAgentID         = "sagewai.agent.id"
	attrWorkerID        = "sagewai.worker.id"
	attrTeamID          = "sagewai.team.id"
	attrSpanOutcome     = "sagewai.outcome"
	attrRunCalls        = "sagewai.run.calls"
	attrRunTokens       = "sagewai.run.tokens"
	attrRunCostUSD      = "sagewai.run.cost_usd"
	attrEventID         = "sagewai.event.id"
	defaultMaxOpenRuns  = 1 << 14
	defaultMaxMissions  = 1 << 14
	operationChat       = "chat"
	operationTool       = "execute_tool"
	operationInvokeAgnt = "invoke_agent"
)

// fleetSpans makes spans from the fleet stream: a mission span from
// mission.queued to its outcome, a run span from agent.run.started to its
// outcome (child of its mission), and a span per llm.call ("chat") and
// tool.call ("execute_tool"), child of its run, starting latency before
// the event. Times are the events' own.
//
// Ids are derived from the project and the mission, run or event id, so a
// call span names its run span as parent before the run has ended (the
// run span is made when it ends, with the start time it had), and a
// replay gives the same ids. What is remembered of open runs and queued
// missions is bounded: the oldest entries are forgotten first, and a run
// finished without its start gets start = end - duration_ms.
//
// fleetSpans is owned by the hub goroutine, except openRuns (atomic).
type fleetSpans struct {
	tracer   trace.Tracer
	runs     *boundedMap[runInfo]
	missions *boundedMap[time.Time] // queued time
	openRuns atomic.Int64
}

type runInfo struct {
	start                 time.Time
	model, agent, mission string
	calls, tokens         int64
	cost                  fleet.Micros
}

func newFleetSpans(tracer trace.Tracer, maxRuns, maxMissions int) *fleetSpans {
	return &fleetSpans{tracer: tracer, runs: newBoundedMap[runInfo](maxRuns), missions: newBoundedMap[time.Time](maxMissions)}
}

func (f *fleetSpans) observe(ev fleet.Event, c fleetCall, live bool) {
	defer func() { f.openRuns.Store(int64(f.runs.len())) }()
	p := ev.ProjectID
	switch ev.Type {
	case fleet.TypeMissionQueued:
		if ev.MissionID != "" {
			if _, ok := f.missions.get(p + "/" + ev.MissionID); !ok {
				f.missions.put(p+"/"+ev.MissionID, ev.Time)
			}
		}
	case fleet.TypeMissionCompleted, fleet.TypeMissionFailed:
		if ev.MissionID == "" || c.outcome == nil || !c.ended {
			return // a mission's span is made once, when the fold ends it
		}
		queued, ok := f.missions.take(p + "/" + ev.MissionID)
		start := ev.Time.Add(-ms(c.outcome.DurationMS))
		if ok && queued.Before(ev.Time) {
			start = queued
		}
		if !live {
			return
		}
		tid, sid := hashIDs("mission", p, ev.MissionID)
		outcome := strings.TrimPrefix(ev.Type, "mission.")
		attrs := []attribute.KeyValue{attribute.String(attrMissionID, ev.MissionID), attribute.String(attrSpanOutcome, outcome)}
		attrs = appendIDs(attrs, ev, false)
		f.emit(ev, tid, sid, trace.SpanID{}, "mission", trace.SpanKindInternal, start, ev.Time, attrs,
			ev.Type == fleet.TypeMissionFailed, c.outcome.Error)
	case fleet.TypeRunStarted:
		if ev.RunID == "" {
			return
		}
		r := runInfo{start: ev.Time, agent: ev.AgentID, mission: ev.MissionID}
		if c.run != nil {
			r.model = c.run.Model
		}
		f.runs.put(p+"/"+ev.RunID, r)
	case fleet.TypeRunCompleted, fleet.TypeRunFailed:
		if ev.RunID == "" || c.outcome == nil {
			return
		}
		r, ok := f.runs.take(p + "/" + ev.RunID)
		if !ok || !r.start.Before(ev.Time) {
			r.start = ev.Time.Add(-ms(c.outcome.DurationMS))
		}
		if r.agent == "" {
			r.agent = ev.AgentID
		}
		if r.mission == "" {
			r.mission = ev.MissionID
		}
		if !live {
			return
		}
		tid, parent := f.parent(p, r.mission, "")
		_, sid := hashIDs("run", p, ev.RunID)
		if r.mission == "" {
			tid, sid = hashIDs("run", p, ev.RunID)
		}
		outcome := strings.TrimPrefix(ev.Type, "agent.run.")
		attrs := []attribute.KeyValue{
			attribute.String(genAIOperation, operationInvokeAgnt),
			attribute.String(genAIAgentID, r.agent),
			attribute.String(attrRunID, ev.RunID),
			attribute.String(attrSpanOutcome, outcome),
			attribute.Int64(attrRunCalls, r.calls),
			attribute.Int64(attrRunTokens, r.tokens),
			attribute.Float64(attrRunCostUSD, r.cost.USD()),
		}
		if r.model != "" {
			attrs = append(attrs, attribute.String(genAIModel, r.model))
		}
		if r.mission != "" {
			attrs = append(attrs, attribute.String(attrMissionID, r.mission))
		}
		attrs = appendIDs(attrs, ev, false)
		f.emit(ev, tid, sid, parent, operationInvokeAgnt+" "+orUnknown(r.agent), trace.SpanKindInternal, r.start, ev.Time, attrs,
			ev.Type == fleet.TypeRunFailed, c.outcome.Error)
	case fleet.TypeLLMCall:
		if c.llm == nil {
			return
		}
		d := c.llm
		mission := f.account(p, ev, d.Tokens(), c.cost)
		if !live {
			return
		}
		tid, parent := f.parent(p, mission, ev.RunID)
		etid, sid := hashIDs("event", p, ev.ID)
		if !tid.IsValid() {
			tid = etid
		}
		attrs := []attribute.KeyValue{
			attribute.String(genAIOperation, operationChat),
			attribute.String(genAIProvider, strings.ToLower(d.Provider)),
			attribute.String(genAIModel, d.Model),
			attribute.Int64(genAIInputTokens, d.InputTokens+d.CacheReadTokens+d.CacheWriteTokens),
			attribute.Int64(genAIOutputTokens, d.OutputTokens),
			attribute.Int64(genAICacheRead, d.CacheReadTokens),
			attribute.Int64(genAICacheCreation, d.CacheWriteTokens),
			attribute.Float64(attrCostUSD, c.cost.USD()),
			attribute.Bool(attrPriced, c.priced),
		}
		failed := statusLabel(d.Status) != "ok"
		if failed {
			attrs = append(attrs, attribute.String(errorType, d.Status))
		}
		attrs = appendIDs(attrs, ev, true)
		f.emit(ev, tid, sid, parent, operationChat+" "+orUnknown(d.Model), trace.SpanKindClient,
			ev.Time.Add(-ms(d.LatencyMS)), ev.Time, attrs, failed, d.Status)
	case fleet.TypeToolCall:
		if c.tool == nil {
			return
		}
		d := c.tool
		mission := f.account(p, ev, 0, 0)
		if !live {
			return
		}
		tid, parent := f.parent(p, mission, ev.RunID)
		etid, sid := hashIDs("event", p, ev.ID)
		if !tid.IsValid() {
			tid = etid
		}
		attrs := []attribute.KeyValue{
			attribute.String(genAIOperation, operationTool),
			attribute.String(genAIToolName, d.Tool),
		}
		failed := statusLabel(d.Status) != "ok"
		if failed {
			attrs = append(attrs, attribute.String(errorType, d.Status))
		}
		attrs = appendIDs(attrs, ev, true)
		f.emit(ev, tid, sid, parent, operationTool+" "+orUnknown(d.Tool), trace.SpanKindInternal,
			ev.Time.Add(-ms(d.LatencyMS)), ev.Time, attrs, failed, d.Status)
	}
}

// account adds a call to its open run and returns the call's mission.
func (f *fleetSpans) account(project string, ev fleet.Event, tokens int64, cost fleet.Micros) string {
	mission := ev.MissionID
	if ev.RunID == "" {
		return mission
	}
	if r, ok := f.runs.get(project + "/" + ev.RunID); ok {
		r.calls++
		r.tokens += tokens
		r.cost += cost
		if mission == "" {
			mission = r.mission
		}
	}
	return mission
}

// parent returns the trace of a span and its parent's span id: the run's
// span when run is set, else the mission's; zero ids when neither is.
func (f *fleetSpans) parent(project, mission, run string) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	var parent trace.SpanID
	if mission != "" {
		tid, parent = hashIDs("mission", project, mission)
	}
	if run != "" {
		rtid, rsid := hashIDs("run", project, run)
		if mission == "" {
			tid = rtid
		}
		parent = rsid
	}
	return tid, parent
}

func (f *fleetSpans) emit(ev fleet.Event, tid trace.TraceID, sid, parent trace.SpanID, name string, kind trace.SpanKind,
	start, end time.Time, attrs []attribute.KeyValue, failed bool, msg string) {
	ctx := ContextWithProject(context.Background(), ev.ProjectID)
	if parent.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: parent, TraceFlags: trace.FlagsSampled}))
	}
	ctx = withIDs(ctx, tid, sid)
	if start.After(end) {
		start = end
	}
	opts := []trace.SpanStartOption{trace.WithTimestamp(start), trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}
	if link := workerSpan(ev); link.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: link}))
	}
	_, sp := f.tracer.Start(ctx, name, opts...)
	if failed {
		sp.SetStatus(codes.Error, msg)
	}
	sp.End(trace.WithTimestamp(end))
}

// workerSpan is the span the worker named in the event's envelope, linked
// from the span made of the event.
func workerSpan(ev fleet.Event) trace.SpanContext {
	if ev.TraceID == "" || ev.SpanID == "" {
		return trace.SpanContext{}
	}
	t, err1 := trace.TraceIDFromHex(ev.TraceID)
	s, err2 := trace.SpanIDFromHex(ev.SpanID)
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: t, SpanID: s, TraceFlags: trace.FlagsSampled, Remote: true})
}

// appendIDs adds the envelope's ids (never metric labels, but useful on spans).
func appendIDs(attrs []attribute.KeyValue, ev fleet.Event, call bool) []attribute.KeyValue {
	if call {
		attrs = append(attrs, attribute.String(attrEventID, ev.ID))
		if ev.RunID != "" {
			attrs = append(attrs, attribute.String(attrRunID, ev.RunID))
		}
	}
	for _, kv := range [...]struct{ k, v string }{{attrAgentID, ev.AgentID}, {attrWorkerID, ev.WorkerID}, {attrTeamID, ev.TeamID}} {
		if kv.v != "" {
			attrs = append(attrs, attribute.String(kv.k, kv.v))
		}
	}
	return attrs
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

func orUnknown(s string) string {
	if s == "" {
		return labelUnknown
	}
	return s
}

// boundedMap is a map that forgets its oldest entries past max.
type boundedMap[V any] struct {
	max   int
	items map[string]*list.Element
	order *list.List // of *entry[V], oldest first
}

type entry[V any] struct {
	key string
	v   V
}

func newBoundedMap[V any](max int) *boundedMap[V] {
	return &boundedMap[V]{max: max, items: make(map[string]*list.Element), order: list.New()}
}

func (m *boundedMap[V]) len() int { return len(m.items) }

// get returns a pointer to the value of k, to update in place.
func (m *boundedMap[V]) get(k string) (*V, bool) {
	if e, ok := m.items[k]; ok {
		return &e.Value.(*entry[V]).v, true
	}
	return nil, false
}

func (m *boundedMap[V]) put(k string, v V) {
	if e, ok := m.items[k]; ok {
		e.Value.(*entry[V]).v = v
		return
	}
	m.items[k] = m.order.PushBack(&entry[V]{key: k, v: v})
	for len(m.items) > m.max {
		old := m.order.Front()
		m.order.Remove(old)
		delete(m.items, old.Value.(*entry[V]).key)
	}
}

// take removes k and returns its value.
func (m *boundedMap[V]) take(k string) (V, bool) {
	e, ok := m.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	m.order.Remove(e)
	delete(m.items, k)
	return e.Value.(*entry[V]).v, true
}
