package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
)

var (
	// errRefuse: a stop budget has no room for the hold any more.
	errRefuse = errors.New("budget refuses the hold")
	// errRedecide: a throttle budget reached its cap since the decision.
	errRedecide = errors.New("decide again")
)

// rollbackTimeout bounds undoing a half-placed reservation, which goes on
// when the request that asked for it is cancelled.
const rollbackTimeout = 10 * time.Second

// Reserve decides on req against every budget that applies (user, team,
// project and global; daily and monthly) and, unless a stop budget
// refuses, holds the decided estimate on each of them with
// compare-and-swap: all or nothing. If a later budget refuses, the holds
// already placed are removed and the request is judged again with fresh
// figures. A refusal is not an error: the decision says Allowed false,
// with the breaches. No budget means allowed with no reservation.
func (l *Ledger) Reserve(ctx context.Context, req fleet.BudgetRequest) (fleet.BudgetDecision, error) {
	if err := fleet.CheckBudgetRequest(req); err != nil {
		return fleet.BudgetDecision{}, err
	}
	if err := l.waitReady(ctx); err != nil {
		return fleet.BudgetDecision{}, err
	}
	budgets := l.applicable(req)
	if len(budgets) == 0 {
		l.stat.reserves.Add(1)
		l.stat.unbudgeted.Add(1)
		l.stat.allowed.Add(1)
		return fleet.BudgetDecision{Allowed: true, Model: req.Model}, nil
	}
	for {
		now := l.cfg.Now()
		windows, keys, err := entriesOf(budgets, now)
		if err != nil {
			return fleet.BudgetDecision{}, err
		}
		snaps, standings, err := l.read(ctx, budgets, windows, keys, now)
		if err != nil {
			return fleet.BudgetDecision{}, err
		}
		out := fleet.EvaluateBudgets(req, standings, l.cfg.Pricing)
		if !out.Decision.Allowed {
			return l.refused(req, standings, out), nil
		}
		if out.Estimate == 0 {
			return l.allowed(req, standings, out.Verdicts, out, ""), nil
		}
		id := fleet.NewID(now)
		h := hold{Ref: refOf(req), Amount: out.Estimate, Expires: now.Add(l.cfg.HoldTTL)}
		pre := make([]fleet.BudgetStanding, len(keys))
		placed := 0
		var failed error
		for i := range keys {
			_, err := l.casEntry(ctx, keys[i], snaps[i], func() *ledgerEntry { return newEntry(budgets[i], windows[i]) },
				func(e *ledgerEntry) error {
					e.prune(now)
					st := e.standing(budgets[i], windows[i], now, l.fleetEpoch())
					switch v := st.Verdict(out.Estimate); {
					case v == fleet.ActionStop:
						return errRefuse
					case v == fleet.ActionThrottle && out.Verdicts[i] != fleet.ActionThrottle:
						return errRedecide
					}
					pre[i] = st
					if e.Holds == nil {
						e.Holds = make(map[string]*hold)
					}
					hc := h
					e.Holds[id] = &hc
					return nil
				})
			if err != nil {
				failed = err
				break
			}
			placed = i + 1
		}
		if failed == nil {
			r := fleet.BudgetReservation{ID: id, Request: req, Action: out.Decision.Action, Model: out.Decision.Model,
				Estimate: out.Estimate, Entries: keys, CreatedAt: now.UTC(), ExpiresAt: h.Expires.UTC(), State: fleet.ReservationHeld}
			for _, b := range budgets {
				r.Budgets = append(r.Budgets, b.ID)
			}
			if failed = l.putReservation(ctx, r); failed == nil {
				verdicts := make([]string, len(pre))
				for i, st := range pre {
					verdicts[i] = out.Verdicts[i]
					if verdicts[i] != fleet.ActionThrottle {
						verdicts[i] = st.Verdict(out.Estimate)
					}
				}
				return l.allowed(req, pre, verdicts, out, id), nil
			}
		}
		l.unhold(ctx, id, keys[:placed], now)
		if !errors.Is(failed, errRefuse) && !errors.Is(failed, errRedecide) {
			return fleet.BudgetDecision{}, fmt.Errorf("reserve: %w", failed)
		}
		// Someone got there first: judge again with fresh figures.
	}
}

// Preflight judges req like Reserve but holds nothing and publishes
// nothing: what Reserve would answer now.
func (l *Ledger) Preflight(ctx context.Context, req fleet.BudgetRequest) (fleet.BudgetDecision, error) {
	if err := fleet.CheckBudgetRequest(req); err != nil {
		return fleet.BudgetDecision{}, err
	}
	if err := l.waitReady(ctx); err != nil {
		return fleet.BudgetDecision{}, err
	}
	budgets := l.applicable(req)
	if len(budgets) == 0 {
		return fleet.BudgetDecision{Allowed: true, Model: req.Model}, nil
	}
	now := l.cfg.Now()
	windows, keys, err := entriesOf(budgets, now)
	if err != nil {
		return fleet.BudgetDecision{}, err
	}
	_, standings, err := l.read(ctx, budgets, windows, keys, now)
	if err != nil {
		return fleet.BudgetDecision{}, err
	}
	return fleet.EvaluateBudgets(req, standings, l.cfg.Pricing).Decision, nil
}

func entriesOf(budgets []fleet.BudgetLimit, now time.Time) ([]fleet.BudgetWindow, []string, error) {
	windows := make([]fleet.BudgetWindow, len(budgets))
	keys := make([]string, len(budgets))
	for i, b := range budgets {
		w, err := fleet.WindowOf(b.Period, now)
		if err != nil {
			return nil, nil, err
		}
		windows[i], keys[i] = w, entryKey(b, w)
	}
	return windows, keys, nil
}

// read reads the entries of budgets and their standings at now.
func (l *Ledger) read(ctx context.Context, budgets []fleet.BudgetLimit, windows []fleet.BudgetWindow, keys []string, now time.Time) ([]*entrySnap, []fleet.BudgetStanding, error) {
	snaps := make([]*entrySnap, len(keys))
	standings := make([]fleet.BudgetStanding, len(keys))
	for i, k := range keys {
		s, err := l.getEntry(ctx, k)
		if err != nil {
			return nil, nil, fmt.Errorf("reserve: %w", err)
		}
		snaps[i] = s
		standings[i] = s.entry.standing(budgets[i], windows[i], now, l.fleetEpoch())
	}
	return snaps, standings, nil
}

func refOf(req fleet.BudgetRequest) string {
	if req.Ref == "" {
		return ""
	}
	return req.ProjectID + "/" + req.Ref
}

// allowed builds the decision of an allowed request from the standings
// each hold was placed on, counts it and queues its events.
func (l *Ledger) allowed(req fleet.BudgetRequest, standings []fleet.BudgetStanding, verdicts []string, out fleet.BudgetOutcome, id string) fleet.BudgetDecision {
	d := fleet.BudgetDecision{Allowed: true, Model: out.Decision.Model, Reservation: id}
	for i, st := range standings {
		v := verdicts[i]
		if v == "" {
			continue
		}
		if fleet.Harsher(v, d.Action) {
			d.Action = v
		}
		d.Breaches = append(d.Breaches, st.Breach(out.Estimate, v))
		typ := fleet.TypeBudgetWarning
		if v == fleet.ActionThrottle {
			typ = fleet.TypeBudgetThrottled
		}
		l.notify(typ, st, req.ProjectID, &req, d.Model)
	}
	l.stat.reserves.Add(1)
	l.stat.allowed.Add(1)
	switch d.Action {
	case fleet.ActionThrottle:
		l.stat.throttled.Add(1)
	case fleet.ActionWarn:
		l.stat.warned.Add(1)
	}
	return d
}

// refused counts a refusal and queues budget.exceeded for each stop budget.
func (l *Ledger) refused(req fleet.BudgetRequest, standings []fleet.BudgetStanding, out fleet.BudgetOutcome) fleet.BudgetDecision {
	for i, st := range standings {
		if out.Verdicts[i] == fleet.ActionStop {
			l.notify(fleet.TypeBudgetExceeded, st, req.ProjectID, &req, "")
		}
	}
	l.stat.reserves.Add(1)
	l.stat.refused.Add(1)
	l.log.Debug("budget refused", "event", "budget.refused", "sagewai.project_id", req.ProjectID, "ref", req.Ref,
		"estimate_usd", req.Estimate.String())
	return out.Decision
}

// unhold removes reservation id's holds from keys; it goes on when ctx is
// cancelled, so that a cancelled request leaves nothing held. A hold it
// cannot remove expires.
func (l *Ledger) unhold(ctx context.Context, id string, keys []string, now time.Time) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	for _, k := range keys {
		_, err := l.casEntry(ctx, k, nil, func() *ledgerEntry { return &ledgerEntry{} }, func(e *ledgerEntry) error {
			if _, ok := e.Holds[id]; !ok {
				return errNoWrite
			}
			delete(e.Holds, id)
			e.prune(now)
			return nil
		})
		if err != nil {
			l.log.Error("hold not removed; it will expire", "event", "budget.hold_stuck", "reservation", id, "entry", k, "err", err.Error())
		}
	}
}

// Settle records that the work of reservation id is done and cost actual
// by its caller's count. The ledger charges real costs from the llm.call
// events themselves (never from a caller's figure), so Settle only ends
// the hold: what the follower has not charged yet of actual stays held for
// SettleGrace, the rest is released at once. Settling twice, or after a
// release, changes nothing. An empty id (no budget applied) is a no-op.
func (l *Ledger) Settle(ctx context.Context, id string, actual fleet.Micros) error {
	if actual < 0 {
		return &fleet.BudgetError{Field: "actual_usd", Message: "actual_usd must not be negative"}
	}
	return l.end(ctx, id, fleet.ReservationSettled, &actual)
}

// Release frees what reservation id holds: its work failed, was cancelled
// or lost its lease. Real costs already charged stay charged. Releasing
// twice, or after a settle, changes nothing. An empty id is a no-op.
func (l *Ledger) Release(ctx context.Context, id string) error {
	return l.end(ctx, id, fleet.ReservationReleased, nil)
}

// end settles (actual != nil) or releases reservation id.
func (l *Ledger) end(ctx context.Context, id, state string, actual *fleet.Micros) error {
	if id == "" {
		return nil
	}
	r, rev, err := l.getReservation(ctx, id)
	if err != nil {
		return err
	}
	if r.State != fleet.ReservationHeld {
		return nil
	}
	now := l.cfg.Now()
	for _, k := range r.Entries {
		_, err := l.casEntry(ctx, k, nil, func() *ledgerEntry { return &ledgerEntry{} }, func(e *ledgerEntry) error {
			h := e.Holds[id]
			if h == nil {
				return errNoWrite
			}
			if actual == nil || *actual-h.Charged <= 0 {
				delete(e.Holds, id)
			} else {
				h.Amount = min(h.Amount, *actual-h.Charged)
				h.Settled = true
				if grace := now.Add(l.cfg.SettleGrace); grace.Before(h.Expires) {
					h.Expires = grace
				}
			}
			e.prune(now)
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s reservation %s: %w", state, id, err)
		}
	}
	for {
		r.State, r.EndedAt = state, now.UTC()
		if actual != nil {
			r.Actual = *actual
		}
		body, _ := json.Marshal(r)
		_, err := l.reserves.Update(ctx, resKey(id), body, rev)
		if err == nil {
			break
		}
		if !isConflict(err) {
			return fmt.Errorf("%s reservation %s: %w", state, id, err)
		}
		if r, rev, err = l.getReservation(ctx, id); err != nil {
			return err
		}
		if r.State != fleet.ReservationHeld {
			break
		}
	}
	if state == fleet.ReservationSettled {
		l.stat.settles.Add(1)
	} else {
		l.stat.releases.Add(1)
	}
	return nil
}

// Reservation returns the record of reservation id.
func (l *Ledger) Reservation(ctx context.Context, id string) (fleet.BudgetReservation, error) {
	r, _, err := l.getReservation(ctx, id)
	return r, err
}

func resKey(id string) string { return "res." + fleet.KeyToken(id) }

func refKey(project, ref string) string { return "ref." + project + "." + fleet.KeyToken(ref) }

func (l *Ledger) getReservation(ctx context.Context, id string) (fleet.BudgetReservation, uint64, error) {
	e, err := l.reserves.Get(ctx, resKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return fleet.BudgetReservation{}, 0, fmt.Errorf("reservation %q: %w", id, fleet.ErrReservationNotFound)
	}
	if err != nil {
		return fleet.BudgetReservation{}, 0, fmt.Errorf("ledger: get reservation %q: %w", id, err)
	}
	var r fleet.BudgetReservation
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return fleet.BudgetReservation{}, 0, fmt.Errorf("ledger: reservation %q: %w", id, err)
	}
	return r, e.Revision(), nil
}

// putReservation records r, and r's work → r, so that the follower finds
// the reservation of a mission or run from its events.
func (l *Ledger) putReservation(ctx context.Context, r fleet.BudgetReservation) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("ledger: encode reservation: %w", err)
	}
	if _, err := l.reserves.Create(ctx, resKey(r.ID), body); err != nil {
		return fmt.Errorf("ledger: record reservation: %w", err)
	}
	if r.Request.Ref != "" {
		if _, err := l.reserves.Put(ctx, refKey(r.Request.ProjectID, r.Request.Ref), []byte(r.ID)); err != nil {
			return fmt.Errorf("ledger: index reservation: %w", err)
		}
	}
	return nil
}

// reservationOf returns the reservation recorded for work ref of project,
// if any.
func (l *Ledger) reservationOf(ctx context.Context, project, ref string) (fleet.BudgetReservation, bool, error) {
	e, err := l.reserves.Get(ctx, refKey(project, ref))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return fleet.BudgetReservation{}, false, nil
	}
	if err != nil {
		return fleet.BudgetReservation{}, false, fmt.Errorf("ledger: reservation of %s/%s: %w", project, ref, err)
	}
	r, _, err := l.getReservation(ctx, string(e.Value()))
	if errors.Is(err, fleet.ErrReservationNotFound) {
		return fleet.BudgetReservation{}, false, nil
	}
	return r, err == nil, err
}
