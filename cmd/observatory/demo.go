package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/costreport"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleetload"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/worker"
)

// demoOptions are the flags `observatory demo` adds to serve's.
type demoOptions struct {
	workers     int
	missionRate float64
	timeScale   float64
	crossEvery  time.Duration
	fresh       bool
}

// demoDataNote is what `observatory demo -h` says the demo does to its
// data dir, in two lines (the README says the same).
const demoDataNote = `The demo keeps its stream, checkpoints and keys in ./data (--data-dir) between runs; missions an
earlier run left queued are taken over once their lease ends. --fresh empties it and starts anew.
`

// dataDirEntries are the names an observatory data dir holds: the
// embedded NATS's store (nats), the hub's checkpoints, the keys, and the
// log file.
var dataDirEntries = map[string]bool{"nats": true, "checkpoints": true, "keys": true, logFileName: true}

// freshDataDir empties dir for --fresh. It removes only what is inside
// dir, and only when dir looks like an observatory data dir: it holds the
// embedded NATS's store or the checkpoints, and nothing an observatory
// does not write there. Anything else (a mistyped --data-dir pointing at
// a home or a project) is refused untouched. A dir that does not exist or
// is empty is already fresh.
func freshDataDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--fresh: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	ours := false
	for _, e := range entries {
		if !dataDirEntries[e.Name()] {
			return fmt.Errorf("--fresh: %s does not look like an observatory data dir (it holds %q, which observatory does not write); nothing was removed", dir, e.Name())
		}
		if e.IsDir() && (e.Name() == "nats" || e.Name() == "checkpoints") {
			ours = true
		}
	}
	if !ours {
		return fmt.Errorf("--fresh: %s does not look like an observatory data dir (no nats/ or checkpoints/ in it); nothing was removed", dir)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("--fresh: %w", err)
		}
	}
	return nil
}

// demoRun is the fleet and the workload `observatory demo` runs beside the
// server, in the same process and on the same NATS: the lease dispatcher,
// real workers serving three tenants, and the live HTTP workload against
// the server's own API. Run it with run; proof prints what it did.
type demoRun struct {
	o        demoOptions
	nc       *nats.Conn
	js       jetstream.JetStream
	pub      *stream.Publisher
	hub      *stream.Hub
	base     string
	password string
	// enrolled runs the workers on the NATS credentials their enrollment
	// gives them, as workers on other machines run; false (an external
	// NATS without an account signing key: no credentials to give) runs
	// them on the server's own connection.
	enrolled bool
	log      *slog.Logger
	// began is when the command started, the origin of the time to alive.
	began time.Time

	// mu guards what run leaves for proof.
	mu      sync.Mutex
	started time.Time
	stopped time.Time
	alive   time.Duration // 0 until the demo is alive
	load    *live.Workload
	workers []*worker.Worker
	before  map[string]fleet.Project
	after   map[string]fleet.Project
}

// run starts the dispatcher, the workers and the workload once the hub is
// ready, and runs them until ctx is cancelled. Then it stops the workload,
// the workers (abruptly, as a crash would: their missions' leases expire
// and the next run's workers take them over) and the dispatcher, and reads
// the fold's figures for the proof while the server still runs.
func (d *demoRun) run(ctx context.Context) error {
	if err := waitHubReady(ctx, d.hub); err != nil {
		return nil // stopped before the hub was ready: nothing to show
	}
	before, _, err := d.hub.View(ctx, fleet.ScopeAll)
	if err != nil {
		return nil
	}
	dctx, stopDispatcher := context.WithCancel(context.WithoutCancel(ctx))
	dispatched := make(chan struct{})
	defer func() { stopDispatcher(); <-dispatched }()
	dispatcher := worker.NewDispatcher(d.nc, d.js, d.pub, worker.DispatcherConfig{Logger: d.log})
	go func() {
		defer close(dispatched)
		if err := dispatcher.Run(dctx); err != nil && !errors.Is(err, context.Canceled) {
			d.log.Error("the lease dispatcher stopped", "event", "demo.dispatcher.failed", "error", err.Error())
		}
	}()

	wctx, stopAll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAll()
	var wg sync.WaitGroup
	defer wg.Wait()

	load, err := live.New(live.Config{
		BaseURL: d.base, Password: d.password, MissionRate: d.o.missionRate, CrossTenantEvery: d.o.crossEvery, Logger: d.log,
	})
	if err != nil {
		return err
	}
	if err := load.Setup(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("demo: %w", err)
	}
	tenants := make([]string, 0, len(load.Tenants()))
	for _, t := range load.Tenants() {
		tenants = append(tenants, t.Project)
	}
	// The workers enroll with a key scoped to the three tenants and
	// connect with the NATS credentials they receive, as workers on other
	// machines would.
	key, err := load.EnrollmentKey(ctx, tenants, "24h")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("demo: %w", err)
	}
	enroll := worker.EnrollHTTP(d.base, key, nil)
	agent := worker.Synthetic(worker.SyntheticConfig{TimeScale: d.o.timeScale})
	workers := make([]*worker.Worker, d.o.workers)
	for i := range workers {
		cfg := worker.Config{
			ID: fmt.Sprintf("w-demo-%02d", i+1), Projects: fleetload.Enrolment(tenants, i), Capacity: 1, Agent: agent, Host: "demo", Logger: d.log,
			Enroll: enroll,
		}
		if d.enrolled {
			workers[i] = worker.Enrolled(cfg)
		} else {
			workers[i] = worker.New(d.js, d.pub, cfg)
		}
		w := workers[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				d.log.Error("a demo worker stopped", "event", "demo.worker.failed", "error", err.Error())
			}
		}()
	}
	d.mu.Lock()
	d.started, d.load, d.workers, d.before = time.Now(), load, workers, before.Projects
	d.mu.Unlock()
	actx, stopAlive := context.WithCancel(ctx)
	defer stopAlive()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.awaitAlive(actx, tenants, before.Projects)
	}()

	err = load.Run(ctx)
	stopAlive()
	// The workers stop cleanly (worker.left) if their missions end within
	// a grace period, else abruptly: their leases expire and the next
	// run's workers take the missions over.
	for _, w := range workers {
		w.Stop()
	}
	grace := time.AfterFunc(demoStopGrace, stopAll)
	wg.Wait()
	grace.Stop()
	// The server still runs: read where the fold stands for the proof.
	readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	load.Drain(readCtx, 0)
	after, _, verr := d.hub.View(readCtx, fleet.ScopeAll)
	d.mu.Lock()
	d.stopped = time.Now()
	if verr == nil {
		d.after = after.Projects
	}
	d.mu.Unlock()
	return err
}

// demoStopGrace is how long the demo's workers get to end their missions
// when it stops.
const demoStopGrace = 3 * time.Second

// aliveEvery is how often the demo looks whether it is alive yet: the
// resolution of the time to alive.
const aliveEvery = 20 * time.Millisecond

// awaitAlive measures the demo's time to alive: from the start of the
// command to the first moment the fold, which the HUD shows, has the hub
// caught up with the stream (the HUD is live), every demo worker online,
// and in every tenant a mission completed and money spent since the demo
// began. It records it and logs it (event demo.alive), once; it returns
// then, or when ctx ends.
func (d *demoRun) awaitAlive(ctx context.Context, tenants []string, before map[string]fleet.Project) {
	t := time.NewTicker(aliveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.hub.Ready() != nil {
			continue
		}
		v, _, err := d.hub.View(ctx, fleet.ScopeAll)
		if err != nil || !demoAlive(v, d.o.workers, tenants, before) {
			continue
		}
		alive := time.Since(d.began)
		d.mu.Lock()
		d.alive = alive
		d.mu.Unlock()
		d.log.Info("the demo is alive: workers online, missions completed and money spent in every tenant", "event", "demo.alive",
			"time_to_alive_ms", alive.Milliseconds(), "workers_online", v.Posture.WorkersOnline)
		return
	}
}

// demoAlive says whether v shows the demo alive: workers online, and in
// every tenant a mission completed and money spent since before.
func demoAlive(v fleet.View, workers int, tenants []string, before map[string]fleet.Project) bool {
	if v.Posture.WorkersOnline < workers {
		return false
	}
	for _, p := range tenants {
		now, then := v.Projects[p], before[p]
		if now.MissionsDone <= then.MissionsDone || now.SpendTotal <= then.SpendTotal {
			return false
		}
	}
	return true
}

// waitHubReady waits until the hub has folded the stream up to where it
// stood at start.
func waitHubReady(ctx context.Context, hub *stream.Hub) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for hub.Ready() != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// demoFigures are the demo's own figures in its proof block, as JSON.
type demoFigures struct {
	// TimeToAliveSec is the time to alive (see awaitAlive); 0 if the demo
	// stopped before it was alive.
	TimeToAliveSec float64 `json:"time_to_alive_sec"`
	Workers        int     `json:"workers"`
	Claims         int64   `json:"claims"`
	Completed      int64   `json:"missions_completed"`
	Failed         int64   `json:"missions_failed"`
	Leaks          int64   `json:"cross_tenant_leaks"`
	RanSec         float64 `json:"ran_sec"`
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// proof prints what the demo did: the workload's proof, the workers', and
// the CFO's line. It prints nothing if the demo never started.
func (d *demoRun) proof(w io.Writer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.load == nil {
		return
	}
	f := d.load.Figures()
	live.Print(w, f)
	var st worker.Stats
	for _, wk := range d.workers {
		s := wk.Stats()
		st.Claimed += s.Claimed
		st.Completed += s.Completed
		st.Failed += s.Failed
		st.Leaks += s.Leaks
	}
	fmt.Fprintf(w, "  workers             %d: %d claims, %d missions completed, %d failed, %d cross-tenant leaks\n",
		len(d.workers), st.Claimed, st.Completed, st.Failed, st.Leaks)
	df := demoFigures{Workers: len(d.workers), Claims: st.Claimed, Completed: st.Completed, Failed: st.Failed, Leaks: st.Leaks,
		RanSec: round2(d.stopped.Sub(d.started).Seconds())}
	if d.alive > 0 {
		df.TimeToAliveSec = round2(d.alive.Seconds())
		fmt.Fprintf(w, "  time to alive       %.2f s (HUD live, %d workers online, a mission completed and money spent in every tenant)\n",
			df.TimeToAliveSec, len(d.workers))
	} else {
		fmt.Fprintf(w, "  time to alive       not reached (HUD live, %d workers online, a mission completed and money spent in every tenant)\n",
			len(d.workers))
	}
	b, _ := json.Marshal(df)
	fmt.Fprintf(w, "  %s\n", b)
	if d.after == nil {
		fmt.Fprintln(w, "\n(the fold could not be read at the end: no spend figures)")
		return
	}
	projects := make([]string, 0, len(d.after))
	for p := range d.after {
		projects = append(projects, p)
	}
	sort.Strings(projects)
	spent := make([]costreport.ProjectSpend, 0, len(projects))
	for _, p := range projects {
		if s := d.after[p].SpendTotal - d.before[p].SpendTotal; s > 0 {
			spent = append(spent, costreport.ProjectSpend{Project: p, Spent: s})
		}
	}
	fmt.Fprintf(w, "  ran                 %s\n\n", d.stopped.Sub(d.started).Round(time.Second))
	if len(spent) == 0 {
		fmt.Fprintln(w, "Nothing was spent this run.")
		return
	}
	fmt.Fprintln(w, costreport.CFOLine(spent))
}
