package costreport

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/sagewai/observatory/fleet"
)

// Print prints the rollups, the pre-flight and the proof, and ends with
// the one line a CFO reads.
func Print(w io.Writer, f Figures) {
	fmt.Fprintln(w, "\nPer project")
	for _, p := range f.ByProject {
		fmt.Fprintf(w, "  %-10s %10s  %s %5.1f %%  %10s tok  %3d runs\n", p.ProjectID, "$"+p.CostUSD.Cents(), bar(p.SharePct, 24), p.SharePct,
			formatThousands(p.Tokens), p.Runs)
	}
	fmt.Fprintf(w, "  %-10s %10s\n", "total", "$"+f.GrandTotalUSD.Cents())
	fmt.Fprintln(w, "\nPer model")
	for _, m := range f.ByModel {
		note := ""
		if m.Unpriced {
			note = "  unpriced: counted, never charged"
		}
		fmt.Fprintf(w, "  %-22s %-11s %10s  %s %5.1f %%  %10s tok  %3d calls%s\n", m.Model, m.Provider, "$"+m.CostUSD.Cents(), bar(m.SharePct, 16),
			m.SharePct, formatThousands(m.Tokens), m.Calls, note)
	}
	fmt.Fprintln(w, "\nLocal versus cloud")
	for _, m := range f.LocalVsCloud {
		fmt.Fprintf(w, "  %-6s %10s  %10s tok (%5.1f %% of tokens)  %3d calls\n", m.Kind, "$"+m.CostUSD.Cents(), formatThousands(m.Tokens), m.TokensPct, m.Calls)
	}
	fmt.Fprintln(w, "\nBudget pre-flight (one more mission of each tenant's costliest kind)")
	for _, p := range f.Preflight {
		verdict := "allowed"
		switch {
		case !p.Decision.Allowed:
			verdict = "refused: " + fleet.BreachText(p.Decision.Breaches[0])
		case p.Decision.Action == fleet.ActionThrottle:
			verdict = "allowed, throttled to " + p.Decision.Model
		case p.Decision.Action == fleet.ActionWarn:
			verdict = "allowed, with a warning"
		}
		fmt.Fprintf(w, "  %-10s %s: $%s of $%s (%.1f %%); next mission up to $%s: %s; room for %d more\n", p.ProjectID, p.Budget,
			p.SpentUSD.Cents(), p.LimitUSD.Cents(), p.Pct, p.NextUSD.Cents(), verdict, p.RunwayTimes)
	}
	fmt.Fprintln(w, "\nProof: the same money counted three ways")
	for _, p := range f.ByProject {
		fmt.Fprintf(w, "  %-10s ledger $%s  fold $%s  rollup $%s\n", p.ProjectID, f.LedgerUSD[p.ProjectID], f.FoldUSD[p.ProjectID], f.RollupUSD[p.ProjectID])
	}
	if len(f.UnpricedModels) > 0 {
		fmt.Fprintf(w, "  unpriced   %d calls of %s: counted, never charged\n", f.UnpricedCalls, strings.Join(f.UnpricedModels, ", "))
	}
	if f.Agree {
		fmt.Fprintln(w, "  agree: yes, to the micro-dollar")
	} else {
		fmt.Fprintln(w, "  agree: NO")
	}
	b, _ := json.Marshal(f)
	fmt.Fprintf(w, "  %s\n\n", b)
	spent := make([]ProjectSpend, 0, len(f.ByProject))
	for _, p := range f.ByProject {
		spent = append(spent, ProjectSpend{p.ProjectID, p.CostUSD})
	}
	fmt.Fprintln(w, CFOLine(spent))
}

// ProjectSpend is what one project spent.
type ProjectSpend struct {
	Project string
	Spent   fleet.Micros
}

// CFOLine is the line the CFO reads: "Project A spent $X.XX, Project B
// spent $Y.YY this run."
func CFOLine(spent []ProjectSpend) string {
	parts := make([]string, 0, len(spent))
	for _, p := range spent {
		parts = append(parts, fmt.Sprintf("Project %s spent $%s", p.Project, p.Spent.Cents()))
	}
	return strings.Join(parts, ", ") + " this run."
}

// bar draws pct of width cells.
func bar(pct float64, width int) string {
	n := int(pct/100*float64(width) + 0.5)
	n = min(max(n, 0), width)
	return strings.Repeat("█", n) + strings.Repeat("░", width-n)
}

// formatThousands writes n with thousands separators.
func formatThousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + formatThousands(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// plural writes n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun + " "
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// fourDecimals writes m in dollars to a hundredth of a cent.
func fourDecimals(m fleet.Micros) string {
	s := m.String()
	return s[:len(s)-2]
}
