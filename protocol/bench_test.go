package protocol_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
)

// BenchmarkDiffFrame encodes the diff frame of scope * for one tick at 1 %
// churn of a 1,000-agent fleet (fleet's BenchmarkDelta: 1,000 agents, 100
// workers, 200 missions in flight; 13 events a tick, each an llm.call,
// heartbeat or mission progress of a random entity), in each protocol
// version, from the same history. The time and allocations are those of
// encoding alone; bytes/diff is the frame's size, and diff/snapshot_% its
// share of a snapshot of the same state. v2's patcher starts from the
// snapshot, as the hub's does once a v2 subscriber has joined.
func BenchmarkDiffFrame(b *testing.B) {
	for _, version := range []string{protocol.Subprotocol, protocol.SubprotocolV2} {
		b.Run(version, func(b *testing.B) { benchDiffFrame(b, version) })
	}
}

func benchDiffFrame(b *testing.B, version string) {
	const agents, workers, missions = 1000, 100, 200
	projects := fleettest.DefaultProjects
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := fleet.NewState(nil)
	seq := uint64(0)
	apply := func(ev fleet.Event) {
		seq++
		s.Apply(seq, at, ev)
	}
	for i := range workers {
		apply(fleettest.WorkerJoined(projects[i%3], fmt.Sprintf("w-%03d", i), at))
	}
	for i := range agents {
		p := projects[i%3]
		apply(fleettest.AgentCreated(p, fmt.Sprintf("%s-agent-%04d", p, i), "claude-sonnet-4-5", at))
	}
	for i := range missions {
		p := projects[i%3]
		apply(fleettest.MissionQueued(p, fmt.Sprintf("%s-m-%04d", p, i), "ticket", at))
		apply(fleettest.MissionClaimed(p, fmt.Sprintf("%s-m-%04d", p, i), fmt.Sprintf("w-%03d", i%workers), at))
	}
	s.TakeChanges()
	snap, err := json.Marshal(protocol.Snapshot{Op: protocol.OpSnapshot, Scope: fleet.ScopeAll, Epoch: "E", Seq: s.Seq(), State: s.View(fleet.ScopeAll)})
	if err != nil {
		b.Fatal(err)
	}
	var p protocol.Patcher
	if err := p.Seed(snap); err != nil {
		b.Fatal(err)
	}

	llm := json.RawMessage(`{"provider":"anthropic","model":"claude-sonnet-4-5","input_tokens":1200,"output_tokens":300,"cache_read_tokens":4000,"latency_ms":900,"status":"ok"}`)
	hb := json.RawMessage(`{"state":"busy","active_missions":2,"load":0.5}`)
	progress := json.RawMessage(`{"pct":50,"step":"draft"}`)
	rng := rand.New(rand.NewPCG(1, 2))
	const perTick = (agents + workers + missions) / 100
	var diffBytes int64
	prev := s.Seq()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		at = at.Add(100 * time.Millisecond)
		for range perTick {
			ev := fleet.Event{ID: fmt.Sprintf("ev-%d", seq), Time: at}
			switch k := rng.IntN(agents + workers + missions); {
			case k < agents:
				ev.Type, ev.ProjectID, ev.AgentID, ev.Data = fleet.TypeLLMCall, projects[k%3], fmt.Sprintf("%s-agent-%04d", projects[k%3], k), llm
			case k < agents+workers:
				k -= agents
				ev.Type, ev.ProjectID, ev.WorkerID, ev.Data = fleet.TypeWorkerHeartbeat, projects[k%3], fmt.Sprintf("w-%03d", k), hb
			default:
				k -= agents + workers
				ev.Type, ev.ProjectID, ev.MissionID, ev.Data = fleet.TypeMissionProgress, projects[k%3], fmt.Sprintf("%s-m-%04d", projects[k%3], k), progress
			}
			apply(ev)
		}
		d := s.Delta(fleet.ScopeAll, s.TakeChanges())
		b.StartTimer()
		var frame []byte
		if version == protocol.SubprotocolV2 {
			frame, err = p.Encode(protocol.DiffHead{Scope: fleet.ScopeAll, Epoch: "E", Prev: prev, Seq: s.Seq()}, &d)
		} else {
			frame, err = json.Marshal(protocol.Diff{Op: protocol.OpDiff, Scope: fleet.ScopeAll, Epoch: "E", Prev: prev, Seq: s.Seq(), Delta: d})
		}
		if err != nil {
			b.Fatal(err)
		}
		prev = s.Seq()
		diffBytes += int64(len(frame))
	}
	b.StopTimer()
	b.ReportMetric(float64(diffBytes)/float64(b.N), "bytes/diff")
	b.ReportMetric(100*float64(diffBytes)/float64(b.N)/float64(len(snap)), "diff/snapshot_%")
	if version == protocol.SubprotocolV2 {
		b.ReportMetric(float64(p.Bytes()), "patcher_bytes")
	}
}
