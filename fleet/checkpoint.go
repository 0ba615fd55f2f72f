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
	LastSweep time.Time                `json:"last_sweep"`
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
		Version: checkpointVersion, Pricing: s.pricing.AsOf, Seq: s.seq, Clock: s.clock, LastSweep: s.lastSweep,
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
	s.seq, s.clock, s.lastSweep, s.counts = cp.Seq, cp.Clock, cp.LastSweep, cp.Counts
	fill(s.agents, cp.Agents)
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

func fill[V any](dst, src map[string]V) {
	for k, v := range src {
		dst[k] = v
	}
}
