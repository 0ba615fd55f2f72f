package rig_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/rig"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

func start(t *testing.T, cfg rig.Config) *rig.Pipeline {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := rig.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// TestPublishStampsTheClock: the events a pipeline publishes carry its
// clock's time (a test clock here, away from the wall clock the stream
// stores them with) and a fresh id, and the fold takes them in.
func TestPublishStampsTheClock(t *testing.T) {
	clock := fleettest.NewClock()
	p := start(t, rig.Config{Now: clock.Now})
	if p.NS == nil || p.Dir == "" {
		t.Fatal("no embedded NATS in a temporary directory")
	}
	ctx := context.Background()
	var seqs []uint64
	for range 2 {
		seq, err := p.Publish(ctx, fleet.Event{Type: fleet.TypeWorkerJoined, ProjectID: "acme", WorkerID: "w-1",
			Data: []byte(`{"host":"h","version":"1","capacity":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
		clock.Advance(time.Second)
	}
	streamtest.WaitSeq(t, p.Hub, seqs[1])
	st, err := p.JS.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, seq := range seqs {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := fleet.DecodeEvent(m.Subject, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if want := fleettest.Epoch().Add(time.Duration(i) * time.Second); !ev.Time.Equal(want) {
			t.Errorf("event %d is dated %s; the pipeline's clock said %s", i, ev.Time, want)
		}
		ids = append(ids, ev.ID)
	}
	if ids[0] == "" || ids[0] == ids[1] {
		t.Errorf("event ids %q: want two distinct ids", ids)
	}
	v, _, err := p.Hub.View(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Workers["w-1"]; !ok {
		t.Errorf("the fold has no worker w-1: %+v", v.Workers)
	}
}

// TestNoKeyInNATS: a client of the pipeline's NATS finds no signing key
// in any KV bucket, and no credentials bucket, once the server runs (the
// key theft of issue 12's first finding).
func TestNoKeyInNATS(t *testing.T) {
	p := start(t, rig.Config{})
	ctx := context.Background()
	s, err := rig.StartServer(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Login(ctx); err != nil {
		t.Fatal(err)
	}
	names := p.JS.KeyValueStoreNames(ctx)
	var buckets []string
	for name := range names.Name() {
		buckets = append(buckets, name)
		kv, err := p.JS.KeyValue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Get(ctx, "signing-key"); err == nil {
			t.Errorf("bucket %s holds a signing key", name)
		}
	}
	if err := names.Error(); err != nil {
		t.Fatal(err)
	}
	if len(buckets) == 0 {
		t.Fatal("no KV bucket listed: the test looked at nothing")
	}
	for _, b := range buckets {
		if strings.Contains(b, "CREDENTIALS") {
			t.Errorf("a credentials bucket %s exists (all: %v)", b, buckets)
		}
	}
}

// TestServer: the server answers the admin once logged in, and refuses
// before.
func TestServer(t *testing.T) {
	p := start(t, rig.Config{})
	ctx := context.Background()
	s, err := rig.StartServer(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	var ae *live.APIError
	if _, err := s.DoWant(ctx, http.MethodGet, "/api/v1/projects", nil, http.StatusOK, nil); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("before the login: %v, want a 401", err)
	}
	if err := s.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DoWant(ctx, http.MethodPost, "/api/v1/projects", map[string]string{"id": "acme", "name": "Acme"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	var list struct{ Projects []struct{ ID string } }
	if _, err := s.Do(ctx, http.MethodGet, "/api/v1/projects", nil, &list); err != nil || len(list.Projects) != 1 || list.Projects[0].ID != "acme" {
		t.Errorf("projects %+v, %v; want acme", list, err)
	}
}
