package fleet

import "encoding/json"

// Tenants never see the figures of global budgets (DESIGN §11.2): a
// global budget sums every project's spend, so its cap, spend and share
// would tell one tenant what the others spend. The budget gate publishes a
// global budget's notices under the project whose work reached it, with
// the figures, for the whole fleet's view (admins); the fold keeps them,
// and a project's own scope gets the same entry with the figures withheld
// (seenBy) and a ticker line without them (withheldText): that a global
// cap applies, its period, its action and when it resets.

// seenBy returns b as scope sees it: whole, or for a project's scope the
// figures of a global budget withheld.
func (b *Budget) seenBy(scope string) Budget {
	v := *b
	if scope != ScopeAll && v.Scope == BudgetScopeGlobal {
		v.LimitUSD, v.SpentUSD, v.Pct, v.FiguresWithheld = 0, 0, 0, true
	}
	return v
}

// BudgetMap is budgets by id, as a View or a Set holds them. Its JSON
// leaves the figures out of a budget whose figures are withheld: no
// limit_usd, spent_usd or pct at all, rather than zeros that would read as
// a cap of $0. (A Budget encoded on its own has its fields as they are:
// zero when withheld.)
type BudgetMap map[string]Budget

// MarshalJSON writes m. It is one call per collection, not per budget: a
// map of budgets none of which is withheld (every map of the whole
// fleet's view) is encoded as a plain map. encoding/json checks what a
// MarshalJSON returns byte by byte, which about doubles the cost of
// encoding a collection of budgets (BenchmarkBudgetsSnapshot).
func (m BudgetMap) MarshalJSON() ([]byte, error) {
	withheld := false
	for _, b := range m {
		if b.FiguresWithheld {
			withheld = true
			break
		}
	}
	if !withheld {
		return json.Marshal(map[string]Budget(m))
	}
	// The outer fields hide the embedded ones of the same names; nil and
	// omitempty, they are left out.
	type figuresLeftOut struct {
		Budget
		LimitUSD *Micros  `json:"limit_usd,omitempty"`
		SpentUSD *Micros  `json:"spent_usd,omitempty"`
		Pct      *float64 `json:"pct,omitempty"`
	}
	out := make(map[string]any, len(m))
	for id, b := range m {
		if b.FiguresWithheld {
			out[id] = figuresLeftOut{Budget: b}
		} else {
			out[id] = b
		}
	}
	return json.Marshal(out)
}

// withheldText is the ticker line a project's own scope shows for a notice
// (of status warning, exceeded or throttled) about a global budget, e.g.
// "budget exceeded: a global daily cap (stop) applies to every project;
// resets 2026-11-28 00:00 UTC".
func withheldText(status string, d *BudgetNotice) string {
	text := "budget " + status + ": a global " + orDash(d.Period) + " cap (" + orDash(d.Action) + ") applies to every project"
	if !d.ResetsAt.IsZero() {
		text += "; resets " + d.ResetsAt.UTC().Format("2006-01-02 15:04 UTC")
	}
	return text
}
