package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/sagewai/observatory/budgettour"
)

var budgetProofRE = regexp.MustCompile(`(?m)^Proof\n  (\{.*\})\n\nalice was warned, bob was throttled to gpt-5-mini, carol was stopped with 402 and then fit; every decision came from the gate\.\n\z`)

// TestBudgetCommand runs `observatory budget` as a user would and checks
// the story and the proof block it ends with: the figures of every step,
// as JSON, and the closing sentence.
func TestBudgetCommand(t *testing.T) {
	out := runCmd(t, "budget")
	for _, want := range []string{"The caps (POST /api/v1/budgets)", "Step 1  alice starts a mission", "Step 6  carol asks for less", "The ticker"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	m := budgetProofRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the output does not end with the proof block:\n%s", out)
	}
	var fig budgettour.Figures
	if err := json.Unmarshal([]byte(m[1]), &fig); err != nil {
		t.Fatalf("the proof's JSON: %v", err)
	}
	if len(fig.Steps) != 6 || fig.Refusals402 != 1 {
		t.Errorf("the proof has %d steps and %d refusals; want 6 and 1", len(fig.Steps), fig.Refusals402)
	}
}
