package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/ingest"
	"github.com/sagewai/observatory/ingest/ingesttest"
)

// checkingPublisher stands for FLEET in the fuzz test: it checks every
// event as the hub's consumer would read it back, so that whatever the
// body, what ingest publishes is a valid event of the caller's project.
type checkingPublisher struct {
	t      *testing.T
	events int
}

func (p *checkingPublisher) PublishAll(_ context.Context, evs []fleet.Event) (uint64, error) {
	for _, ev := range evs {
		body, err := json.Marshal(ev)
		if err != nil {
			p.t.Fatalf("marshal %s: %v", ev.ID, err)
		}
		dec, err := fleet.DecodeEvent(fleet.Subject(ev), body)
		if err != nil {
			p.t.Fatalf("ingest published an invalid event: %v\n%s", err, body)
		}
		if dec.ProjectID != "acme" {
			p.t.Fatalf("event %s of project %q from acme's token", ev.ID, dec.ProjectID)
		}
	}
	p.events += len(evs)
	return uint64(p.events), nil
}

// FuzzExport feeds arbitrary bodies, in both encodings, compressed or not,
// through the whole ingest path: it never panics, refuses with a known
// reason, or accounts for every span and publishes only valid events of
// the token's project.
func FuzzExport(f *testing.F) {
	tr := agent(1, "svc", "a", ingesttest.Usage{Input: 100, Output: 10, CacheRead: 20})
	other := agent(2, "svc", "b", ingesttest.Usage{Input: 1, Output: 1})
	other.Project = "globex"
	req := ingesttest.Request(tr, other)
	f.Add(ingesttest.Protobuf(req), false, false)
	f.Add(ingesttest.JSON(req), true, false)
	f.Add(ingesttest.Gzip(ingesttest.Protobuf(req)), false, true)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"01"}]}]}]}`), true, false)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00}, false, false)
	f.Fuzz(func(t *testing.T, body []byte, isJSON, gz bool) {
		pub := &checkingPublisher{t: t}
		in, err := ingest.New(ingest.Config{Publisher: pub, MaxBodyBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ct, enc := "application/x-protobuf", ""
		if isJSON {
			ct = "application/json"
		}
		if gz {
			enc = "gzip"
		}
		_, _, res, err := in.Export(context.Background(), acme, ct, enc, bytes.NewReader(body))
		if err != nil {
			var ie *ingest.Error
			if !errors.As(err, &ie) || !slices.Contains(ingest.RequestReasons, ie.Reason) {
				t.Fatalf("error %v is not a refusal with a known reason", err)
			}
			if pub.events != 0 {
				t.Fatalf("a refused export published %d events", pub.events)
			}
			return
		}
		if res.Accepted+res.Refused+res.Skipped != res.Spans || res.Accepted < 0 {
			t.Fatalf("spans not accounted for: %+v", res)
		}
		if res.Events != pub.events {
			t.Fatalf("result says %d events, %d published", res.Events, pub.events)
		}
	})
}
