package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// checkpointVersion changes whenever the checkpoint layout does; an old
// checkpoint is then ignored and the stream is folded from the start.
// Version 3 keeps each project's entities under the project.
const checkpointVersion = 3

// ErrCheckpointVersion is returned by RestoreState for a checkpoint written
// by another layout version.
var ErrCheckpointVersion = errors.New("checkpoint has another layout version")

type checkpoint struct {
	Version   int                   `json:"version"`
	Pricing   string                `json:"pricing_as_of"`
	Seq       uint64                `json:"seq"`
	Clock     time.Time             `json:"clock"`
	NextSweep time.Time             `json:"next_sweep"`
	Projects  map[string]*cpProject `json:"projects"`
	Seen      []string              `json:"seen"`
	Ticker    []TickerEntry         `json:"ticker"`
	Counts    Counts                `json:"counts"`
}

// cpProject is a project as a checkpoint holds it: its row and its own
// entities, keyed by their ids as published.
type cpProject struct {
	Row      *projectRec          `json:"row"`
	Agents   map[string]*agentRec `json:"agents,omitempty"`
	Missions map[string]*Mission  `json:"missions,omitempty"`
	Workers  map[string]*Worker   `json:"workers,omitempty"`
	Budgets  map[string]*Budget   `json:"budgets,omitempty"`
	Gauges   map[string]*gauge    `json:"gauges,omitempty"`
	Runs     []*openRun           `json:"runs,omitempty"` // open runs, oldest first
	Finished []string             `json:"finished,omitempty"`
	Ticker   []TickerEntry        `json:"ticker,omitempty"`
}

// MarshalCheckpoint encodes the whole state, so that RestoreState gives a
// State that folds on exactly as this one would. Pending changes are not
// part of it: take them first. Limits and liveness thresholds are not
// either: they are configuration.
func (s *State) MarshalCheckpoint() ([]byte, error) {
	cp := checkpoint{
		Version: checkpointVersion, Pricing: s.pricing.AsOf, Seq: s.seq, Clock: s.clock, NextSweep: s.nextSweep,
		Projects: make(map[string]*cpProject, len(s.projects)), Seen: s.seen.order.list(), Ticker: s.ticker, Counts: s.counts,
	}
	for id, p := range s.projects {
		c := &cpProject{Row: p, Agents: p.agents, Missions: p.missions, Workers: p.workers, Budgets: p.budgets, Gauges: p.gauges,
			Finished: p.finished.order.list(), Ticker: p.ticker}
		for e := p.runOrder.Front(); e != nil; e = e.Next() {
			c.Runs = append(c.Runs, e.Value.(*openRun))
		}
		cp.Projects[id] = c
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return nil, fmt.Errorf("marshal checkpoint: %w", err)
	}
	return b, nil
}

// RestoreState decodes a checkpoint written by MarshalCheckpoint. The State
// has the default limits and liveness thresholds until SetLimits and
// SetLiveness set others.
func RestoreState(b []byte, p *Pricing) (*State, error) {
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("restore state: %w", err)
	}
	if cp.Version != checkpointVersion {
		return nil, fmt.Errorf("restore state: version %d: %w", cp.Version, ErrCheckpointVersion)
	}
	s := NewState(p)
	if cp.Pricing != s.pricing.AsOf {
		return nil, fmt.Errorf("restore state: priced with table %q, now %q: %w", cp.Pricing, s.pricing.AsOf, ErrCheckpointVersion)
	}
	// A damaged checkpoint with null where an entity should be would
	// restore into a State that panics on its next read: refuse it.
	ids := make([]string, 0, len(cp.Projects))
	for id, c := range cp.Projects {
		if err := c.check(id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	// A checkpoint without next_sweep (an older fold's) sweeps on the next
	// message, which is never wrong.
	s.seq, s.clock, s.nextSweep, s.counts = cp.Seq, cp.Clock, cp.NextSweep, cp.Counts
	// Projects in order, so that the indexes of shared ids come out the
	// same whatever the map order.
	slices.Sort(ids)
	for _, id := range ids {
		s.restoreProject(id, cp.Projects[id])
	}
	for _, key := range cp.Seen {
		s.seen.add(key, seenCap)
	}
	s.ticker = cp.Ticker
	return s, nil
}

// check refuses a project whose row or entities are missing.
func (c *cpProject) check(id string) error {
	if c == nil || c.Row == nil {
		return fmt.Errorf("restore state: project %q is null", id)
	}
	for m, b := range c.Row.Win.Buckets {
		if b == nil {
			return fmt.Errorf("restore state: project %q: window minute %d is null", id, m)
		}
	}
	for _, err := range []error{noNull(id, "agent", c.Agents), noNull(id, "mission", c.Missions),
		noNull(id, "worker", c.Workers), noNull(id, "budget", c.Budgets)} {
		if err != nil {
			return err
		}
	}
	for _, r := range c.Runs {
		if r == nil {
			return fmt.Errorf("restore state: project %q: a run is null", id)
		}
	}
	return nil
}

// restoreProject puts back project id from c. Entities are made to agree
// with where they are kept (their id is their key, their project this
// one) and the counts of the row with the entities, so that a damaged
// checkpoint restores into a State that holds together.
func (s *State) restoreProject(id string, c *cpProject) {
	p := newProjectRec(id, s.clock)
	p.Project, p.Win, p.SpendDay, p.Announced = c.Row.Project, c.Row.Win, c.Row.SpendDay, c.Row.Announced
	p.ID = id
	if p.Win.Buckets == nil {
		p.Win.Buckets = map[int64]*bucket{}
	}
	if p.Announced {
		s.announced++
	}
	s.projects[id] = p
	p.ActiveAgents = 0
	for aid, a := range sortedMap(c.Agents) {
		a.ID, a.ProjectID = aid, id
		if a.RecentRuns == nil {
			a.RecentRuns = []RunSummary{} // a checkpoint of a fold that wrote null
		}
		if a.Tools == nil {
			a.Tools = []string{}
		}
		if a.Skills == nil {
			a.Skills = []string{}
		}
		if a.Active {
			p.ActiveAgents++
		}
		p.agents[aid] = a
		s.agentUse[aid] = append(s.agentUse[aid], id)
	}
	for mid, m := range sortedMap(c.Missions) {
		m.ID, m.ProjectID = mid, id
		p.missions[mid] = m
		s.missionUse[mid] = append(s.missionUse[mid], id)
	}
	p.WorkersOnline = 0
	for wid, w := range sortedMap(c.Workers) {
		w.ID, w.Projects = wid, []string{id}
		if w.Status == WorkerOnline {
			p.WorkersOnline++
		}
		p.workers[wid] = w
		s.workerUse[wid] = insertSorted(s.workerUse[wid], id)
	}
	for bid, b := range c.Budgets {
		b.ID, b.ProjectID = bid, id
		p.budgets[bid] = b
		if g := c.Gauges[bid]; g != nil {
			g.budget = b
			p.addGauge(bid, g)
		}
	}
	p.Agents, p.MissionsInFlight = len(p.agents), len(p.missions)
	for _, r := range c.Runs {
		if _, dup := p.runs[r.ID]; dup {
			continue
		}
		r.ProjectID = id
		p.runs[r.ID] = r
		r.elem = p.runOrder.PushBack(r)
	}
	for _, m := range c.Finished {
		p.finished.add(m, max(len(c.Finished), s.limits.FinishedMissions))
	}
	p.ticker = c.Ticker
}

// sortedMap yields m's entries in key order.
func sortedMap[V any](m map[string]V) func(yield func(string, V) bool) {
	return func(yield func(string, V) bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}

// noNull returns an error naming an entry of m that is null, if any.
func noNull[V any](project, what string, m map[string]*V) error {
	for id, v := range m {
		if v == nil {
			return fmt.Errorf("restore state: project %q: %s %q is null", project, what, id)
		}
	}
	return nil
}
