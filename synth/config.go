package synth

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"
)

// ProjectMix is one tenant of the synthetic fleet.
type ProjectMix struct {
	// ID is the project id (fleet.ValidProjectID); it is the first part of
	// every agent id and of the NATS subject.
	ID string
	// Team is the team_id of its events. It also picks the kind of agents
	// the team runs: "support", "research" and "ops" have their own
	// catalogs of roles, tools and missions; any other name gets a general
	// one. Empty means "general".
	Team string
	// Models are the models its agents run on: agents in roles that need
	// quality use the first, fast roles (triage, log mining, ...) the last.
	// Empty means claude-haiku-4-5.
	Models []string
	// Users are the user_ids missions come from; the first one also owns
	// the team's agents and workers. Empty means u-<id>-01 to u-<id>-03.
	Users []string
	// Weight is the project's share of new missions (default 1).
	Weight float64
}

// DefaultProjects are the three tenants of `observatory demo`.
func DefaultProjects() []ProjectMix {
	return []ProjectMix{
		{ID: "acme", Team: "support", Models: []string{"claude-sonnet-4-5", "claude-haiku-4-5"}, Weight: 1.2},
		{ID: "globex", Team: "research", Models: []string{"gpt-5", "gpt-5-mini"}, Weight: 1},
		{ID: "initech", Team: "ops", Models: []string{"gemini-2.5-flash", "llama3.1"}, Weight: 0.8},
	}
}

// Config configures a synthetic fleet. Zero values mean the defaults.
type Config struct {
	// Projects are the tenants (default DefaultProjects()).
	Projects []ProjectMix
	// Workers is the number of worker processes (default 6). Workers are
	// spread over the projects; each serves its own projects only.
	Workers int
	// Agents is the number of agents per project (default 4).
	Agents int
	// MissionEvery is the mean time between new missions across the whole
	// fleet (default 2 s); arrivals are random (exponential).
	MissionEvery time.Duration
	// Rand drives every choice, ids included (default: seeded from
	// crypto/rand). The Fleet owns it: don't share it.
	Rand *rand.Rand
	// Now is the clock Run uses (default time.Now). Step takes its time as
	// an argument and never calls Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultWorkers      = 6
	DefaultAgents       = 4
	DefaultMissionEvery = 2 * time.Second
	// HeartbeatEvery is how often each worker sends worker.heartbeat (DESIGN §9).
	HeartbeatEvery = 10 * time.Second
	// FailureRate is the share of missions that fail.
	FailureRate = 0.05
	// WorkerCapacity is how many missions a worker runs at once.
	WorkerCapacity = 3
)

func (c *Config) defaults() {
	if len(c.Projects) == 0 {
		c.Projects = DefaultProjects()
	}
	ps := make([]ProjectMix, len(c.Projects))
	for i, p := range c.Projects {
		if p.Team == "" {
			p.Team = "general"
		}
		if len(p.Models) == 0 {
			p.Models = []string{"claude-haiku-4-5"}
		}
		if len(p.Users) == 0 {
			p.Users = []string{fmt.Sprintf("u-%s-01", p.ID), fmt.Sprintf("u-%s-02", p.ID), fmt.Sprintf("u-%s-03", p.ID)}
		}
		if p.Weight <= 0 {
			p.Weight = 1
		}
		ps[i] = p
	}
	c.Projects = ps
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Agents <= 0 {
		c.Agents = DefaultAgents
	}
	if c.MissionEvery <= 0 {
		c.MissionEvery = DefaultMissionEvery
	}
	if c.Rand == nil {
		var seed [16]byte
		_, _ = crand.Read(seed[:]) // never fails (crypto/rand panics instead)
		c.Rand = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
