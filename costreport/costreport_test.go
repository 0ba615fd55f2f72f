package costreport_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/costreport"
	"github.com/sagewai/observatory/fleet"
)

// TestRun runs the example on its own embedded NATS (the clock is the wall
// clock: the rollup reads the stream's stored time, which NATS stamps with
// it) and checks that the money adds up every way it is cut, that the
// three counts agree, and that the printed report ends with the CFO's line
// carrying the same figures.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var trace bytes.Buffer
	f, err := costreport.Run(ctx, costreport.Config{Missions: 4, Seed: 34, Out: &trace})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Agree || f.Missions != 8 || len(f.ByProject) != 2 || f.GrandTotalUSD == 0 {
		t.Fatalf("figures: %+v", f)
	}
	var byProject, byModel, mix fleet.Micros
	for _, p := range f.ByProject {
		byProject += p.CostUSD
		if p.Runs != 4 || p.Tokens == 0 || p.CostUSD == 0 {
			t.Errorf("%s: %+v; want 4 runs with tokens and money", p.ProjectID, p)
		}
		if f.LedgerUSD[p.ProjectID] != p.CostUSD || f.FoldUSD[p.ProjectID] != p.CostUSD || f.RollupUSD[p.ProjectID] != p.CostUSD {
			t.Errorf("%s: ledger $%s, fold $%s, rollup $%s, by project $%s", p.ProjectID, f.LedgerUSD[p.ProjectID], f.FoldUSD[p.ProjectID],
				f.RollupUSD[p.ProjectID], p.CostUSD)
		}
	}
	for _, m := range f.ByModel {
		byModel += m.CostUSD
	}
	for _, m := range f.LocalVsCloud {
		mix += m.CostUSD
	}
	if byProject != f.GrandTotalUSD || byModel != f.GrandTotalUSD || mix != f.GrandTotalUSD {
		t.Errorf("by project $%s, by model $%s, local + cloud $%s; grand total $%s", byProject, byModel, mix, f.GrandTotalUSD)
	}
	if f.UnpricedCalls == 0 || strings.Join(f.UnpricedModels, ",") != "contoso-finetune-7b" {
		t.Errorf("unpriced: %d calls of %v; want the self-hosted model's", f.UnpricedCalls, f.UnpricedModels)
	}
	if len(f.Preflight) != 2 {
		t.Errorf("pre-flight for %d tenants, want 2", len(f.Preflight))
	}
	if n := strings.Count(trace.String(), "reserved $"); n != 8 {
		t.Errorf("the run trace shows %d missions, want 8:\n%s", n, trace.String())
	}

	var out bytes.Buffer
	costreport.Print(&out, f)
	line := regexp.MustCompile(`(?m)^Project northwind spent \$(\d+\.\d\d), Project contoso spent \$(\d+\.\d\d) this run\.\n\z`).FindStringSubmatch(out.String())
	if line == nil {
		t.Fatalf("the report does not end with the CFO's line:\n%s", out.String())
	}
	if line[1] != f.ByProject[0].CostUSD.Cents() || line[2] != f.ByProject[1].CostUSD.Cents() {
		t.Errorf("the CFO's line says $%s and $%s; the figures $%s and $%s", line[1], line[2], f.ByProject[0].CostUSD.Cents(), f.ByProject[1].CostUSD.Cents())
	}
	if !strings.Contains(out.String(), "agree: yes, to the micro-dollar") {
		t.Errorf("the report does not say the counts agree:\n%s", out.String())
	}
}

func TestCFOLine(t *testing.T) {
	got := costreport.CFOLine([]costreport.ProjectSpend{{Project: "acme", Spent: 1_234_567}, {Project: "globex", Spent: 5_000}})
	if want := "Project acme spent $1.23, Project globex spent $0.01 this run."; got != want {
		t.Errorf("CFOLine = %q, want %q", got, want)
	}
}

// TestPrintDisagreement: a report whose counts disagree says so.
func TestPrintDisagreement(t *testing.T) {
	var out bytes.Buffer
	costreport.Print(&out, costreport.Figures{ByProject: []costreport.ProjectCost{{ProjectID: "acme", CostUSD: 10}}, Agree: false})
	if !strings.Contains(out.String(), "agree: NO") {
		t.Errorf("a disagreement is not shown:\n%s", out.String())
	}
}
