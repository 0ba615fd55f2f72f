package genai

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sagewai/observatory/fleet"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Resource and span attributes of Observatory's own that the mapper reads.
const (
	// ProjectAttr is the resource attribute that names the project a
	// resource's spans belong to; Map refuses a resource that names
	// another project than the one it is given.
	ProjectAttr = "sagewai.project_id"
	// TeamAttr and UserAttr, on a span or else on its resource, fill the
	// envelope's team_id and user_id, so that team and user budgets see
	// ingested spend.
	TeamAttr = "sagewai.team_id"
	UserAttr = "sagewai.user_id"
	// ServiceNameAttr is the resource attribute that names the agent of a
	// span when no GenAI attribute does.
	ServiceNameAttr = "service.name"
)

// DefaultMaxTokens bounds each token count of one span: ten million tokens
// of one kind in one call is beyond every model's context and output
// window, so a larger count is a broken or hostile exporter, never a bill.
const DefaultMaxTokens = 10_000_000

// maxDuration bounds a span's duration, as fleet bounds latency: a week.
const maxDuration = 7 * 24 * time.Hour

// Bounds of the strings the mapper copies into payloads. A model name is
// a pricing key and is never cut: a longer one is refused. Other names
// and messages are display text and are cut at a rune boundary.
const (
	maxModelLen = 256
	maxNameLen  = 256
	maxTextLen  = 1024
	maxIDLen    = 128 // fleet's bound on every envelope id
)

// Options tune Map. The zero value is the default.
type Options struct {
	// MaxTokens bounds each token count of one span (0: DefaultMaxTokens;
	// never above fleet.MaxTokensPerKind).
	MaxTokens int64
}

// Reason says why a span was refused. Reasons are few and fixed so that
// they can label a metric.
type Reason string

// Refusal reasons.
const (
	// ReasonMissingModel: an LLM span names no model, so it cannot be priced.
	ReasonMissingModel Reason = "missing_model"
	// ReasonBadModel: the model name is longer than 256 bytes.
	ReasonBadModel Reason = "bad_model"
	// ReasonBadTokens: a token count is negative, fractional, not a number,
	// above Options.MaxTokens, or a total is below its output.
	ReasonBadTokens Reason = "bad_tokens"
	// ReasonBadIDs: the trace or span id is not 16 or 8 bytes or is all
	// zeros, an agent, team or user id is too long or has control
	// characters, or the project Map was given is not a valid project id.
	ReasonBadIDs Reason = "bad_ids"
	// ReasonBadTime: the span has no start or end time, ends before it
	// starts, or lasts more than a week.
	ReasonBadTime Reason = "bad_time"
	// ReasonProjectMismatch: the span's resource names another project in
	// sagewai.project_id. Every span of such a resource is refused, GenAI
	// or not.
	ReasonProjectMismatch Reason = "project_mismatch"
)

// Reasons lists every refusal reason, for pre-registering metric series.
var Reasons = []Reason{ReasonMissingModel, ReasonBadModel, ReasonBadTokens, ReasonBadIDs, ReasonBadTime, ReasonProjectMismatch}

// Refusal is one span Map refused, with why.
type Refusal struct {
	TraceID string // hex, as received (cut to 32 bytes)
	SpanID  string // hex, as received (cut to 32 bytes)
	Name    string // the span's name, cut to 256 bytes
	Reason  Reason
	Detail  string
}

// Result is what Map made of a batch.
type Result struct {
	// Events are the fleet events, in the order of the spans they came
	// from; an agent.created comes before the first event of its agent.
	Events []fleet.Event
	// Refused are the spans refused, each with its reason.
	Refused []Refusal
	// Spans is the number of spans in the batch; Skipped the number that
	// are not GenAI operations (nor refused) and so make no event.
	Spans   int
	Skipped int
	// NoUsage counts the llm.call events (among Events) whose span reports
	// no token count at all: the call is counted and costs nothing. A
	// library that drops usage (OpenInference's streamed completions) shows
	// here rather than as silent zeros.
	NoUsage int
}

// ResourceProject returns the project a resource names in
// sagewai.project_id, or "" when it names none. An ingest edge serving an
// admin token uses it to choose the project to pass to Map.
func ResourceProject(rs *tracepb.ResourceSpans) string {
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.GetKey() == ProjectAttr {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// op is what a span is, for the mapper.
type op uint8

const (
	opNone op = iota
	opLLM
	opTool
	opRun
	opCreateAgent
)

// source is the convention a span was recognised by.
type source uint8

const (
	srcOTel source = iota
	srcOpenInference
	srcOpenLLMetry
	srcVercel
)

// classify recognises a span by the conventions' tables, in order: the
// Vercel AI SDK (whose inner spans also carry gen_ai.*), OTel GenAI,
// OpenInference, OpenLLMetry, and last any span with a GenAI model and a
// token count that names no agent.
func classify(a *attrs) (op, source) {
	if id, ok := a[aAIOperationID].GetValue().(*commonpb.AnyValue_StringValue); ok && id.StringValue != "" {
		switch id.StringValue {
		case "ai.generateText.doGenerate", "ai.streamText.doStream", "ai.generateObject.doGenerate",
			"ai.streamObject.doStream", "ai.embed.doEmbed", "ai.embedMany.doEmbed":
			return opLLM, srcVercel
		case "ai.toolCall":
			return opTool, srcVercel
		}
		// The outer ai.generateText, ai.streamText, … spans sum their inner
		// calls: counting them too would bill every call twice.
		return opNone, srcVercel
	}
	switch a.str(aOperationName) {
	case "chat", "text_completion", "generate_content", "embeddings":
		return opLLM, srcOTel
	case "execute_tool":
		return opTool, srcOTel
	case "invoke_agent":
		return opRun, srcOTel
	case "create_agent":
		return opCreateAgent, srcOTel
	case "":
	default:
		return opNone, srcOTel
	}
	switch strings.ToUpper(a.str(aOIKind)) {
	case "LLM", "EMBEDDING":
		return opLLM, srcOpenInference
	case "TOOL":
		return opTool, srcOpenInference
	case "AGENT":
		return opRun, srcOpenInference
	case "":
	default: // CHAIN, RETRIEVER, RERANKER, GUARDRAIL, EVALUATOR: no spend of their own.
		return opNone, srcOpenInference
	}
	switch a.str(aRequestType) {
	case "chat", "completion", "embedding":
		return opLLM, srcOpenLLMetry
	}
	switch a.str(aTraceloopKind) {
	case "tool":
		return opTool, srcOpenLLMetry
	case "agent":
		return opRun, srcOpenLLMetry
	}
	// Last, a span with a GenAI model and a token count is a call, unless
	// it names an agent: an agent's span that sums its calls' usage
	// (Pydantic AI's agent run does) is not a call of its own.
	if a.str(aResponseModel, aRequestModel) != "" && a.str(aAgentID, aAgentName) == "" &&
		(a[aInput] != nil || a[aPrompt] != nil || a[aOutput] != nil || a[aCompletion] != nil) {
		return opLLM, srcOTel
	}
	return opNone, srcOTel
}

// spanInfo is what the first pass learns of one span of a resource.
type spanInfo struct {
	a     attrs
	op    op
	src   source
	agent string // the agent id its own attributes name, if valid
	name  string // the agent name its own attributes give
	runID string // for a run span, the run id it opens
}

type spanKey struct {
	trace [16]byte
	span  [8]byte
}

func keyOf(trace, span []byte) (spanKey, bool) {
	var k spanKey
	if len(trace) != 16 || len(span) != 8 {
		return k, false
	}
	copy(k.trace[:], trace)
	copy(k.span[:], span)
	return k, true
}

// mapper holds the state of one Map call.
type mapper struct {
	project   string
	maxTokens int64
	res       Result
	agents    map[string]bool // agents announced by this call
	infos     []spanInfo      // reused across resources
}

// Map turns the spans of an OTLP export into fleet events of project:
// GenAI LLM operations become llm.call, tool executions tool.call, agent
// invocations agent.run.started and agent.run.completed or
// agent.run.failed, agent creations agent.created, and the first event of
// each agent in the batch is preceded by an agent.created whose id derives
// from (project, agent), so the fold announces each agent once however
// many batches name it. Event ids derive from trace and span ids, so
// mapping the same spans again gives the same events. Map never reads a
// cost attribute. The tables it follows are in the package documentation.
func Map(project string, rs []*tracepb.ResourceSpans, opts Options) Result {
	m := &mapper{project: project, maxTokens: opts.MaxTokens}
	if m.maxTokens <= 0 {
		m.maxTokens = DefaultMaxTokens
	}
	m.maxTokens = min(m.maxTokens, fleet.MaxTokensPerKind)
	for _, r := range rs {
		m.resource(r)
	}
	return m.res
}

func (m *mapper) resource(r *tracepb.ResourceSpans) {
	var spans []*tracepb.Span
	for _, ss := range r.GetScopeSpans() {
		spans = append(spans, ss.GetSpans()...)
	}
	m.res.Spans += len(spans)
	if len(spans) == 0 {
		return
	}
	var reason Reason
	var detail string
	switch {
	case !fleet.ValidProjectID(m.project):
		reason, detail = ReasonBadIDs, "project id is not valid"
	default:
		for _, kv := range r.GetResource().GetAttributes() {
			if kv.GetKey() == ProjectAttr && kv.GetValue().GetStringValue() != m.project {
				reason, detail = ReasonProjectMismatch, "resource names another project"
				break
			}
		}
	}
	if reason != "" {
		for _, s := range spans {
			m.refuse(s, reason, detail)
		}
		return
	}
	var service, team, user string
	for _, kv := range r.GetResource().GetAttributes() {
		switch kv.GetKey() {
		case ServiceNameAttr:
			service = strings.TrimSpace(kv.GetValue().GetStringValue())
		case TeamAttr:
			team = strings.TrimSpace(kv.GetValue().GetStringValue())
		case UserAttr:
			user = strings.TrimSpace(kv.GetValue().GetStringValue())
		}
	}

	// First pass: scan every span's attributes once, and index the spans
	// when a GenAI span has a parent, so that a call or tool span finds
	// the agent and the run it belongs to among its ancestors.
	if cap(m.infos) < len(spans) {
		m.infos = make([]spanInfo, len(spans))
	}
	infos := m.infos[:len(spans)]
	needIndex := false
	for i, s := range spans {
		in := &infos[i]
		*in = spanInfo{}
		in.a.scan(s.GetAttributes())
		in.op, in.src = classify(&in.a)
		if in.op == opNone {
			continue
		}
		in.agent, in.name = ownAgent(&in.a, in.op, in.src)
		if in.op == opRun {
			in.runID = spanRef(s.GetTraceId(), s.GetSpanId())
		}
		needIndex = needIndex || len(s.GetParentSpanId()) > 0
	}
	var index map[spanKey]int
	if needIndex {
		index = make(map[spanKey]int, len(spans))
		for i, s := range spans {
			if k, ok := keyOf(s.GetTraceId(), s.GetSpanId()); ok {
				index[k] = i
			}
		}
	}

	for i, s := range spans {
		in := &infos[i]
		if in.op == opNone {
			m.res.Skipped++
			continue
		}
		m.span(s, in, spans, infos, index, service, team, user)
	}
}

// ownAgent returns the agent a span's own attributes name: gen_ai.agent.id,
// else its name (gen_ai.agent.name, OpenInference's agent.name, on an
// OpenLLMetry agent span traceloop.entity.name, or on an AI SDK span its
// telemetry functionId).
func ownAgent(a *attrs, o op, src source) (id, name string) {
	name = a.str(aAgentName, aOIAgentName)
	if name == "" && src == srcOpenLLMetry && o == opRun {
		name = a.str(aTraceloopName)
	}
	if name == "" && src == srcVercel {
		// The AI SDK's legacy ai.* spans name the calling function on every
		// call and tool span, and its current integration (@ai-sdk/otel)
		// turns that same functionId into gen_ai.agent.name: read it as the
		// agent's name, so that one agent keeps its name whichever of the
		// SDK's two integrations traced it.
		name = a.str(aAIFunctionID)
	}
	id = a.str(aAgentID)
	if id == "" {
		id = name
	}
	if name == "" {
		name = id
	}
	return id, name
}

// ancestors walks up from the span's parent, at most 64 spans and within
// the resource, and returns the nearest run id and the nearest agent its
// ancestors name.
func ancestors(s *tracepb.Span, spans []*tracepb.Span, infos []spanInfo, index map[spanKey]int) (runID, agent, name string) {
	if index == nil {
		return "", "", ""
	}
	trace, parent := s.GetTraceId(), s.GetParentSpanId()
	for range 64 {
		k, ok := keyOf(trace, parent)
		if !ok {
			break
		}
		i, ok := index[k]
		if !ok {
			break
		}
		in := &infos[i]
		if runID == "" && in.op == opRun {
			runID = in.runID
		}
		if agent == "" && in.agent != "" && validID(in.agent) {
			agent, name = in.agent, in.name
		}
		if runID != "" && agent != "" {
			break
		}
		parent = spans[i].GetParentSpanId()
	}
	return runID, agent, name
}

func (m *mapper) span(s *tracepb.Span, in *spanInfo, spans []*tracepb.Span, infos []spanInfo, index map[spanKey]int,
	service, team, user string) {
	trace, sid := s.GetTraceId(), s.GetSpanId()
	if _, ok := keyOf(trace, sid); !ok || allZero(trace) || allZero(sid) {
		m.refuse(s, ReasonBadIDs, "trace id must be 16 bytes and span id 8, not all zero")
		return
	}
	start, end := s.GetStartTimeUnixNano(), s.GetEndTimeUnixNano()
	if start == 0 || end == 0 || end < start || end > 1<<63-1 || time.Duration(end-start) > maxDuration {
		m.refuse(s, ReasonBadTime, "span must start, end after it starts, and last at most a week")
		return
	}
	a := &in.a
	if t := a.str(aTeamID); t != "" {
		team = t
	}
	if u := a.str(aUserID); u != "" {
		user = u
	}
	runID, agent, agentName := ancestors(s, spans, infos, index)
	if in.op == opRun {
		runID = in.runID
	}
	if in.agent != "" {
		agent, agentName = in.agent, in.name
	}
	if agent == "" {
		agent, agentName = service, service
	}
	for _, id := range [...]string{agent, team, user} {
		if !validID(id) {
			m.refuse(s, ReasonBadIDs, "agent, team or user id is longer than 128 bytes or has control characters")
			return
		}
	}

	th, sh := hex.EncodeToString(trace), hex.EncodeToString(sid)
	ev := fleet.Event{ProjectID: m.project, TeamID: team, UserID: user, AgentID: agent, RunID: runID, TraceID: th, SpanID: sh}
	startT, endT := time.Unix(0, int64(start)).UTC(), time.Unix(0, int64(end)).UTC()
	ms := float64(end-start) / 1e6
	failed := s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
	status := "ok"
	if failed {
		status = "error"
	}
	base := "otel-" + th + "-" + sh + "-"

	var evs [2]fleet.Event
	n := 0
	var model string
	switch in.op {
	case opLLM:
		model = a.str(aResponseModel, aRequestModel, aOIModel, aAIRespModel, aAIModelID)
		if model == "" {
			m.refuse(s, ReasonMissingModel, "no gen_ai.response.model, gen_ai.request.model, llm.model_name or ai.model.id")
			return
		}
		if len(model) > maxModelLen {
			m.refuse(s, ReasonBadModel, "model name is longer than 256 bytes")
			return
		}
		provider := a.str(aProviderName, aSystem, aOIProvider, aOISystem, aAIProvider)
		if in.src == srcVercel {
			// The AI SDK names a provider with its API: openai.chat,
			// anthropic.messages.
			provider, _, _ = strings.Cut(provider, ".")
		}
		provider = strings.ToLower(cut(provider, maxNameLen))
		call, detail, reported := normalise(a, in.src, provider, m.maxTokens)
		if detail != "" {
			m.refuse(s, ReasonBadTokens, detail)
			return
		}
		if !reported {
			m.res.NoUsage++
		}
		call.Provider, call.Model, call.LatencyMS, call.Status = provider, model, ms, status
		evs[0] = m.event(ev, fleet.TypeLLMCall, base+"llm", endT, call)
		n = 1
	case opTool:
		tool := a.str(aToolName, aOIToolName, aAIToolName, aTraceloopName)
		if tool == "" {
			tool = strings.TrimSpace(s.GetName())
		}
		evs[0] = m.event(ev, fleet.TypeToolCall, base+"tool", endT,
			fleet.ToolCall{Tool: cut(tool, maxNameLen), LatencyMS: ms, Status: status})
		n = 1
	case opRun:
		model = cut(a.str(aRequestModel, aResponseModel, aOIModel), maxModelLen)
		evs[0] = m.event(ev, fleet.TypeRunStarted, base+"run.started", startT, fleet.RunStarted{Model: model})
		out, typ := fleet.Outcome{DurationMS: ms}, fleet.TypeRunCompleted
		if failed {
			typ = fleet.TypeRunFailed
			out.Error = cut(s.GetStatus().GetMessage(), maxTextLen)
			if out.Error == "" {
				out.Error = cut(a.str(aErrorType), maxTextLen)
			}
			if out.Error == "" {
				out.Error = "error"
			}
		}
		evs[1] = m.event(ev, typ, base+"run.ended", endT, out)
		n = 2
	case opCreateAgent:
		if agent == "" {
			m.res.Skipped++ // nothing names the agent it creates
			return
		}
		model = cut(a.str(aRequestModel, aResponseModel), maxModelLen)
		evs[0] = m.event(ev, fleet.TypeAgentCreated, base+"agent", endT, m.agentCreated(a, agentName, model, in.agent != ""))
		n = 1
	}
	if agent != "" && !m.agents[agent] {
		if m.agents == nil {
			m.agents = map[string]bool{}
		}
		m.agents[agent] = true
		first := ev
		first.RunID = ""
		m.res.Events = append(m.res.Events,
			m.event(first, fleet.TypeAgentCreated, AgentEventID(m.project, agent), evs[0].Time, m.agentCreated(a, agentName, model, in.agent != "")))
	}
	m.res.Events = append(m.res.Events, evs[:n]...)
}

// agentCreated is the payload announcing an agent; the description and
// version are the span's own only when the span names the agent itself.
func (m *mapper) agentCreated(a *attrs, name, model string, own bool) fleet.AgentCreated {
	d := fleet.AgentCreated{Name: cut(name, maxNameLen), Model: model, Tools: []string{}, Skills: []string{}}
	if own {
		d.Description = cut(a.str(aAgentDesc), maxTextLen)
		d.Version = cut(a.str(aAgentVersion), maxNameLen)
	}
	return d
}

func (m *mapper) event(ev fleet.Event, typ, id string, t time.Time, data any) fleet.Event {
	ev.Type, ev.ID, ev.Time = typ, id, t
	// Marshalling these payload structs cannot fail: they hold strings,
	// integers and finite floats only.
	ev.Data, _ = json.Marshal(data)
	return ev
}

func (m *mapper) refuse(s *tracepb.Span, r Reason, detail string) {
	m.res.Refused = append(m.res.Refused, Refusal{
		TraceID: hex.EncodeToString(clip(s.GetTraceId())),
		SpanID:  hex.EncodeToString(clip(s.GetSpanId())),
		Name:    cut(s.GetName(), maxNameLen),
		Reason:  r,
		Detail:  detail,
	})
}

// AgentEventID is the id of the agent.created event that announces agent
// in project on its first sight: derived from both, so every batch that
// names the agent announces it under the same id and the fold's dedupe
// keeps the first.
func AgentEventID(project, agent string) string {
	h := sha256.Sum256([]byte(project + "\x00" + agent))
	return "otel-agent-" + hex.EncodeToString(h[:16])
}

// spanRef is the run id of an agent invocation span: its trace and span id.
func spanRef(trace, span []byte) string {
	return hex.EncodeToString(clip(trace)) + "-" + hex.EncodeToString(clip(span))
}

// validID reports whether s may be an envelope id: fleet refuses longer
// ones and ones with NUL, CR or LF.
func validID(s string) bool {
	return len(s) <= maxIDLen && !strings.ContainsAny(s, "\x00\n\r")
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func clip(b []byte) []byte { return b[:min(len(b), 32)] }

// cut returns s cut to at most n bytes at a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
