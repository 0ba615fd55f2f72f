package stream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// stats are the hub's counters. The hub goroutine writes them; anyone may
// read them through Hub.Stats.
type stats struct {
	epoch      atomic.Value // string
	runErr     atomic.Value // string
	ready      atomic.Bool
	seq        atomic.Uint64
	lastStored atomic.Int64 // unix nanos of the last folded message's stored time

	applied, duplicates, unknown atomic.Int64
	rejectedMu                   sync.Mutex
	rejected                     map[fleet.Reason]int64

	size   atomic.Pointer[fleet.Size]   // what the fold holds, at the last frame
	limits atomic.Pointer[fleet.Limits] // its bounds

	subscribers, scopes           atomic.Int64
	frames, bytes, snapshots      atomic.Int64
	resyncs, slowClosed, resumes  atomic.Int64
	checkpoints, checkpointErrors atomic.Int64
}

func (s *stats) reject(r fleet.Reason) {
	s.rejectedMu.Lock()
	if s.rejected == nil {
		s.rejected = make(map[fleet.Reason]int64)
	}
	s.rejected[r]++
	s.rejectedMu.Unlock()
}

// result counts what Apply made of an event; the hub counts rejections
// itself, with their reason.
func (s *stats) result(r fleet.Result) {
	switch r {
	case fleet.Applied:
		s.applied.Add(1)
	case fleet.Duplicate:
		s.duplicates.Add(1)
	case fleet.Unknown:
		s.unknown.Add(1)
	}
}

// Stats is a copy of the hub's counters since it started.
type Stats struct {
	Epoch      string
	Ready      bool
	Seq        uint64
	LastStored time.Time // stored time of the last folded message
	Applied    int64     // events folded (known types)
	Duplicates int64
	Unknown    int64 // events of unknown types (folded into the ticker)
	// Rejected counts the messages not folded by reason: invalid ones
	// (fleet.Reasons) and those refused by the fold's bounds
	// (fleet.LimitReasons).
	Rejected map[fleet.Reason]int64
	// Fold is what the fold held at the last frame, and Limits its bounds.
	Fold             fleet.Size
	Limits           fleet.Limits
	Subscribers      int64
	Scopes           int64
	Frames           int64 // frames queued to subscribers
	Bytes            int64
	Snapshots        int64 // snapshot frames encoded
	Resyncs          int64 // slow subscribers given a fresh snapshot
	SlowClosed       int64 // slow subscribers closed with 4408
	Resumes          int64 // subscribers resumed from the ring
	Checkpoints      int64
	CheckpointErrors int64
}

// Stats returns the hub's counters. It is safe to call from any goroutine.
func (h *Hub) Stats() Stats {
	s := &h.stat
	out := Stats{
		Ready: s.ready.Load(), Seq: s.seq.Load(),
		Applied: s.applied.Load(), Duplicates: s.duplicates.Load(), Unknown: s.unknown.Load(),
		Subscribers: s.subscribers.Load(), Scopes: s.scopes.Load(), Frames: s.frames.Load(), Bytes: s.bytes.Load(),
		Snapshots: s.snapshots.Load(), Resyncs: s.resyncs.Load(), SlowClosed: s.slowClosed.Load(), Resumes: s.resumes.Load(),
		Checkpoints: s.checkpoints.Load(), CheckpointErrors: s.checkpointErrors.Load(),
		Rejected: map[fleet.Reason]int64{},
	}
	out.Epoch, _ = s.epoch.Load().(string)
	if z := s.size.Load(); z != nil {
		out.Fold = *z
	}
	if l := s.limits.Load(); l != nil {
		out.Limits = *l
	}
	if ns := s.lastStored.Load(); ns != 0 {
		out.LastStored = time.Unix(0, ns).UTC()
	}
	s.rejectedMu.Lock()
	for r, n := range s.rejected {
		out.Rejected[r] = n
	}
	s.rejectedMu.Unlock()
	return out
}
