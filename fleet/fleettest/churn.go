package fleettest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// Churn is a fleet for benchmarks of one tick of the hub: agents, workers
// and missions in flight spread over DefaultProjects, folded, with its
// changes taken; Tick then changes 1 % of those entities, as a busy fleet
// does between two diffs.
type Churn struct {
	State *fleet.State
	At    time.Time

	agents, workers, missions int
	seq                       uint64
	rng                       *rand.Rand
}

// The payloads of a tick's events, built the way the consumer gets them
// (raw data, decoded by the fold).
var (
	churnLLM      = json.RawMessage(`{"provider":"anthropic","model":"claude-sonnet-4-5","input_tokens":1200,"output_tokens":300,"cache_read_tokens":4000,"latency_ms":900,"status":"ok"}`)
	churnHB       = json.RawMessage(`{"state":"busy","active_missions":2,"load":0.5}`)
	churnProgress = json.RawMessage(`{"pct":50,"step":"draft"}`)
)

// NewChurn folds a fleet of agents (on claude-sonnet-4-5), workers and
// claimed missions at at, and takes its changes.
func NewChurn(agents, workers, missions int, at time.Time) *Churn {
	c := &Churn{State: fleet.NewState(nil), At: at, agents: agents, workers: workers, missions: missions, rng: rand.New(rand.NewPCG(1, 2))}
	projects := DefaultProjects
	for i := range workers {
		c.apply(WorkerJoined(projects[i%3], fmt.Sprintf("w-%03d", i), at))
	}
	for i := range agents {
		p := projects[i%3]
		c.apply(AgentCreated(p, fmt.Sprintf("%s-agent-%04d", p, i), "claude-sonnet-4-5", at))
	}
	for i := range missions {
		p := projects[i%3]
		c.apply(MissionQueued(p, fmt.Sprintf("%s-m-%04d", p, i), "ticket", at))
		c.apply(MissionClaimed(p, fmt.Sprintf("%s-m-%04d", p, i), fmt.Sprintf("w-%03d", i%workers), at))
	}
	c.State.TakeChanges()
	return c
}

func (c *Churn) apply(ev fleet.Event) {
	c.seq++
	c.State.Apply(c.seq, c.At, ev)
}

// Tick moves the clock on by step and folds one event for 1 % of the
// entities, picked at random (a fixed seed): an llm.call of an agent, a
// heartbeat of a worker or the progress of a mission, each with a fresh
// id so that none is a duplicate. The changes are left for the caller to
// take.
func (c *Churn) Tick(step time.Duration) {
	projects := DefaultProjects
	c.At = c.At.Add(step)
	for range (c.agents + c.workers + c.missions) / 100 {
		ev := fleet.Event{ID: fmt.Sprintf("ev-%d", c.seq), Time: c.At}
		switch k := c.rng.IntN(c.agents + c.workers + c.missions); {
		case k < c.agents:
			ev.Type, ev.ProjectID, ev.AgentID, ev.Data = fleet.TypeLLMCall, projects[k%3], fmt.Sprintf("%s-agent-%04d", projects[k%3], k), churnLLM
		case k < c.agents+c.workers:
			k -= c.agents
			ev.Type, ev.ProjectID, ev.WorkerID, ev.Data = fleet.TypeWorkerHeartbeat, projects[k%3], fmt.Sprintf("w-%03d", k), churnHB
		default:
			k -= c.agents + c.workers
			ev.Type, ev.ProjectID, ev.MissionID, ev.Data = fleet.TypeMissionProgress, projects[k%3], fmt.Sprintf("%s-m-%04d", projects[k%3], k), churnProgress
		}
		c.apply(ev)
	}
}
