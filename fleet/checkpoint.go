package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// checkpointVersion changes whenever the checkpoint layout does; an old
// checkpoint is then ignored and the stream is folded from the start.
const checkpointVersion = 2

// ErrCheckpointVersion is returned by RestoreState for a checkpoint written
// by another layout version.
var ErrCheckpointVersion = errors.New("checkpoint has another layout version")

type checkpoint struct {
	Version   int                      `json:"version"`
	Pricing   string                   `json:"pricing_as_of"`
	Seq       uint64                   `json:"seq"`
	Clock     time.Time                `json:"clock"`
	NextSweep time.Time                `json:"next_sweep"`
	Agents    map[string]*Agent        `json:"agents"`
	Workers   map[string]*Worker       `json:"workers"`
	Missions  map[string]*Mission      `json:"missions"`
	Projects  map[string]*projectRec   `json:"projects"`
	Budgets   map[string]*Budget       `json:"budgets"`
	Runs      map[string]*openRun      `json:"runs"`
	RunOrder  []string                 `json:"run_order"`
	Seen      []string                 `json:"seen"`
	Finished  []string                 `json:"finished"`
	Ticker    []TickerEntry            `json:"ticker"`
	TickerFor map[string][]TickerEntry `json:"ticker_for"`
	Counts    Counts                   `json:"counts"`
}

// MarshalCheckpoint encodes the whole state, so that RestoreState gives a
// State that folds on exactly as this one would. Pending changes are not
// part of it: take them first.
func (s *State) MarshalCheckpoint() ([]byte, error) {
	cp := checkpoint{
		Version: checkpointVersion, Pricing: s.pricing.AsOf, Seq: s.seq, Clock: s.clock, NextSweep: s.nextSweep,
		Agents: s.agents, Workers: s.workers, Missions: s.missions, Projects: s.projects, Budgets: s.budgets,
		Runs: s.runs, RunOrder: s.runOrder.list(), Seen: s.seen.order.list(), Finished: s.finished.order.list(),
		Ticker: s.ticker, TickerFor: s.tickerFor, Counts: s.counts,
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return nil, fmt.Errorf("marshal checkpoint: %w", err)
	}
	return b, nil
}

// RestoreState decodes a checkpoint written by MarshalCheckpoint.
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
	for _, err := range []error{noNull("agent", cp.Agents), noNull("worker", cp.Workers), noNull("mission", cp.Missions),
		noNull("project", cp.Projects), noNull("budget", cp.Budgets), noNull("run", cp.Runs)} {
		if err != nil {
			return nil, err
		}
	}
	for id, p := range cp.Projects {
		for m, b := range p.Win.Buckets {
			if b == nil {
				return nil, fmt.Errorf("restore state: project %q: window minute %d is null", id, m)
			}
		}
	}
	// A checkpoint without next_sweep (an older fold's) sweeps on the next
	// message, which is never wrong.
	s.seq, s.clock, s.nextSweep, s.counts = cp.Seq, cp.Clock, cp.NextSweep, cp.Counts
	fill(s.agents, cp.Agents)
	for _, a := range s.agents {
		if a.RecentRuns == nil {
			a.RecentRuns = []RunSummary{} // a checkpoint of a fold that wrote null
		}
	}
	fill(s.workers, cp.Workers)
	fill(s.missions, cp.Missions)
	fill(s.projects, cp.Projects)
	fill(s.budgets, cp.Budgets)
	for _, id := range cp.RunOrder {
		s.runOrder.push(id)
	}
	fill(s.runs, cp.Runs)
	for _, id := range cp.Seen {
		s.seen.add(id)
	}
	for _, id := range cp.Finished {
		s.finished.add(id)
	}
	s.ticker = cp.Ticker
	fill(s.tickerFor, cp.TickerFor)
	for _, p := range s.projects {
		if p.Win.Buckets == nil {
			p.Win.Buckets = map[int64]*bucket{}
		}
	}
	return s, nil
}

// noNull returns an error naming an entry of m that is null, if any.
func noNull[V any](what string, m map[string]*V) error {
	for id, v := range m {
		if v == nil {
			return fmt.Errorf("restore state: %s %q is null", what, id)
		}
	}
	return nil
}

func fill[V any](dst, src map[string]V) {
	for k, v := range src {
		dst[k] = v
	}
}
