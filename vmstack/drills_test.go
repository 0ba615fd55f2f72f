package vmstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/vmstack"
)

// The faults of the alert drills, each made to happen for real: a NATS that
// goes down under a server (High5xxRate), the log store a server exports to
// going down (OTelExportFailures), budgets at and near their caps
// (BudgetExceeded, BudgetNearCap), a worker host dying (WorkersStale),
// WebSocket subscribers that stop reading (HubSlowSubscriberStorm) and a
// publisher that puts more missions in flight than the fold's bound
// (FoldLimitReached, FoldNearLimit).

// drillJob is VictoriaMetrics' scrape job of the drill server.
const drillJob = "observatory-drill"

// drillScrapeInterval is how often VictoriaMetrics scrapes the drill
// server: while its NATS is down, its /metrics takes over 2 s (it waits up
// to 2 s for the budget ledger), longer than the 2 s of the demo's job.
const drillScrapeInterval = 5 * time.Second

// drillProject is the project of the drill server's traffic.
const drillProject = "umbrella"

// auditEvery is how often the drill server is asked for drillProject's
// audit log, which it reads from its NATS. One request every 6 s is 0.17 a
// second: while NATS is down every one fails, above both thresholds of
// High5xxRate (5 % of the project's requests and 0.1 a second).
const auditEvery = 6 * time.Second

// drillFoldMissions is the drill server's bound on one project's missions
// in flight (--fold-max-missions): the fold drill queues one more.
const drillFoldMissions = 2

// drillWorkers is how many workers the worker host runs: more than the
// demo's 24, so that once they are stale there are as many stale workers
// as online ones, which WorkersStale asks for.
const drillWorkers = 30

// slowSubscribers is how many /ws subscribers stop reading: each is resynced
// three times and then closed, so 4 × 20 = 80 slow events in a few seconds,
// over the 50 in 5 minutes of HubSlowSubscriberStorm. Each subscribes
// slowResubscribes more times, one every resubscribeEvery (see
// slowClients).
const (
	slowSubscribers  = 20
	slowResubscribes = 100
	resubscribeEvery = 20 * time.Millisecond
)

// The budgets of the budget drill: globex's daily project budget (the
// demo's throttle at $40), made a stop budget below what globex spent
// today, and a monthly budget of globex's research team the test creates,
// later set just above what the team spent.
const (
	globexDaily    = "project.globex.globex.daily"
	researchBudget = "team.globex.research.monthly"
	// nearCap is the share of its cap research's budget is set to: in
	// BudgetNearCap's band [0.8, 1).
	nearCap = 0.85
)

// drillServer is a second observatory (serve) for the faults the demo must
// not suffer: its NATS, run by the test, goes down, and so does the
// VictoriaLogs it sends its log records to. The test asks it for
// drillProject's audit log every auditEvery from the start.
type drillServer struct {
	*observatory
	nats  *natsServer
	logs  *vmstack.Logs
	admin string

	// mu guards answers, the audit reads' answers by status (0: no answer).
	mu      sync.Mutex
	answers map[int]int
}

func startDrillServer(t *testing.T, bin string) *drillServer {
	t.Helper()
	d := &drillServer{nats: startNATS(t), logs: vmstack.StartLogs(t, vmstack.LogsConfig{}), answers: map[int]int{}}
	d.observatory = &observatory{observatorytest.Start(t, bin, []string{
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=" + d.logs.OTLPLogsURL(),
		// An export to a log store that is down fails after 2 s rather
		// than the default 30 s, so that failures count from the start.
		"OTEL_BLRP_EXPORT_TIMEOUT=2000",
		"OTEL_TRACES_EXPORTER=none",
		"OTEL_SERVICE_NAME=observatory-drill",
	}, "serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--nats-url", d.nats.url(),
		"--fold-max-missions", strconv.Itoa(drillFoldMissions))}
	d.admin = d.login(t, "admin", "admin")
	d.mustJSON(t, http.MethodPost, "/api/v1/projects", d.admin, map[string]string{"id": drillProject, "name": "Umbrella"}, http.StatusCreated, nil)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(auditEvery)
		defer tick.Stop()
		for {
			// Each read on its own goroutine: while NATS is down a read
			// takes seconds to fail, and the pace must not slow.
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _ := d.api().Do(ctx, d.admin, http.MethodGet, "/api/v1/audit?project="+drillProject, nil, http.StatusOK, nil)
				if ctx.Err() != nil {
					return
				}
				d.mu.Lock()
				d.answers[code]++
				d.mu.Unlock()
			}()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return d
}

// outnumberFailures waits until an audit read succeeds again (NATS is
// back), then sends 40 more for each one that failed, 8 at a time, so that
// the failures are 2.5 % of drillProject's requests of the last 5 minutes,
// under High5xxRate's 5 %: the alert then ends at its next evaluation
// rather than once the failures have left its 5-minute window.
func (d *drillServer) outnumberFailures(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // bounds a hang
	defer cancel()
	read := func() error {
		_, err := d.api().Do(ctx, d.admin, http.MethodGet, "/api/v1/audit?project="+drillProject, nil, http.StatusOK, nil)
		return err
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for err := read(); err != nil; err = read() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the audit log is still unreadable: %w", err)
		case <-tick.C:
		}
	}
	failed := 0
	for code, n := range d.answered() {
		if code != http.StatusOK {
			failed += n
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for range 40 * (failed + 1) {
		g.Go(func() error {
			_, err := d.api().Do(gctx, d.admin, http.MethodGet, "/api/v1/audit?project="+drillProject, nil, http.StatusOK, nil)
			return err
		})
	}
	return g.Wait()
}

// foldMissions are the missions of the fold drill, in drillProject: one
// more than the drill server's bound on missions in flight.
func foldMissions() []string {
	ids := make([]string, drillFoldMissions+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("fold-drill-%d", i+1)
	}
	return ids
}

// publish writes events to the drill server's FLEET directly, as a worker
// publishing its project's events does, and returns the last one's stream
// sequence. The NATS is the test's own (no credentials).
func (d *drillServer) publish(ctx context.Context, evs ...fleet.Event) (uint64, error) {
	nc, err := stream.Connect(d.nats.url(), nil, "vmstack-fold-drill")
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	pub := stream.NewPublisher(js)
	var seq uint64
	for _, ev := range evs {
		if seq, err = pub.Publish(ctx, ev); err != nil {
			return 0, err
		}
	}
	return seq, nil
}

// overfillMissions queues the fold drill's missions on the drill server's
// FLEET (only there: nothing on MISSIONS, so no worker or dispatcher
// touches them) and waits until its fold has seen the last, which it
// refuses: the first drillFoldMissions are in flight, at the bound.
func (d *drillServer) overfillMissions(ctx context.Context) error {
	var evs []fleet.Event
	for _, id := range foldMissions() {
		evs = append(evs, fleettest.MissionQueued(drillProject, id, "fold drill", time.Now()))
	}
	seq, err := d.publish(ctx, evs...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute) // bounds a hang
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var snap struct {
			Seq   uint64 `json:"seq"`
			State struct {
				Projects map[string]struct {
					MissionsInFlight int `json:"missions_in_flight"`
				} `json:"projects"`
			} `json:"state"`
		}
		_, err := d.api().Do(ctx, d.admin, http.MethodGet, "/api/v1/fleet?scope="+drillProject, nil, http.StatusOK, &snap)
		if err == nil && snap.Seq >= seq {
			if n := snap.State.Projects[drillProject].MissionsInFlight; n != drillFoldMissions {
				return fmt.Errorf("the drill server's fold has %d missions of %s in flight after %d were queued, want its bound, %d", n, drillProject, len(evs), drillFoldMissions)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the drill server's fold never reached seq %d: %v", seq, err)
		case <-tick.C:
		}
	}
}

// endMissions fails the fold drill's missions in flight, which frees their
// room in the drill server's fold.
func (d *drillServer) endMissions(ctx context.Context) error {
	var evs []fleet.Event
	for _, id := range foldMissions()[:drillFoldMissions] {
		evs = append(evs, fleettest.MissionFailed(drillProject, id, "fold drill over", time.Now()))
	}
	_, err := d.publish(ctx, evs...)
	return err
}

// answered returns how many audit reads were answered with each status.
func (d *drillServer) answered() map[int]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.answers)
}

// natsServer is a real NATS server with JetStream, embedded in the test,
// on a loopback port that stays the same when it is started again.
type natsServer struct {
	dir, addr string
	ns        *server.Server // nil while down
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{dir: t.TempDir(), addr: "127.0.0.1:0"}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	n.addr = n.ns.Addr().String()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) url() string { return "nats://" + n.addr }

func (n *natsServer) start() error {
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: n.dir, Listen: n.addr})
	if err != nil {
		return err
	}
	n.ns = ns
	return nil
}

func (n *natsServer) stop() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
		n.ns = nil
	}
}

// slowClients opens n WebSocket subscriptions to every project ("*") of the
// observatory at base that never read what they are sent, through sockets
// with a 4 KiB receive buffer, as a client on a slow link has: the
// server's writer stalls, the connection's queue fills, the hub resyncs
// it three times within 30 s and then closes it. The sockets are closed
// when t ends.
//
// The server's send buffer on loopback holds megabytes, minutes of the
// demo's diffs: so each client also sends its subscribe frame again every
// resubscribeEvery, resubscribes times (as a page reloading in a loop
// would), and the server writes a snapshot of the whole fleet into the
// socket for each, which fills it within seconds.
func slowClients(t *testing.T, base, token string, n, resubscribes int) {
	t.Helper()
	dialer := &net.Dialer{Control: setReceiveBuffer(4 << 10)}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	t.Cleanup(client.CloseIdleConnections)
	frame, err := json.Marshal(protocol.Subscribe{Op: protocol.OpSubscribe, Scope: fleet.ScopeAll})
	if err != nil {
		t.Fatal(err)
	}
	url := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // bounds a hang
	defer cancel()
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
			HTTPClient:   client,
			Subprotocols: []string{protocol.Subprotocol},
			HTTPHeader:   http.Header{"Authorization": {"Bearer " + token}},
		})
		if err != nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		t.Cleanup(func() { c.CloseNow() })
		conns[i] = c
	}
	tick := time.NewTicker(resubscribeEvery)
	defer tick.Stop()
	for range 1 + resubscribes {
		for _, c := range conns {
			if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
				t.Fatalf("subscribe on %s: %v", url, err)
			}
		}
		<-tick.C
	}
}

// budget is a budget and its standing, as GET /api/v1/budgets/{id} shows it.
type budget struct {
	ID       string       `json:"id"`
	LimitUSD fleet.Micros `json:"limit_usd"`
	SpentUSD fleet.Micros `json:"spent_usd"`
}

func (o *observatory) budget(ctx context.Context, token, id string) (budget, error) {
	var b budget
	_, err := o.api().Do(ctx, token, http.MethodGet, "/api/v1/budgets/"+id, nil, http.StatusOK, &b)
	return b, err
}

// putBudget changes budget id (PUT /api/v1/budgets/{id}).
func (o *observatory) putBudget(ctx context.Context, token, id string, body map[string]any) error {
	_, err := o.api().Do(ctx, token, http.MethodPut, "/api/v1/budgets/"+id, body, http.StatusOK, nil)
	return err
}

// idle reports whether project has no mission and no run in flight in the
// fold: its spend has stopped.
func (o *observatory) idle(ctx context.Context, token, project string) (bool, string, error) {
	var snap struct {
		State struct {
			Projects map[string]struct {
				MissionsInFlight int `json:"missions_in_flight"`
			} `json:"projects"`
			Agents map[string]struct {
				ProjectID string `json:"project_id"`
				RunID     string `json:"run_id"`
			} `json:"agents"`
		} `json:"state"`
	}
	if _, err := o.api().Do(ctx, token, http.MethodGet, "/api/v1/fleet?scope="+project, nil, http.StatusOK, &snap); err != nil {
		return false, "", err
	}
	runs := 0
	for _, a := range snap.State.Agents {
		if a.ProjectID == project && a.RunID != "" {
			runs++
		}
	}
	missions := snap.State.Projects[project].MissionsInFlight
	return missions == 0 && runs == 0, fmt.Sprintf("%d missions and %d runs of %s in flight", missions, runs, project), nil
}

// drillWorkersOnline counts the worker host's workers by status in the fold.
func (o *observatory) drillWorkersByStatus(ctx context.Context, token string) (map[string]int, error) {
	var snap struct {
		State struct {
			Workers map[string]struct {
				Status string `json:"status"`
			} `json:"workers"`
		} `json:"state"`
	}
	if _, err := o.api().Do(ctx, token, http.MethodGet, "/api/v1/fleet?scope=*", nil, http.StatusOK, &snap); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for id, w := range snap.State.Workers {
		if strings.HasPrefix(id, "w-drill-") {
			out[w.Status]++
		}
	}
	return out, nil
}

// wantAlert is an alert a drill must fire: its name and labels it must
// carry (among others).
type wantAlert struct {
	name   string
	labels map[string]string
}

func (w wantAlert) String() string {
	keys := slices.Sorted(maps.Keys(w.labels))
	var ls []string
	for _, k := range keys {
		ls = append(ls, fmt.Sprintf("%s=%q", k, w.labels[k]))
	}
	return w.name + "{" + strings.Join(ls, ",") + "}"
}

// selector is the ALERTS series selector of w in a state.
func (w wantAlert) selector(state string) string {
	s := fmt.Sprintf(`ALERTS{alertname=%q,alertstate=%q`, w.name, state)
	for _, k := range slices.Sorted(maps.Keys(w.labels)) {
		s += fmt.Sprintf(`,%s=%q`, k, w.labels[k])
	}
	return s + "}"
}

func (w wantAlert) matches(a vmstack.Alert) bool {
	if a.Name != w.name {
		return false
	}
	for k, v := range w.labels {
		if a.Labels[k] != v {
			return false
		}
	}
	return true
}

// alertDrill is one fault and the alerts it must fire, then end.
type alertDrill struct {
	fault  string
	alerts []wantAlert
	// start makes the fault happen (nil: it already happened).
	start func() error
	// ready, when set, completes the fault: it is called at every poll
	// until it returns true (the research budget's cap is set once
	// globex's spend has stopped).
	ready func() (bool, string, error)
	// recover ends the fault once every alert fired; nil when the alerts
	// end by themselves (the rule's window passes, workers go offline).
	recover func() error
	// after, when set, is a drill whose fault must be over before this
	// one's recover runs (it needs what that fault took down).
	after *alertDrill
	// how is how the alerts end, for the log.
	how string

	began, readyAt, recovered, ended time.Time
	fired                            map[string]time.Time // by wantAlert.String
}

// runDrills polls both vmalerts every 250 ms until every drill's alerts
// fired and ended: it completes the faults (ready), ends them once their
// alerts all fire (recover) and waits until none of their alerts is
// active any more. bound only bounds a hang.
func runDrills(t *testing.T, alerters []*vmstack.Alerter, drills []*alertDrill, bound time.Duration) {
	t.Helper()
	await(t, bound, "every drill's alerts to fire and end", func() (bool, string) {
		active := activeAlerts(t, alerters)
		now := time.Now()
		var waiting []string
		for _, d := range drills {
			if d.fired == nil {
				d.fired = map[string]time.Time{}
			}
			if d.ready != nil && d.readyAt.IsZero() {
				ok, detail, err := d.ready()
				if err != nil {
					t.Fatalf("%s: %v", d.fault, err)
				}
				if !ok {
					waiting = append(waiting, d.fault+": "+detail)
					continue
				}
				d.readyAt = now
			}
			if !d.recovered.IsZero() || len(d.fired) == len(d.alerts) && d.recover == nil {
				if !d.ended.IsZero() {
					continue
				}
				var still []string
				for _, w := range d.alerts {
					for _, a := range active {
						if w.matches(a) {
							still = append(still, fmt.Sprintf("%s %s", w, a.State))
						}
					}
				}
				if len(still) == 0 {
					d.ended = now
					continue
				}
				waiting = append(waiting, fmt.Sprintf("%s: still active after it %s: %s", d.fault, d.how, strings.Join(still, ", ")))
				continue
			}
			var missing []string
			for _, w := range d.alerts {
				if _, ok := d.fired[w.String()]; ok {
					continue
				}
				firing := false
				for _, a := range active {
					firing = firing || w.matches(a) && a.State == "firing"
				}
				if firing {
					d.fired[w.String()] = now
				} else {
					missing = append(missing, w.String())
				}
			}
			if len(missing) > 0 {
				waiting = append(waiting, fmt.Sprintf("%s: not firing yet: %s", d.fault, strings.Join(missing, ", ")))
				continue
			}
			if d.recover != nil {
				if d.after != nil && d.after.recovered.IsZero() {
					waiting = append(waiting, fmt.Sprintf("%s: fired, waiting for %q to be over before it ends", d.fault, d.after.fault))
					continue
				}
				if err := d.recover(); err != nil {
					t.Fatalf("%s: ending the fault: %v", d.fault, err)
				}
				d.recovered = now
			}
			waiting = append(waiting, d.fault+": fired, waiting for it to end")
		}
		return len(waiting) == 0, strings.Join(waiting, "; ")
	})
}

// activeAlerts returns every active alert of the vmalerts.
func activeAlerts(t *testing.T, alerters []*vmstack.Alerter) []vmstack.Alert {
	t.Helper()
	var out []vmstack.Alert
	for _, a := range alerters {
		as, err := a.Alerts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, as...)
	}
	return out
}

// checkAlertsSeries checks VictoriaMetrics' side of the drills: each alert
// has an ALERTS series in state firing since the faults began, and none
// once vmalert has ended them (vmalert then writes a staleness marker,
// which VictoriaMetrics shows after its latency offset).
func checkAlertsSeries(t *testing.T, vm *vmstack.Metrics, drills []*alertDrill, since time.Time) {
	t.Helper()
	ctx := context.Background()
	window := fmt.Sprintf("%ds", int(time.Since(since).Seconds())+60)
	for _, d := range drills {
		for _, w := range d.alerts {
			ser, err := vm.QueryMatrix(ctx, w.selector("firing")+"["+window+"]")
			if err != nil {
				t.Fatal(err)
			}
			if len(ser) == 0 {
				t.Errorf("%s: no ALERTS series of %s firing in VictoriaMetrics over the last %s", d.fault, w, window)
			}
		}
	}
	await(t, time.Minute, "VictoriaMetrics to show none of the drills' alerts firing", func() (bool, string) {
		var still []string
		for _, d := range drills {
			for _, w := range d.alerts {
				s, err := vm.Query(ctx, w.selector("firing"))
				if err != nil {
					t.Fatal(err)
				}
				if len(s) > 0 {
					still = append(still, w.String())
				}
			}
		}
		return len(still) == 0, "still firing in ALERTS: " + strings.Join(still, ", ")
	})
}

// logDrills logs when each drill's alerts fired and ended, counted from
// when its fault began.
func logDrills(t *testing.T, drills []*alertDrill) {
	t.Helper()
	for _, d := range drills {
		var fired []string
		for k, at := range d.fired {
			fired = append(fired, fmt.Sprintf("%s after %.0fs", k, at.Sub(d.began).Seconds()))
		}
		sort.Strings(fired)
		line := fmt.Sprintf("%s: %s", d.fault, strings.Join(fired, ", "))
		if !d.recovered.IsZero() {
			line += fmt.Sprintf("; %s after %.0fs", d.how, d.recovered.Sub(d.began).Seconds())
		} else {
			line += "; " + d.how
		}
		line += fmt.Sprintf("; inactive after %.0fs", d.ended.Sub(d.began).Seconds())
		t.Logf("drill %s", line)
	}
}
