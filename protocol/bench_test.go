package protocol_test

import (
	"encoding/json"
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
	c := fleettest.NewChurn(1000, 100, 200, time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	s := c.State
	snap, err := json.Marshal(protocol.Snapshot{Op: protocol.OpSnapshot, Scope: fleet.ScopeAll, Epoch: "E", Seq: s.Seq(), State: s.View(fleet.ScopeAll)})
	if err != nil {
		b.Fatal(err)
	}
	var p protocol.Patcher
	if err := p.Seed(snap); err != nil {
		b.Fatal(err)
	}

	var diffBytes int64
	prev := s.Seq()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		c.Tick(100 * time.Millisecond)
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
