package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget/budgettest"
	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/exportlease"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/lbtest"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/natscluster"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/telemetry"
	"github.com/sagewai/observatory/telemetry/otlptest"
	"github.com/sagewai/observatory/vmstack"
)

// chaosTenants are the chaos test's tenants; chaosCapped is the one with
// a stop budget close enough to be hit.
var chaosTenants = []string{"acme", "globex", "initech"}

const (
	chaosCapped   = "globex"
	chaosCap      = "0.60"
	chaosEstimate = "0.25" // above what any synthetic mission costs

	// chaosPublisher is the project of the test's own publisher, whose
	// every acknowledged event must be in FLEET once.
	chaosPublisher = "pub"
)

// chaosFault is one fault injected and what it took to recover.
type chaosFault struct {
	what            string
	at              time.Duration // since the traffic started
	down, recovered time.Duration
	seq             uint64 // FLEET's last seq when it was injected
	inFlight        int    // missions queued or running then
	note            string
}

// TestChaos is the scale-out proof (DESIGN §11.3): a three-node NATS
// cluster, two serve replicas behind nginx sharing the export by lease,
// twelve worker processes over three tenants, live mission traffic
// through the balancer, a publisher of its own, three tail subscribers
// and a stop budget close enough to be hit. At random times (the seed is
// printed; OBSERVATORY_CHAOS_SEED replays it) it kills with SIGKILL a
// NATS node that leads no FLEET replica, then FLEET's leader, the
// replica exporting the derived telemetry and two workers, each brought
// back after a random time. Afterwards: every mission queued ended
// exactly once in the fold; every event the publisher saw acknowledged is
// in FLEET once, and no event id is stored twice; no revision of the
// ledger held more than the cap; both replicas answer the same
// /api/v1/fleet at the same seq; every tail ended equal to it with no
// gap; VictoriaMetrics, scraping both replicas, sums each project's
// spend to the fleet's; and the OTLP receiver got every span and
// business log record a lone replica folding the whole stream makes,
// none twice. It prints a one-page report (written to
// $OBSERVATORY_ARTIFACT_DIR/chaos-report.txt when that is set).
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OBSERVATORY_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("OBSERVATORY_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("chaos seed %d (OBSERVATORY_CHAOS_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	bin := observatorytest.Build(t)
	c := natscluster.Start(t, 3)
	recv := otlptest.NewReceiver(t)
	creds, seedFile, keys := serveFiles(t, c)
	ports := natscluster.FreePorts(t, 3)
	lbAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	public := fmt.Sprintf("http://%s:%d", lbPublicHost, ports[0])
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.URL, "OTEL_BSP_SCHEDULE_DELAY=500", "OTEL_BLRP_SCHEDULE_DELAY=500"}
	serveArgs := func() []string {
		return []string{"--data-dir", t.TempDir(), "--tick", "50ms",
			"--nats-url", c.URLs(), "--nats-creds", creds, "--nats-account-signing-key", seedFile, "--signing-key-file", keys,
			"--nats-replicas", "3", "--public-url", public, "--trusted-proxies", "127.0.0.1"}
	}
	replicas := []*lbReplica{
		startReplicaEnv(t, bin, "a", "127.0.0.1:"+strconv.Itoa(ports[1]), otel, serveArgs()...),
		startReplicaEnv(t, bin, "b", "127.0.0.1:"+strconv.Itoa(ports[2]), otel, serveArgs()...),
	}
	nc := c.Connect("chaos-test")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := budgettest.KeepHistory(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	lb := lbtest.Start(t, lbtest.Config{Upstreams: []string{replicas[0].addr, replicas[1].addr}, Listen: lbAddr, ServerName: lbPublicHost})
	client := lbClient()
	var faults []chaosFault
	defer func() {
		if t.Failed() {
			t.Logf("nginx access log (tail):\n%s", observatorytest.Tail(lb.AccessLog(), 20))
			for _, r := range replicas {
				r.mu.Lock()
				t.Logf("replica %s stderr (tail):\n%s", r.name, observatorytest.Tail(r.stderr.String(), 30))
				r.mu.Unlock()
			}
		}
	}()

	admin := login(t, replicas[0].base(), "admin", "admin")
	api := &live.Client{Base: replicas[0].base(), HTTP: http.DefaultClient}
	for _, p := range chaosTenants {
		createProject(t, api, admin, p)
	}
	if _, err := api.Do(context.Background(), admin, http.MethodPost, "/api/v1/budgets", map[string]string{"scope": "project", "project_id": chaosCapped,
		"period": "daily", "limit_usd": chaosCap, "action": "stop"}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	vm := vmstack.StartMetrics(t, vmstack.MetricsConfig{Targets: []string{replicas[0].addr, replicas[1].addr}, BearerToken: admin, ScrapeInterval: time.Second})

	// Twelve workers, four per tenant, enrolled at either replica; their
	// claims' leases are short, so a killed worker's mission goes to
	// another soon.
	type chaosWorker struct {
		id, key, url string
		proc         *workerProc
	}
	var workers []*chaosWorker
	startWorker := func(w *chaosWorker) {
		w.proc = startWorkerProc(t, bin, []string{"OBSERVATORY_ENROLL_KEY=" + w.key},
			"--url", w.url, "--worker-id", w.id, "--time-scale", "0.02", "--lease", "3s", "--grace", "5s")
	}
	for i, p := range chaosTenants {
		key := enrollmentKey(t, api, admin, p)
		for j := range 4 {
			w := &chaosWorker{id: fmt.Sprintf("%s-w%d", p, j), key: key, url: replicas[(i+j)%2].base()}
			startWorker(w)
			workers = append(workers, w)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wsURL := fmt.Sprintf("ws://%s:%d/ws", lbPublicHost, ports[0])
	var tails []*lbTail
	for _, scope := range []string{fleet.ScopeAll, "acme", chaosCapped} {
		tails = append(tails, startLBTail(t, ctx, client, wsURL, public, scope))
	}
	var tailsOnce sync.Once
	stopTails := func() {
		tailsOnce.Do(func() {
			cancel()
			for _, lt := range tails {
				<-lt.done
				if lt.err != nil {
					t.Errorf("tail %s: %v\n%s", lt.scope, lt.err, lt.stderr.String())
				}
			}
		})
	}
	defer stopTails()

	// Live traffic through the balancer: a mission every 100 ms, round
	// the tenants. A POST the balancer could not deliver (its replica was
	// killed under it) is counted, not retried: the stream says whether
	// it was created.
	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	defer stopTraffic()
	var (
		trafficMu                    sync.Mutex
		apiCreated                   []string
		refused, undelivered, others int
	)
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-trafficCtx.Done():
				return
			case <-tick.C:
			}
			p := chaosTenants[i%len(chaosTenants)]
			status, body := chaosPost(client, public+"/api/v1/projects/"+p+"/missions", admin,
				fmt.Sprintf(`{"title":"chaos %d","model":"gpt-5","estimate_usd":%q}`, i, chaosEstimate))
			trafficMu.Lock()
			switch status {
			case http.StatusCreated:
				var m struct{ ID string }
				if json.Unmarshal(body, &m) == nil {
					apiCreated = append(apiCreated, m.ID)
				}
			case http.StatusPaymentRequired:
				refused++
			case http.StatusBadGateway, http.StatusGatewayTimeout, 0:
				// Not delivered, or the answer lost: the stream says.
				undelivered++
			default:
				others++
				if others <= 3 {
					t.Logf("POST mission: %d %.200s", status, body)
				}
			}
			trafficMu.Unlock()
		}
	}()

	// The test's own publisher: generated events of its own project, each
	// tried again with the same id until acknowledged.
	pub := stream.NewPublisher(js)
	var pubEvs []fleet.Event
	for _, m := range fleettest.Generate(rand.New(rand.NewPCG(seed, 1)), 4000, fleettest.Options{Projects: []string{chaosPublisher}, Start: time.Now().Add(-time.Minute)}) {
		if ev, err := fleet.DecodeEvent(m.Subject, m.Body); err == nil {
			pubEvs = append(pubEvs, ev)
		}
	}
	var acked sync.Map // event id → true
	var ackedN atomic.Int64
	pubDone := make(chan error, 1)
	go func() {
		for _, ev := range pubEvs {
			if trafficCtx.Err() != nil {
				break
			}
			for attempt := 0; ; attempt++ {
				pctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := pub.Publish(pctx, ev)
				cancel()
				if err == nil {
					break
				}
				if attempt == 60 { // a hang bound: the cluster lost its quorum for good
					pubDone <- fmt.Errorf("event %s never acknowledged: %w", ev.ID, err)
					return
				}
			}
			acked.Store(ev.ID, true)
			ackedN.Add(1)
			time.Sleep(20 * time.Millisecond) // a steady trickle, not a flood
		}
		pubDone <- nil
	}()

	began := time.Now()
	inFlight := func() int {
		_, snap := getFleet(t, survivorOf(replicas), admin, fleet.ScopeAll)
		var v fleet.View
		b, _ := json.Marshal(snap.State)
		_ = json.Unmarshal(b, &v)
		return v.Posture.MissionsInFlight
	}
	// Warm up: traffic flows, missions end, the export has a holder.
	streamtest.Eventually(t, hangBound, func() bool { return ackedN.Load() > 100 && len(recv.Spans()) > 0 }, "no traffic reached the stream and the receiver")

	// The faults, in random order (a NATS follower before the leader), at
	// random times.
	plan := []string{"nats-follower", "nats-leader", "replica", "worker", "worker"}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	if slices.Index(plan, "nats-leader") < slices.Index(plan, "nats-follower") {
		i, j := slices.Index(plan, "nats-leader"), slices.Index(plan, "nats-follower")
		plan[i], plan[j] = plan[j], plan[i]
	}
	pause := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	killedWorkers := 0
	for _, what := range plan {
		time.Sleep(pause(time.Second, 4*time.Second)) // a random time between faults: the schedule, not a wait for a condition
		f := chaosFault{what: what, at: time.Since(began), seq: fleetLastSeqRetry(t, js), inFlight: inFlight()}
		down := pause(500*time.Millisecond, 3*time.Second)
		switch what {
		case "nats-follower", "nats-leader":
			lead := fleetLeader(t, js, c)
			node := lead
			if what == "nats-follower" {
				for _, n := range c.Nodes {
					if n != lead {
						node = n
						break
					}
				}
			}
			f.note = node.Name
			c.Kill(node)
			time.Sleep(down)
			back := time.Now()
			c.Restart(node)
			c.WaitReady()
			c.WaitStreamsCurrent()
			f.recovered = time.Since(back)
		case "replica":
			// The replica that exports: its lease must pass to the other.
			victim := exporterOf(t, replicas, admin)
			other := replicas[0]
			if other == victim {
				other = replicas[1]
			}
			f.note = "replica " + victim.name + " (the exporter)"
			victim.kill()
			killed := time.Now()
			streamtest.Eventually(t, 2*exportlease.DefaultTTL+hangBound, func() bool { return servesDerived(t, other, admin) },
				"the surviving replica never took over the export")
			f.note += fmt.Sprintf("; replica %s exported %s after the kill", other.name, time.Since(killed).Round(time.Millisecond))
			time.Sleep(down)
			back := time.Now()
			victim.start(t)
			target := fleetLastSeqRetry(t, js)
			streamtest.Eventually(t, hangBound, func() bool { _, seq := fleetFrame(t, victim.base(), admin); return seq >= target },
				"the restarted replica never caught up")
			f.recovered = time.Since(back)
		case "worker":
			w := workers[killedWorkers*5%len(workers)]
			killedWorkers++
			f.note = "worker " + w.id
			_ = w.proc.cmd.Process.Kill()
			<-w.proc.exited
			time.Sleep(down)
			back := time.Now()
			w.url = survivorOf(replicas)
			startWorker(w)
			streamtest.Eventually(t, hangBound, func() bool { return strings.Contains(w.proc.stderr.String(), "worker.joined") },
				"the restarted worker "+w.id+" never joined:\n"+w.proc.stderr.String())
			f.recovered = time.Since(back)
		}
		f.down = down
		faults = append(faults, f)
		t.Logf("fault %s at %s: down %s, recovered in %s (seq %d, %d missions in flight) %s", what, f.at.Round(time.Millisecond),
			f.down.Round(time.Millisecond), f.recovered.Round(time.Millisecond), f.seq, f.inFlight, f.note)
	}

	// A last stretch of calm traffic, then everything drains.
	time.Sleep(2 * time.Second) // traffic after the last fault: the schedule, not a wait
	stopTraffic()
	<-trafficDone
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	var stored []fleettest.Msg
	queued := map[string]string{} // mission → project
	streamtest.Eventually(t, 3*time.Minute, func() bool {
		stored = appendStored(t, js, stored)
		ended := map[string]bool{}
		for _, m := range stored {
			ev, err := fleet.DecodeEvent(m.Subject, m.Body)
			if err != nil || !slices.Contains(chaosTenants, ev.ProjectID) {
				continue
			}
			switch ev.Type {
			case fleet.TypeMissionQueued:
				queued[ev.MissionID] = ev.ProjectID
			case fleet.TypeMissionCompleted, fleet.TypeMissionFailed:
				ended[ev.MissionID] = true
			}
		}
		for id := range queued {
			if !ended[id] {
				return false
			}
		}
		return len(queued) > 0
	}, "missions never all ended after the traffic stopped")
	trafficMu.Lock()
	t.Logf("traffic: %d missions created through the balancer, %d refused by the budget, %d not delivered (replica killed under nginx), %d other answers",
		len(apiCreated), refused, undelivered, others)
	for _, id := range apiCreated {
		if _, ok := queued[id]; !ok {
			t.Errorf("mission %s was created (201) but never queued on FLEET", id)
		}
	}
	if refused == 0 {
		t.Errorf("no mission of %s was refused: its $%s cap was never reached, and the test proves nothing about it", chaosCapped, chaosCap)
	}
	trafficMu.Unlock()

	// Wait for the fold to settle at the stream's end on both replicas.
	last := fleetLastSeqRetry(t, js)
	stored = appendStored(t, js, stored)

	// Every mission ended exactly once in the fold; every acknowledged
	// event is stored once; no event id is stored twice.
	st := fleet.NewState(nil)
	finished := map[string]int{}
	ids := map[string]int{}
	for i, m := range stored {
		fleettest.Feed(st, uint64(i+1), m)
		if m.Subject == fleet.ClockSubject {
			continue
		}
		if ev, err := fleet.DecodeEvent(m.Subject, m.Body); err == nil {
			ids[ev.ProjectID+"/"+ev.ID]++
			if st.Effect().Finished {
				finished[ev.MissionID]++
			}
		}
	}
	for id, p := range queued {
		if finished[id] != 1 {
			t.Errorf("mission %s of %s ended %d times in the fold, want once", id, p, finished[id])
		}
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("event %s is stored %d times in FLEET", id, n)
		}
	}
	nAcked := 0
	acked.Range(func(k, _ any) bool {
		nAcked++
		if ids[chaosPublisher+"/"+k.(string)] != 1 {
			t.Errorf("event %s was acknowledged to the publisher and is stored %d times", k, ids[chaosPublisher+"/"+k.(string)])
		}
		return true
	})

	// The cap held at every revision of the ledger.
	hist, err := budgettest.History(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	capMicros, err := fleet.ParseUSD(chaosCap)
	if err != nil {
		t.Fatal(err)
	}
	caps := map[string]fleet.Micros{}
	for _, e := range hist {
		if strings.HasPrefix(e.Budget, "project."+chaosCapped+".") {
			caps[e.Budget] = capMicros
		}
	}
	// No mission costs more than its estimate (Overshoot 0): every
	// revision keeps spent + reserved within the cap.
	res, bad := budgettest.Check{Caps: caps}.Verify(hist)
	for _, b := range bad {
		t.Error(b)
	}
	if res.Revisions == 0 {
		t.Errorf("no ledger revision of %s's budget", chaosCapped)
	}
	var peak fleet.Micros
	for _, w := range res.Worst {
		peak = max(peak, w)
	}

	// Both replicas answer the same /api/v1/fleet at the same seq.
	var bodyA, bodyB []byte
	same := false
	streamtest.Eventually(t, hangBound, func() bool {
		var seqA, seqB uint64
		bodyA, seqA = fleetFrame(t, replicas[0].base(), admin)
		bodyB, seqB = fleetFrame(t, replicas[1].base(), admin)
		if seqA < last || seqA != seqB {
			return false
		}
		same = bytes.Equal(bodyA, bodyB)
		return true
	}, fmt.Sprintf("the replicas never stood at one seq at or past %d", last))
	if !same {
		t.Errorf("at the same seq the replicas answer differently:\nA: %.600s\nB: %.600s", bodyA, bodyB)
	}

	// Every tail ends equal to a replica's answer at the same seq, with
	// no gap in its diffs.
	for _, lt := range tails {
		// The stream moves (clock ticks): compare when the tail and the
		// replica stand at one seq.
		var diff string
		streamtest.Eventually(t, hangBound, func() bool {
			if lt.seq(t) < last {
				return false
			}
			_, snap := getFleet(t, replicas[0].base(), admin, lt.scope)
			seq, state, _, _ := lt.mirror(t)
			if seq != snap.Seq {
				return false
			}
			diff = cmp.Diff(canonicalJSON(t, snap.State), state)
			return true
		}, fmt.Sprintf("tail %s and replica a never stood at one seq at or past %d", lt.scope, last))
		if diff != "" {
			t.Errorf("tail %s: its frames give another state than the replica's at the same seq (-replica +tail):\n%s", lt.scope, diff)
		}
		if strings.Contains(lt.stderr.String(), "resubscribing") {
			t.Errorf("tail %s saw a gap in its diffs:\n%s", lt.scope, lt.stderr.String())
		}
	}
	stopTails()

	// VictoriaMetrics, scraping both replicas, sums each project's spend
	// to the fleet's.
	var view fleet.View
	_, snap := getFleet(t, replicas[0].base(), admin, fleet.ScopeAll)
	b, _ := json.Marshal(snap.State)
	if err := json.Unmarshal(b, &view); err != nil {
		t.Fatal(err)
	}
	want := map[string]fleet.Micros{}
	for id, p := range view.Projects {
		if p.SpendTotal > 0 {
			want[id] = p.SpendTotal
		}
	}
	got := map[string]fleet.Micros{}
	vmQuery := func(q string) map[string]fleet.Micros {
		qctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		samples, err := vm.Query(qctx, q)
		if err != nil {
			return nil
		}
		out := map[string]fleet.Micros{}
		for _, s := range samples {
			out[s.Labels["sagewai_project_id"]+s.Labels["instance"]] = fleet.Micros(s.Value*1e6 + 0.5)
		}
		return out
	}
	// Polled until equal, within a hang bound: a mismatch that lasts is
	// the failure.
	for bound := time.Now().Add(hangBound); ; {
		got = vmQuery(`sum by (sagewai_project_id) (sagewai_llm_cost_usd_total)`)
		if cmp.Equal(got, want) || time.Now().After(bound) {
			break
		}
		time.Sleep(vm.ScrapeInterval) // the next scrape: VictoriaMetrics has no way to await it
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("spend per project (-fleet +VictoriaMetrics over both replicas):\n%s\nper replica: %v", d,
			vmQuery(`sum by (sagewai_project_id, instance) (sagewai_llm_cost_usd_total)`))
	}

	// Stop both replicas cleanly (the exporter flushes and hands over),
	// then compare what the receiver got with what one replica folding
	// the whole stream alone makes.
	for _, r := range replicas {
		r.stop(t)
	}
	ref := otlptest.NewReceiver(t)
	refTel, err := telemetry.Setup(context.Background(), func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ref.URL}[k]
	}, telemetry.Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	refState := fleet.NewState(nil)
	for i, m := range stored {
		if m.Subject == fleet.ClockSubject {
			refState.Tick(uint64(i+1), m.At)
			continue
		}
		ev, err := fleet.DecodeEvent(m.Subject, m.Body)
		if err != nil {
			refState.Skip(uint64(i+1), m.At)
			continue
		}
		res := refState.Apply(uint64(i+1), m.At, ev)
		refTel.ObserveFleet(ev, res, refState)
	}
	if err := refTel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantSpans, gotSpans := chaosSpanKeys(ref), chaosSpanKeys(recv)
	wantLogs, gotLogs := chaosLogKeys(ref), chaosLogKeys(recv)
	spanDiff, logDiff := multisetDiff(wantSpans, gotSpans), multisetDiff(wantLogs, gotLogs)
	if spanDiff != "" {
		t.Errorf("spans: the replicas exported %d, a lone replica makes %d:\n%s", len(gotSpans), len(wantSpans), spanDiff)
	}
	if logDiff != "" {
		t.Errorf("business log records: the replicas exported %d, a lone replica makes %d:\n%s", len(gotLogs), len(wantLogs), logDiff)
	}

	// The report.
	var r strings.Builder
	fmt.Fprintf(&r, "Observatory chaos report (TestChaos, seed %d)\n\n", seed)
	fmt.Fprintf(&r, "Topology: 3 nats-server nodes (R3), 2 serve replicas behind nginx, %d worker processes over %d tenants, 3 tail subscribers, a publisher, VictoriaMetrics scraping both replicas, an OTLP receiver.\n\n", len(workers), len(chaosTenants))
	fmt.Fprintf(&r, "%-14s %9s %8s %10s %8s %10s  %s\n", "fault", "at", "down", "recovered", "seq", "in flight", "")
	for _, f := range faults {
		fmt.Fprintf(&r, "%-14s %9s %8s %10s %8d %10d  %s\n", f.what, f.at.Round(100*time.Millisecond), f.down.Round(10*time.Millisecond),
			f.recovered.Round(10*time.Millisecond), f.seq, f.inFlight, f.note)
	}
	trafficMu.Lock()
	fmt.Fprintf(&r, "\nFLEET: %d messages; missions queued %d (all ended once in the fold), created through the balancer %d, refused by %s's $%s cap %d (peak held $%s), not delivered %d\n",
		len(stored), len(queued), len(apiCreated), chaosCapped, chaosCap, refused, peak, undelivered)
	trafficMu.Unlock()
	fmt.Fprintf(&r, "publisher: %d events acknowledged, each stored once\n", nAcked)
	fmt.Fprintf(&r, "OTLP: %d spans and %d business log records received, a lone replica makes %d and %d\n", len(gotSpans), len(gotLogs), len(wantSpans), len(wantLogs))
	fmt.Fprintf(&r, "spend per project (VictoriaMetrics over both replicas = the fleet's): %v\n", got)
	fmt.Fprintf(&r, "result: %s\n", map[bool]string{true: "FAILED", false: "passed"}[t.Failed()])
	t.Log("\n" + r.String())
	if d := os.Getenv("OBSERVATORY_ARTIFACT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "chaos-report.txt"), []byte(r.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// chaosPost posts body through the balancer and returns the status (0
// when the request failed) and the answer.
func chaosPost(client *http.Client, url, token, body string) (int, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// survivorOf is the base URL of a replica that answers now.
func survivorOf(rs []*lbReplica) string {
	for _, r := range rs {
		if resp, err := http.Get(r.base() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r.base()
			}
		}
	}
	return rs[0].base()
}

// servesDerived reports whether replica r serves the fold's domain
// metrics, i.e. holds the exporter lease.
func servesDerived(t *testing.T, r *lbReplica, token string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.base()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte("\nsagewai_fleet_events_total{"))
}

// exporterOf is the replica holding the exporter lease; it fails the test
// when none or both serve the derived metrics.
func exporterOf(t *testing.T, rs []*lbReplica, token string) *lbReplica {
	t.Helper()
	var holders []*lbReplica
	streamtest.Eventually(t, 2*exportlease.DefaultTTL+hangBound, func() bool {
		holders = holders[:0]
		for _, r := range rs {
			if servesDerived(t, r, token) {
				holders = append(holders, r)
			}
		}
		return len(holders) == 1
	}, "not exactly one replica serves the derived metrics")
	return holders[0]
}

// fleetLastSeqRetry is FLEET's last sequence, asked again while the
// cluster elects a leader.
func fleetLastSeqRetry(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	var last uint64
	streamtest.Eventually(t, 2*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream.FleetStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil {
			return false
		}
		last = info.State.LastSeq
		return true
	}, "FLEET never answered")
	return last
}

// fleetScope is the instrumentation scope of what telemetry makes of
// fleet events.
const fleetScope = "github.com/sagewai/observatory/fleet"

// businessTypes are the fleet events that are business log records
// (DESIGN §7).
var businessTypes = map[string]bool{
	fleet.TypeAgentCreated: true, fleet.TypeRunStarted: true, fleet.TypeRunCompleted: true, fleet.TypeRunFailed: true,
}

// chaosSpanKeys and chaosLogKeys name what a receiver got: a span by its
// trace and span ids (made from the event, the same on every replica),
// a business record by its event's id.
func chaosSpanKeys(r *otlptest.Receiver) []string {
	var out []string
	for _, s := range r.Spans() {
		if s.Scope == fleetScope { // the spans of fleet events, not the replicas' own
			out = append(out, s.TraceID+"/"+s.SpanID)
		}
	}
	sort.Strings(out)
	return out
}

func chaosLogKeys(r *otlptest.Receiver) []string {
	var out []string
	for _, l := range r.Logs() {
		if id, ok := l.Attrs["event_id"].(string); ok && l.Scope == fleetScope && businessTypes[l.EventName] {
			out = append(out, l.EventName+" "+id)
		}
	}
	sort.Strings(out)
	return out
}

// multisetDiff lists, for sorted want and got, the keys got misses and
// the ones it has more often than want (at most 10 each); "" when equal.
func multisetDiff(want, got []string) string {
	count := map[string]int{}
	for _, k := range want {
		count[k]++
	}
	for _, k := range got {
		count[k]--
	}
	var missing, extra []string
	for k, n := range count {
		switch {
		case n > 0:
			missing = append(missing, fmt.Sprintf("%s (×%d)", k, n))
		case n < 0:
			extra = append(extra, fmt.Sprintf("%s (×%d)", k, -n))
		}
	}
	if len(missing)+len(extra) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return fmt.Sprintf("missing %d: %v\nduplicated or unexpected %d: %v", len(missing), missing[:min(10, len(missing))], len(extra), extra[:min(10, len(extra))])
}
