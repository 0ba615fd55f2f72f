package fleettest

import (
	"time"

	"github.com/sagewai/observatory/fleet"
)

// Msg is one stream message: the subject and body a publisher sent, and At,
// the time the stream stored it. Valid says whether fleet.DecodeEvent
// accepts it (a duplicate is valid: the fold, not the decoder, drops it; a
// clock tick carries no event and is not).
type Msg struct {
	Subject string
	Body    []byte
	At      time.Time
	Valid   bool
}

// Feed decodes m and folds it into s at stream sequence seq, the way the
// stream consumer does: Tick for a clock tick, Apply for an accepted event,
// Skip for a rejected one.
func Feed(s *fleet.State, seq uint64, m Msg) fleet.Result {
	if m.Subject == fleet.ClockSubject {
		s.Tick(seq, m.At)
		return fleet.Ticked
	}
	ev, err := fleet.DecodeEvent(m.Subject, m.Body)
	if err != nil {
		s.Skip(seq, m.At)
		return fleet.Rejected
	}
	return s.Apply(seq, m.At, ev)
}

// Fold folds msgs into a new State with the default pricing; message i has
// stream sequence i+1. It is the reference fold other tests compare with.
func Fold(msgs []Msg) *fleet.State {
	s := fleet.NewState(nil)
	for i, m := range msgs {
		Feed(s, uint64(i+1), m)
	}
	return s
}
