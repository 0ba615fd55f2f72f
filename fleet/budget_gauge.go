package fleet

import "time"

// Budget gauges move with the spend. The budget gate charges every priced
// llm.call on FLEET, in stream order, to the budgets that apply to it, and
// its notices (budget.status every few seconds, budget.warning and the
// like) say what a budget's window has been charged up to which sequence
// (BudgetNotice.ThroughSeq). Between two notices the fold adds each call
// it folds to the budgets of the call's project it knows, the way the gate
// does: a project budget takes every call of its project; a team or user
// budget the calls that name its team or user (workers stamp every event
// of a mission with the mission's team and user); a global budget, which
// sums every project, is left to its notices. So at the same seq the gauge shows what the ledger has
// charged, not what it had charged when it last spoke.
//
// A notice is the last word up to its ThroughSeq: the gauge becomes its
// spend plus the calls the fold added above ThroughSeq, and what the fold
// saw differently from the gate (a call that names no team, which the gate
// charges to its reservation's team) is corrected there. A notice without ThroughSeq is
// taken as it is, and the gauge waits for the next one that has it.

// gaugeCharges is how many of its latest charges a gauge keeps to add
// above a notice's ThroughSeq. The gate charges within a batch or two of
// the fold, so a handful suffice; when more calls reach one budget between
// the sequence a notice covers and the notice itself, the oldest are
// merged into one sum, which the next notice drops (it cannot tell which
// of them it covers): the gauge may read low until the notice after.
const gaugeCharges = 64

// gauge is what the fold keeps to move one budget's spend between notices.
type gauge struct {
	// Live is true once a notice with ThroughSeq came: from then on calls
	// move the gauge.
	Live bool `json:"live"`
	// Base is the notice's spend, charged through Through.
	Base    Micros `json:"base_usd"`
	Through uint64 `json:"through"`
	// Charges are the calls the fold added above Through, oldest first,
	// and Sum their sum.
	Charges []seqCost `json:"charges,omitempty"`
	Sum     Micros    `json:"sum_usd,omitempty"`
	// Start is when the budget's window began (from its resets_at): a
	// call before it belongs to a window that is over.
	Start time.Time `json:"start,omitzero"`
	// Merged is the sum of charges dropped from Charges for room; it
	// counts until the next notice.
	Merged Micros `json:"merged_usd,omitempty"`
	// WarnPct is the budget's warn threshold, from budget.status.
	WarnPct float64 `json:"warn_pct,omitempty"`
	// FromStatus is true when Budget.Status was derived from figures
	// (budget.status: ok, warning, reached), so that it follows the gauge;
	// a warning, exceeded or throttled notice's status stands.
	FromStatus bool `json:"from_status,omitempty"`

	budget *Budget // the budget it moves (its project's entry of the same id)
	// marked is State.takes+1 when the gauge last marked its budget
	// changed: once per set of changes is enough.
	marked uint64
}

type seqCost struct {
	Seq  uint64 `json:"s"`
	Cost Micros `json:"c"`
}

// spent is the gauge's figure: the notice's spend and what came above it.
func (g *gauge) spent() Micros { return g.Base + g.Merged + g.Sum }

// settle takes a notice: spend charged through seq.
func (g *gauge) settle(spent Micros, through uint64) {
	g.Live, g.Base, g.Through = true, spent, through
	keep, sum := g.Charges[:0], Micros(0)
	for _, c := range g.Charges {
		if c.Seq > through {
			keep, sum = append(keep, c), sum+c.Cost
		}
	}
	g.Charges, g.Sum, g.Merged = keep, sum, 0
}

// add records a charge above the last notice.
func (g *gauge) add(seq uint64, cost Micros) {
	if len(g.Charges) == gaugeCharges {
		// Dropped from the front: append reallocates now and then, which
		// costs less than moving every charge down on each call.
		g.Merged += g.Charges[0].Cost
		g.Sum -= g.Charges[0].Cost
		g.Charges = g.Charges[1:]
	}
	g.Charges = append(g.Charges, seqCost{seq, cost})
	g.Sum += cost
}

// window sets the window the gauge counts in: the one ending at resetsAt
// (zero: not reported, every call counts).
func (g *gauge) window(period string, resetsAt time.Time) {
	g.Start = time.Time{}
	if resetsAt.IsZero() {
		return
	}
	if w, err := WindowOf(period, resetsAt.Add(-time.Nanosecond)); err == nil {
		g.Start = w.Start
	}
}

// noticeGauge updates the gauge of budget b (its figures but the spend
// already set from d) from notice d: it returns the spend the budget
// shows.
func (p *projectRec) noticeGauge(b *Budget, d *BudgetNotice, status bool) Micros {
	g := p.gauges[b.ID]
	if d.ThroughSeq == nil {
		if g != nil {
			p.dropGauge(b.ID)
		}
		return d.SpentUSD
	}
	if g == nil {
		g = &gauge{budget: b}
		p.addGauge(b.ID, g)
	}
	g.settle(d.SpentUSD, *d.ThroughSeq)
	g.window(b.Period, b.ResetsAt)
	g.FromStatus = status
	if status {
		g.WarnPct = d.WarnPct
	}
	return g.spent()
}

// addGauge keeps g as the gauge of budget id.
func (p *projectRec) addGauge(id string, g *gauge) {
	if p.gauges == nil {
		p.gauges = make(map[string]*gauge)
	}
	p.gauges[id] = g
	p.gaugeSet = append(p.gaugeSet, g)
}

// dropGauge forgets the gauge of budget id.
func (p *projectRec) dropGauge(id string) {
	g := p.gauges[id]
	delete(p.gauges, id)
	for i, x := range p.gaugeSet {
		if x == g {
			p.gaugeSet = append(p.gaugeSet[:i], p.gaugeSet[i+1:]...)
			break
		}
	}
}

// budgetsCharge adds a priced call of p, folded at seq and made at t, to
// the gauges of the budgets it applies to. team and user are whom the call
// is for.
func (s *State) budgetsCharge(p *projectRec, seq uint64, t time.Time, cost Micros, team, user string) {
	if cost <= 0 {
		return
	}
	for _, g := range p.gaugeSet {
		b := g.budget
		if !g.Live || !budgetTakes(b, p.ID, team, user) {
			continue
		}
		if !b.ResetsAt.IsZero() {
			if !t.Before(b.ResetsAt) {
				// The call opens the budget's next window: the gate
				// charges it to a new entry that starts at zero.
				w, err := WindowOf(b.Period, t)
				if err != nil {
					continue
				}
				g.Charges, g.Sum, g.Merged = g.Charges[:0], 0, 0
				g.Base, g.Through = 0, seq-1
				b.ResetsAt, g.Start = w.End, w.Start
			} else if t.Before(g.Start) {
				continue // a late call of a window that is over
			}
		}
		g.add(seq, cost)
		s.showGauge(p, b, g)
	}
}

// showGauge writes the gauge's figure into its budget (and the project's
// row when it is the project's own budget) and marks them changed.
func (s *State) showGauge(p *projectRec, b *Budget, g *gauge) {
	b.SpentUSD = g.spent()
	b.Pct = pct(b.SpentUSD, b.LimitUSD)
	if g.FromStatus {
		b.Status = statusOf(b.Pct, g.WarnPct)
	}
	if g.marked != s.takes+1 {
		s.mark(collBudgets, p.ID, b.ID)
		g.marked = s.takes + 1
	}
	if b.Scope == BudgetScopeProject && b.ScopeID == p.ID && p.Budget != nil && p.Budget.Period == b.Period {
		// A new value, never a write through the pointer: views handed
		// out earlier share the old one.
		pb := *p.Budget
		pb.SpentUSD, pb.Pct = b.SpentUSD, b.Pct
		p.Budget = &pb
	}
}

// budgetTakes reports whether the gate charges a call of project, for
// team and user, to b. Global budgets move by their notices only.
func budgetTakes(b *Budget, project, team, user string) bool {
	switch b.Scope {
	case BudgetScopeProject:
		return b.ScopeID == project
	case BudgetScopeTeam:
		return team != "" && b.ScopeID == team
	case BudgetScopeUser:
		return user != "" && b.ScopeID == user
	}
	return false
}

// statusOf is the status budget.status figures give: ok, warning at
// warnPct (0: DefaultWarnPct) or reached at 100 %.
func statusOf(pct, warnPct float64) string {
	if warnPct <= 0 {
		warnPct = DefaultWarnPct
	}
	switch {
	case pct >= 100:
		return "reached"
	case pct >= warnPct:
		return "warning"
	}
	return "ok"
}
