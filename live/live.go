package live

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/protocol"
)

// Config configures a Workload. Zero values mean the defaults.
type Config struct {
	// BaseURL is the server's, e.g. http://localhost:3001 (required).
	BaseURL string
	// User and Password are the admin's (defaults admin / admin).
	User, Password string
	// Duration bounds Run (0: until its context is cancelled).
	Duration time.Duration
	// MissionRate is missions per second over all tenants (default 1).
	MissionRate float64
	// ReadRate is reads per second over all tenants and the admin (default 4).
	ReadRate float64
	// ProbeEvery is the interval of the requests that must be refused,
	// alternately 401 and 404 (default 5 s).
	ProbeEvery time.Duration
	// CrossTenantEvery is the interval of the cross-tenant attempts, each
	// a tenant's token asking for another tenant's missions (default 1
	// min, the first one after one interval; negative: none).
	CrossTenantEvery time.Duration
	// LoginEvery is the interval of the admin's logins; every login also
	// renews one tenant's project token (default 30 s). One login in eight
	// is a wrong password for another user name, which the server must
	// refuse with 401 (few enough never to trip its slow-down).
	LoginEvery time.Duration
	// AgentEvery is the interval at which a tenant registers a new agent
	// (default 45 s; negative: never).
	AgentEvery time.Duration
	// Tenants default to DefaultTenants.
	Tenants []Tenant
	// Pricing gives the missions' estimates (default fleet.DefaultPricing).
	Pricing *fleet.Pricing
	// HTTP sends the requests (default: a client with a 30 s timeout).
	HTTP *http.Client
	// Seed makes the choices reproducible (default: random).
	Seed uint64
	// Logger receives the workload's notes (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.User == "" {
		c.User = "admin"
	}
	if c.Password == "" {
		c.Password = "admin"
	}
	if c.MissionRate <= 0 {
		c.MissionRate = 1
	}
	if c.ReadRate <= 0 {
		c.ReadRate = 4
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = 5 * time.Second
	}
	if c.CrossTenantEvery == 0 {
		c.CrossTenantEvery = time.Minute
	}
	if c.LoginEvery <= 0 {
		c.LoginEvery = 30 * time.Second
	}
	if c.AgentEvery == 0 {
		c.AgentEvery = 45 * time.Second
	}
	if len(c.Tenants) == 0 {
		c.Tenants = DefaultTenants()
	}
	if c.Pricing == nil {
		c.Pricing = fleet.DefaultPricing()
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	}
	if c.Seed == 0 {
		c.Seed = mrand.Uint64()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Figures are what a workload did and what the server answered.
type Figures struct {
	DurationSec float64 `json:"duration_sec"`
	HTTPCalls   int64   `json:"http_calls"`
	RatePerSec  float64 `json:"rate_per_sec"`
	Status2xx   int64   `json:"status_2xx"`
	Status4xx   int64   `json:"status_4xx"`
	Status5xx   int64   `json:"status_5xx"`
	// Unexpected counts answers other than the one the request called for
	// (a probe let through, a read refused, a 5xx); TransportErrors the
	// requests that got no answer at all.
	Unexpected      int64 `json:"unexpected"`
	TransportErrors int64 `json:"transport_errors"`
	Logins          int64 `json:"logins"`
	LoginsRefused   int64 `json:"logins_refused"`
	Probes401       int64 `json:"probes_401"`
	Probes404       int64 `json:"probes_404"`
	// CrossTenantAttempts were made; CrossTenantDenied were refused with 403.
	CrossTenantAttempts int64           `json:"cross_tenant_attempts"`
	CrossTenantDenied   int64           `json:"cross_tenant_denied"`
	AgentsCreated       int64           `json:"agents_created"`
	ByTenant            []TenantFigures `json:"by_tenant"`
	// FirstUnexpected describes the first unexpected answer, if any.
	FirstUnexpected string `json:"first_unexpected,omitempty"`
}

// TenantFigures are one tenant's missions. Completed, Failed and SpendUSD
// are the fold's, counted from the start of the run (they include any other
// work of the tenant in that time).
type TenantFigures struct {
	ProjectID string `json:"project_id"`
	Enqueued  int64  `json:"missions_enqueued"`
	// Refused were refused by a stop budget (402); Throttled ran on the
	// cheaper model a budget named.
	Refused   int64        `json:"missions_refused_by_budget"`
	Throttled int64        `json:"missions_throttled"`
	Completed int64        `json:"missions_completed"`
	Failed    int64        `json:"missions_failed"`
	SpendUSD  fleet.Micros `json:"spend_usd"`
}

// setupWait bounds how long Setup waits for a server whose fold is still
// catching up.
const setupWait = 30 * time.Second

// InflightGrace is how long the requests in flight when Run's context ends
// get to finish; after it they are cancelled and not counted.
const InflightGrace = 5 * time.Second

// Workload is the mixed-tenant HTTP workload. Create it with New, then
// Setup and Run.
type Workload struct {
	cfg    Config
	client *Client
	runID  string

	// tokensMu guards admin and tenantTokens.
	tokensMu     sync.Mutex
	admin        string
	tenantTokens map[string]string

	calls, s2xx, s4xx, s5xx, unexpected, transport atomic.Int64
	logins, loginsRefused, probes401, probes404    atomic.Int64
	crossAttempts, crossDenied, agentsCreated      atomic.Int64
	tenants                                        []*tenantCounters

	// firstMu guards first.
	firstMu sync.Mutex
	first   string

	// startMu guards start, end and base.
	startMu    sync.Mutex
	start, end time.Time
	base       map[string]fleet.Project
	last       map[string]fleet.Project
}

type tenantCounters struct {
	enqueued, refused, throttled atomic.Int64
}

// New returns a workload; cfg.BaseURL is required.
func New(cfg Config) (*Workload, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("live: a base URL is required")
	}
	cfg.defaults()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	w := &Workload{cfg: cfg, client: &Client{Base: cfg.BaseURL, HTTP: cfg.HTTP}, runID: hex.EncodeToString(b), tenantTokens: map[string]string{}}
	for range cfg.Tenants {
		w.tenants = append(w.tenants, &tenantCounters{})
	}
	return w, nil
}

// Tenants returns the workload's tenants.
func (w *Workload) Tenants() []Tenant { return w.cfg.Tenants }

// Setup logs in as the admin and puts the tenants in place: projects,
// agents, budgets and a project token per tenant. What exists already is
// kept (budgets get the configured caps again).
func (w *Workload) Setup(ctx context.Context) error {
	tok, err := w.client.Login(ctx, w.cfg.User, w.cfg.Password)
	if err != nil {
		return fmt.Errorf("live: %w", err)
	}
	w.setAdmin(tok)
	for _, t := range w.cfg.Tenants {
		if err := w.create(ctx, "/api/v1/projects", map[string]string{"id": t.Project, "name": t.Name}); err != nil {
			return fmt.Errorf("live: project %s: %w", t.Project, err)
		}
		for _, a := range t.Agents {
			if err := w.create(ctx, "/api/v1/projects/"+t.Project+"/agents", agentBody(a)); err != nil {
				return fmt.Errorf("live: agent %s: %w", a.ID, err)
			}
		}
		for _, b := range t.Budgets {
			if err := w.putBudget(ctx, b); err != nil {
				return fmt.Errorf("live: budget %s: %w", b.ID(), err)
			}
		}
		if _, err := w.renewToken(ctx, t.Project); err != nil {
			return fmt.Errorf("live: token for %s: %w", t.Project, err)
		}
	}
	// A server that has just started answers 503 until its fold has caught
	// up with the stream: wait for it a little.
	var base map[string]fleet.Project
	wait := time.NewTimer(setupWait)
	defer wait.Stop()
catchUp:
	for {
		base, err = w.readFleet(ctx)
		var ae *APIError
		if err == nil || !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait.C:
			break catchUp
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("live: %w", err)
	}
	w.startMu.Lock()
	w.base, w.last = base, base
	w.startMu.Unlock()
	return nil
}

func agentBody(a Agent) map[string]any {
	return map[string]any{"id": a.ID, "name": a.Name, "role": a.Role, "model": a.Model, "version": "1.0.0", "tools": a.Tools, "skills": []string{a.Role}}
}

// create posts body as the admin and accepts 201, or 409 for what an
// earlier run made.
func (w *Workload) create(ctx context.Context, path string, body any) error {
	_, err := w.client.Do(ctx, w.adminToken(), http.MethodPost, path, body, http.StatusCreated, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return nil
	}
	return err
}

func (w *Workload) putBudget(ctx context.Context, b Budget) error {
	_, err := w.client.Do(ctx, w.adminToken(), http.MethodPost, "/api/v1/budgets", b, http.StatusCreated, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		return err
	}
	upd := map[string]any{"limit_usd": b.LimitUSD, "action": b.Action}
	if b.WarnPct > 0 {
		upd["warn_pct"] = b.WarnPct
	}
	if b.ThrottleModel != "" {
		upd["throttle_model"] = b.ThrottleModel
	}
	_, err = w.client.Do(ctx, w.adminToken(), http.MethodPut, "/api/v1/budgets/"+b.ID(), upd, http.StatusOK, nil)
	return err
}

// EnrollmentKey mints, as the admin, a worker enrollment key for the
// default pool of projects, valid for ttl (a Go duration or whole days).
func (w *Workload) EnrollmentKey(ctx context.Context, projects []string, ttl string) (string, error) {
	var out struct{ Key string }
	if _, err := w.client.Do(ctx, w.adminToken(), http.MethodPost, "/api/v1/enrollment-keys",
		map[string]any{"projects": projects, "ttl": ttl}, http.StatusCreated, &out); err != nil {
		return "", fmt.Errorf("live: an enrollment key: %w", err)
	}
	return out.Key, nil
}

// renewToken mints, as the admin, a new project token for project and
// uses it from then on; it returns the answer's status.
func (w *Workload) renewToken(ctx context.Context, project string) (int, error) {
	var tr struct{ Token string }
	status, err := w.client.Do(ctx, w.adminToken(), http.MethodPost, "/api/v1/projects/"+project+"/tokens",
		map[string]string{"name": "live-" + w.runID, "ttl": "24h"}, http.StatusCreated, &tr)
	if err != nil {
		return status, err
	}
	w.tokensMu.Lock()
	w.tenantTokens[project] = tr.Token
	w.tokensMu.Unlock()
	return status, nil
}

func (w *Workload) setAdmin(tok string) {
	w.tokensMu.Lock()
	w.admin = tok
	w.tokensMu.Unlock()
}

func (w *Workload) adminToken() string {
	w.tokensMu.Lock()
	defer w.tokensMu.Unlock()
	return w.admin
}

func (w *Workload) tenantToken(project string) string {
	w.tokensMu.Lock()
	defer w.tokensMu.Unlock()
	return w.tenantTokens[project]
}

// readFleet reads the fold's projects (GET /api/v1/fleet as the admin).
func (w *Workload) readFleet(ctx context.Context) (map[string]fleet.Project, error) {
	var snap protocol.Snapshot
	if _, err := w.client.Do(ctx, w.adminToken(), http.MethodGet, "/api/v1/fleet", nil, http.StatusOK, &snap); err != nil {
		return nil, fmt.Errorf("read the fleet: %w", err)
	}
	return snap.State.Projects, nil
}

// Run sends the workload until cfg.Duration has passed or ctx is
// cancelled, then waits for the requests in flight (for at most
// InflightGrace after ctx ends). Call Setup first. It
// returns nil when the duration ended or ctx was cancelled; the figures
// say whether the server answered as it should.
func (w *Workload) Run(ctx context.Context) error {
	if w.adminToken() == "" {
		return errors.New("live: Run before Setup")
	}
	// The schedule ends with the duration; requests in flight then finish
	// (they end early only when ctx does).
	schedule := ctx
	if w.cfg.Duration > 0 {
		var cancel context.CancelFunc
		schedule, cancel = context.WithTimeout(ctx, w.cfg.Duration)
		defer cancel()
	}
	w.startMu.Lock()
	w.start = w.cfg.Now()
	w.startMu.Unlock()
	defer func() {
		w.startMu.Lock()
		w.end = w.cfg.Now()
		w.startMu.Unlock()
	}()

	rng := mrand.New(mrand.NewPCG(w.cfg.Seed, 0x11fe))
	var tickers []*time.Ticker
	defer func() {
		for _, t := range tickers {
			t.Stop()
		}
	}()
	// Requests in flight when ctx ends get InflightGrace to finish, so
	// that the figures count every answer the server gave.
	reqs, cancelReqs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReqs()
	graceStop := make(chan struct{})
	defer close(graceStop)
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.NewTimer(InflightGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancelReqs()
		case <-graceStop:
		}
	})
	defer stopAfter()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	spawn := func(f func(ctx context.Context)) {
		select {
		case sem <- struct{}{}:
		case <-schedule.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(reqs)
		}()
	}

	every := func(d time.Duration) <-chan time.Time {
		if d <= 0 {
			return nil
		}
		t := time.NewTicker(d)
		tickers = append(tickers, t)
		return t.C
	}
	missions := every(time.Duration(float64(time.Second) / w.cfg.MissionRate))
	reads := every(time.Duration(float64(time.Second) / w.cfg.ReadRate))
	probes := every(w.cfg.ProbeEvery)
	logins := every(w.cfg.LoginEvery)
	agents := every(w.cfg.AgentEvery)
	cross := every(w.cfg.CrossTenantEvery)
	fleetReads := every(5 * time.Second)
	// The roll call: every user of every tenant asks for one mission of
	// each of the tenant's agents, so that every tenant, agent, model and
	// budget is in play from the first second (a stop budget smaller than
	// a mission's estimate refuses at once).
	for ti, t := range w.cfg.Tenants {
		for _, u := range t.Users {
			for _, a := range t.Agents {
				spawn(func(ctx context.Context) { w.mission(ctx, ti, u, a, "normal") })
			}
		}
	}
	var n struct{ probe, login, agent, cross int }
	for {
		select {
		case <-schedule.Done():
			return nil
		case <-missions:
			ti, user, agent := w.pickMission(rng)
			prio := []string{"low", "normal", "normal", "high"}[rng.IntN(4)]
			spawn(func(ctx context.Context) { w.mission(ctx, ti, user, agent, prio) })
		case <-reads:
			r := rng.IntN(len(w.cfg.Tenants) + 1)
			k := rng.Uint32()
			spawn(func(ctx context.Context) { w.read(ctx, r, k) })
		case <-probes:
			n.probe++
			i := n.probe
			spawn(func(ctx context.Context) { w.probe(ctx, i) })
		case <-logins:
			n.login++
			i := n.login
			spawn(func(ctx context.Context) { w.login(ctx, i) })
		case <-agents:
			n.agent++
			i := n.agent
			spawn(func(ctx context.Context) { w.newAgent(ctx, i) })
		case <-cross:
			n.cross++
			i := n.cross
			spawn(func(ctx context.Context) { w.crossTenant(ctx, i) })
		case <-fleetReads:
			spawn(func(ctx context.Context) {
				if p, err := w.readFleet(ctx); err == nil {
					w.startMu.Lock()
					w.last = p
					w.startMu.Unlock()
				}
			})
		}
	}
}

// pickMission chooses a tenant by weight, then a user and an agent.
func (w *Workload) pickMission(rng *mrand.Rand) (int, string, Agent) {
	total := 0
	for _, t := range w.cfg.Tenants {
		total += max(t.Weight, 1)
	}
	n, ti := rng.IntN(total), 0
	for i, t := range w.cfg.Tenants {
		if n < max(t.Weight, 1) {
			ti = i
			break
		}
		n -= max(t.Weight, 1)
	}
	t := w.cfg.Tenants[ti]
	user := ""
	if len(t.Users) > 0 {
		total := 0
		weight := func(i int) int {
			if i < len(t.UserWeights) && t.UserWeights[i] > 0 {
				return t.UserWeights[i]
			}
			return 1
		}
		for i := range t.Users {
			total += weight(i)
		}
		n := rng.IntN(total)
		for i, u := range t.Users {
			if n < weight(i) {
				user = u
				break
			}
			n -= weight(i)
		}
	}
	return ti, user, t.Agents[rng.IntN(len(t.Agents))]
}

// note counts an answer; want lists the statuses the request called for.
func (w *Workload) note(ctx context.Context, what string, status int, err error, want ...int) bool {
	if status == 0 && err != nil {
		if ctx.Err() == nil { // not the end of the run
			w.transport.Add(1)
			w.unexpectedf("%s: %v", what, err)
		}
		return false
	}
	w.calls.Add(1)
	switch {
	case status >= 500:
		w.s5xx.Add(1)
	case status >= 400:
		w.s4xx.Add(1)
	default:
		w.s2xx.Add(1)
	}
	for _, s := range want {
		if s == status {
			return true
		}
	}
	w.unexpectedf("%s: got %d, want %v: %v", what, status, want, err)
	return false
}

func (w *Workload) unexpectedf(format string, args ...any) {
	w.unexpected.Add(1)
	msg := fmt.Sprintf(format, args...)
	w.cfg.Logger.Warn("unexpected answer", "event", "live.unexpected", "detail", msg)
	w.firstMu.Lock()
	if w.first == "" {
		w.first = msg
	}
	w.firstMu.Unlock()
}

func (w *Workload) mission(ctx context.Context, ti int, user string, a Agent, prio string) {
	t := w.cfg.Tenants[ti]
	body := map[string]any{
		"title":    fmt.Sprintf("%s: %s for %s", t.Team, a.Role, user),
		"priority": prio, "team_id": t.Team, "user_id": user, "model": a.Model, "agent_id": a.ID,
		"estimate_usd": Estimate(w.cfg.Pricing, a.Model),
	}
	var out struct {
		Budget *struct{ Throttled bool } `json:"budget"`
	}
	status, err := w.client.Do(ctx, w.tenantToken(t.Project), http.MethodPost, "/api/v1/projects/"+t.Project+"/missions", body, http.StatusCreated, &out)
	if !w.note(ctx, "create a mission in "+t.Project, status, err, http.StatusCreated, http.StatusPaymentRequired) {
		return
	}
	c := w.tenants[ti]
	if status == http.StatusPaymentRequired {
		c.refused.Add(1)
		return
	}
	c.enqueued.Add(1)
	if out.Budget != nil && out.Budget.Throttled {
		c.throttled.Add(1)
	}
}

// read is one read: r < len(Tenants) is that tenant with its own token,
// else the admin.
func (w *Workload) read(ctx context.Context, r int, k uint32) {
	if r >= len(w.cfg.Tenants) {
		paths := []string{"/api/v1/projects", "/api/v1/fleet", "/api/v1/audit?limit=20", "/api/v1/budgets"}
		p := paths[int(k)%len(paths)]
		status, err := w.client.Do(ctx, w.adminToken(), http.MethodGet, p, nil, http.StatusOK, nil)
		w.note(ctx, "admin GET "+p, status, err, http.StatusOK)
		return
	}
	t := w.cfg.Tenants[r]
	paths := []string{
		"/api/v1/projects/" + t.Project + "/missions",
		"/api/v1/projects/" + t.Project + "/agents",
		"/api/v1/projects/" + t.Project + "/runs",
		"/api/v1/projects/" + t.Project + "/costs?group_by=model",
		"/api/v1/budgets?project=" + t.Project,
		"/api/v1/fleet?scope=" + t.Project,
	}
	p := paths[int(k)%len(paths)]
	status, err := w.client.Do(ctx, w.tenantToken(t.Project), http.MethodGet, p, nil, http.StatusOK, nil)
	w.note(ctx, t.Project+" GET "+p, status, err, http.StatusOK)
}

// probe sends a request the server must refuse: 401 without a token or
// with a forged one, 404 for an unknown route or project.
func (w *Workload) probe(ctx context.Context, i int) {
	t := w.cfg.Tenants[i%len(w.cfg.Tenants)]
	switch i % 4 {
	case 0:
		status, err := w.client.Do(ctx, "", http.MethodGet, "/api/v1/projects/"+t.Project+"/missions", nil, 0, nil)
		if w.note(ctx, "GET without a token", status, err, http.StatusUnauthorized) {
			w.probes401.Add(1)
		}
	case 1:
		status, err := w.client.Do(ctx, "v1.forged.token", http.MethodGet, "/api/v1/projects", nil, 0, nil)
		if w.note(ctx, "GET with a forged token", status, err, http.StatusUnauthorized) {
			w.probes401.Add(1)
		}
	case 2:
		status, err := w.client.Do(ctx, w.adminToken(), http.MethodGet, "/api/v1/projects/ghost-"+w.runID+"/agents", nil, 0, nil)
		if w.note(ctx, "GET an unknown project", status, err, http.StatusNotFound) {
			w.probes404.Add(1)
		}
	default:
		status, err := w.client.Do(ctx, w.tenantToken(t.Project), http.MethodGet, "/api/v1/nothing-here", nil, 0, nil)
		if w.note(ctx, "GET an unknown route", status, err, http.StatusNotFound) {
			w.probes404.Add(1)
		}
	}
}

// login logs the admin in again and renews a tenant's token; one time in
// eight it is a wrong password for another user, refused with 401.
func (w *Workload) login(ctx context.Context, i int) {
	if i%8 == 4 {
		status, err := w.client.Do(ctx, "", http.MethodPost, "/api/v1/auth/login", map[string]string{"username": "mallory", "password": "guess-" + w.runID}, 0, nil)
		if w.note(ctx, "a wrong password", status, err, http.StatusUnauthorized) {
			w.loginsRefused.Add(1)
		}
		return
	}
	var tr struct{ Token string }
	status, err := w.client.Do(ctx, "", http.MethodPost, "/api/v1/auth/login", map[string]string{"username": w.cfg.User, "password": w.cfg.Password}, http.StatusOK, &tr)
	if !w.note(ctx, "the admin's login", status, err, http.StatusOK) {
		return
	}
	w.logins.Add(1)
	w.setAdmin(tr.Token)
	t := w.cfg.Tenants[i%len(w.cfg.Tenants)]
	status, err = w.renewToken(ctx, t.Project)
	w.note(ctx, "a token for "+t.Project, status, err, http.StatusCreated)
}

// newAgent registers one more agent in a tenant, with its own token.
func (w *Workload) newAgent(ctx context.Context, i int) {
	t := w.cfg.Tenants[i%len(w.cfg.Tenants)]
	base := t.Agents[i%len(t.Agents)]
	a := Agent{ID: fmt.Sprintf("%s-%s-%d", t.Project, w.runID, i), Name: fmt.Sprintf("%s #%d", base.Name, i+1), Role: base.Role, Model: base.Model, Tools: base.Tools}
	status, err := w.client.Do(ctx, w.tenantToken(t.Project), http.MethodPost, "/api/v1/projects/"+t.Project+"/agents", agentBody(a), http.StatusCreated, nil)
	if w.note(ctx, "create an agent in "+t.Project, status, err, http.StatusCreated) {
		w.agentsCreated.Add(1)
	}
}

// crossTenant has one tenant's token ask for the next tenant's missions;
// the server must refuse it with 403 (and audit it).
func (w *Workload) crossTenant(ctx context.Context, i int) {
	if len(w.cfg.Tenants) < 2 {
		return
	}
	from := w.cfg.Tenants[i%len(w.cfg.Tenants)]
	to := w.cfg.Tenants[(i+1)%len(w.cfg.Tenants)]
	status, err := w.client.Do(ctx, w.tenantToken(from.Project), http.MethodGet, "/api/v1/projects/"+to.Project+"/missions", nil, 0, nil)
	if status == 0 && ctx.Err() != nil {
		return // the run ended first: not an attempt
	}
	w.crossAttempts.Add(1)
	if w.note(ctx, from.Project+"'s token reading "+to.Project, status, err, http.StatusForbidden) {
		w.crossDenied.Add(1)
	}
}

// Drain waits up to d for the missions of the run to end on the fold
// (for as long as the server's workers need), reading the fold's figures.
func (w *Workload) Drain(ctx context.Context, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p, err := w.readFleet(ctx)
		if err == nil {
			w.startMu.Lock()
			w.last = p
			w.startMu.Unlock()
		}
		done := true
		for _, tf := range w.Figures().ByTenant {
			done = done && tf.Completed+tf.Failed >= tf.Enqueued
		}
		if done || err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Figures returns what the workload did so far.
func (w *Workload) Figures() Figures {
	w.startMu.Lock()
	start, end, base, last := w.start, w.end, w.base, w.last
	w.startMu.Unlock()
	if end.IsZero() {
		end = w.cfg.Now()
	}
	f := Figures{
		HTTPCalls: w.calls.Load(), Status2xx: w.s2xx.Load(), Status4xx: w.s4xx.Load(), Status5xx: w.s5xx.Load(),
		Unexpected: w.unexpected.Load(), TransportErrors: w.transport.Load(),
		Logins: w.logins.Load(), LoginsRefused: w.loginsRefused.Load(), Probes401: w.probes401.Load(), Probes404: w.probes404.Load(),
		CrossTenantAttempts: w.crossAttempts.Load(), CrossTenantDenied: w.crossDenied.Load(), AgentsCreated: w.agentsCreated.Load(),
		ByTenant: []TenantFigures{},
	}
	if !start.IsZero() {
		f.DurationSec = end.Sub(start).Seconds()
		if f.DurationSec > 0 {
			f.RatePerSec = float64(f.HTTPCalls) / f.DurationSec
		}
	}
	for i, t := range w.cfg.Tenants {
		c := w.tenants[i]
		tf := TenantFigures{ProjectID: t.Project, Enqueued: c.enqueued.Load(), Refused: c.refused.Load(), Throttled: c.throttled.Load()}
		if l, ok := last[t.Project]; ok {
			b := base[t.Project]
			tf.Completed, tf.Failed = l.MissionsDone-b.MissionsDone, l.MissionsFailed-b.MissionsFailed
			tf.SpendUSD = l.SpendTotal - b.SpendTotal
		}
		f.ByTenant = append(f.ByTenant, tf)
	}
	sort.SliceStable(f.ByTenant, func(i, j int) bool { return f.ByTenant[i].ProjectID < f.ByTenant[j].ProjectID })
	w.firstMu.Lock()
	f.FirstUnexpected = w.first
	w.firstMu.Unlock()
	return f
}

// Problems lists what the figures say went wrong: unexpected answers, 5xx,
// requests without an answer, cross-tenant attempts let through.
func (f Figures) Problems() []string {
	var out []string
	if f.Status5xx > 0 {
		out = append(out, fmt.Sprintf("%d answers were 5xx", f.Status5xx))
	}
	if f.Unexpected > 0 {
		out = append(out, fmt.Sprintf("%d unexpected answers (the first: %s)", f.Unexpected, f.FirstUnexpected))
	}
	if f.CrossTenantDenied < f.CrossTenantAttempts {
		out = append(out, fmt.Sprintf("%d of %d cross-tenant attempts were not refused with 403", f.CrossTenantAttempts-f.CrossTenantDenied, f.CrossTenantAttempts))
	}
	return out
}
