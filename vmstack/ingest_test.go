package vmstack_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/ingest/ingesttest"
	"github.com/sagewai/observatory/vmstack"
)

// TestPipelineCollectorIngest runs docs/ingest.md's Collector recipe as it
// is written (dashboards/otel-collector/ingest.yaml, which the page
// quotes) in front of a real observatory serve: an agent's OTLP export to
// the Collector reaches POST /v1/traces with the recipe's bearer header,
// and the project is charged the pricing of its token counts.
func TestPipelineCollectorIngest(t *testing.T) {
	root, err := vmstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	recipe, err := os.ReadFile(filepath.Join(root, vmstack.CollectorIngestFile))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "ingest.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, recipe) {
		t.Errorf("docs/ingest.md does not quote %s as it is", vmstack.CollectorIngestFile)
	}

	bin := observatorytest.Build(t)
	obs := &observatory{observatorytest.Start(t, bin, nil, "serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--nats-listen", "127.0.0.1:-1")}
	admin := obs.login(t, "admin", "admin")
	obs.mustJSON(t, http.MethodPost, "/api/v1/projects", admin, map[string]string{"id": "acme", "name": "Acme"}, http.StatusCreated, nil)
	var minted struct{ Token string }
	obs.mustJSON(t, http.MethodPost, "/api/v1/projects/acme/tokens", admin, map[string]string{"name": "collector"}, http.StatusCreated, &minted)

	col := vmstack.StartCollector(t, vmstack.CollectorConfig{File: vmstack.CollectorIngestFile,
		Env: []string{"OBSERVATORY_URL=" + obs.Base, "OBSERVATORY_TOKEN=" + minted.Token}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Collector log (tail):\n%s", observatorytest.Tail(col.Log(), 30))
		}
	})

	// What an agent's SDK sends to the Collector's OTLP/HTTP receiver.
	var traces []ingesttest.Trace
	for i := range 5 {
		traces = append(traces, ingesttest.Trace{N: uint64(i), Service: "support-bot", Agent: fmt.Sprintf("agent-%d", i%2),
			Model: "gpt-5-mini", Tool: "lookup_order", Start: time.Now().UTC(),
			Calls: []ingesttest.Usage{{Input: 3_000 + int64(i), Output: 400, CacheRead: 1_000}, {Input: 3_500, Output: 250}}})
	}
	var want fleet.Micros
	for _, tr := range traces {
		want += tr.Cost(fleet.DefaultPricing())
	}
	resp, err := http.Post(col.OTLPURL+"/v1/traces", "application/x-protobuf", bytes.NewReader(ingesttest.Protobuf(ingesttest.Request(traces...))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the Collector answered %d", resp.StatusCode)
	}
	ctx := context.Background()
	await(t, time.Minute, "acme's spend through the Collector", func() (bool, string) {
		r, err := obs.readFleet(ctx, admin)
		return err == nil && r.spend["acme"] == want, fmt.Sprintf("spend %d µ$, want %d µ$ (%v)", r.spend["acme"], want, err)
	})
	if strings.Contains(col.Log(), minted.Token) {
		t.Error("the Collector logged the token")
	}
}
