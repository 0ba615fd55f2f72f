package fleetload

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/rig"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/worker"
)

// Figures is `observatory fleet --json`.
type Figures struct {
	Workers           int             `json:"workers"`
	Tenants           int             `json:"tenants"`
	MissionsEnqueued  int64           `json:"missions_enqueued"`
	MissionsCompleted int64           `json:"missions_completed"`
	MissionsFailed    int64           `json:"missions_failed"`
	MissionsLost      int64           `json:"missions_lost"`
	MissionsRejected  int64           `json:"missions_rejected"`
	DoubleEnded       int64           `json:"missions_double_ended"`
	Retries           int64           `json:"retries"`
	ThroughputPerSec  float64         `json:"throughput_per_sec"`
	ClaimP50MS        float64         `json:"claim_latency_p50_ms"`
	ClaimP95MS        float64         `json:"claim_latency_p95_ms"`
	ClaimP99MS        float64         `json:"claim_latency_p99_ms"`
	ClaimMaxMS        float64         `json:"claim_latency_max_ms"`
	CrossTenantLeaks  int64           `json:"cross_tenant_leaks"`
	DurationSec       float64         `json:"duration_sec"`
	RatePerSec        float64         `json:"rate_per_sec"`
	TimeScale         float64         `json:"time_scale"`
	ByTenant          []TenantFigures `json:"by_tenant"`
	// WorkersUnclean counts worker processes (Config.WorkerCommand) that
	// did not exit cleanly when the run stopped them.
	WorkersUnclean int64 `json:"workers_unclean,omitempty"`
}

// TenantFigures are one tenant's share of the run.
type TenantFigures struct {
	ProjectID string   `json:"project_id"`
	Models    []string `json:"models"`
	Workers   int      `json:"workers"`
	Enqueued  int64    `json:"enqueued"`
	Completed int64    `json:"completed"`
	Failed    int64    `json:"failed"`
}

// Problems lists what the figures say went wrong: cross-tenant leaks,
// missions lost or ended more than once, missions the API refused. The
// command exits non-zero when there is any.
func (f *Figures) Problems() []string {
	var problems []string
	if f.CrossTenantLeaks > 0 {
		problems = append(problems, fmt.Sprintf("%d cross-tenant leaks", f.CrossTenantLeaks))
	}
	if f.MissionsLost > 0 {
		problems = append(problems, fmt.Sprintf("%d missions lost (enqueued %d, ended %d)", f.MissionsLost, f.MissionsEnqueued,
			f.MissionsCompleted+f.MissionsFailed))
	}
	if f.DoubleEnded > 0 {
		problems = append(problems, fmt.Sprintf("%d missions ended more than once", f.DoubleEnded))
	}
	if f.MissionsRejected > 0 {
		problems = append(problems, fmt.Sprintf("%d missions refused by the admin API", f.MissionsRejected))
	}
	if f.WorkersUnclean > 0 {
		problems = append(problems, fmt.Sprintf("%d worker processes did not exit cleanly", f.WorkersUnclean))
	}
	return problems
}

// Config configures a run. Zero values mean the defaults of `observatory
// fleet`'s flags.
type Config struct {
	// Workers run as goroutines (default 24), or as processes with
	// WorkerCommand; Tenants are the first of live.DefaultTenants
	// (default all three).
	Workers, Tenants int
	// WorkerCommand, when set, runs each worker as a process of its own:
	// the command line of `observatory worker` (the observatory binary
	// and "worker"), to which the run adds each worker's flags (--url,
	// --worker-id, --projects, ...). The enrollment key goes in the
	// processes' environment (OBSERVATORY_ENROLL_KEY), never on their
	// command lines. It needs the embedded NATS, whose credentials the
	// workers enroll for.
	WorkerCommand []string
	// Missions in all (default 300), created at Rate per second (default 20).
	Missions int
	Rate     float64
	// TimeScale is the synthetic agent's speed: 1 is real time (default 0.02).
	TimeScale float64
	// NATSURL runs on this NATS instead of an embedded one; NATSCreds is
	// the credentials file of a user of it allowed what the example does
	// (streams, buckets, consumers), when it takes no anonymous clients.
	NATSURL, NATSCreds string
	// Timeout bounds the wait for the missions to end (default 3 min);
	// missions that have not ended by then are lost.
	Timeout time.Duration
	// Seed seeds the workload (the command's default is 40).
	Seed uint64
	// Out receives the run's header (default: discard).
	Out io.Writer
	// Progress receives the progress line and notes (default: discard);
	// TTY says it is a terminal, where the line is rewritten in place.
	Progress io.Writer
	TTY      bool
	// Now is the run's clock (default time.Now).
	Now func() time.Time
	// Logger receives the pipeline's and the workers' logs (default: discard).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Workers == 0 {
		c.Workers = 24
	}
	if c.Tenants == 0 {
		c.Tenants = len(live.DefaultTenants())
	}
	if c.Missions == 0 {
		c.Missions = 300
	}
	if c.Rate == 0 {
		c.Rate = 20
	}
	if c.TimeScale == 0 {
		c.TimeScale = 0.02
	}
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Minute
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// site is the server side of the example: the pipeline, the admin API on
// a loopback port and the dispatcher.
type site struct {
	*rig.Server
	p *rig.Pipeline

	cancel context.CancelFunc
	done   chan struct{}
}

func startSite(ctx context.Context, cfg Config) (_ *site, err error) {
	p, err := rig.Start(ctx, rig.Config{NATSURL: cfg.NATSURL, NATSCreds: cfg.NATSCreds, Logger: cfg.Logger, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	api, err := rig.StartServer(ctx, p)
	if err != nil {
		p.Stop()
		return nil, err
	}
	s := &site{Server: api, p: p}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = dcancel, make(chan struct{})
	d := worker.NewDispatcher(p.NC, p.JS, p.Pub, worker.DispatcherConfig{Logger: cfg.Logger, Now: cfg.Now})
	go func() {
		defer close(s.done)
		_ = d.Run(dctx)
	}()
	select {
	case <-d.Ready():
	case <-s.done:
		return nil, errors.New("the dispatcher did not start")
	case <-setup.Done():
		return nil, fmt.Errorf("the dispatcher did not get ready: %w", setup.Err())
	}
	if err := api.Login(setup); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *site) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	s.Server.Stop()
	s.p.Stop()
}

// create posts body and accepts 201, or 409 for what an earlier run made.
func (s *site) create(ctx context.Context, path string, body any) error {
	_, err := s.DoWant(ctx, http.MethodPost, path, body, http.StatusCreated, nil)
	var ae *live.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return nil
	}
	return err
}

// watch follows the tenants' mission events on FLEET.
type watch struct {
	now func() time.Time

	mu      sync.Mutex
	created map[string]string // mission id → project it was created in
	queued  map[string]time.Time
	claims  map[string][]claim
	ends    map[string][]end
	retries int64
}

type claim struct {
	project, worker string
	waitMS          float64
	attempt         int
}

type end struct {
	project, typ string
	at           time.Time
}

func (w *watch) handle(msg jetstream.Msg) {
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
		w.claims[ev.MissionID] = append(w.claims[ev.MissionID], claim{project: ev.ProjectID, worker: ev.WorkerID, waitMS: c.WaitMS, attempt: c.Attempt})
	case fleet.TypeMissionRetrying:
		w.retries++
	case fleet.TypeMissionCompleted, fleet.TypeMissionFailed:
		w.ends[ev.MissionID] = append(w.ends[ev.MissionID], end{project: ev.ProjectID, typ: ev.Type, at: w.now()})
	}
}

// progress counts the run's missions that were created and that ended.
func (w *watch) progress() (created, ended, claimed int) {
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

// Run runs the example and measures it. An error means the run could not
// be carried out; what went wrong within it is in the figures' Problems.
func Run(ctx context.Context, cfg Config) (*Figures, error) {
	cfg.defaults()
	tenants := live.DefaultTenants()[:cfg.Tenants]
	out := cfg.Out
	as := ""
	if len(cfg.WorkerCommand) > 0 {
		as = " (processes)"
	}
	fmt.Fprintf(out, "observatory fleet: %d workers%s, %d tenants, %d missions at %g/s through the admin API (agents at %gx real time)\n",
		cfg.Workers, as, len(tenants), cfg.Missions, cfg.Rate, 1/cfg.TimeScale)

	s, err := startSite(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	if len(cfg.WorkerCommand) > 0 && s.p.Authority == nil {
		return nil, errors.New("worker processes enroll for NATS credentials, which the server cannot mint on an existing NATS: run them on the embedded one")
	}
	fmt.Fprintf(out, "  admin API  %s/api/v1 (in process)\n", s.Base)
	if s.p.NS != nil {
		fmt.Fprintf(out, "  NATS       %s (embedded, in %s)\n", s.p.NS.ClientURL(), s.p.Dir)
	} else {
		fmt.Fprintf(out, "  NATS       %s\n", cfg.NATSURL)
	}

	// The tenants and their agents, through the admin API.
	for _, t := range tenants {
		if err := s.create(ctx, "/api/v1/projects", map[string]string{"id": t.Project, "name": t.Name}); err != nil {
			return nil, err
		}
		for _, a := range t.Agents {
			if err := s.create(ctx, "/api/v1/projects/"+t.Project+"/agents", map[string]any{
				"id": a.ID, "name": a.Name, "role": a.Role, "model": a.Model, "version": "1.0.0", "tools": a.Tools, "skills": []string{a.Role},
			}); err != nil {
				return nil, err
			}
		}
	}

	// Follow the tenants' mission events from here on.
	w := &watch{now: cfg.Now, created: map[string]string{}, queued: map[string]time.Time{}, claims: map[string][]claim{}, ends: map[string][]end{}}
	fst, err := s.p.JS.Stream(ctx, stream.FleetStream)
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
	cons, err := s.p.JS.OrderedConsumer(ctx, stream.FleetStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq + 1,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(w.handle)
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
	if _, err := s.DoWant(ctx, http.MethodPost, "/api/v1/enrollment-keys", map[string]any{"projects": runProjects, "ttl": "24h"}, http.StatusCreated, &ek); err != nil {
		return nil, fmt.Errorf("an enrollment key: %w", err)
	}
	enrolled := map[string][]string{}
	tenantWorkers := map[string]int{}
	members := make([]member, cfg.Workers)
	suffix := randomHex(3)
	for i := range members {
		projects := Enrolment(runProjects, i)
		members[i] = member{id: fmt.Sprintf("w-fleet-%s-%02d", suffix, i+1), projects: projects}
		enrolled[members[i].id] = projects
		for _, p := range projects {
			tenantWorkers[p]++
		}
	}
	var workers crew
	if len(cfg.WorkerCommand) > 0 {
		procs, err := startProcesses(cfg.WorkerCommand, s.Base, ek.Key, members, cfg)
		if err != nil {
			return nil, err
		}
		workers = procs
	} else {
		workers = startGoroutines(ctx, goroutineWorkers(cfg, s, ek.Key, members))
	}
	defer workers.stop()
	runErrs := workers.failed()
	if err := waitWorkersReady(ctx, s.p.JS, tenantWorkers, runErrs); err != nil {
		return nil, err
	}

	// The missions, at a steady rate.
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xf1ee7))
	totalWeight := 0
	for _, t := range tenants {
		totalWeight += t.Weight
	}
	var rejected atomic.Int64
	var rejectMu sync.Mutex
	var firstReject error
	sem := make(chan struct{}, 64)
	var posts sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := cfg.Now()
	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	go showProgress(cfg.Progress, cfg.TTY, w, cfg.Missions, func() time.Duration { return cfg.Now().Sub(start) }, progressDone, progressStopped)
	stopProgress := sync.OnceFunc(func() { close(progressDone); <-progressStopped })
	defer stopProgress()

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for i := range cfg.Missions {
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
			if _, err := s.DoWant(ctx, http.MethodPost, "/api/v1/projects/"+t.Project+"/missions", body, http.StatusCreated, &m); err != nil {
				rejected.Add(1)
				rejectMu.Lock()
				if firstReject == nil {
					firstReject = err
				}
				rejectMu.Unlock()
				return
			}
			w.mu.Lock()
			w.created[m.ID] = t.Project
			w.queued[m.ID] = m.CreatedAt
			w.mu.Unlock()
		}()
	}
	posts.Wait()
	if firstReject != nil {
		fmt.Fprintf(cfg.Progress, "fleet: %d missions refused; the first: %v\n", rejected.Load(), firstReject)
	}

	// Wait for every mission to end.
	deadline := time.NewTimer(cfg.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		created, ended, _ := w.progress()
		if ended >= created {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-runErrs:
			return nil, err
		case <-deadline.C:
			fmt.Fprintf(cfg.Progress, "fleet: %d of %d missions had not ended after %s\n", created-ended, created, cfg.Timeout)
			break wait
		case <-tick.C:
		}
	}
	stopProgress()
	workers.stop()

	fig := report(w, workers.stats().Leaks, enrolled, tenants, tenantWorkers, start)
	fig.WorkersUnclean = workers.unclean()
	fig.Workers, fig.Tenants = cfg.Workers, len(tenants)
	fig.MissionsRejected = rejected.Load()
	fig.RatePerSec, fig.TimeScale = cfg.Rate, cfg.TimeScale
	return fig, nil
}

// goroutineWorkers makes the runtimes of members, to run in this process,
// enrolling with key.
func goroutineWorkers(cfg Config, s *site, key string, members []member) []*worker.Worker {
	enroll := worker.EnrollHTTP(s.Base, key, nil)
	agent := worker.Synthetic(worker.SyntheticConfig{TimeScale: cfg.TimeScale, Seed: cfg.Seed})
	workers := make([]*worker.Worker, len(members))
	for i, m := range members {
		wcfg := worker.Config{
			ID: m.id, Projects: m.projects, Capacity: 1, Agent: agent, Host: "fleet-example", Logger: cfg.Logger, Enroll: enroll, Now: cfg.Now,
		}
		if s.p.Authority != nil {
			// On the embedded NATS the workers connect with the
			// credentials their enrollment gives them, as on other
			// machines; on an existing NATS, the server has none to give
			// and they share the example's connection.
			workers[i] = worker.Enrolled(wcfg)
		} else {
			workers[i] = worker.New(s.p.JS, s.p.Pub, wcfg)
		}
	}
	return workers
}

// Enrolment gives worker i its projects: one tenant each in turn, and
// every third worker a second one, as shared workers are.
func Enrolment(tenants []string, i int) []string {
	projects := []string{tenants[i%len(tenants)]}
	if i%3 == 2 && len(tenants) > 1 {
		projects = append(projects, tenants[(i+1)%len(tenants)])
	}
	return projects
}

// workersReadyWait bounds waitWorkersReady.
const workersReadyWait = 10 * time.Second

// waitWorkersReady waits until every worker waits for a mission of each
// of its projects (a pull request pending on the project's consumer), so
// that the claim latencies measure the dispatch, not the workers' start.
// After workersReadyWait it goes on anyway.
func waitWorkersReady(ctx context.Context, js jetstream.JetStream, tenantWorkers map[string]int, runErrs <-chan error) error {
	deadline := time.NewTimer(workersReadyWait)
	defer deadline.Stop()
	for project, n := range tenantWorkers {
		for {
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
			case <-deadline.C:
				return nil
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// report measures the run from what FLEET said and the workers counted.
func report(w *watch, workerLeaks int64, enrolled map[string][]string, tenants []live.Tenant,
	tenantWorkers map[string]int, start time.Time) *Figures {
	w.mu.Lock()
	defer w.mu.Unlock()
	fig := &Figures{ByTenant: []TenantFigures{}, Retries: w.retries}
	byTenant := map[string]*TenantFigures{}
	for _, t := range tenants {
		models := []string{}
		for _, a := range t.Agents {
			if !slices.Contains(models, a.Model) {
				models = append(models, a.Model)
			}
		}
		fig.ByTenant = append(fig.ByTenant, TenantFigures{ProjectID: t.Project, Models: models, Workers: tenantWorkers[t.Project]})
	}
	for i := range fig.ByTenant {
		byTenant[fig.ByTenant[i].ProjectID] = &fig.ByTenant[i]
	}
	var waits []float64
	var last time.Time
	for id, project := range w.created {
		fig.MissionsEnqueued++
		bt := byTenant[project]
		bt.Enqueued++
		for j, c := range w.claims[id] {
			if c.project != project || !slices.Contains(enrolled[c.worker], project) {
				fig.CrossTenantLeaks++
			}
			if j == 0 {
				waits = append(waits, c.waitMS)
			}
		}
		ends := w.ends[id]
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
	fig.CrossTenantLeaks += workerLeaks
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

// showProgress shows the run's progress on out until done: one line
// rewritten in place on a terminal, a plain line a second otherwise.
func showProgress(out io.Writer, tty bool, w *watch, total int, elapsed func() time.Duration, done <-chan struct{}, stopped chan<- struct{}) {
	defer close(stopped)
	every := time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	line := func() string {
		created, ended, claimed := w.progress()
		return fmt.Sprintf("fleet %5.1fs  created %d/%d  claimed %d  ended %d  in flight %d", elapsed().Seconds(),
			created, total, claimed, ended, created-ended)
	}
	for {
		select {
		case <-done:
			if tty {
				fmt.Fprintf(out, "\r\033[K%s\n", line())
			} else {
				fmt.Fprintln(out, line())
			}
			return
		case <-t.C:
			if tty {
				fmt.Fprintf(out, "\r\033[K%s", line())
			} else {
				fmt.Fprintln(out, line())
			}
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// Print prints the per-tenant table and the proof block.
func Print(w io.Writer, f *Figures) {
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
