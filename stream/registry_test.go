package stream_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

func openRegistry(t *testing.T) (*streamtest.Env, *stream.Registry) {
	t.Helper()
	e := streamtest.Start(t, stream.HubConfig{})
	reg, err := stream.OpenRegistry(testCtx(t), e.JS, stream.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return e, reg
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestKVStoreCompareAndSwap(t *testing.T) {
	_, reg := openRegistry(t)
	ctx := testCtx(t)
	st := reg.Records

	rev, created, err := st.Create(ctx, "projects.acme", []byte(`1`))
	if err != nil || !created || rev == 0 {
		t.Fatalf("Create = %d, %v, %v; want a revision, true, nil", rev, created, err)
	}
	if _, created, err := st.Create(ctx, "projects.acme", []byte(`2`)); err != nil || created {
		t.Fatalf("Create on a taken key = %v, %v; want false, nil", created, err)
	}
	v, got, found, err := st.Get(ctx, "projects.acme")
	if err != nil || !found || got != rev || string(v) != "1" {
		t.Fatalf("Get = %q, %d, %v, %v; want 1, %d, true, nil", v, got, found, err, rev)
	}
	if _, _, found, err := st.Get(ctx, "projects.nobody"); err != nil || found {
		t.Fatalf("Get of a missing key: found %v, err %v", found, err)
	}
	if _, ok, err := st.Update(ctx, "projects.acme", []byte(`3`), rev+100); err != nil || ok {
		t.Fatalf("Update at a stale revision = %v, %v; want false, nil", ok, err)
	}
	rev2, ok, err := st.Update(ctx, "projects.acme", []byte(`4`), rev)
	if err != nil || !ok || rev2 <= rev {
		t.Fatalf("Update = %d, %v, %v", rev2, ok, err)
	}
	if err := st.Delete(ctx, "projects.acme", rev); err == nil {
		t.Fatal("Delete at a stale revision succeeded")
	}
	if err := st.Delete(ctx, "projects.acme", rev2); err != nil {
		t.Fatal(err)
	}
	if _, _, found, err := st.Get(ctx, "projects.acme"); err != nil || found {
		t.Fatalf("Get after Delete: found %v, err %v", found, err)
	}
	if _, created, err := st.Create(ctx, "projects.acme", []byte(`5`)); err != nil || !created {
		t.Fatalf("Create after Delete = %v, %v; want true, nil", created, err)
	}
}

func TestKVStoreList(t *testing.T) {
	e, reg := openRegistry(t)
	ctx := testCtx(t)
	st := reg.Work
	put := func(key, v string) uint64 {
		t.Helper()
		rev, created, err := st.Create(ctx, key, []byte(v))
		if err != nil || !created {
			t.Fatalf("Create %s: %v %v", key, created, err)
		}
		return rev
	}
	put("agents.acme.a", "a")
	revB := put("agents.acme.b", "b")
	put("agents.acme2.z", "not acme") // a longer project id is another prefix
	put("agents.globex.g", "g")
	put("agents.acme.c", "c")
	if err := st.Delete(ctx, "agents.acme.b", revB); err != nil {
		t.Fatal(err)
	}
	// "Since" applies to when the bucket stored a value. The mark is d's
	// stored time, written once the wall clock (which the NATS server
	// stamps messages with) has passed everything stored before it, so
	// that d alone is at or after the mark.
	bucket, err := e.JS.Stream(ctx, "KV_"+stream.WorkBucket)
	if err != nil {
		t.Fatal(err)
	}
	lastStored := func() time.Time {
		t.Helper()
		info, err := bucket.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastTime
	}
	before := lastStored()
	streamtest.Eventually(t, 5*time.Second, func() bool { return time.Now().After(before) }, "the wall clock never passed the last stored time")
	put("agents.acme.d", "d")
	mid := lastStored()
	if !mid.After(before) {
		t.Fatalf("d was stored at %s, not after the writes before it (%s): the mark cannot separate them", mid, before)
	}

	for _, tc := range []struct {
		name   string
		prefix string
		since  time.Time
		limit  int
		want   []string
	}{
		{name: "all, oldest first, deleted left out", prefix: "agents.acme", want: []string{"a", "c", "d"}},
		{name: "the newest two", prefix: "agents.acme", limit: 2, want: []string{"c", "d"}},
		{name: "written since", prefix: "agents.acme", since: mid, want: []string{"d"}},
		{name: "since after everything", prefix: "agents.acme", since: mid.Add(time.Nanosecond), want: nil},
		{name: "another project", prefix: "agents.globex", want: []string{"g"}},
		{name: "nothing there", prefix: "agents.initech", want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := st.List(ctx, tc.prefix, tc.since, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vals {
				got = append(got, string(v))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := st.List(ctx, "agents.*", time.Time{}, 0); err == nil {
		t.Error("List accepted a wildcard prefix")
	}
	// Reading leaves no consumer behind.
	streamtest.Eventually(t, 5*time.Second, func() bool {
		s, err := e.JS.Stream(ctx, "KV_"+stream.WorkBucket)
		return err == nil && s.CachedInfo().State.Consumers == 0
	}, "List left consumers on the bucket's stream")
}

func TestMissionQueue(t *testing.T) {
	e, reg := openRegistry(t)
	ctx := testCtx(t)
	q := reg.Missions
	ev := fleet.Event{ID: "ev-1", Type: fleet.TypeMissionQueued, Time: fleettest.Epoch(), ProjectID: "acme",
		MissionID: "m-1", Data: json.RawMessage(`{"title":"triage","model":"claude-haiku-4-5"}`)}

	s, err := e.JS.Stream(ctx, stream.MissionsStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Retention; got != jetstream.WorkQueuePolicy {
		t.Errorf("MISSIONS retention %v, want work queue", got)
	}
	seq, err := q.Enqueue(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	again := ev
	again.ID = "ev-2"
	if seq2, err := q.Enqueue(ctx, again); err != nil || seq2 != seq {
		t.Errorf("enqueueing mission m-1 again = %d, %v; want the first sequence %d (deduplicated)", seq2, err, seq)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "missions.acme" {
		t.Errorf("subject %q, want missions.acme", m.Subject)
	}
	got, err := fleet.DecodeEvent("", m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != ev.ID || got.MissionID != "m-1" || string(got.Data) != string(ev.Data) {
		t.Errorf("queued %+v, want %+v", got, ev)
	}

	for _, bad := range []fleet.Event{
		{ID: "x", Type: fleet.TypeMissionQueued, Time: fleettest.Epoch(), ProjectID: "acme"},                  // no mission id
		{ID: "x", Type: fleet.TypeAgentCreated, Time: fleettest.Epoch(), ProjectID: "acme", MissionID: "m-2"}, // not a mission
		{ID: "x", Type: fleet.TypeMissionQueued, Time: fleettest.Epoch(), ProjectID: "Acme", MissionID: "m-2"},
	} {
		if _, err := q.Enqueue(ctx, bad); err == nil {
			t.Errorf("Enqueue(%+v) succeeded", bad)
		}
	}

	if err := q.Withdraw(ctx, seq); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMsg(ctx, seq); err == nil {
		t.Error("the withdrawn mission is still queued")
	}
	if err := q.Withdraw(ctx, seq); err == nil {
		t.Error("withdrawing a mission twice succeeded")
	}
}
