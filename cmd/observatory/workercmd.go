package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/telemetry"
	"github.com/sagewai/observatory/worker"
)

const workerUsage = `usage: observatory worker [flags]

A standalone worker: it enrolls with the server at --url using an
enrollment key (POST /api/v1/enrollment-keys), connects to NATS with the
credentials the enrollment gives it (kept in memory, never written to
disk), and runs the missions of its projects and pools with the synthetic
agent. Before its credentials expire it enrolls again.

On SIGTERM or Ctrl-C it claims nothing new, lets its running missions end
within --grace, hands back (to another worker, at once) those that did not,
publishes worker.left and exits 0.

Pass the key in the environment (OBSERVATORY_ENROLL_KEY) or a file
(--enroll-key-file) rather than on the command line, where other users of
the machine can read it.

examples:
  OBSERVATORY_ENROLL_KEY=... observatory worker --url http://observatory:3001 --worker-id gpu-01 --pool gpu --slots 4
  observatory worker --enroll-key-file /run/secrets/enroll-key --projects acme --models gpt-5,claude-sonnet-4-5 --labels region=eu

flags:
`

// Bounds of the worker's stop and enrollment.
const (
	// workerHandBackWait is how long a worker that handed its missions
	// back waits for them to return to the queue and for worker.left
	// before it gives up and exits non-zero (their leases then expire).
	workerHandBackWait = 15 * time.Second
	// workerEnrollBackoffMax bounds the wait between two attempts at an
	// enrollment the server did not answer.
	workerEnrollBackoffMax = 30 * time.Second
	// workerMaxSlots is the server's bound on a worker's capacity.
	workerMaxSlots = 1024
)

// workerIDRE is the shape of a worker id the server accepts.
var workerIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,127}$`)

// workerOptions are the flags of `observatory worker`.
type workerOptions struct {
	url, key, keyFile, id                string
	projects, pools, models, labels      string
	natsURL, natsCA, logLevel, logFormat string
	slots                                int
	timeScale                            float64
	grace, lease, enrollWait             time.Duration
	seed                                 uint64
	// What check makes of the flags.
	parsedProjects, parsedPools, modelList []string
	labelMap                               map[string]string
	level                                  slog.Level
}

// workerFlags is the FlagSet of `observatory worker`, each flag with its
// env twin.
func workerFlags(getenv func(string) string, stderr io.Writer) (*flag.FlagSet, *workerOptions) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), workerUsage)
		fs.PrintDefaults()
	}
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	o := &workerOptions{}
	fs.StringVar(&o.url, "url", env("OBSERVATORY_URL", "http://localhost:3001"), "the server's base URL, where the worker enrolls (env OBSERVATORY_URL)")
	// The key's env twin is read after parsing, never as the flag's
	// default: a default is printed by -h and by every flag error.
	fs.StringVar(&o.key, "enroll-key", "", "the enrollment key; prefer the env twin or --enroll-key-file, since a command line is visible to other users (env OBSERVATORY_ENROLL_KEY)")
	fs.StringVar(&o.keyFile, "enroll-key-file", env("OBSERVATORY_ENROLL_KEY_FILE", ""), "read the enrollment key from this file (env OBSERVATORY_ENROLL_KEY_FILE)")
	fs.StringVar(&o.id, "worker-id", env("OBSERVATORY_WORKER_ID", ""), "the worker's id, like gpu-01; default w-<host>-<pid>: set it to keep one identity across restarts (env OBSERVATORY_WORKER_ID)")
	fs.StringVar(&o.projects, "projects", env("OBSERVATORY_WORKER_PROJECTS", ""), "comma-separated projects to claim from; default every project the key covers (env OBSERVATORY_WORKER_PROJECTS)")
	fs.StringVar(&o.pools, "pool", env("OBSERVATORY_WORKER_POOL", ""), "comma-separated pools to claim from; default the default pool (env OBSERVATORY_WORKER_POOL)")
	fs.StringVar(&o.models, "models", env("OBSERVATORY_WORKER_MODELS", ""), "comma-separated models the worker serves; default every model (env OBSERVATORY_WORKER_MODELS)")
	fs.StringVar(&o.labels, "labels", env("OBSERVATORY_WORKER_LABELS", ""), "labels the worker offers, k=v,... (env OBSERVATORY_WORKER_LABELS)")
	fs.IntVar(&o.slots, "slots", envInt(getenv, "OBSERVATORY_WORKER_SLOTS", 1), "missions run at once (env OBSERVATORY_WORKER_SLOTS)")
	fs.Float64Var(&o.timeScale, "time-scale", envFloat(getenv, "OBSERVATORY_WORKER_TIME_SCALE", 1), "speed of the synthetic agent: 1 is real time, 0.1 runs a 20 s mission in 2 s (env OBSERVATORY_WORKER_TIME_SCALE)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the synthetic agent's choices")
	fs.DurationVar(&o.grace, "grace", envDuration(getenv, "OBSERVATORY_WORKER_GRACE", 30*time.Second), "on SIGTERM, how long running missions get to end before they are handed back (env OBSERVATORY_WORKER_GRACE)")
	fs.DurationVar(&o.lease, "lease", envDuration(getenv, "OBSERVATORY_WORKER_LEASE", 0), "lease of a claim, renewed by heartbeats, from 1s to 1h; 0 is the server's default, 60s (env OBSERVATORY_WORKER_LEASE)")
	fs.DurationVar(&o.enrollWait, "enroll-wait", envDuration(getenv, "OBSERVATORY_WORKER_ENROLL_WAIT", 2*time.Minute), "keep retrying an enrollment the server does not answer for this long (a refusal is never retried) (env OBSERVATORY_WORKER_ENROLL_WAIT)")
	fs.StringVar(&o.natsURL, "nats-url", env("OBSERVATORY_WORKER_NATS_URL", ""), "dial this NATS instead of the one the enrollment names (another route to the same servers) (env OBSERVATORY_WORKER_NATS_URL)")
	fs.StringVar(&o.natsCA, "nats-tls-ca", env("OBSERVATORY_NATS_TLS_CA", ""), "CA certificate (PEM) that signed the NATS servers' certificates (env OBSERVATORY_NATS_TLS_CA)")
	fs.StringVar(&o.logLevel, "log-level", env("OBSERVATORY_LOG_LEVEL", "info"), "debug, info, warn or error (env OBSERVATORY_LOG_LEVEL)")
	fs.StringVar(&o.logFormat, "log-format", env("OBSERVATORY_LOG_FORMAT", telemetry.LogFormatJSON), "json or text, on stderr (env OBSERVATORY_LOG_FORMAT)")
	return fs, o
}

// check validates the options and fills the parsed fields; its errors are
// usage errors.
func (o *workerOptions) check(getenv func(string) string) error {
	u, err := url.Parse(o.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url %q: want the server's base URL, like http://observatory:3001", stream.RedactURL(o.url))
	}
	o.url = strings.TrimRight(o.url, "/")
	switch {
	case o.key != "" && o.keyFile != "":
		return errors.New("give the enrollment key once: --enroll-key or --enroll-key-file")
	case o.keyFile != "":
		b, err := os.ReadFile(o.keyFile)
		if err != nil {
			return fmt.Errorf("--enroll-key-file: %w", err)
		}
		o.key = strings.TrimSpace(string(b))
	case o.key == "":
		o.key = strings.TrimSpace(getenv("OBSERVATORY_ENROLL_KEY"))
	}
	if o.key == "" {
		return errors.New("an enrollment key is required: OBSERVATORY_ENROLL_KEY, --enroll-key-file or --enroll-key (an admin makes one with POST /api/v1/enrollment-keys)")
	}
	if o.id == "" {
		o.id = defaultWorkerID()
	}
	if !workerIDRE.MatchString(o.id) {
		return fmt.Errorf("--worker-id %q: want lower-case letters, digits, - and _ (%s)", o.id, workerIDRE)
	}
	o.parsedProjects = splitList(o.projects)
	for _, p := range o.parsedProjects {
		if !fleet.ValidProjectID(p) {
			return fmt.Errorf("--projects: %q is not a project id", p)
		}
	}
	o.parsedPools = splitList(o.pools)
	for _, p := range o.parsedPools {
		if !fleet.ValidProjectID(p) {
			return fmt.Errorf("--pool: %q is not a pool id", p)
		}
	}
	o.modelList = splitList(o.models)
	if o.labelMap, err = parseWorkerLabels(o.labels); err != nil {
		return err
	}
	switch {
	case o.slots < 1 || o.slots > workerMaxSlots:
		return fmt.Errorf("--slots %d: want 1 to %d", o.slots, workerMaxSlots)
	case o.timeScale <= 0 || o.timeScale > 100:
		return fmt.Errorf("--time-scale %g: want above 0 and at most 100", o.timeScale)
	case o.grace < 0:
		return errors.New("--grace must not be negative")
	case o.lease != 0 && (o.lease < time.Second || o.lease > time.Hour):
		return fmt.Errorf("--lease %s: want 1s to 1h, or 0 for the server's default", o.lease)
	case o.enrollWait < 0:
		return errors.New("--enroll-wait must not be negative")
	}
	if o.natsURL != "" && stream.RedactURL(o.natsURL) != o.natsURL {
		return errors.New("--nats-url must not carry userinfo: the worker connects with the credentials of its enrollment")
	}
	if o.natsCA != "" {
		if _, err := os.Stat(o.natsCA); err != nil {
			return fmt.Errorf("--nats-tls-ca: %w", err)
		}
	}
	if err := o.level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	return checkLogFormat(o.logFormat)
}

// parseWorkerLabels reads k=v,k2=v2 (a bare k offers the label with an
// empty value).
func parseWorkerLabels(s string) (map[string]string, error) {
	items := splitList(s)
	if len(items) == 0 {
		return nil, nil
	}
	labels := make(map[string]string, len(items))
	for _, item := range items {
		k, v, _ := strings.Cut(item, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" {
			return nil, fmt.Errorf("--labels: %q has no label name: want k=v,...", item)
		}
		if _, dup := labels[k]; dup {
			return nil, fmt.Errorf("--labels names %q twice", k)
		}
		labels[k] = v
	}
	return labels, nil
}

// defaultWorkerID is w-<host>-<pid>, in the shape of a worker id.
func defaultWorkerID() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, r := range strings.ToLower(host) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-_")
	if len(h) > 100 {
		h = h[:100]
	}
	if h == "" {
		h = "host"
	}
	return fmt.Sprintf("w-%s-%d", h, os.Getpid())
}

// workerSummary is the last line `observatory worker` prints: its counts
// over every enrollment of the process, as JSON.
type workerSummary struct {
	WorkerID   string `json:"worker_id"`
	Claimed    int64  `json:"claimed"`
	Completed  int64  `json:"completed"`
	Failed     int64  `json:"failed"`
	HandedBack int64  `json:"handed_back"`
	PassedOn   int64  `json:"passed_on"`
	Leaks      int64  `json:"cross_tenant_leaks"`
}

// workerProcess runs the worker runtime for the command: one enrolled
// worker at a time, enrolled again when its credentials are about to
// expire, until the command stops it.
type workerProcess struct {
	cfg worker.Config
	log *slog.Logger

	// mu guards the fields below: the worker running now, whether the
	// command is stopping it (and how), the counts of the workers that
	// ended, and whether any enrollment succeeded.
	mu         sync.Mutex
	current    *worker.Worker
	stopping   bool
	handedBack bool
	ended      worker.Stats
	enrolled   bool
}

// run runs workers until one ends for another reason than expiring
// credentials, or the command stops it; ctx ends only an abrupt stop.
func (p *workerProcess) run(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.stopping {
			p.mu.Unlock()
			return nil
		}
		w := worker.Enrolled(p.cfg)
		p.current = w
		p.mu.Unlock()
		err := w.Run(ctx)
		p.mu.Lock()
		p.ended = addStats(p.ended, w.Stats())
		p.current = nil
		stopping := p.stopping
		p.mu.Unlock()
		if !errors.Is(err, worker.ErrCredentialsExpired) || stopping || ctx.Err() != nil {
			return err
		}
		p.log.Info("the worker's credentials expire: enrolling again", "event", "worker.reenroll")
	}
}

// stop asks the running worker to stop cleanly (Stop), or, with handBack,
// to hand its running missions back now (HandBack).
func (p *workerProcess) stop(handBack bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
	p.handedBack = p.handedBack || handBack
	if p.current == nil {
		return
	}
	if handBack {
		p.current.HandBack()
	} else {
		p.current.Stop()
	}
}

// stats returns the counts of every worker the process ran.
func (p *workerProcess) stats() (worker.Stats, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.ended
	if p.current != nil {
		st = addStats(st, p.current.Stats())
	}
	return st, p.enrolled
}

func (p *workerProcess) markEnrolled() {
	p.mu.Lock()
	p.enrolled = true
	p.mu.Unlock()
}

func addStats(a, b worker.Stats) worker.Stats {
	a.Claimed += b.Claimed
	a.Completed += b.Completed
	a.Failed += b.Failed
	a.Leaks += b.Leaks
	a.Invalid += b.Invalid
	a.Skipped += b.Skipped
	a.Expired += b.Expired
	a.Unmatched += b.Unmatched
	a.HandedBack += b.HandedBack
	return a
}

// enrollWithRetry wraps the admin API's enrollment: an answer that is not
// a refusal (the server down or starting, a 5xx) is tried again with a
// doubling backoff for up to wait; a refusal, or stop, ends it at once.
func enrollWithRetry(enroll func(context.Context, worker.EnrollRequest) (worker.Grant, error), stop context.Context, wait time.Duration,
	log *slog.Logger, enrolled func(worker.Grant)) func(context.Context, worker.EnrollRequest) (worker.Grant, error) {
	return func(ctx context.Context, req worker.EnrollRequest) (worker.Grant, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(stop, cancel)()
		deadline := time.Now().Add(wait)
		backoff := time.Second
		for {
			g, err := enroll(ctx, req)
			if err == nil {
				enrolled(g)
				return g, nil
			}
			if errors.Is(err, worker.ErrEnrollRefused) || ctx.Err() != nil {
				return g, err
			}
			if time.Now().Add(backoff).After(deadline) {
				if wait > 0 {
					err = fmt.Errorf("%w (no answer for --enroll-wait %s)", err, wait)
				}
				return g, err
			}
			log.Warn("enrollment failed; trying again", "event", "worker.enroll_retry", "error", err.Error(), "retry_in", backoff.String())
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return g, fmt.Errorf("enrollment interrupted: %w (the last attempt: %v)", ctx.Err(), err)
			case <-t.C:
			}
			backoff = min(2*backoff, workerEnrollBackoffMax)
		}
	}
}

// workerCmd runs `observatory worker`.
func workerCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := workerFlags(getenv, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("worker: %v", err)
	}
	if fs.NArg() > 0 {
		return usagef("worker: unexpected arguments %q", fs.Args())
	}
	if err := o.check(getenv); err != nil {
		return usagef("worker: %v", err)
	}
	var h slog.Handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.level})
	if o.logFormat == telemetry.LogFormatText {
		h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.level})
	}
	log := slog.New(h)

	p := &workerProcess{log: log}
	base := stream.RedactURL(o.url)
	enrolled := func(g worker.Grant) {
		p.markEnrolled()
		natsURL := ""
		if g.NATS != nil {
			natsURL = stream.RedactURL(cmpOr(o.natsURL, g.NATS.URL))
		}
		fmt.Fprintf(stdout, "worker %s enrolled: projects %s, pools %s, NATS %s\n", o.id, strings.Join(g.Projects, ","),
			strings.Join(g.Pools, ","), natsURL)
	}
	p.cfg = worker.Config{
		ID: o.id, Projects: o.parsedProjects, Pools: o.parsedPools, Models: o.modelList, Labels: o.labelMap,
		Capacity: o.slots, Lease: o.lease, NATSURL: o.natsURL, Logger: log,
		Agent:  worker.Synthetic(worker.SyntheticConfig{TimeScale: o.timeScale, Seed: o.seed}),
		Enroll: enrollWithRetry(worker.EnrollHTTP(o.url, o.key, &http.Client{Timeout: 10 * time.Second}), ctx, o.enrollWait, log, enrolled),
	}
	if o.natsCA != "" {
		p.cfg.NATSOptions = []nats.Option{nats.RootCAs(o.natsCA)}
	}
	scope := "every project the key covers"
	if len(o.parsedProjects) > 0 {
		scope = strings.Join(o.parsedProjects, ",")
	}
	fmt.Fprintf(stdout, "observatory worker %s: enrolling at %s for %s, %d slot(s), agents at %gx real time\n", o.id, base, scope, o.slots, 1/o.timeScale)

	// The worker runs on a context of its own: the signal asks for a
	// clean stop (Stop, then HandBack after --grace); cancelling runCtx is
	// the abrupt stop, the last resort.
	runCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	done := make(chan error, 1)
	go func() { done <- p.run(runCtx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = p.shutdown(done, o.grace, abort)
	}
	st, ok := p.stats()
	if ok {
		printWorkerSummary(stdout, o.id, st)
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && !ok && errors.Is(err, context.Canceled):
		// Stopped while enrolling: nothing ran, nothing to hand back.
		return nil
	case errors.Is(err, worker.ErrEnrollRefused):
		return fmt.Errorf("worker: %w (%s: %s)", err, base, refusalHint(err))
	}
	return fmt.Errorf("worker: %w", err)
}

// shutdown stops the worker after a signal: no new claims; the running
// missions get grace to end, then are handed back; if even that does not
// end the worker within workerHandBackWait, it is stopped abruptly and
// shutdown says so.
func (p *workerProcess) shutdown(done <-chan error, grace time.Duration, abort context.CancelFunc) error {
	p.log.Info("stopping: claiming nothing new; running missions may end within the grace period", "event", "worker.stopping",
		"grace", grace.String())
	p.stop(false)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	p.log.Warn("the grace period is over: handing the running missions back to the queue", "event", "worker.handing_back")
	p.stop(true)
	bound := time.NewTimer(workerHandBackWait)
	defer bound.Stop()
	select {
	case err := <-done:
		return err
	case <-bound.C:
	}
	abort()
	<-done
	return fmt.Errorf("the worker did not stop within %s of handing its missions back: their leases will expire", workerHandBackWait)
}

// refusalHint names what to fix for a refused enrollment, from the API's
// error code in err.
func refusalHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "status 401"):
		return "the key is not valid or has expired: check --enroll-key, --enroll-key-file or OBSERVATORY_ENROLL_KEY"
	case strings.Contains(msg, "status 403"):
		return "the key covers none of the projects or pools asked for: check --projects and --pool"
	case strings.Contains(msg, "status 409"):
		return "the worker id belongs to another project: choose another --worker-id"
	case strings.Contains(msg, "status 400"):
		return "the server refused the worker's declaration: check --worker-id, --models, --labels, --slots and --lease"
	}
	return "see the server's answer"
}

func printWorkerSummary(w io.Writer, id string, st worker.Stats) {
	fmt.Fprintf(w, "worker %s stopped: %d missions claimed, %d completed, %d failed, %d handed back, %d passed on, %d cross-tenant leaks\n",
		id, st.Claimed, st.Completed, st.Failed, st.HandedBack, st.Skipped, st.Leaks)
	b, _ := json.Marshal(workerSummary{WorkerID: id, Claimed: st.Claimed, Completed: st.Completed, Failed: st.Failed,
		HandedBack: st.HandedBack, PassedOn: st.Skipped, Leaks: st.Leaks})
	fmt.Fprintf(w, "%s\n", b)
}
