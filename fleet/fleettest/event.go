package fleettest

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// E describes one event. Body, Event and Msg encode it as JSON the way a
// worker does; Data is any JSON-encodable value (a map or a payload struct).
// A zero ID gets a fresh unique one.
type E struct {
	ID        string
	Type      string
	Time      time.Time
	ProjectID string
	TeamID    string
	UserID    string
	WorkerID  string
	AgentID   string
	MissionID string
	RunID     string
	Data      any
}

var lastID atomic.Uint64

// NextID returns a fresh event id, unique within the process.
func NextID() string { return fmt.Sprintf("ev-%08d", lastID.Add(1)) }

// envelope is the wire shape of an event (DESIGN §4).
type envelope struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	ProjectID string    `json:"project_id"`
	TeamID    string    `json:"team_id,omitempty"`
	UserID    string    `json:"user_id,omitempty"`
	WorkerID  string    `json:"worker_id,omitempty"`
	AgentID   string    `json:"agent_id,omitempty"`
	MissionID string    `json:"mission_id,omitempty"`
	RunID     string    `json:"run_id,omitempty"`
	Data      any       `json:"data,omitempty"`
}

func (e *E) fill() {
	if e.ID == "" {
		e.ID = NextID()
	}
}

// Body returns the JSON message body of e.
func (e E) Body() []byte {
	e.fill()
	b, err := json.Marshal(envelope(e))
	if err != nil {
		panic("fleettest: encode event: " + err.Error())
	}
	return b
}

// Subject returns the subject e is published on.
func (e E) Subject() string { return "fleet." + e.ProjectID + "." + e.Type }

// Event encodes e and decodes it with fleet.DecodeEvent, as the fold's
// consumer does. It panics if the event is rejected: use Body to build
// invalid events.
func (e E) Event() fleet.Event {
	e.fill()
	ev, err := fleet.DecodeEvent(e.Subject(), e.Body())
	if err != nil {
		panic(fmt.Sprintf("fleettest: %s event rejected: %v", e.Type, err))
	}
	return ev
}

// Msg returns e as a stream message stored at at.
func (e E) Msg(at time.Time) Msg {
	e.fill()
	body := e.Body()
	_, err := fleet.DecodeEvent(e.Subject(), body)
	return Msg{Subject: e.Subject(), Body: body, At: at, Valid: err == nil}
}

// MsgOf encodes an event as a stream message stored at at. A zero at means
// the event's own time.
func MsgOf(ev fleet.Event, at time.Time) Msg {
	if at.IsZero() {
		at = ev.Time
	}
	body, err := json.Marshal(ev)
	if err != nil {
		panic("fleettest: encode event: " + err.Error())
	}
	_, err = fleet.DecodeEvent(fleet.Subject(ev), body)
	return Msg{Subject: fleet.Subject(ev), Body: body, At: at, Valid: err == nil}
}

// WorkerJoined is a worker.joined event of worker in project.
func WorkerJoined(project, worker string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeWorkerJoined, Time: t, ProjectID: project, WorkerID: worker,
		Data: fleet.WorkerJoined{Host: worker + ".local", Version: "1.4.2", Capacity: 4}}.Event()
}

// Heartbeat is a worker.heartbeat event; state is idle, busy or draining.
func Heartbeat(project, worker, state string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeWorkerHeartbeat, Time: t, ProjectID: project, WorkerID: worker,
		Data: fleet.WorkerHeartbeat{State: state, ActiveMissions: 1, Load: 0.5}}.Event()
}

// WorkerLeft is a worker.left event.
func WorkerLeft(project, worker, reason string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeWorkerLeft, Time: t, ProjectID: project, WorkerID: worker,
		Data: fleet.WorkerLeft{Reason: reason}}.Event()
}

// AgentCreated is an agent.created event of an agent running model.
func AgentCreated(project, agent, model string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeAgentCreated, Time: t, ProjectID: project, AgentID: agent,
		Data: fleet.AgentCreated{Name: agent, Role: "assistant", Model: model, Version: "1",
			Tools: []string{"search"}, Skills: []string{"triage"}, Description: "test agent"}}.Event()
}

// AgentState is an agent.state event.
func AgentState(project, agent, state string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeAgentState, Time: t, ProjectID: project, AgentID: agent,
		Data: fleet.AgentStateChange{State: state}}.Event()
}

// MissionQueued is a mission.queued event.
func MissionQueued(project, mission, title string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeMissionQueued, Time: t, ProjectID: project, MissionID: mission,
		Data: map[string]any{"title": title, "priority": 2}}.Event()
}

// MissionClaimed is a mission.claimed event by worker.
func MissionClaimed(project, mission, worker string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeMissionClaimed, Time: t, ProjectID: project, MissionID: mission, WorkerID: worker}.Event()
}

// MissionProgress is a mission.progress event.
func MissionProgress(project, mission string, pct float64, t time.Time) fleet.Event {
	return E{Type: fleet.TypeMissionProgress, Time: t, ProjectID: project, MissionID: mission,
		Data: fleet.MissionProgress{Pct: pct, Step: "step"}}.Event()
}

// MissionRetrying is a mission.retrying event (a lost lease).
func MissionRetrying(project, mission string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeMissionRetrying, Time: t, ProjectID: project, MissionID: mission}.Event()
}

// MissionCompleted is a mission.completed event.
func MissionCompleted(project, mission string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeMissionCompleted, Time: t, ProjectID: project, MissionID: mission,
		Data: fleet.Outcome{DurationMS: 1500}}.Event()
}

// MissionFailed is a mission.failed event.
func MissionFailed(project, mission, reason string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeMissionFailed, Time: t, ProjectID: project, MissionID: mission,
		Data: fleet.Outcome{DurationMS: 1500, Error: reason}}.Event()
}

// RunStarted is an agent.run.started event; mission may be empty.
func RunStarted(project, agent, run, mission, model string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeRunStarted, Time: t, ProjectID: project, AgentID: agent, RunID: run, MissionID: mission,
		Data: fleet.RunStarted{Model: model}}.Event()
}

// RunCompleted is an agent.run.completed event.
func RunCompleted(project, agent, run string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeRunCompleted, Time: t, ProjectID: project, AgentID: agent, RunID: run,
		Data: fleet.Outcome{DurationMS: 900}}.Event()
}

// RunFailed is an agent.run.failed event.
func RunFailed(project, agent, run, reason string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeRunFailed, Time: t, ProjectID: project, AgentID: agent, RunID: run,
		Data: fleet.Outcome{DurationMS: 900, Error: reason}}.Event()
}

// LLMCall is a successful llm.call event with the four token counts:
// in (input, excluding cache), out (output), cr (cache read), cw (cache write).
func LLMCall(project, agent, run, model string, in, out, cr, cw int64, t time.Time) fleet.Event {
	return E{Type: fleet.TypeLLMCall, Time: t, ProjectID: project, AgentID: agent, RunID: run,
		Data: fleet.LLMCall{Provider: "test", Model: model, InputTokens: in, OutputTokens: out,
			CacheReadTokens: cr, CacheWriteTokens: cw, LatencyMS: 420, Status: "ok"}}.Event()
}

// ToolCall is a tool.call event; status "ok" is a success, anything else an error.
func ToolCall(project, agent, run, tool, status string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeToolCall, Time: t, ProjectID: project, AgentID: agent, RunID: run,
		Data: fleet.ToolCall{Tool: tool, LatencyMS: 35, Status: status}}.Event()
}

// ProjectBudget is a budget.warning or budget.exceeded event (typ) about the
// daily budget of project itself.
func ProjectBudget(typ, project string, limit, spent fleet.Micros, action string, t time.Time) fleet.Event {
	return E{Type: typ, Time: t, ProjectID: project,
		Data: fleet.BudgetNotice{Scope: "project", ScopeID: project, Period: "daily",
			LimitUSD: limit, SpentUSD: spent, Action: action}}.Event()
}

// ProjectCreated is a project.created event, as the admin API announces a
// project it creates.
func ProjectCreated(project string, t time.Time) fleet.Event {
	return E{Type: fleet.TypeProjectCreated, Time: t, ProjectID: project,
		Data: map[string]any{"name": project, "created_by": "admin"}}.Event()
}

// UserBudget is a budget.status event about the daily budget of user in
// project.
func UserBudget(project, user string, limit, spent fleet.Micros, t time.Time) fleet.Event {
	return E{Type: fleet.TypeBudgetStatus, Time: t, ProjectID: project, UserID: user,
		Data: fleet.BudgetNotice{Scope: fleet.BudgetScopeUser, ScopeID: user, Period: fleet.PeriodDaily,
			LimitUSD: limit, SpentUSD: spent, Action: fleet.ActionWarn}}.Event()
}
