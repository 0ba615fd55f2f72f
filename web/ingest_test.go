package web_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/ingest"
	"github.com/sagewai/observatory/ingest/ingesttest"
	"github.com/sagewai/observatory/web"
)

var t0 = time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)

// newIngestEnv is an admin env whose server folds OTLP exports, with
// projects acme and globex.
func newIngestEnv(t *testing.T, maxBody int64) *adminEnv {
	t.Helper()
	a := newAdminEnv(t, func(cfg *web.Config) {
		// The events go to the env's FLEET, as the admin API's do.
		in, err := ingest.New(ingest.Config{Publisher: cfg.Events.(*flakyEvents).pub, MaxBodyBytes: maxBody, Logger: cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Traces = in
	})
	a.project(t, "acme")
	a.project(t, "globex")
	return a
}

func otlpHeader(tok, ct string) http.Header {
	h := http.Header{"Content-Type": {ct}}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	return h
}

func exportResponse(t *testing.T, r response) *coltracepb.ExportTraceServiceResponse {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/x-protobuf" {
		t.Fatalf("Content-Type %q, want application/x-protobuf", ct)
	}
	out := &coltracepb.ExportTraceServiceResponse{}
	if err := proto.Unmarshal(r.body, out); err != nil {
		t.Fatalf("response is not an ExportTraceServiceResponse: %v", err)
	}
	return out
}

func ingestAgent(n uint64, project string) ingesttest.Trace {
	return ingesttest.Trace{N: n, Service: "svc", Project: project, Agent: "bot", Model: "gpt-5-mini", Tool: "search",
		Calls: []ingesttest.Usage{{Input: 5_000, Output: 700, CacheRead: 1_000}}, Start: t0}
}

// TestIngestTracesCharges checks POST /v1/traces end to end over HTTP: a
// project token's export is folded and charged, and only callers that may
// write get in.
func TestIngestTracesCharges(t *testing.T) {
	a := newIngestEnv(t, 0)
	tr := ingestAgent(1, "")
	body := string(ingesttest.Protobuf(ingesttest.Request(tr)))

	before := a.lastSeqs(t)
	for name, h := range map[string]http.Header{
		"no token":     otlpHeader("", "application/x-protobuf"),
		"embed token":  otlpHeader(a.embedToken(t, "project", "acme"), "application/x-protobuf"),
		"bad token":    otlpHeader("nope", "application/x-protobuf"),
		"session only": {"Content-Type": {"application/x-protobuf"}, "Cookie": {web.SessionCookie + "=" + a.sessionToken(t)}},
	} {
		r := a.do(t, "POST", "/v1/traces", body, h)
		if r.status != http.StatusUnauthorized && r.status != http.StatusForbidden {
			t.Errorf("%s: status %d, want 401 or 403: %s", name, r.status, r.body)
		}
		r.errorCode(t)
	}
	if diff := cmp.Diff(before, a.lastSeqs(t)); diff != "" {
		t.Errorf("refused exports wrote (-before +after):\n%s", diff)
	}

	resp := exportResponse(t, a.do(t, "POST", "/v1/traces", body, otlpHeader(a.projectToken(t, "acme"), "application/x-protobuf")))
	if resp.GetPartialSuccess() != nil {
		t.Errorf("partial_success %v on a clean export", resp.GetPartialSuccess())
	}
	seq := a.lastSeqs(t)["FLEET"]
	v := a.view(t, "acme", seq)
	if got, want := v.Projects["acme"].SpendTotal, tr.Cost(fleet.DefaultPricing()); got != want || want == 0 {
		t.Errorf("acme spend %d µ$, want %d", got, want)
	}
	if _, ok := v.Agents["bot"]; !ok {
		t.Error("the agent is not on acme's roster")
	}
}

// TestIngestTracesRefusesAnotherProject sends, with acme's token, a
// resource naming globex: its spans are refused in partial_success, the
// attempt is audited as tenant.cross_access_denied, and globex is
// untouched.
func TestIngestTracesRefusesAnotherProject(t *testing.T) {
	a := newIngestEnv(t, 0)
	body := string(ingesttest.Protobuf(ingesttest.Request(ingestAgent(1, "globex"), ingestAgent(2, "acme"))))
	resp := exportResponse(t, a.do(t, "POST", "/v1/traces", body, otlpHeader(a.projectToken(t, "acme"), "application/x-protobuf")))
	if got := resp.GetPartialSuccess().GetRejectedSpans(); got != 3 {
		t.Errorf("rejected_spans %d, want 3 (the globex resource's)", got)
	}
	var got []map[string]string
	for _, ev := range auditEvents(t, a, a.admin, "?type="+fleet.TypeCrossAccess) {
		var data map[string]string
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if ev.ProjectID != "acme" {
			t.Errorf("denial recorded for project %q, want acme (the token's)", ev.ProjectID)
		}
		got = append(got, data)
	}
	if diff := cmp.Diff([]map[string]string{{"subject": "api:acme", "scope": "globex", "route": "/v1/traces"}}, got); diff != "" {
		t.Errorf("tenant.cross_access_denied (-want +got):\n%s", diff)
	}
	v := a.view(t, "*", a.lastSeqs(t)["FLEET"])
	if s := v.Projects["globex"].SpendTotal; s != 0 {
		t.Errorf("globex charged %d µ$ by acme's token", s)
	}
	if s := v.Projects["acme"].SpendTotal; s != ingestAgent(2, "acme").Cost(fleet.DefaultPricing()) {
		t.Errorf("acme charged %d µ$, want its own resource's cost", s)
	}

	// An admin token writes where each resource says, if the project exists.
	resp = exportResponse(t, a.do(t, "POST", "/v1/traces", string(ingesttest.Protobuf(ingesttest.Request(ingestAgent(3, "globex"), ingestAgent(4, "initech")))),
		otlpHeader(a.admin, "application/x-protobuf")))
	if got := resp.GetPartialSuccess().GetRejectedSpans(); got != 3 {
		t.Errorf("admin export: rejected_spans %d, want 3 (initech does not exist)", got)
	}
	v = a.view(t, "*", a.lastSeqs(t)["FLEET"])
	if s := v.Projects["globex"].SpendTotal; s != ingestAgent(3, "globex").Cost(fleet.DefaultPricing()) {
		t.Errorf("globex charged %d µ$ by the admin's export", s)
	}
}

// TestIngestTracesBadBodies checks the edge's answers to bodies it cannot
// take: JSON error bodies with a code, the OTLP bound rather than the API's.
func TestIngestTracesBadBodies(t *testing.T) {
	a := newIngestEnv(t, 2<<20)
	tok := a.projectToken(t, "acme")
	before := a.lastSeqs(t)
	for _, tc := range []struct {
		name, ct, body string
		status         int
		code           string
	}{
		{"text", "text/plain", "hello", http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"malformed json", "application/json", `{"resourceSpans":`, http.StatusBadRequest, "bad_request"},
		{"above the bound", "application/x-protobuf", string(bytes.Repeat([]byte{0x0a, 0x00}, 1<<20+1)), http.StatusRequestEntityTooLarge, "too_large"},
	} {
		r := a.do(t, "POST", "/v1/traces", tc.body, otlpHeader(tok, tc.ct))
		if r.status != tc.status || r.errorCode(t) != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, r.body, tc.status, tc.code)
		}
	}
	if diff := cmp.Diff(before, a.lastSeqs(t)); diff != "" {
		t.Errorf("refused exports wrote (-before +after):\n%s", diff)
	}
	// 1.5 MiB is above the API's 1 MiB but within the OTLP bound.
	var trs []ingesttest.Trace
	for i := range 2000 {
		trs = append(trs, ingestAgent(uint64(10+i), ""))
	}
	big := ingesttest.Protobuf(ingesttest.Request(trs...))
	if len(big) < 1<<20 || len(big) > 2<<20 {
		t.Fatalf("the big export is %d bytes, want between 1 and 2 MiB", len(big))
	}
	exportResponse(t, a.do(t, "POST", "/v1/traces", string(big), otlpHeader(tok, "application/x-protobuf")))
}
