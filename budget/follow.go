package budget

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
)

// ledgerSubjects are the FLEET subjects the follower reads: calls to
// charge, and the mission and run events that attribute calls and end
// reservations.
var ledgerSubjects = []string{"fleet.*.llm.call", "fleet.*.mission.>", "fleet.*.agent.run.>"}

// cursor is how far FLEET has been charged by some follower: every event
// at or below Seq of lineage Epoch is in the ledger.
type cursor struct {
	Epoch string    `json:"epoch"`
	Seq   uint64    `json:"seq"`
	At    time.Time `json:"at"`
}

// follow charges the real cost of every priced llm.call on FLEET to the
// budgets that apply to it, in stream order, from the shared cursor on.
// Each ledger entry remembers the last sequence charged to it, so an event
// is charged at most once however many followers run and wherever one
// restarts.
func (l *Ledger) follow(ctx context.Context) error {
	select {
	case <-l.loaded:
	case <-ctx.Done():
		return nil
	}
	epoch, err := stream.Epoch(ctx, l.js)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	l.epoch.Store(&epoch)
	cur, err := l.loadCursor(ctx, epoch)
	if err != nil {
		return err
	}
	last, _, err := l.fleetLast(ctx)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: ledgerSubjects}
	// lostTail: the cursor is past FLEET's end, so FLEET lost its last
	// messages (a machine crash before they reached the disk) and their
	// sequences are being used again by new messages. Those are the ones
	// stored after the last message the cursor covers; marks entries keep
	// at or above the first of them mean nothing.
	lostTail := cur.Seq > last
	if lostTail {
		l.log.Warn("the ledger's cursor is past FLEET's end: FLEET lost messages; charging what was stored after the cursor",
			"event", "ledger.cursor_ahead", "cursor", cur.Seq, "cursor_at", cur.At, "stream_last_seq", last)
		after := cur.At.Add(time.Nanosecond)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &after
	} else {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cur.Seq+1
		l.stat.seq.Store(cur.Seq)
	}
	// Where this follower starts is fixed now. Only from here on may
	// budgets be created and reserved against (waitReady): the first
	// follower ever starts at FLEET's end as it is now, so a budget made
	// before this point would miss the calls stored between its creation
	// and this point.
	l.readyOnce.Do(func() { close(l.ready) })
	var ceiling uint64
	cons, err := l.js.OrderedConsumer(ctx, stream.FleetStream, cfg)
	if err != nil {
		return fmt.Errorf("ledger: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(ledgerBatch))
	if err != nil {
		return fmt.Errorf("ledger: consume: %w", err)
	}
	in := make(chan jetstream.Msg, ledgerBatch)
	readErr := make(chan error, 1)
	go func() { readErr <- stream.Pump(ctx, it, in) }()
	defer func() {
		it.Stop()
		<-readErr
	}()
	l.log.Info("ledger follows FLEET", "event", "ledger.follow", "after_seq", cur.Seq, "epoch", epoch)

	coster := fleet.NewCoster(l.cfg.Pricing)
	saved := cur.Seq
	if lostTail {
		saved = 0
	}
	var lastAt time.Time // stored time of the last message applied
	save := func(ctx context.Context) {
		if seq := l.stat.seq.Load(); seq > saved || lostTail && seq > 0 {
			if err := l.saveCursor(ctx, epoch, seq, lastAt, lostTail); err != nil {
				l.log.Warn("ledger cursor not saved", "event", "ledger.cursor", "err", err.Error())
				return
			}
			saved, lostTail = seq, false
		}
	}
	// The cursor is saved once per cursorEvery while the follower moves
	// (and when it stops). The ticker only paces writes: when the cursor
	// is saved decides nothing, since marks in the entries keep replays
	// harmless.
	every := time.NewTicker(cursorEvery)
	defer every.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			save(sctx)
			cancel()
			return nil
		case err := <-readErr:
			readErr <- err
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("ledger: read stream: %w", err)
			}
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			save(sctx)
			cancel()
			return nil
		case <-every.C:
			save(ctx)
		case m := <-in:
			batch := []jetstream.Msg{m}
		drain:
			for len(batch) < ledgerBatch {
				select {
				case m := <-in:
					batch = append(batch, m)
				default:
					break drain
				}
			}
			work := l.prepare(coster, batch)
			if lostTail && ceiling == 0 && work.first > 0 {
				ceiling = work.first - 1
			}
			for attempt := 0; ; attempt++ {
				err := l.apply(ctx, epoch, ceiling, work)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return nil
				}
				l.log.Error("ledger could not charge; retrying", "event", "ledger.retry", "seq", work.last, "err", err.Error())
				t := time.NewTimer(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second))
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
			l.stat.seq.Store(work.last)
			lastAt = work.lastAt
		}
	}
}

// followWork is one batch of FLEET messages made into charges and ends of
// work, ready to write (again, if a write fails).
type followWork struct {
	first   uint64    // the batch's first sequence
	last    uint64    // and its last
	lastAt  time.Time // when the last was stored
	charges []seqCharge
	ends    []workEnd
}

type seqCharge struct {
	seq uint64
	fleet.Charge
}

type workEnd struct {
	project, ref, state string
}

// prepare decodes a batch and prices its calls, in stream order.
func (l *Ledger) prepare(coster *fleet.Coster, batch []jetstream.Msg) followWork {
	var w followWork
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		if w.first == 0 {
			w.first = meta.Sequence.Stream
		}
		if meta.Sequence.Stream > w.last {
			w.last, w.lastAt = meta.Sequence.Stream, meta.Timestamp
		}
		ev, err := fleet.DecodeEvent(m.Subject(), m.Data())
		if err != nil {
			continue
		}
		if ch, ok := coster.Apply(meta.Timestamp, ev); ok {
			if !ch.Priced {
				l.stat.unpriced.Add(1)
			} else if ch.Cost > 0 {
				w.charges = append(w.charges, seqCharge{seq: meta.Sequence.Stream, Charge: ch})
			}
			continue
		}
		switch ev.Type {
		case fleet.TypeMissionCompleted:
			w.ends = append(w.ends, workEnd{ev.ProjectID, ev.MissionID, fleet.ReservationSettled})
		case fleet.TypeMissionFailed:
			w.ends = append(w.ends, workEnd{ev.ProjectID, ev.MissionID, fleet.ReservationReleased})
		case fleet.TypeRunCompleted:
			w.ends = append(w.ends, workEnd{ev.ProjectID, ev.RunID, fleet.ReservationSettled})
		case fleet.TypeRunFailed:
			w.ends = append(w.ends, workEnd{ev.ProjectID, ev.RunID, fleet.ReservationReleased})
		}
	}
	return w
}

// entryWork is what one ledger entry gets from a batch.
type entryWork struct {
	budget  fleet.BudgetLimit
	window  fleet.BudgetWindow
	charges []*seqCharge
}

// apply writes a batch: each entry once, with compare-and-swap, charging
// the calls above its sequence mark; then it ends the reservations of work
// that ended.
func (l *Ledger) apply(ctx context.Context, epoch string, ceiling uint64, w followWork) error {
	byEntry := map[string]*entryWork{}
	resOf := map[string]*fleet.BudgetReservation{} // this batch's lookups, by project/ref
	lookup := func(project, ref string) (*fleet.BudgetReservation, error) {
		if ref == "" {
			return nil, nil
		}
		k := project + "/" + ref
		if r, ok := resOf[k]; ok {
			return r, nil
		}
		r, ok, err := l.reservationOf(ctx, project, ref)
		if err != nil {
			return nil, err
		}
		resOf[k] = nil
		if ok {
			resOf[k] = &r
		}
		return resOf[k], nil
	}
	charges := w.charges
	if !l.anyBudget() {
		charges = nil // nothing to charge, nothing to look up
	}
	for i := range charges {
		c := &charges[i]
		req := fleet.BudgetRequest{ProjectID: c.ProjectID, TeamID: c.TeamID, UserID: c.UserID}
		if req.TeamID == "" || req.UserID == "" {
			// Calls that do not say who they are for count for whom their
			// reservation was made.
			for _, ref := range []string{c.MissionID, c.RunID} {
				r, err := lookup(c.ProjectID, ref)
				if err != nil {
					return err
				}
				if r != nil {
					req.TeamID = cmp.Or(req.TeamID, r.Request.TeamID)
					req.UserID = cmp.Or(req.UserID, r.Request.UserID)
					break
				}
			}
		}
		for _, b := range l.applicable(req) {
			if b.CreatedAt.After(c.Time) {
				continue // spent before the cap existed: not its business
			}
			win, err := fleet.WindowOf(b.Period, c.Time)
			if err != nil {
				continue
			}
			k := entryKey(b, win)
			ew := byEntry[k]
			if ew == nil {
				ew = &entryWork{budget: b, window: win}
				byEntry[k] = ew
			}
			ew.charges = append(ew.charges, c)
		}
	}
	now := l.cfg.Now()
	charged := map[uint64]bool{}
	for _, k := range sortedKeys(byEntry) {
		ew := byEntry[k]
		var before, after fleet.Micros
		var newly []*seqCharge
		_, err := l.casEntry(ctx, k, nil, func() *ledgerEntry { return newEntry(ew.budget, ew.window) }, func(e *ledgerEntry) error {
			newly = newly[:0]
			if e.Epoch != epoch {
				e.Epoch, e.Seq = epoch, 0 // another lineage's sequences mean nothing here
			}
			if ceiling > 0 && e.Seq > ceiling {
				e.Seq = ceiling // marks of messages FLEET lost
			}
			before = e.Spent
			for _, c := range ew.charges {
				if c.seq <= e.Seq {
					continue // charged here already, by us or another follower
				}
				e.Spent += c.Cost
				e.Calls++
				e.Seq = c.seq
				drawHold(e, c)
				newly = append(newly, c)
			}
			if len(newly) == 0 {
				return errNoWrite
			}
			e.prune(now)
			after = e.Spent
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range newly {
			if !charged[c.seq] {
				charged[c.seq] = true
				l.stat.charges.Add(1)
				l.stat.chargedMicros.Add(int64(c.Cost))
			}
		}
		if len(newly) > 0 {
			l.crossed(ew, before, after, newly[len(newly)-1].ProjectID, now)
		}
	}
	for _, end := range w.ends {
		if end.ref == "" {
			continue
		}
		r, err := lookup(end.project, end.ref)
		if err != nil {
			return err
		}
		if r == nil || r.State != fleet.ReservationHeld {
			continue
		}
		if err := l.end(ctx, r.ID, end.state, nil); err != nil && !errors.Is(err, fleet.ErrReservationNotFound) {
			return err
		}
	}
	return nil
}

// drawHold takes c's cost out of the hold of the work c belongs to, so
// that spent plus reserved counts it once.
func drawHold(e *ledgerEntry, c *seqCharge) {
	if len(e.Holds) == 0 {
		return
	}
	refs := [2]string{}
	if c.MissionID != "" {
		refs[0] = c.ProjectID + "/" + c.MissionID
	}
	if c.RunID != "" {
		refs[1] = c.ProjectID + "/" + c.RunID
	}
	for _, id := range sortedKeys(e.Holds) {
		h := e.Holds[id]
		if h.Ref == "" || h.Ref != refs[0] && h.Ref != refs[1] {
			continue
		}
		draw := min(c.Cost, h.Amount)
		h.Amount -= draw
		h.Charged += c.Cost
		if h.Settled && h.Amount <= 0 {
			delete(e.Holds, id)
		}
		return
	}
}

// crossed publishes a budget event when real spend crosses a budget's warn
// threshold or its cap.
func (l *Ledger) crossed(ew *entryWork, before, after fleet.Micros, project string, now time.Time) {
	b := ew.budget
	st := fleet.BudgetStanding{Budget: b, Window: ew.window, Spent: after}
	warnAt := fleet.Micros(float64(b.LimitUSD) * b.WarnPct / 100)
	switch {
	case before <= b.LimitUSD && after > b.LimitUSD:
		typ := fleet.TypeBudgetExceeded
		switch b.Action {
		case fleet.ActionWarn:
			typ = fleet.TypeBudgetWarning
		case fleet.ActionThrottle:
			typ = fleet.TypeBudgetThrottled
		}
		l.notify(typ, st, project, nil, "")
	case before < warnAt && after >= warnAt:
		l.notify(fleet.TypeBudgetWarning, st, project, nil, "")
	}
}

// anyBudget reports whether any budget exists at all.
func (l *Ledger) anyBudget() bool {
	l.cacheMu.RLock()
	defer l.cacheMu.RUnlock()
	for _, c := range l.cache {
		if !c.deleted {
			return true
		}
	}
	return false
}

// fleetLast returns the last sequence FLEET holds and when it was stored
// (zero when FLEET is empty).
func (l *Ledger) fleetLast(ctx context.Context) (uint64, time.Time, error) {
	st, err := l.js.Stream(ctx, stream.FleetStream)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("ledger: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("ledger: stream info: %w", err)
	}
	return info.State.LastSeq, info.State.LastTime, nil
}

// loadCursor returns the shared cursor. The first follower ever starts
// at FLEET's end: budgets count spend from the moment they exist. A new
// FLEET lineage starts from its beginning.
func (l *Ledger) loadCursor(ctx context.Context, epoch string) (cursor, error) {
	for {
		e, err := l.entries.Get(ctx, cursorKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			last, at, err := l.fleetLast(ctx)
			if err != nil {
				return cursor{}, err
			}
			c := cursor{Epoch: epoch, Seq: last, At: at.UTC()}
			body, _ := json.Marshal(c)
			if _, err := l.entries.Create(ctx, cursorKey, body); err != nil {
				if isConflict(err) {
					continue
				}
				return cursor{}, fmt.Errorf("ledger: create cursor: %w", err)
			}
			return c, nil
		}
		if err != nil {
			return cursor{}, fmt.Errorf("ledger: cursor: %w", err)
		}
		var c cursor
		if err := json.Unmarshal(e.Value(), &c); err != nil {
			return cursor{}, fmt.Errorf("ledger: cursor: %w", err)
		}
		if c.Epoch != epoch {
			l.log.Warn("FLEET is a new lineage; charging it from its start", "event", "ledger.new_epoch", "old", c.Epoch, "new", epoch)
			return cursor{Epoch: epoch}, nil
		}
		return c, nil
	}
}

// saveCursor raises the shared cursor to seq, stored at at; it never
// lowers it, unless reset: after a lost tail the old cursor is wrong.
//
// at is a FLEET stored time (a lost tail is looked up by it), never the
// ledger's Now. When it is unknown (zero), the cursor keeps the time it
// has: an earlier time only makes a lost-tail recovery read more messages
// again, which the entries' marks make harmless, while a later one could
// skip some.
func (l *Ledger) saveCursor(ctx context.Context, epoch string, seq uint64, at time.Time, reset bool) error {
	for {
		e, err := l.entries.Get(ctx, cursorKey)
		if err != nil {
			return err
		}
		var c cursor
		if err := json.Unmarshal(e.Value(), &c); err != nil {
			return err
		}
		if c.Epoch == epoch && c.Seq >= seq && !reset {
			return nil
		}
		stored := at
		if stored.IsZero() {
			stored = c.At
		}
		body, _ := json.Marshal(cursor{Epoch: epoch, Seq: seq, At: stored.UTC()})
		if _, err := l.entries.Update(ctx, cursorKey, body, e.Revision()); err == nil || !isConflict(err) {
			return err
		}
	}
}
