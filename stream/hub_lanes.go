package stream

import (
	"encoding/json"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/protocol"
)

// A scope keeps one lane per protocol version: the diff frames of that
// version for resume, and for v2 the patcher that remembers what the
// version's clients hold. A lane builds frames while it has subscribers
// and for ScopeIdle after the last one left; then it closes (its frames
// and memory go) and opens again, from the scope's current point, with the
// next subscriber. Both lanes of a scope share one Delta per tick, so the
// fold is read once and each version encoded once per tick.
const (
	laneV1 = iota
	laneV2
	numLanes
)

var laneNames = [numLanes]string{protocol.Subprotocol, protocol.SubprotocolV2}

// laneOf returns the lane of a subscription's protocol.
func laneOf(sp string) int {
	if sp == protocol.SubprotocolV2 {
		return laneV2
	}
	return laneV1
}

type lane struct {
	isOpen   bool
	subs     int
	lastUsed time.Time
	ring     []ringFrame // oldest first, contiguous
	patcher  *protocol.Patcher
}

// live reports whether the lane builds this tick's frame.
func (l *lane) live(now time.Time, idle time.Duration) bool {
	return l.subs > 0 || (l.isOpen && now.Sub(l.lastUsed) <= idle)
}

// open starts the lane at sc's current point; snap, when not nil, is an
// encoded snapshot at that point, whose entities the v2 patcher learns.
func (l *lane) open(sc *scope, snap []byte) {
	l.close()
	l.isOpen = true
	if l == &sc.lanes[laneV2] {
		l.patcher = &protocol.Patcher{}
		l.seed(snap)
	}
}

// close forgets the lane's frames and memory: a tick without its frame
// breaks the chain both rely on.
func (l *lane) close() {
	clear(l.ring)
	l.ring, l.patcher, l.isOpen = nil, nil, false
}

// seed teaches the patcher an encoded snapshot at the lane's point.
func (l *lane) seed(snap []byte) {
	if l.patcher == nil || snap == nil {
		return
	}
	if err := l.patcher.Seed(snap); err != nil {
		// A snapshot the hub encoded always splits; should one not, the
		// lane forgets all so that every entity goes whole again.
		l.patcher.Reset()
	}
}

func (l *lane) push(f ringFrame, size int) {
	l.ring = append(l.ring, f)
	if len(l.ring) > size {
		copy(l.ring, l.ring[len(l.ring)-size:])
		clear(l.ring[size:])
		l.ring = l.ring[:size]
	}
}

// encodeDiff encodes lane i's diff frame of d, from sc.seq to seq.
func (h *Hub) encodeDiff(i int, l *lane, sc *scope, seq uint64, d *fleet.Delta) ([]byte, error) {
	if i == laneV2 {
		return l.patcher.Encode(protocol.DiffHead{Scope: sc.name, Epoch: h.epoch, Prev: sc.seq, Seq: seq}, d)
	}
	return json.Marshal(protocol.Diff{Op: protocol.OpDiff, Scope: sc.name, Epoch: h.epoch, Prev: sc.seq, Seq: seq, Delta: *d})
}
