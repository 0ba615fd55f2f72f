package budget

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// publishStatuses publishes every budget's standing as budget.status on
// FLEET (Config.Events) once the ledger is ready, then every
// StatusEvery and soon after a budget changes, each time only the
// standings that changed since, until ctx ends. An event's
// id is derived from the budget, the interval and the figures, so that
// replicas publishing the same standing in the same interval store it once.
func (l *Ledger) publishStatuses(ctx context.Context) error {
	if err := l.waitReady(ctx); err != nil {
		return nil
	}
	t := time.NewTicker(l.cfg.StatusEvery)
	defer t.Stop()
	// last is what was published of each budget: a standing that did not
	// change is not published again (the fold keeps the last one).
	last := map[string]string{}
	for {
		l.publishStatusRound(ctx, last)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-l.statusKick:
		}
	}
}

func (l *Ledger) publishStatusRound(ctx context.Context, last map[string]string) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := l.Budgets(rctx, "")
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("budget standings not read", "event", "budget.status.failed", "error", err.Error())
		}
		return
	}
	now := l.cfg.Now().UTC()
	for _, st := range list {
		ev, ok := statusEvent(st, now, l.cfg.StatusEvery)
		if !ok || last[st.Budget.ID] == string(ev.Data) {
			continue
		}
		if _, err := l.cfg.Events.Publish(rctx, ev); err != nil {
			if ctx.Err() == nil {
				l.log.Warn("budget status not published", "event", "budget.status.failed", "budget", st.Budget.ID, "error", err.Error())
			}
			return
		}
		last[st.Budget.ID] = string(ev.Data)
	}
}

// statusEvent is the budget.status event of standing st at now; false for
// a budget of no project (global): it has no project to be published
// under, and none of its figures may reach a tenant (DESIGN §11.2).
func statusEvent(st fleet.BudgetStanding, now time.Time, every time.Duration) (fleet.Event, bool) {
	b := st.Budget
	if !fleet.ValidProjectID(b.ProjectID) {
		return fleet.Event{}, false
	}
	data, err := json.Marshal(fleet.BudgetNotice{Scope: b.Scope, ScopeID: b.ScopeID, Period: b.Period, LimitUSD: b.LimitUSD,
		SpentUSD: st.Spent, Action: b.Action, Model: b.ThrottleModel, WarnPct: b.WarnPct, ResetsAt: st.Window.End,
		ThroughSeq: st.ChargedThrough})
	if err != nil {
		return fleet.Event{}, false
	}
	id := "bs-" + strconv.FormatUint(hashString(b.ID), 36) + "-" + strconv.FormatInt(now.Truncate(every).UnixMilli(), 36) +
		"-" + strconv.FormatInt(int64(b.LimitUSD), 36) + "-" + strconv.FormatInt(int64(st.Spent), 36)
	return fleet.Event{ID: id, Type: fleet.TypeBudgetStatus, Time: now, ProjectID: b.ProjectID, Data: data}, true
}

// hashString is a short, stable digest of s for event ids.
func hashString(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}
