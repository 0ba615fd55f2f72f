package fleet

import "time"

// Limits bound what the fold keeps of the ids that events choose, so that
// no publisher, broken or hostile, can grow the fold without end by making
// ids up. Every bound that concerns one project's entities is per project:
// a project that floods the fold fills its own room and never evicts,
// refuses or renames another project's entities. Zero fields mean the
// defaults of DefaultLimits.
//
// An event that would make an entity past a bound is rejected (Apply
// returns Rejected, Effect().Reason names the bound) and changes nothing
// but the fold's sequence and clock, like an invalid event. What frees
// room: a mission leaves its project's in-flight set when it completes or
// fails; a project's record of a worker is deleted once the worker is
// offline and its last event is ForgetWorkerFor old; an agent leaves its
// project when no event has named it for ForgetAgentsAfter. Budgets and
// projects stay: a budget is the server's (budget.*), and a project's
// figures are what the HUD and the bills add up.
//
// Limits are configuration, not state: checkpoints do not hold them, and
// replicas must use the same to fold alike. A checkpoint that holds more
// than lower limits allow keeps what it has and refuses new entities until
// there is room again.
type Limits struct {
	// Projects bounds the projects that no project.created announced
	// (default 1,000). Announced projects do not count against it: the
	// admin API announces every project it creates, and with the data
	// plane's credentials (DESIGN §11.1) nobody else may publish for a
	// project no worker was granted. So a flood of made-up project ids
	// fills this room and is then refused, while real tenants, old and
	// new, are still folded.
	Projects int
	// AnnouncedProjects bounds the projects announced by project.created
	// (default 10,000).
	AnnouncedProjects int
	// Agents bounds the agents of one project (default 10,000).
	Agents int
	// Missions bounds the missions in flight of one project (default 10,000).
	Missions int
	// Workers bounds the workers one project's events name (default 1,000).
	Workers int
	// Budgets bounds the budget standings of one project (default 1,000).
	Budgets int
	// OpenRuns bounds the runs in progress the fold follows for one
	// project's dossiers (default 4,096). This one never refuses: past it,
	// the project's oldest open run is dropped, and its end is summarized
	// from its own event alone.
	OpenRuns int
	// FinishedMissions is how many finished mission ids one project's
	// memory keeps, so that late events do not bring a finished mission
	// back in flight and a repeated mission.failed counts once (default
	// 4,096: a project finishing 30 missions a second is covered for two
	// minutes, the stream's dedupe window; late events come within
	// seconds). Past it, the oldest is forgotten.
	FinishedMissions int
	// ForgetAgentsAfter is how long an agent no event names stays in the
	// fold (default 7 days: FLEET's default retention, so a checkpointed
	// fold keeps what a fold of the stream from its start would show).
	ForgetAgentsAfter time.Duration
}

// DefaultLimits are the bounds of a State unless SetLimits sets others.
// Worst case, a project holds about 10 MB (agents of about 500 bytes,
// missions and workers of about 300 bytes, with their map entries); the
// room for projects times that is the fold's ceiling.
var DefaultLimits = Limits{
	Projects:          1_000,
	AnnouncedProjects: 10_000,
	Agents:            10_000,
	Missions:          10_000,
	Workers:           1_000,
	Budgets:           1_000,
	OpenRuns:          4_096,
	FinishedMissions:  4_096,
	ForgetAgentsAfter: 7 * 24 * time.Hour,
}

// WithDefaults returns l with every zero or negative field set to its
// DefaultLimits value.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	or := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	or(&l.Projects, d.Projects)
	or(&l.AnnouncedProjects, d.AnnouncedProjects)
	or(&l.Agents, d.Agents)
	or(&l.Missions, d.Missions)
	or(&l.Workers, d.Workers)
	or(&l.Budgets, d.Budgets)
	or(&l.OpenRuns, d.OpenRuns)
	or(&l.FinishedMissions, d.FinishedMissions)
	if l.ForgetAgentsAfter <= 0 {
		l.ForgetAgentsAfter = d.ForgetAgentsAfter
	}
	return l
}

// Reasons an event is refused by a bound of Limits. They label the same
// metric as the reasons of DecodeEvent.
const (
	ReasonLimitProjects Reason = "limit_projects"
	ReasonLimitAgents   Reason = "limit_agents"
	ReasonLimitMissions Reason = "limit_missions"
	ReasonLimitWorkers  Reason = "limit_workers"
	ReasonLimitBudgets  Reason = "limit_budgets"
)

// LimitReasons lists every reason of a bound, for pre-registering metric
// series.
var LimitReasons = []Reason{ReasonLimitProjects, ReasonLimitAgents, ReasonLimitMissions, ReasonLimitWorkers, ReasonLimitBudgets}

// Effect says more of what the last Apply did than its Result.
type Effect struct {
	// Reason is why the event was rejected: a reason of DecodeEvent for
	// an invalid one, a LimitReasons one for a bound. Empty when it was not.
	Reason Reason
	// Finished is true when the event finished a mission: the first
	// mission.completed or mission.failed of that mission id in its
	// project. Repeats, and outcomes of missions already finished, are
	// false: they change no figure.
	Finished bool
}
