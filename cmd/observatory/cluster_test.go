package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget/budgettest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/natscluster"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestReplicasOnANATSCluster runs two serve replicas on a real three-node
// NATS cluster (nats-server processes) with --nats-replicas 3, publishes
// a fleet's events while it kills -9 a node that does not lead FLEET and
// then the one that does (bringing each back), and checks what a user of
// a cluster relies on: every stream and bucket serve made has three
// replicas; every event a publisher saw acknowledged is in FLEET exactly
// once; both replicas answer the same /api/v1/fleet at the same seq; and a
// token one replica issued works on the other (they share --signing-key-file).
func TestReplicasOnANATSCluster(t *testing.T) {
	c := natscluster.Start(t, 3)
	creds, seed, keys := serveFiles(t, c)
	args := []string{"--nats-url", c.URLs(), "--nats-creds", creds, "--nats-account-signing-key", seed,
		"--nats-replicas", "3", "--signing-key-file", keys}
	a := startServe(t, args...)
	b := startServe(t, args...)
	// Every revision of the ledger stays for the check below (after the
	// replicas' ledgers configured the bucket, before its first write).
	if err := budgettest.KeepHistory(context.Background(), mustJS(t, c.Connect("history"))); err != nil {
		t.Fatal(err)
	}

	nc := c.Connect("test-publisher")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	natscluster.WantReplicas(t, js, 3, stream.FleetStream, stream.AuditStream)
	for name := range js.KeyValueStoreNames(ctx).Name() {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != 3 {
			t.Errorf("bucket %s has %d replicas; want 3", name, r)
		}
	}

	// The events: a generated fleet's valid messages, published in three
	// batches around the faults. A publish that fails (its node died) is
	// tried again with the same id, which the stream's dedupe window
	// stores once.
	pub := stream.NewPublisher(js)
	var evs []fleet.Event
	for _, m := range fleettest.Generate(rand.New(rand.NewPCG(7, 7)), 900, fleettest.Options{Start: time.Now().Add(-time.Minute)}) {
		if ev, err := fleet.DecodeEvent(m.Subject, m.Body); err == nil {
			evs = append(evs, ev)
		}
	}
	acked := map[string]map[string]bool{} // project → event ids acknowledged
	publish := func(batch []fleet.Event) {
		t.Helper()
		for _, ev := range batch {
			for attempt := 0; ; attempt++ {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := pub.Publish(pctx, ev)
				cancel()
				if err == nil {
					break
				}
				if attempt == 60 { // a hang bound: the cluster lost its quorum for good
					t.Fatalf("event %s never acknowledged: %v\n%s", ev.ID, err, c.Logs())
				}
			}
			if acked[ev.ProjectID] == nil {
				acked[ev.ProjectID] = map[string]bool{}
			}
			acked[ev.ProjectID][ev.ID] = true
		}
	}
	leader := func() *natscluster.Node { return fleetLeader(t, js, c) }
	third := len(evs) / 3
	publish(evs[:third])

	var follower *natscluster.Node
	for _, n := range c.Nodes {
		if n != leader() {
			follower = n
			break
		}
	}
	c.Kill(follower)
	publish(evs[third : 2*third])
	c.Restart(follower)

	lead := leader()
	c.Kill(lead)
	publish(evs[2*third:])
	c.Restart(lead)
	c.WaitReady()
	c.WaitStreamsCurrent()

	// Every acknowledged event is in FLEET once.
	st, err := js.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	for project, ids := range acked {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("fleet."+project+".>"))
		if err != nil {
			t.Fatal(err)
		}
		var stored uint64
		for _, n := range info.State.Subjects {
			stored += n
		}
		if stored != uint64(len(ids)) {
			t.Errorf("%s: FLEET stores %d messages of %d events acknowledged", project, stored, len(ids))
		}
	}

	// The budget gate on R3 buckets, both replicas reserving at once:
	// compare-and-swap conflicts (spurious ones too) are retried, and no
	// revision of the ledger ever holds more than the cap.
	tokA := login(t, a.base, "admin", "admin")
	budgetOnR3(t, js, tokA, a.base, b.base)

	// Both replicas answer the same /api/v1/fleet at the same seq.
	last := st.CachedInfo().State.LastSeq
	var same bool
	var bodyA, bodyB []byte
	streamtest.Eventually(t, 2*time.Minute, func() bool {
		var seqA, seqB uint64
		bodyA, seqA = fleetFrame(t, a.base, tokA)
		bodyB, seqB = fleetFrame(t, b.base, tokA) // A's token: the replicas share their keys
		if seqA < last || seqB < last || seqA != seqB {
			return false
		}
		same = string(bodyA) == string(bodyB)
		return true
	}, fmt.Sprintf("the replicas never stood at one seq at or past %d", last))
	if !same {
		t.Errorf("at the same seq the replicas answer differently:\nA: %.600s\nB: %.600s", bodyA, bodyB)
	}
}

// fleetFrame is GET /api/v1/fleet of base with token, and its seq.
func fleetFrame(t *testing.T, base, token string) ([]byte, uint64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/fleet", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/api/v1/fleet: %s: %s", base, resp.Status, body)
	}
	var f struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(body, &f); err != nil {
		t.Fatal(err)
	}
	return body, f.Seq
}

// budgetOnR3 creates project r3 with a $0.10 daily stop budget and asks
// both replicas at once for 60 missions estimated at $0.012: at most 8
// fit, and no revision of the ledger holds more than $0.10.
func budgetOnR3(t *testing.T, js jetstream.JetStream, token string, replicas ...string) {
	t.Helper()
	c := &live.Client{Base: replicas[0], HTTP: http.DefaultClient}
	ctx := context.Background()
	if _, err := c.Do(ctx, token, http.MethodPost, "/api/v1/projects", map[string]string{"id": "r3", "name": "R3"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, token, http.MethodPost, "/api/v1/budgets", map[string]string{"scope": "project", "project_id": "r3",
		"period": "daily", "limit_usd": "0.10", "action": "stop"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	const limit = fleet.Micros(100_000)
	var wg sync.WaitGroup
	var created, denied, other atomic.Int64
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := &live.Client{Base: replicas[i%len(replicas)], HTTP: http.DefaultClient}
			status, err := rc.Do(ctx, token, http.MethodPost, "/api/v1/projects/r3/missions",
				map[string]string{"title": "ticket", "model": "gpt-5", "estimate_usd": "0.012"}, 0, nil)
			switch {
			case err == nil && status == http.StatusCreated:
				created.Add(1)
			case status == http.StatusPaymentRequired:
				denied.Add(1)
			default:
				other.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("budget on R3: %d missions created, %d refused, %d failed", created.Load(), denied.Load(), other.Load())
	if created.Load() == 0 || created.Load() > 8 {
		t.Errorf("%d missions created at $0.012 under a $0.10 cap (%d refused, %d failed); want 1 to 8", created.Load(), denied.Load(), other.Load())
	}
	hist, err := budgettest.History(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range hist {
		if !strings.HasPrefix(e.Budget, "project.r3.") {
			continue
		}
		n++
		if held := e.Spent + e.Reserved(e.Stored); held > limit {
			t.Errorf("revision %d of %s holds %s (spent %s) under a cap of %s", e.Revision, e.Key, held, e.Spent, limit)
		}
	}
	if n < int(created.Load()) {
		t.Errorf("%d ledger revisions for %d missions created", n, created.Load())
	}
}

// serveFiles writes, for serve replicas on cluster c, serve's NATS
// credentials and its account's signing key (0600), and names the
// signing-key file the replicas share; it returns the three paths.
func serveFiles(t testing.TB, c *natscluster.Cluster) (creds, seed, keys string) {
	t.Helper()
	dir := t.TempDir()
	creds, seed, keys = filepath.Join(dir, "serve.creds"), filepath.Join(dir, "signing.nk"), filepath.Join(dir, "keys.json")
	if err := os.WriteFile(creds, c.Creds("observatory-serve"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seed, append(c.SigningSeed(), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return creds, seed, keys
}

// fleetLeader is the node leading FLEET's replicas, asked again while the
// cluster elects one.
func fleetLeader(t *testing.T, js jetstream.JetStream, c *natscluster.Cluster) *natscluster.Node {
	t.Helper()
	var name string
	streamtest.Eventually(t, 2*time.Minute, func() bool {
		ictx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ictx, stream.FleetStream)
		if err != nil || st.CachedInfo().Cluster == nil {
			return false
		}
		name = st.CachedInfo().Cluster.Leader
		return name != ""
	}, "FLEET has no leader")
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("FLEET's leader %q is no node of the cluster", name)
	return nil
}
