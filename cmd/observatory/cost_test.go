package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/costreport"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream/streamtest"
)

// runCmd runs the CLI with args and returns stdout.
func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	if err := run(ctx, args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("observatory %s: %v\n%s\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

var costLineRE = regexp.MustCompile(`(?m)^Project northwind spent \$(\d+\.\d\d), Project contoso spent \$(\d+\.\d\d) this run\.\n\z`)

// TestCostEndsWithTheLine runs the example on its own embedded NATS.
func TestCostEndsWithTheLine(t *testing.T) {
	out := runCmd(t, "cost", "--missions", "4")
	m := costLineRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the output does not end with the spend line:\n%s", out)
	}
	for _, want := range []string{"Run trace", "Per project", "Per model", "Local versus cloud", "Budget pre-flight", "agree: yes", "contoso-finetune-7b"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if m[1] == "0.00" || m[2] == "0.00" {
		t.Errorf("a tenant spent nothing: %s", m[0])
	}
}

// TestCostAgreesWithTheServer runs `observatory cost --json` against a
// running server's NATS and checks its figures four ways on that server:
// the fold (GET /api/v1/fleet), the ledger (GET /api/v1/budgets), the
// rollup (GET /api/v1/projects/{p}/costs) and the metrics
// (sagewai_llm_cost_usd_total).
func TestCostAgreesWithTheServer(t *testing.T) {
	s := startServe(t)
	// The rollup's window is in the stream's stored time, which NATS
	// stamps with the wall clock.
	start := time.Now().UTC().Add(-time.Second)
	var fig costreport.Figures
	if err := json.Unmarshal([]byte(runCmd(t, "cost", "--json", "--missions", "6", "--nats-url", s.nats, "--nats-creds", s.credsFile(t))), &fig); err != nil {
		t.Fatal(err)
	}
	if !fig.Agree || len(fig.ByProject) != 2 || fig.GrandTotalUSD == 0 || fig.Missions != 12 {
		t.Fatalf("figures: %+v", fig)
	}
	var sum fleet.Micros
	for _, p := range fig.ByProject {
		sum += p.CostUSD
		if p.Runs != 6 || p.Tokens == 0 {
			t.Errorf("%s: %+v, want 6 runs", p.ProjectID, p)
		}
	}
	var models fleet.Micros
	for _, m := range fig.ByModel {
		models += m.CostUSD
	}
	if sum != fig.GrandTotalUSD || models != sum {
		t.Errorf("by project adds up to $%s, by model to $%s, grand total $%s", sum, models, fig.GrandTotalUSD)
	}
	if fig.UnpricedCalls == 0 || len(fig.UnpricedModels) != 1 {
		t.Errorf("the unpriced model was not reported: %+v", fig)
	}

	tok := login(t, s.base, "admin", "admin")
	get := func(path string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	for _, p := range fig.ByProject {
		// The fold of the server, once it has caught up.
		streamtest.Eventually(t, 20*time.Second, func() bool {
			_, snap := getFleet(t, s.base, tok, p.ProjectID)
			return snap.State.Projects[p.ProjectID].SpendTotal == p.CostUSD
		}, fmt.Sprintf("GET /api/v1/fleet never showed %s at $%s", p.ProjectID, p.CostUSD))
		// The ledger.
		var budgets struct {
			Budgets []struct {
				ID       string
				SpentUSD fleet.Micros `json:"spent_usd"`
			}
		}
		if st := get("/api/v1/budgets?project="+p.ProjectID, &budgets); st != http.StatusOK || len(budgets.Budgets) != 1 || budgets.Budgets[0].SpentUSD != p.CostUSD {
			t.Errorf("GET /api/v1/budgets?project=%s: %d %+v, want $%s spent", p.ProjectID, st, budgets, p.CostUSD)
		}
		// The rollup.
		var rep fleet.CostReport
		if st := get("/api/v1/projects/"+p.ProjectID+"/costs?from="+start.Format(time.RFC3339Nano), &rep); st != http.StatusOK || rep.Total.Cost != p.CostUSD {
			t.Errorf("GET /api/v1/projects/%s/costs: %d total $%s, want $%s", p.ProjectID, st, rep.Total.Cost, p.CostUSD)
		}
	}
	// The metrics: serve always exposes them.
	var got map[string]float64
	defer func() {
		if t.Failed() {
			t.Logf("sagewai_llm_cost_usd_total by project, last read: %v", got)
		}
	}()
	for _, p := range fig.ByProject {
		streamtest.Eventually(t, 10*time.Second, func() bool {
			resp := getMetrics(t, s.base)
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /metrics: %d, want 200", resp.StatusCode)
			}
			got = costMetric(t, resp.Body)
			return math.Abs(got[p.ProjectID]-p.CostUSD.USD()) < 1e-9
		}, fmt.Sprintf("sagewai_llm_cost_usd_total for %s never reached $%s", p.ProjectID, p.CostUSD))
	}
}

// costMetric sums sagewai_llm_cost_usd_total by project from an exposition.
func costMetric(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	re := regexp.MustCompile(`sagewai_project_id="([^"]+)"`)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "sagewai_llm_cost_usd_total{") {
			continue
		}
		m := re.FindStringSubmatch(line)
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if m == nil || err != nil {
			continue
		}
		out[m[1]] += v
	}
	return out
}
