package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/worker"
)

// ---- observatory fleet ----

// fleetFigures is `observatory fleet --json`.
type fleetFigures struct {
	Workers           int                  `json:"workers"`
	Tenants           int                  `json:"tenants"`
	MissionsEnqueued  int64                `json:"missions_enqueued"`
	MissionsCompleted int64                `json:"missions_completed"`
	MissionsFailed    int64                `json:"missions_failed"`
	MissionsLost      int64                `json:"missions_lost"`
	MissionsRejected  int64                `json:"missions_rejected"`
	DoubleEnded       int64                `json:"missions_double_ended"`
	Retries           int64                `json:"retries"`
	ThroughputPerSec  float64              `json:"throughput_per_sec"`
	ClaimP50MS        float64              `json:"claim_latency_p50_ms"`
	ClaimP95MS        float64              `json:"claim_latency_p95_ms"`
	ClaimP99MS        float64              `json:"claim_latency_p99_ms"`
	ClaimMaxMS        float64              `json:"claim_latency_max_ms"`
	CrossTenantLeaks  int64                `json:"cross_tenant_leaks"`
	DurationSec       float64              `json:"duration_sec"`
	RatePerSec        float64              `json:"rate_per_sec"`
	TimeScale         float64              `json:"time_scale"`
	ByTenant          []fleetTenantFigures `json:"by_tenant"`
}

type fleetTenantFigures struct {
	ProjectID string   `json:"project_id"`
	Models    []string `json:"models"`
	Workers   int      `json:"workers"`
	Enqueued  int64    `json:"enqueued"`
	Completed int64    `json:"completed"`
	Failed    int64    `json:"failed"`
}

// fleetOptions are the flags of `observatory fleet`.
type fleetOptions struct {
	workers, tenants, missions int
	rate, timeScale            float64
	natsURL                    string
	timeout                    time.Duration
	asJSON                     bool
	seed                       uint64
}

// fleetCmd runs `observatory fleet`: workers claiming missions created
// through the admin API at a steady rate, for several tenants, and the
// proof that every mission ended once and none crossed a tenant.
func fleetCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	var o fleetOptions
	fs.IntVar(&o.workers, "workers", envInt(getenv, "OBSERVATORY_FLEET_WORKERS", 24), "workers, run as goroutines (env OBSERVATORY_FLEET_WORKERS)")
	fs.IntVar(&o.tenants, "tenants", envInt(getenv, "OBSERVATORY_FLEET_TENANTS", len(live.DefaultTenants())), "tenants, 1 to 3: acme, globex, initech (env OBSERVATORY_FLEET_TENANTS)")
	fs.IntVar(&o.missions, "missions", envInt(getenv, "OBSERVATORY_FLEET_MISSIONS", 300), "missions in all (env OBSERVATORY_FLEET_MISSIONS)")
	fs.Float64Var(&o.rate, "rate", 20, "missions per second created through the admin API")
	fs.Float64Var(&o.timeScale, "time-scale", 0.02, "speed of the synthetic agent: 1 is real time, 0.02 runs a 10 s mission in 200 ms")
	fs.StringVar(&o.natsURL, "nats-url", env("OBSERVATORY_NATS_URL", ""), "run against this NATS instead of an embedded one in a temporary directory (env OBSERVATORY_NATS_URL)")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up waiting for the missions to end after this long")
	fs.Uint64Var(&o.seed, "seed", 40, "seed of the workload")
	fs.BoolVar(&o.asJSON, "json", false, "print only the figures, as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("fleet: unexpected arguments %q", fs.Args())
	case o.workers < 1 || o.workers > 2000:
		return errors.New("fleet: want --workers between 1 and 2000")
	case o.tenants < 1 || o.tenants > len(live.DefaultTenants()):
		return fmt.Errorf("fleet: want --tenants between 1 and %d", len(live.DefaultTenants()))
	case o.missions < 1 || o.missions > 100_000:
		return errors.New("fleet: want --missions between 1 and 100000")
	case o.rate <= 0 || o.rate > 10_000:
		return errors.New("fleet: want --rate above 0 and at most 10000")
	case o.timeScale <= 0 || o.timeScale > 10:
		return errors.New("fleet: want --time-scale above 0 and at most 10")
	case o.timeout <= 0:
		return errors.New("fleet: want a positive --timeout")
	}
	fig, err := runFleet(ctx, o, stdout, stderr)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(fig); err != nil {
			return err
		}
	} else {
		printFleet(stdout, fig)
	}
	var problems []string
	if fig.CrossTenantLeaks > 0 {
		problems = append(problems, fmt.Sprintf("%d cross-tenant leaks", fig.CrossTenantLeaks))
	}
	if fig.MissionsLost > 0 {
		problems = append(problems, fmt.Sprintf("%d missions lost (enqueued %d, ended %d)", fig.MissionsLost, fig.MissionsEnqueued,
			fig.MissionsCompleted+fig.MissionsFailed))
	}
	if fig.DoubleEnded > 0 {
		problems = append(problems, fmt.Sprintf("%d missions ended more than once", fig.DoubleEnded))
	}
	if fig.MissionsRejected > 0 {
		problems = append(problems, fmt.Sprintf("%d missions refused by the admin API", fig.MissionsRejected))
	}
	if len(problems) > 0 {
		return errors.New("fleet: " + strings.Join(problems, "; "))
	}
	return nil
}

// fleetRig is the server side of the example: the pipeline, the registry,
// the admin API on a loopback port and the dispatcher.
type fleetRig struct {
	*exampleServer

	cancel context.CancelFunc
	done   chan struct{}
}

func startFleetRig(ctx context.Context, natsURL string, log *slog.Logger) (_ *fleetRig, err error) {
	p, err := startPipeline(ctx, natsURL, fleet.DefaultPricing(), log)
	if err != nil {
		return nil, err
	}
	api, err := startExampleServer(ctx, p, log)
	if err != nil {
		p.stop()
		return nil, err
	}
	r := &fleetRig{exampleServer: api}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.done = dcancel, make(chan struct{})
	d := worker.NewDispatcher(p.nc, p.js, p.pub, worker.DispatcherConfig{Logger: log})
	go func() {
		defer close(r.done)
		_ = d.Run(dctx)
	}()
	select {
	case <-d.Ready():
	case <-r.done:
		return nil, errors.New("the dispatcher did not start")
	case <-setup.Done():
		return nil, fmt.Errorf("the dispatcher did not get ready: %w", setup.Err())
	}
	if err := api.login(setup); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *fleetRig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.exampleServer.stop()
	r.p.stop()
}

// create posts body and accepts 201, or 409 for what an earlier run made.
func (r *fleetRig) create(ctx context.Context, path string, body any) error {
	_, err := r.doWant(ctx, http.MethodPost, path, body, http.StatusCreated, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return nil
	}
	return err
}

// fleetWatch follows the tenants' mission events on FLEET.
type fleetWatch struct {
	mu      sync.Mutex
	created map[string]string // mission id → project it was created in
	queued  map[string]time.Time
	claims  map[string][]fleetClaim
	ends    map[string][]fleetEnd
	retries int64
}

type fleetClaim struct {
	project, worker string
	waitMS          float64
	attempt         int
}

type fleetEnd struct {
	project, typ string
	at           time.Time
}

func (w *fleetWatch) handle(msg jetstream.Msg) {
	ev, err := fleet.DecodeEvent("", msg.Data())
	if err != nil || ev.MissionID == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.Type {
	case fleet.TypeMissionClaimed:
		var c worker.Claimed
		_ = json.Unmarshal(ev.Data, &c)
		w.claims[ev.MissionID] = append(w.claims[ev.MissionID], fleetClaim{project: ev.ProjectID, worker: ev.WorkerID, waitMS: c.WaitMS, attempt: c.Attempt})
	case fleet.TypeMissionRetrying:
		w.retries++
	case fleet.TypeMissionCompleted, fleet.TypeMissionFailed:
		w.ends[ev.MissionID] = append(w.ends[ev.MissionID], fleetEnd{project: ev.ProjectID, typ: ev.Type, at: time.Now()})
	}
}

// progress counts the run's missions that were created and that ended.
func (w *fleetWatch) progress() (created, ended, claimed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.created {
		if len(w.ends[id]) > 0 {
			ended++
		}
		if len(w.claims[id]) > 0 {
			claimed++
		}
	}
	return len(w.created), ended, claimed
}

func runFleet(ctx context.Context, o fleetOptions, stdout, stderr io.Writer) (*fleetFigures, error) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	tenants := live.DefaultTenants()[:o.tenants]
	out := stdout
	if o.asJSON {
		out = io.Discard
	}
	fmt.Fprintf(out, "observatory fleet: %d workers, %d tenants, %d missions at %g/s through the admin API (agents at %gx real time)\n",
		o.workers, len(tenants), o.missions, o.rate, 1/o.timeScale)

	rig, err := startFleetRig(ctx, o.natsURL, log)
	if err != nil {
		return nil, err
	}
	defer rig.stop()
	fmt.Fprintf(out, "  admin API  %s/api/v1 (in process)\n", rig.base)
	if rig.p.ns != nil {
		fmt.Fprintf(out, "  NATS       %s (embedded, in %s)\n", rig.p.ns.ClientURL(), rig.p.dir)
	} else {
		fmt.Fprintf(out, "  NATS       %s\n", o.natsURL)
	}

	// The tenants and their agents, through the admin API.
	for _, t := range tenants {
		if err := rig.create(ctx, "/api/v1/projects", map[string]string{"id": t.Project, "name": t.Name}); err != nil {
			return nil, err
		}
		for _, a := range t.Agents {
			if err := rig.create(ctx, "/api/v1/projects/"+t.Project+"/agents", map[string]any{
				"id": a.ID, "name": a.Name, "role": a.Role, "model": a.Model, "version": "1.0.0", "tools": a.Tools, "skills": []string{a.Role},
			}); err != nil {
				return nil, err
			}
		}
	}

	// Follow the tenants' mission events from here on.
	watch := &fleetWatch{created: map[string]string{}, queued: map[string]time.Time{}, claims: map[string][]fleetClaim{}, ends: map[string][]fleetEnd{}}
	fst, err := rig.p.js.Stream(ctx, stream.FleetStream)
	if err != nil {
		return nil, err
	}
	info, err := fst.Info(ctx)
	if err != nil {
		return nil, err
	}
	subjects := make([]string, 0, len(tenants))
	for _, t := range tenants {
		subjects = append(subjects, "fleet."+t.Project+".mission.>")
	}
	cons, err := rig.p.js.OrderedConsumer(ctx, stream.FleetStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq + 1,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(watch.handle)
	if err != nil {
		return nil, err
	}
	defer cc.Stop()

	// The workers: each enrolled for one tenant, every third for two, with
	// a key scoped to the run's tenants.
	runProjects := make([]string, 0, len(tenants))
	for _, t := range tenants {
		runProjects = append(runProjects, t.Project)
	}
	var ek struct{ Key string }
	if _, err := rig.doWant(ctx, http.MethodPost, "/api/v1/enrollment-keys", map[string]any{"projects": runProjects, "ttl": "24h"}, http.StatusCreated, &ek); err != nil {
		return nil, fmt.Errorf("an enrollment key: %w", err)
	}
	enroll := worker.EnrollHTTP(rig.base, ek.Key, nil)
	enrolled := map[string][]string{}
	tenantWorkers := map[string]int{}
	workers := make([]*worker.Worker, o.workers)
	agent := worker.Synthetic(worker.SyntheticConfig{TimeScale: o.timeScale, Seed: o.seed})
	suffix := randomHex(3)
	for i := range workers {
		projects := enrolment(runProjects, i)
		id := fmt.Sprintf("w-fleet-%s-%02d", suffix, i+1)
		enrolled[id] = projects
		for _, p := range projects {
			tenantWorkers[p]++
		}
		workers[i] = worker.New(rig.p.js, rig.p.pub, worker.Config{
			ID: id, Projects: projects, Capacity: 1, Agent: agent, Host: "fleet-example", Logger: log, Enroll: enroll,
		})
	}
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	var wg sync.WaitGroup
	runErrs := make(chan error, len(workers))
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				runErrs <- err
			}
		}()
	}
	stopWorkers := func() {
		for _, w := range workers {
			w.Stop()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			wcancel()
			<-done
		}
	}
	defer stopWorkers()
	if err := waitWorkersReady(ctx, rig.p.js, tenantWorkers, runErrs); err != nil {
		return nil, err
	}

	// The missions, at a steady rate.
	rng := rand.New(rand.NewPCG(o.seed, 0xf1ee7))
	totalWeight := 0
	for _, t := range tenants {
		totalWeight += t.Weight
	}
	var rejected atomic.Int64
	var rejectMu sync.Mutex
	var firstReject error
	sem := make(chan struct{}, 64)
	var posts sync.WaitGroup
	interval := time.Duration(float64(time.Second) / o.rate)
	start := time.Now()
	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	go fleetProgress(stderr, watch, o.missions, start, progressDone, progressStopped)
	stopProgress := sync.OnceFunc(func() { close(progressDone); <-progressStopped })
	defer stopProgress()

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for i := range o.missions {
		if i > 0 {
			select {
			case <-ctx.Done():
				posts.Wait()
				return nil, ctx.Err()
			case err := <-runErrs:
				posts.Wait()
				return nil, err
			case <-ticker.C:
			}
		}
		n := rng.IntN(totalWeight)
		t := tenants[0]
		for _, c := range tenants {
			if n < c.Weight {
				t = c
				break
			}
			n -= c.Weight
		}
		a := t.Agents[rng.IntN(len(t.Agents))]
		body := map[string]any{
			"title": fmt.Sprintf("%s: %s job %d", t.Team, a.Role, i+1), "priority": []string{"low", "normal", "normal", "high"}[rng.IntN(4)],
			"team_id": t.Team, "user_id": t.Users[rng.IntN(len(t.Users))], "model": a.Model,
		}
		sem <- struct{}{}
		posts.Add(1)
		go func() {
			defer posts.Done()
			defer func() { <-sem }()
			var m struct {
				ID        string    `json:"id"`
				CreatedAt time.Time `json:"created_at"`
			}
			if _, err := rig.doWant(ctx, http.MethodPost, "/api/v1/projects/"+t.Project+"/missions", body, http.StatusCreated, &m); err != nil {
				rejected.Add(1)
				rejectMu.Lock()
				if firstReject == nil {
					firstReject = err
				}
				rejectMu.Unlock()
				return
			}
			watch.mu.Lock()
			watch.created[m.ID] = t.Project
			watch.queued[m.ID] = m.CreatedAt
			watch.mu.Unlock()
		}()
	}
	posts.Wait()
	if firstReject != nil {
		fmt.Fprintf(stderr, "fleet: %d missions refused; the first: %v\n", rejected.Load(), firstReject)
	}

	// Wait for every mission to end.
	deadline := time.NewTimer(o.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		created, ended, _ := watch.progress()
		if ended >= created {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-runErrs:
			return nil, err
		case <-deadline.C:
			fmt.Fprintf(stderr, "fleet: %d of %d missions had not ended after %s\n", created-ended, created, o.timeout)
			break wait
		case <-tick.C:
		}
	}
	stopProgress()
	stopWorkers()

	fig := fleetReport(watch, workers, enrolled, tenants, tenantWorkers, start)
	fig.Workers, fig.Tenants = o.workers, len(tenants)
	fig.MissionsRejected = rejected.Load()
	fig.RatePerSec, fig.TimeScale = o.rate, o.timeScale
	return fig, nil
}

// waitWorkersReady waits until every worker waits for a mission of each
// of its projects (a pull request pending on the project's consumer), so
// that the claim latencies measure the dispatch, not the workers' start.
// After 10 s it goes on anyway.
func waitWorkersReady(ctx context.Context, js jetstream.JetStream, tenantWorkers map[string]int, runErrs <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for project, n := range tenantWorkers {
		for time.Now().Before(deadline) {
			c, err := js.Consumer(ctx, stream.MissionsStream, worker.ConsumerName(project))
			if err == nil {
				if info, err := c.Info(ctx); err == nil && info.NumWaiting >= n {
					break
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-runErrs:
				return err
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// fleetReport measures the run from what FLEET said and the workers counted.
func fleetReport(watch *fleetWatch, workers []*worker.Worker, enrolled map[string][]string, tenants []live.Tenant,
	tenantWorkers map[string]int, start time.Time) *fleetFigures {
	watch.mu.Lock()
	defer watch.mu.Unlock()
	fig := &fleetFigures{ByTenant: []fleetTenantFigures{}, Retries: watch.retries}
	byTenant := map[string]*fleetTenantFigures{}
	for _, t := range tenants {
		models := []string{}
		for _, a := range t.Agents {
			if !slices.Contains(models, a.Model) {
				models = append(models, a.Model)
			}
		}
		fig.ByTenant = append(fig.ByTenant, fleetTenantFigures{ProjectID: t.Project, Models: models, Workers: tenantWorkers[t.Project]})
	}
	for i := range fig.ByTenant {
		byTenant[fig.ByTenant[i].ProjectID] = &fig.ByTenant[i]
	}
	var waits []float64
	var last time.Time
	for id, project := range watch.created {
		fig.MissionsEnqueued++
		bt := byTenant[project]
		bt.Enqueued++
		for j, c := range watch.claims[id] {
			if c.project != project || !slices.Contains(enrolled[c.worker], project) {
				fig.CrossTenantLeaks++
			}
			if j == 0 {
				waits = append(waits, c.waitMS)
			}
		}
		ends := watch.ends[id]
		if len(ends) == 0 {
			fig.MissionsLost++
			continue
		}
		if len(ends) > 1 {
			fig.DoubleEnded++
		}
		e := ends[0]
		if e.project != project {
			fig.CrossTenantLeaks++
		}
		if e.typ == fleet.TypeMissionCompleted {
			fig.MissionsCompleted++
			bt.Completed++
		} else {
			fig.MissionsFailed++
			bt.Failed++
		}
		if e.at.After(last) {
			last = e.at
		}
	}
	for _, w := range workers {
		fig.CrossTenantLeaks += w.Stats().Leaks
	}
	if !last.IsZero() {
		fig.DurationSec = round2(last.Sub(start).Seconds())
		if d := last.Sub(start).Seconds(); d > 0 {
			fig.ThroughputPerSec = round2(float64(fig.MissionsCompleted+fig.MissionsFailed) / d)
		}
	}
	sort.Float64s(waits)
	fig.ClaimP50MS, fig.ClaimP95MS, fig.ClaimP99MS = percentile(waits, 50), percentile(waits, 95), percentile(waits, 99)
	if len(waits) > 0 {
		fig.ClaimMaxMS = waits[len(waits)-1]
	}
	return fig
}

// percentile is the nearest-rank percentile of sorted values (0 for none).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// fleetProgress shows the run's progress on w until done: one line
// rewritten in place on a terminal, a plain line a second otherwise.
func fleetProgress(w io.Writer, watch *fleetWatch, total int, start time.Time, done <-chan struct{}, stopped chan<- struct{}) {
	defer close(stopped)
	tty := isTerminal(w)
	every := time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	line := func() string {
		created, ended, claimed := watch.progress()
		return fmt.Sprintf("fleet %5.1fs  created %d/%d  claimed %d  ended %d  in flight %d", time.Since(start).Seconds(),
			created, total, claimed, ended, created-ended)
	}
	for {
		select {
		case <-done:
			if tty {
				fmt.Fprintf(w, "\r\033[K%s\n", line())
			} else {
				fmt.Fprintln(w, line())
			}
			return
		case <-t.C:
			if tty {
				fmt.Fprintf(w, "\r\033[K%s", line())
			} else {
				fmt.Fprintln(w, line())
			}
		}
	}
}

// isTerminal says whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// printFleet prints the per-tenant table and the proof block.
func printFleet(w io.Writer, f *fleetFigures) {
	fmt.Fprintln(w, "\nPer tenant")
	for _, t := range f.ByTenant {
		fmt.Fprintf(w, "  %-8s %2d workers  %4d enqueued  %4d completed  %3d failed  models %s\n", t.ProjectID, t.Workers, t.Enqueued,
			t.Completed, t.Failed, strings.Join(t.Models, ", "))
	}
	fmt.Fprintln(w, "\nProof")
	fmt.Fprintf(w, "  workers             %d\n", f.Workers)
	fmt.Fprintf(w, "  tenants             %d\n", f.Tenants)
	fmt.Fprintf(w, "  missions enqueued   %d\n", f.MissionsEnqueued)
	fmt.Fprintf(w, "  missions completed  %d\n", f.MissionsCompleted)
	fmt.Fprintf(w, "  missions failed     %d (the synthetic agent's injected failures)\n", f.MissionsFailed)
	fmt.Fprintf(w, "  missions lost       %d\n", f.MissionsLost)
	fmt.Fprintf(w, "  retries             %d\n", f.Retries)
	fmt.Fprintf(w, "  throughput          %.2f missions/s over %.2f s\n", f.ThroughputPerSec, f.DurationSec)
	fmt.Fprintf(w, "  claim latency       p50 %.0f ms  p95 %.0f ms  p99 %.0f ms  max %.0f ms\n", f.ClaimP50MS, f.ClaimP95MS, f.ClaimP99MS, f.ClaimMaxMS)
	fmt.Fprintf(w, "  cross-tenant leaks  %d\n", f.CrossTenantLeaks)
	b, _ := json.Marshal(f)
	fmt.Fprintf(w, "  %s\n", b)
}
