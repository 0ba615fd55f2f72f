package fleet_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// benchStream is a realistic stream of 20,000 messages, faults included.
func benchStream(b *testing.B) []fleettest.Msg {
	b.Helper()
	return fleettest.Generate(rand.New(rand.NewPCG(42, 42)), 20_000, fleettest.Options{})
}

// BenchmarkApply measures the fold alone on pre-decoded events, taking the
// changes every 1,000 events as the hub does every tick. The target is
// 200,000 events/s on one core.
func BenchmarkApply(b *testing.B) {
	var evs []fleet.Event
	var ats []time.Time
	for _, m := range benchStream(b) {
		ev, err := fleet.DecodeEvent(m.Subject, m.Body)
		if err != nil {
			continue
		}
		evs, ats = append(evs, ev), append(ats, m.At)
	}
	b.ReportAllocs()
	b.ResetTimer()
	s, i := fleet.NewState(nil), 0
	for n := 0; n < b.N; n++ {
		if i == len(evs) { // start over: the same ids again would all be duplicates
			b.StopTimer()
			s, i = fleet.NewState(nil), 0
			b.StartTimer()
		}
		s.Apply(uint64(i+1), ats[i], evs[i])
		i++
		if i%1000 == 0 {
			s.TakeChanges()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeApply measures what the consumer does per message:
// decode and validate the body, then fold it (or skip it). The target is
// 200,000 events/s on one core. Its "encoding/json" half runs the decoder
// DecodeEvent had before the hand-written one (fleet.DecodeEventRef), so
// that one run compares both on the same machine at the same moment.
func BenchmarkDecodeApply(b *testing.B) {
	msgs := benchStream(b)
	for _, d := range []struct {
		name   string
		decode func(subject string, body []byte) (fleet.Event, error)
	}{
		{"decoder=encoding_json", fleet.DecodeEventRef},
		{"decoder=fleet", fleet.DecodeEvent},
	} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			s, i := fleet.NewState(nil), 0
			for n := 0; n < b.N; n++ {
				if i == len(msgs) {
					b.StopTimer()
					s, i = fleet.NewState(nil), 0
					b.StartTimer()
				}
				// As fleettest.Feed, with the decoder under test.
				if m := msgs[i]; m.Subject == fleet.ClockSubject {
					s.Tick(uint64(i+1), m.At)
				} else if ev, err := d.decode(m.Subject, m.Body); err != nil {
					s.Skip(uint64(i+1), m.At)
				} else {
					s.Apply(uint64(i+1), m.At, ev)
				}
				i++
				if i%1000 == 0 {
					s.TakeChanges()
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkDecodeEvent measures DecodeEvent alone over the same stream,
// with both decoders.
func BenchmarkDecodeEvent(b *testing.B) {
	msgs := benchStream(b)
	for _, d := range []struct {
		name   string
		decode func(subject string, body []byte) (fleet.Event, error)
	}{
		{"decoder=encoding_json", fleet.DecodeEventRef},
		{"decoder=fleet", fleet.DecodeEvent},
	} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for n := 0; n < b.N; n++ {
				m := msgs[n%len(msgs)]
				d.decode(m.Subject, m.Body)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			reportCPU(b, cpu)
		})
	}
}

// reportCPU reports events per second of this process's CPU time since
// start (the whole process: with GOMAXPROCS=1 that is the benchmark and
// its garbage collection), which other work on the machine barely moves.
func reportCPU(b *testing.B, start time.Duration) {
	if used := processCPU() - start; start > 0 && used > 0 {
		b.ReportMetric(float64(b.N)/used.Seconds(), "events/cpu-s")
	}
}

// BenchmarkDelta measures one tick of the hub for the admin scope of a
// 1,000-agent fleet (100 workers, 200 missions in flight) where 1 % of the
// entities change per tick: fold the tick's events, take the changes, build
// the delta and encode it. It reports the delta's JSON size against the
// snapshot's; the target is a diff of at most 5 % of a snapshot.
func BenchmarkDelta(b *testing.B) {
	const agents = 1000
	c := fleettest.NewChurn(agents, 100, 200, t0)
	s := c.State
	var diffBytes int64
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		c.Tick(100 * time.Millisecond)
		d := s.Delta(fleet.ScopeAll, s.TakeChanges())
		frame, err := json.Marshal(d)
		if err != nil {
			b.Fatal(err)
		}
		diffBytes += int64(len(frame))
	}
	b.StopTimer()
	snap, err := json.Marshal(s.View(fleet.ScopeAll))
	if err != nil {
		b.Fatal(err)
	}
	if got := len(s.View(fleet.ScopeAll).Agents); got != agents {
		b.Fatalf("fleet has %d agents, want %d", got, agents)
	}
	avg := float64(diffBytes) / float64(b.N)
	b.ReportMetric(avg, "diff_bytes")
	b.ReportMetric(float64(len(snap)), "snapshot_bytes")
	b.ReportMetric(100*avg/float64(len(snap)), "diff_pct")
}

// BenchmarkMarshalCheckpoint is the fold's part of a hub checkpoint for a
// 1,000-agent fleet (100 workers, 200 missions in flight, a minute of
// churn folded): the hub encodes it on its goroutine, at a frame boundary,
// every CheckpointEvery.
//
//	go test ./fleet -run '^$' -bench BenchmarkMarshalCheckpoint -benchmem -cpu 1
func BenchmarkMarshalCheckpoint(b *testing.B) {
	c := fleettest.NewChurn(1000, 100, 200, t0)
	for range 600 {
		c.Tick(100 * time.Millisecond)
	}
	var size int
	b.ReportAllocs()
	for b.Loop() {
		cp, err := c.State.MarshalCheckpoint()
		if err != nil {
			b.Fatal(err)
		}
		size = len(cp)
	}
	b.ReportMetric(float64(size), "bytes/checkpoint")
}
