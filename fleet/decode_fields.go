package fleet

// The field methods below tell the JSON reader (decode_json.go) where each
// JSON name of the envelope and of the payloads goes. They must list every
// field with its tag name: TestDecoderCoversEveryField compares them with
// the struct tags, so a field added to a struct and not here fails it.

func (ev *Event) field(name []byte) any {
	switch string(name) {
	case "id":
		return &ev.ID
	case "type":
		return &ev.Type
	case "time":
		return &ev.Time
	case "project_id":
		return &ev.ProjectID
	case "team_id":
		return &ev.TeamID
	case "user_id":
		return &ev.UserID
	case "worker_id":
		return &ev.WorkerID
	case "agent_id":
		return &ev.AgentID
	case "mission_id":
		return &ev.MissionID
	case "run_id":
		return &ev.RunID
	case "trace_id":
		return &ev.TraceID
	case "span_id":
		return &ev.SpanID
	case "data":
		return &ev.Data
	}
	return nil
}

func (p *WorkerJoined) field(name []byte) any {
	switch string(name) {
	case "host":
		return &p.Host
	case "version":
		return &p.Version
	case "capacity":
		return &p.Capacity
	case "pools":
		return &p.Pools
	case "models":
		return &p.Models
	case "labels":
		return &p.Labels
	}
	return nil
}

func (p *WorkerHeartbeat) field(name []byte) any {
	switch string(name) {
	case "state":
		return &p.State
	case "active_missions":
		return &p.ActiveMissions
	case "load":
		return &p.Load
	}
	return nil
}

func (p *WorkerLeft) field(name []byte) any {
	if string(name) == "reason" {
		return &p.Reason
	}
	return nil
}

func (p *AgentCreated) field(name []byte) any {
	switch string(name) {
	case "name":
		return &p.Name
	case "role":
		return &p.Role
	case "model":
		return &p.Model
	case "version":
		return &p.Version
	case "tools":
		return &p.Tools
	case "skills":
		return &p.Skills
	case "description":
		return &p.Description
	}
	return nil
}

func (p *AgentStateChange) field(name []byte) any {
	if string(name) == "state" {
		return &p.State
	}
	return nil
}

func (p *MissionQueued) field(name []byte) any {
	switch string(name) {
	case "title":
		return &p.Title
	case "priority":
		return &p.Priority
	case "model":
		return &p.Model
	case "requested_model":
		return &p.RequestedModel
	case "estimate_usd":
		return &p.EstimateUSD
	case "reservation":
		return &p.Reservation
	case "budget_action":
		return &p.BudgetAction
	case "pool":
		return &p.Pool
	case "labels":
		return &p.Labels
	}
	return nil
}

func (p *MissionProgress) field(name []byte) any {
	switch string(name) {
	case "pct":
		return &p.Pct
	case "step":
		return &p.Step
	}
	return nil
}

func (p *Outcome) field(name []byte) any {
	switch string(name) {
	case "duration_ms":
		return &p.DurationMS
	case "error":
		return &p.Error
	}
	return nil
}

func (p *RunStarted) field(name []byte) any {
	if string(name) == "model" {
		return &p.Model
	}
	return nil
}

func (p *LLMCall) field(name []byte) any {
	switch string(name) {
	case "provider":
		return &p.Provider
	case "model":
		return &p.Model
	case "input_tokens":
		return &p.InputTokens
	case "output_tokens":
		return &p.OutputTokens
	case "cache_read_tokens":
		return &p.CacheReadTokens
	case "cache_write_tokens":
		return &p.CacheWriteTokens
	case "latency_ms":
		return &p.LatencyMS
	case "status":
		return &p.Status
	}
	return nil
}

func (p *ToolCall) field(name []byte) any {
	switch string(name) {
	case "tool":
		return &p.Tool
	case "latency_ms":
		return &p.LatencyMS
	case "status":
		return &p.Status
	}
	return nil
}

func (p *BudgetNotice) field(name []byte) any {
	switch string(name) {
	case "scope":
		return &p.Scope
	case "scope_id":
		return &p.ScopeID
	case "period":
		return &p.Period
	case "limit_usd":
		return &p.LimitUSD
	case "spent_usd":
		return &p.SpentUSD
	case "action":
		return &p.Action
	case "model":
		return &p.Model
	case "warn_pct":
		return &p.WarnPct
	case "resets_at":
		return &p.ResetsAt
	case "through_seq":
		return &p.ThroughSeq
	}
	return nil
}
