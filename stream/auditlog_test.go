package stream_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

func TestAuditLogRead(t *testing.T) {
	e := streamtest.Start(t, stream.HubConfig{})
	ctx := testCtx(t)
	log := stream.NewAuditLog(e.JS)

	// An empty stream answers at once.
	start := time.Now()
	if evs, err := log.Read(ctx, "", "", time.Time{}, time.Time{}, 10); err != nil || len(evs) != 0 {
		t.Fatalf("empty AUDIT: %v, %v", evs, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reading an empty stream took %s", d)
	}

	// Three rounds of events, with a time mark between rounds.
	type ev struct{ project, typ string }
	rounds := [][]ev{
		{{"acme", "auth.login.failed"}, {"globex", "auth.login.failed"}},
		{{"acme", "tenant.cross_access_denied"}, {"acme", "auth.login.failed"}},
		{{"globex", "tenant.cross_access_denied"}},
	}
	var marks []time.Time
	n := 0
	for _, round := range rounds {
		time.Sleep(20 * time.Millisecond)
		marks = append(marks, time.Now())
		time.Sleep(20 * time.Millisecond)
		for _, x := range round {
			n++
			err := e.Publisher.Audit(ctx, fleet.Event{ID: fmt.Sprintf("a%d", n), Type: x.typ, Time: time.Now().UTC(),
				ProjectID: x.project, Data: json.RawMessage(`{"n":"` + fmt.Sprint(n) + `"}`)})
			if err != nil {
				t.Fatal(err)
			}
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
		{name: "from", from: marks[1], limit: 100, want: []string{"a3", "a4", "a5"}},
		{name: "to", to: marks[1], limit: 100, want: []string{"a1", "a2"}},
		{name: "from and to", from: marks[1], to: marks[2], limit: 100, want: []string{"a3", "a4"}},
		{name: "limit keeps the first", limit: 2, want: []string{"a1", "a2"}},
		{name: "from with limit", from: marks[1], limit: 1, want: []string{"a3"}},
		{name: "nothing matches", project: "initech", limit: 100},
		{name: "from after everything", from: time.Now().Add(time.Hour), limit: 100},
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
