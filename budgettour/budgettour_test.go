package budgettour_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/budgettour"
	"github.com/sagewai/observatory/fleet"
)

// TestTour runs the tour (on the wall clock: the ledger's day is the
// stream's stored time, which NATS stamps with it) and checks each
// decision of the story, the ledger's totals and the budget events the
// HUD's ticker showed.
func TestTour(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var story bytes.Buffer
	fig, err := budgettour.Run(ctx, budgettour.Config{Out: &story})
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		Status  int
		Allowed bool
		Action  string
		RanOn   string
	}
	var got []step
	var spent fleet.Micros
	for _, s := range fig.Steps {
		got = append(got, step{s.Status, s.Allowed, s.Action, s.RanOn})
		spent += s.SpentUSD
	}
	want := []step{
		{201, true, "", "gpt-5"},
		{201, true, "warn", "gpt-5"},
		{201, true, "warn", "gpt-5"},
		{201, true, "throttle", "gpt-5-mini"},
		{402, false, "stop", ""},
		{201, true, "warn", "claude-sonnet-4-5"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("steps (-want +got):\n%s", d)
	}
	if fig.Refusals402 != 1 {
		t.Errorf("%d refusals with 402, want 1", fig.Refusals402)
	}
	stop := fig.Steps[4]
	if len(stop.Breaches) == 0 || stop.Breaches[0].Scope != "project" || stop.Breaches[0].LimitUSD != 3_000_000 ||
		!strings.Contains(stop.Message, "resets") {
		t.Errorf("the refusal does not say which cap, how much and when it resets: %+v", stop)
	}
	// The project's ledger holds exactly what the steps spent, nothing
	// reserved any more.
	const projectBudget = "project.acme.acme.daily"
	var found bool
	for _, b := range fig.Steps[len(fig.Steps)-1].Budgets {
		if b.ID != projectBudget {
			continue
		}
		found = true
		if b.Spent != spent || b.Reserved != 0 {
			t.Errorf("the project ledger holds $%s spent and $%s reserved; the steps spent $%s", b.Spent, b.Reserved, spent)
		}
	}
	if !found {
		t.Errorf("no budget %s after the last step: %+v", projectBudget, fig.Steps[len(fig.Steps)-1].Budgets)
	}
	for _, typ := range []string{fleet.TypeBudgetWarning, fleet.TypeBudgetThrottled, fleet.TypeBudgetExceeded} {
		if !strings.Contains(strings.Join(fig.Events, " "), typ) {
			t.Errorf("the ticker never showed %s: %v", typ, fig.Events)
		}
	}
	for _, s := range []string{"Step 6", "→ 402 budget_exceeded", "throttled: runs on gpt-5-mini instead of gpt-5", "The ticker"} {
		if !strings.Contains(story.String(), s) {
			t.Errorf("the story lacks %q:\n%s", s, story.String())
		}
	}
}
