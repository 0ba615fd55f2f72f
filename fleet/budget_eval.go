package fleet

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"
)

// BudgetWindow is one calendar period of a budget: a UTC day or month.
// Spend is kept per window, so every period starts at zero.
type BudgetWindow struct {
	Period string    `json:"period"`
	Key    string    `json:"window"`    // "2026-11-27" for a day, "2026-11" for a month
	Start  time.Time `json:"starts_at"` // inclusive
	End    time.Time `json:"resets_at"` // exclusive: the first instant of the next window
}

// WindowOf returns the window of period that holds t. Windows are UTC
// calendar days and months: 23:59:59.999 on the 30th of November is in
// "2026-11-30" and "2026-11"; midnight is in the next ones.
func WindowOf(period string, t time.Time) (BudgetWindow, error) {
	t = t.UTC()
	switch period {
	case PeriodDaily:
		start := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return BudgetWindow{Period: period, Key: start.Format("2006-01-02"), Start: start, End: start.AddDate(0, 0, 1)}, nil
	case PeriodMonthly:
		start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return BudgetWindow{Period: period, Key: start.Format("2006-01"), Start: start, End: start.AddDate(0, 1, 0)}, nil
	}
	return BudgetWindow{}, badBudget("period", "period %q is unknown; use daily or monthly", period)
}

// BudgetStanding is a budget and its ledger in the window that applies now:
// what was spent (real costs) and what is reserved by work in flight.
type BudgetStanding struct {
	Budget   BudgetLimit  `json:"budget"`
	Window   BudgetWindow `json:"window"`
	Spent    Micros       `json:"spent_usd"`
	Reserved Micros       `json:"reserved_usd"`
	// ChargedThrough is the FLEET sequence up to which Spent holds every
	// charge (BudgetNotice.ThroughSeq); nil when unknown.
	ChargedThrough *uint64 `json:"charged_through_seq,omitempty"`
}

// Committed is what the window holds: spent plus reserved.
func (s BudgetStanding) Committed() Micros { return s.Spent + s.Reserved }

// Verdict says what the budget makes of a request that would add estimate:
// "" (within the warn threshold), ActionWarn (past the threshold, or past
// the cap of a warn budget), or the budget's action once spent, reserved
// and estimate together exceed the cap. Reaching the cap exactly is allowed.
func (s BudgetStanding) Verdict(estimate Micros) string {
	projected := s.Committed() + estimate
	limit := s.Budget.LimitUSD
	if projected > limit {
		return s.Budget.Action
	}
	warnPct := s.Budget.WarnPct
	if warnPct == 0 {
		warnPct = DefaultWarnPct
	}
	if float64(projected)*100 >= float64(limit)*warnPct {
		return ActionWarn
	}
	return ""
}

// Breach describes the standing as a BudgetBreach for a request of estimate.
func (s BudgetStanding) Breach(estimate Micros, verdict string) BudgetBreach {
	return BudgetBreach{
		Scope: s.Budget.Scope, ScopeID: s.Budget.ScopeID, Period: s.Budget.Period,
		LimitUSD: s.Budget.LimitUSD, SpentUSD: s.Spent, Reserved: s.Reserved,
		Pct: Pct(s.Committed()+estimate, s.Budget.LimitUSD), Action: verdict, ResetsAt: s.Window.End,
	}
}

// Pct is part of whole in percent, rounded to a tenth (0 for no whole).
func Pct(part, whole Micros) float64 {
	if whole <= 0 {
		return 0
	}
	return math.Round(float64(part)/float64(whole)*1000) / 10
}

// actionRank orders verdicts: the harshest wins.
func actionRank(a string) int {
	switch a {
	case ActionWarn:
		return 1
	case ActionThrottle:
		return 2
	case ActionStop:
		return 3
	}
	return 0
}

// Harsher reports whether action a is harsher than b.
func Harsher(a, b string) bool { return actionRank(a) > actionRank(b) }

// BudgetOutcome is the pure decision on a request: the decision to answer
// (without a reservation yet) and the amount to reserve on every budget.
type BudgetOutcome struct {
	Decision BudgetDecision
	// Estimate is what to reserve: the request's estimate, or that estimate
	// scaled to the cheaper model a throttle routes the work to.
	Estimate Micros
	// Verdicts holds each standing's verdict, in the order given.
	Verdicts []string
}

// EvaluateBudgets decides on req against the standings of every budget that
// applies to it (DESIGN §10):
//
//   - A budget past its warn threshold says warn; at its cap it says its
//     action. The harshest verdict of all budgets wins.
//   - throttle routes the work to the cheapest throttle model named by the
//     budgets that say throttle, unless the requested model is already as
//     cheap; the estimate is scaled to that model's prices and every budget
//     is judged again with it.
//   - stop refuses: Allowed is false.
//
// No standings means no budget applies: allowed, nothing to report.
func EvaluateBudgets(req BudgetRequest, standings []BudgetStanding, p *Pricing) BudgetOutcome {
	out := BudgetOutcome{Estimate: req.Estimate, Verdicts: make([]string, len(standings))}
	model := req.Model
	throttle := ""
	for i, s := range standings {
		out.Verdicts[i] = s.Verdict(req.Estimate)
		if out.Verdicts[i] == ActionThrottle && (throttle == "" || cheaper(p, s.Budget.ThrottleModel, throttle)) {
			throttle = s.Budget.ThrottleModel
		}
	}
	if throttle != "" {
		if req.Model == "" || cheaper(p, throttle, req.Model) {
			model = throttle
			out.Estimate = ScaleEstimate(p, req.Model, throttle, req.Estimate)
		}
		for i, s := range standings {
			if out.Verdicts[i] == ActionThrottle {
				continue // it has been obeyed, whatever the smaller estimate makes of it
			}
			out.Verdicts[i] = s.Verdict(out.Estimate)
		}
	}
	d := BudgetDecision{Allowed: true, Model: model}
	for i, s := range standings {
		v := out.Verdicts[i]
		if v == "" {
			continue
		}
		if Harsher(v, d.Action) {
			d.Action = v
		}
		d.Breaches = append(d.Breaches, s.Breach(out.Estimate, v))
	}
	if d.Action == ActionStop {
		d.Allowed = false
		d.Model = req.Model
	}
	out.Decision = d
	return out
}

// cheaper reports whether model a costs less than model b by p: compared by
// output price, then input price, then name. An unpriced model is never
// cheaper than a priced one.
func cheaper(p *Pricing, a, b string) bool {
	pa, oka := p.Lookup(a)
	pb, okb := p.Lookup(b)
	switch {
	case oka != okb:
		return oka
	case !oka:
		return a < b
	case pa.Output != pb.Output:
		return pa.Output < pb.Output
	case pa.Input != pb.Input:
		return pa.Input < pb.Input
	}
	return a < b
}

// ScaleEstimate scales an estimate made for model from to model to: by the
// largest ratio of their prices over the four token kinds (to's highest
// tier over from's lowest), rounded up, so the result still bounds the cost
// of the same work on the other model. It returns est unchanged when
// either model is unpriced.
func ScaleEstimate(p *Pricing, from, to string, est Micros) Micros {
	pf, okf := p.Lookup(from)
	pt, okt := p.Lookup(to)
	if !okf || !okt || est <= 0 {
		return est
	}
	// The ratio num/den is the largest of pt.k/pf.k over the kinds pf
	// prices, taking from's lowest and to's highest price of each kind over
	// their tiers, so that the bound holds whichever tier a call falls in.
	lf, ht := pf.lowest(), pt.highest()
	var num, den Micros
	for _, k := range [...][2]Micros{{lf.Input, ht.Input}, {lf.Output, ht.Output}, {lf.CacheRead, ht.CacheRead}, {lf.CacheWrite, ht.CacheWrite}} {
		f, t := k[0], k[1]
		if f <= 0 {
			continue
		}
		if den == 0 || mulCmp(t, den, num, f) > 0 {
			num, den = t, f
		}
	}
	if den == 0 {
		return est // the requested model is free: nothing to scale by
	}
	hi, lo := bits.Mul64(uint64(est), uint64(num))
	if hi >= uint64(den) {
		return est // cannot happen for amounts under maxMicros; keep the estimate
	}
	q, r := bits.Div64(hi, lo, uint64(den))
	if r != 0 {
		q++
	}
	if q >= uint64(maxMicros) {
		return est
	}
	return Micros(q)
}

// mulCmp compares a*b with c*d without overflow (all non-negative).
func mulCmp(a, b, c, d Micros) int {
	h1, l1 := bits.Mul64(uint64(a), uint64(b))
	h2, l2 := bits.Mul64(uint64(c), uint64(d))
	switch {
	case h1 != h2:
		return cmpU(h1, h2)
	default:
		return cmpU(l1, l2)
	}
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// EstimateCost is what one call of model with the given input and output
// tokens costs by p; ok is false for an unpriced model.
func EstimateCost(p *Pricing, model string, inputTokens, outputTokens int64) (Micros, bool) {
	pr, ok := p.Lookup(model)
	if !ok {
		return 0, false
	}
	return pr.Cost(LLMCall{InputTokens: inputTokens, OutputTokens: outputTokens}), true
}

// CheckBudgetRequest refuses a request the gate cannot judge.
func CheckBudgetRequest(req BudgetRequest) error {
	switch {
	case !ValidProjectID(req.ProjectID):
		return badBudget("project_id", "project_id %q is not a project id", req.ProjectID)
	case req.Estimate < 0:
		return badBudget("estimate_usd", "estimate_usd must not be negative, got %s", req.Estimate)
	case req.Estimate >= maxMicros:
		return badBudget("estimate_usd", "estimate_usd is out of range")
	}
	for _, f := range [...]struct{ name, v string }{{"team_id", req.TeamID}, {"user_id", req.UserID}, {"model", req.Model}, {"ref", req.Ref}} {
		if len(f.v) > maxIDLen || slices.ContainsFunc([]byte(f.v), func(c byte) bool { return c == 0 || c == '\n' || c == '\r' }) {
			return badBudget(f.name, "%s is longer than %d bytes or has control characters", f.name, maxIDLen)
		}
	}
	return nil
}

// BreachText is a one-line account of a breach for people, e.g.
// "project acme daily cap $1.00: $0.97 spent, $0.02 reserved; resets 2026-11-28 00:00 UTC".
func BreachText(b BudgetBreach) string {
	who := b.Scope
	if b.ScopeID != "" {
		who += " " + b.ScopeID
	}
	return fmt.Sprintf("%s %s cap $%s: $%s spent, $%s reserved; resets %s", who, b.Period, b.LimitUSD.Cents(),
		b.SpentUSD.Cents(), b.Reserved.Cents(), b.ResetsAt.UTC().Format("2006-01-02 15:04 UTC"))
}
