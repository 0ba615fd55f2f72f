package telemetry

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Label values that stand for many.
const (
	// ProjectGlobal is the project of what belongs to no one project.
	ProjectGlobal = "global"
	// labelOther replaces label values past a labelCap's bound.
	labelOther = "other"
	// labelUnknown replaces an empty label value.
	labelUnknown = "unknown"
	// maxLabelLen bounds one label value taken from an event.
	maxLabelLen = 64
)

// labelCap bounds the distinct values of one label that events choose
// (model, provider, tool, agent, team: one per project): the first max
// values are kept, later new ones become "other", so a misbehaving worker
// cannot blow up the series count. It is not safe for concurrent use.
type labelCap struct {
	max  int
	seen map[string]struct{}
}

func newLabelCap(max int) *labelCap {
	return &labelCap{max: max, seen: make(map[string]struct{})}
}

// value returns v, or "unknown" for an empty v, or "other" once max other
// values have been seen. Long values are cut to maxLabelLen bytes.
func (l *labelCap) value(v string) string {
	if v == "" {
		return labelUnknown
	}
	if _, ok := l.seen[v]; ok {
		return v
	}
	if len(v) > maxLabelLen || strings.ContainsAny(v, "\x00\n\r") {
		v = clean(v)
		if _, ok := l.seen[v]; ok {
			return v
		}
	}
	if len(l.seen) >= l.max {
		return labelOther
	}
	l.seen[v] = struct{}{}
	return v
}

func clean(v string) string {
	v = strings.Map(func(r rune) rune {
		if r == 0 || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, v)
	if len(v) > maxLabelLen {
		v = v[:maxLabelLen]
	}
	return v
}

// Bounds of the label values events choose. A project's own values are
// bounded per project, so that one project's junk (made-up agent ids,
// say) fills only its own room and never pushes another project's series
// into "other".
const (
	// maxPoolProjects is how many projects neither registered nor
	// announced get their own label, first come.
	maxPoolProjects = 100
	maxModels       = 50  // per project
	maxProviders    = 20  // per project
	maxTools        = 100 // per project
	maxAgents       = 200 // per project
	maxTeams        = 50  // per project
)

// projectLabels decides the sagewai_project_id label of a project. A
// project in the admin API's registry (FleetSource.Registered), or
// announced on FLEET by project.created (which only the admin API
// publishes for a project no worker was granted), always has its own
// label: junk project ids cannot take a real tenant's label, however many
// come first. Other projects share a pool of maxPoolProjects labels, first
// come (so a fleet that publishes without the admin API still gets
// labels); past it they are "other". It is safe for concurrent use: the
// hub goroutine and metric collections both ask.
type projectLabels struct {
	registered atomic.Pointer[func(string) bool]

	// mu guards known: the projects given their own label, true for those
	// from the pool.
	mu    sync.Mutex
	known map[string]bool
	pool  int
}

func newProjectLabels() *projectLabels { return &projectLabels{known: map[string]bool{}} }

// label returns project's label; announced says the fold saw it announced.
func (l *projectLabels) label(project string, announced bool) string {
	if project == "" {
		return labelUnknown
	}
	if f := l.registered.Load(); f != nil && (*f)(project) {
		return project
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.known[project]; ok {
		return project
	}
	switch {
	case announced:
		l.known[project] = false
	case l.pool < maxPoolProjects:
		l.known[project] = true
		l.pool++
	default:
		return labelOther
	}
	return project
}

// projectCaps are the bounds of one project's label values.
type projectCaps struct {
	models, providers, tools, agents, teams *labelCap
}

func newProjectCaps() *projectCaps {
	return &projectCaps{models: newLabelCap(maxModels), providers: newLabelCap(maxProviders), tools: newLabelCap(maxTools),
		agents: newLabelCap(maxAgents), teams: newLabelCap(maxTeams)}
}
