package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestAuditLogRead reads AUDIT back by project, type, stored-time range
// and limit. The range applies to when AUDIT stored each event, so the
// test takes its marks from the stored times themselves, and the events'
// own times (all the test clock's epoch) play no part.
func TestAuditLogRead(t *testing.T) {
	e := streamtest.Start(t, stream.HubConfig{})
	ctx := testCtx(t)
	log := stream.NewAuditLog(e.JS)

	if evs, err := log.Read(ctx, "", "", time.Time{}, time.Time{}, 10); err != nil || len(evs) != 0 {
		t.Fatalf("empty AUDIT: %v, %v", evs, err)
	}

	audit, err := e.JS.Stream(ctx, stream.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	lastStored := func() time.Time {
		t.Helper()
		info, err := audit.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastTime
	}

	// Three rounds of events. Each round starts once the wall clock (which
	// the NATS server stamps messages with) has passed the previous
	// round's last stored time, so that rounds never share an instant.
	type ev struct{ project, typ string }
	rounds := [][]ev{
		{{"acme", "auth.login.failed"}, {"globex", "auth.login.failed"}},
		{{"acme", "tenant.cross_access_denied"}, {"acme", "auth.login.failed"}},
		{{"globex", "tenant.cross_access_denied"}},
	}
	var first, last []time.Time // each round's first and last stored time
	n := 0
	for k, round := range rounds {
		if k > 0 {
			prev := last[k-1]
			streamtest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(prev) }, "the wall clock never passed the last stored time")
		}
		for i, x := range round {
			n++
			err := e.Publisher.Audit(ctx, fleet.Event{ID: fmt.Sprintf("a%d", n), Type: x.typ, Time: fleettest.Epoch(),
				ProjectID: x.project, Data: json.RawMessage(`{"n":"` + fmt.Sprint(n) + `"}`)})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = append(first, lastStored())
			}
		}
		last = append(last, lastStored())
		if k > 0 && !first[k].After(last[k-1]) {
			t.Fatalf("round %d was stored at %s, not after round %d's %s: the marks cannot separate them", k, first[k], k-1, last[k-1])
		}
	}
	// Not an event: skipped.
	if _, err := e.Publisher.PublishRaw(ctx, "audit.acme.auth.login.failed", []byte("{broken"), ""); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name         string
		project, typ string
		from, to     time.Time
		limit        int
		want         []string
	}{
		{name: "everything, oldest first", limit: 100, want: []string{"a1", "a2", "a3", "a4", "a5"}},
		{name: "one project", project: "acme", limit: 100, want: []string{"a1", "a3", "a4"}},
		{name: "one type", typ: "tenant.cross_access_denied", limit: 100, want: []string{"a3", "a5"}},
		{name: "project and type", project: "globex", typ: "auth.login.failed", limit: 100, want: []string{"a2"}},
		{name: "from, inclusive", from: first[1], limit: 100, want: []string{"a3", "a4", "a5"}},
		{name: "to, inclusive", to: last[0], limit: 100, want: []string{"a1", "a2"}},
		{name: "from and to", from: first[1], to: last[1], limit: 100, want: []string{"a3", "a4"}},
		{name: "limit keeps the first", limit: 2, want: []string{"a1", "a2"}},
		{name: "from with limit", from: first[1], limit: 1, want: []string{"a3"}},
		{name: "nothing matches", project: "initech", limit: 100},
		{name: "from after everything", from: lastStored().Add(time.Nanosecond), limit: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := log.Read(ctx, tc.project, tc.typ, tc.from, tc.to, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ev := range evs {
				got = append(got, ev.ID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}

	for _, bad := range []struct {
		project, typ string
		limit        int
	}{
		{"Acme", "", 10}, {"acme", "auth.>", 10}, {"acme", "*", 10}, {"", "", 0}, {"", "", stream.MaxAuditRead + 1},
	} {
		if _, err := log.Read(ctx, bad.project, bad.typ, time.Time{}, time.Time{}, bad.limit); err == nil {
			t.Errorf("Read(%q, %q, limit %d) succeeded", bad.project, bad.typ, bad.limit)
		}
	}
}

// BenchmarkAuditLogReadEmpty is the price of reading an empty AUDIT: it
// must answer at once, not after waiting for a message that cannot come.
func BenchmarkAuditLogReadEmpty(b *testing.B) {
	e := streamtest.Start(b, stream.HubConfig{})
	log := stream.NewAuditLog(e.JS)
	ctx := context.Background()
	for b.Loop() {
		if evs, err := log.Read(ctx, "", "", time.Time{}, time.Time{}, 10); err != nil || len(evs) != 0 {
			b.Fatalf("empty AUDIT: %v, %v", evs, err)
		}
	}
}
