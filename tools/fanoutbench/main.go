// Command fanoutbench measures /ws fan-out against a running observatory:
// N subscribers over real WebSockets on loopback, events published to its
// NATS at a steady rate, and it reports frames delivered per second,
// publish-to-receive latency, the server's CPU and its RSS per idle
// subscriber (read from /proc/<pid>). scripts/bench-fanout.sh pins the
// server and this tool to different cores and runs the sizes of
// docs/performance.md.
//
// It needs only the server's URL and admin password: it logs in, creates
// its projects (bench00, bench01, ...) if they do not exist, mints an
// enrollment key for them and enrolls as a worker (DESIGN §11.1), and
// publishes its events with the NATS credentials enrollment gives it, at
// the NATS URL the answer names (-nats overrides it). The server's NATS
// refuses anonymous clients. Against a NATS you operate whose server
// cannot mint credentials, pass a user's credentials file with -nats-creds
// and the URL with -nats instead.
//
// Every subscriber uses the admin token, so the server's caps on /ws
// connections (serve --ws-max-conns and --ws-max-conns-per-credential)
// must allow -subs of them.
//
// Most subscribers are minimal WebSocket clients (package wsload) that
// count and discard frames, all read from one goroutine woken by epoll, so that the load
// generator itself stays cheap; a sample of probe subscribers decodes
// every frame and times each ticker entry against the time its event was
// published. The probes and the publisher run in a child process of
// their own by default (-probe-process), as a browser reads its socket
// and a worker publishes apart from everyone else; the load generator's
// CPU counts both processes.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/worker"
	"github.com/sagewai/observatory/wsload"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanoutbench:", err)
		os.Exit(1)
	}
}

type config struct {
	base      string
	password  string
	natsURL   string
	natsCreds string
	pid       int
	subs      int
	probes    int
	projects  int
	agents    int
	rate      int
	duration  time.Duration
	settle    time.Duration
	scopeMode string
	protocol  string
	deflate   bool
	// probeProc: the probes and the publisher run in a child process of their own (probeChild
	// is that child's mode).
	probeProc, probeChild bool
}

type result struct {
	Subscribers        int     `json:"subscribers"`
	Projects           int     `json:"projects"`
	Scope              string  `json:"scope"`
	Protocol           string  `json:"protocol"`
	Deflate            bool    `json:"deflate"`
	EventsPerSec       float64 `json:"events_per_sec"`
	FramesPerSec       float64 `json:"frames_per_sec"`
	MBPerSec           float64 `json:"mb_per_sec"`
	Snapshots          int64   `json:"snapshots"`
	LatencyP50ms       float64 `json:"latency_p50_ms"`
	LatencyP99ms       float64 `json:"latency_p99_ms"`
	LatencyMaxms       float64 `json:"latency_max_ms"`
	LatencySamples     int     `json:"latency_samples"`
	ServerCPUCores     float64 `json:"server_cpu_cores"`
	LoadgenCPUCores    float64 `json:"loadgen_cpu_cores"`
	FramesExpected     float64 `json:"frames_per_sec_at_one_per_tick"`
	FrameBytesAvg      float64 `json:"frame_bytes_avg"`
	ServerRSSIdleMB    float64 `json:"server_rss_idle_mb"`
	ServerRSSSubsMB    float64 `json:"server_rss_with_subs_mb"`
	RSSPerSubscriberKB float64 `json:"rss_per_idle_subscriber_kib"`
	ServerRSSLoadMB    float64 `json:"server_rss_under_load_mb"`
	Disconnects        int64   `json:"disconnects"`
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var c config
	fs := flag.NewFlagSet("fanoutbench", flag.ContinueOnError)
	fs.StringVar(&c.base, "url", "http://127.0.0.1:3001", "observatory base URL")
	fs.StringVar(&c.password, "password", cmp.Or(os.Getenv("OBSERVATORY_ADMIN_PASSWORD"), "admin"), "the admin password (env OBSERVATORY_ADMIN_PASSWORD)")
	fs.StringVar(&c.natsURL, "nats", "", "the NATS to publish to (default: the URL the enrollment answer names)")
	fs.StringVar(&c.natsCreds, "nats-creds", "", "a NATS credentials file to publish with instead of enrolling (a NATS you operate; needs -nats)")
	fs.IntVar(&c.pid, "pid", 0, "server pid, for CPU and RSS from /proc")
	fs.IntVar(&c.subs, "subs", 1000, "subscribers")
	fs.IntVar(&c.probes, "probes", 50, "subscribers that decode frames and time events")
	fs.IntVar(&c.projects, "projects", 10, "projects the events spread over")
	fs.IntVar(&c.agents, "agents", 100, "agents per project")
	fs.IntVar(&c.rate, "rate", 1000, "events per second published")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "measurement time")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "time after connecting before measuring idle RSS")
	fs.StringVar(&c.scopeMode, "scope", "projects", `"projects" (subscribers spread over the projects) or "*" (all on the whole fleet)`)
	fs.StringVar(&c.protocol, "protocol", protocol.SubprotocolV2, "the /ws version every subscriber asks for: observatory.v2 or observatory.v1")
	fs.BoolVar(&c.deflate, "deflate", true, "offer permessage-deflate, as browsers do (bytes are counted as they arrive, compressed)")
	fs.BoolVar(&c.probeProc, "probe-process", true, "run the probes and the publisher in a process of their own (on the same core), so that they do not queue behind the counting subscribers")
	fs.BoolVar(&c.probeChild, "probe-child", false, "internal: be that process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !protocol.Known(c.protocol) {
		return fmt.Errorf("-protocol %q: want %s or %s", c.protocol, protocol.SubprotocolV2, protocol.Subprotocol)
	}
	u, err := url.Parse(c.base)
	if err != nil {
		return err
	}
	if c.projects < 1 || c.projects > maxEnrolledProjects {
		return fmt.Errorf("-projects %d: want 1 to %d (one enrollment key's projects)", c.projects, maxEnrolledProjects)
	}
	token, err := apiClient(c.base).Login(ctx, "admin", c.password)
	if err != nil {
		return fmt.Errorf("%w (set -password or OBSERVATORY_ADMIN_PASSWORD)", err)
	}
	projects := make([]string, c.projects)
	for i := range projects {
		projects[i] = fmt.Sprintf("bench%02d", i)
	}
	if c.probeChild {
		return probeChild(ctx, c, u.Host, token, projects, os.Stdin, stdout)
	}
	res := result{Subscribers: c.subs, Projects: c.projects, Scope: c.scopeMode, Protocol: c.protocol, Deflate: c.deflate}
	st := &wsload.Stats{}
	d := dialer(c, u.Host, token)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The measuring side, the publisher and the probes, runs in a child
	// process by default (see probeProc), else here.
	var child *probeProc
	var js jetstream.JetStream
	if c.probeProc && c.probes > 0 {
		if child, err = startProbes(ctx, args); err != nil {
			return err
		}
		defer child.stop()
	} else {
		var nc *nats.Conn
		if nc, js, err = connectAndSeed(ctx, c, token, projects); err != nil {
			return err
		}
		defer nc.Close()
	}
	time.Sleep(c.settle)
	rssIdle := wsload.RSSMB(c.pid)

	var wg sync.WaitGroup
	first := 0 // the first subscriber this process dials
	if child != nil {
		if err := child.call("subscribe", "ok"); err != nil {
			return err
		}
		first = min(c.probes, c.subs)
	}
	cnt, err := wsload.NewCounters(st)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		cnt.Run(ctx)
	}()
	for i := first; i < c.subs; i++ {
		scope := scopeOf(c, projects, i)
		if i < c.probes {
			err = wsload.Subscribe(ctx, &wg, d, scope, true, st)
		} else {
			err = countSubscriber(cnt, d, scope)
		}
		if err != nil {
			return fmt.Errorf("subscriber %d: %w (are the server's --ws-max-conns and --ws-max-conns-per-credential at least -subs?)", i, err)
		}
	}
	time.Sleep(c.settle)
	rssSubs := wsload.RSSMB(c.pid)
	res.ServerRSSIdleMB, res.ServerRSSSubsMB = rssIdle, rssSubs
	if c.subs > 0 && rssSubs > 0 {
		res.RSSPerSubscriberKB = (rssSubs - rssIdle) * 1024 / float64(c.subs)
	}

	// Measure under load.
	st.Reset()
	if child != nil {
		if err := child.call("reset", "ok"); err != nil {
			return err
		}
	}
	cpu0, self0 := wsload.CPUSeconds(c.pid), wsload.CPUSeconds(os.Getpid())+child.cpu()
	t0 := time.Now()
	var published int
	if child != nil {
		published, err = child.publish()
	} else {
		published, err = wsload.Publish(ctx, js, projects, c.agents, c.rate, c.duration)
	}
	if err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	cpu1, self1 := wsload.CPUSeconds(c.pid), wsload.CPUSeconds(os.Getpid())+child.cpu()
	res.LoadgenCPUCores = (self1 - self0) / elapsed
	res.FramesExpected = float64(c.subs) * 10 // a 100 ms tick
	res.ServerRSSLoadMB = wsload.RSSMB(c.pid)
	time.Sleep(500 * time.Millisecond) // the frames of the last ticks
	if child != nil {
		if err := child.report(st); err != nil {
			return err
		}
	}
	if n := st.Frames.Load(); n > 0 {
		res.FrameBytesAvg = float64(st.Bytes.Load()) / float64(n)
	}
	res.EventsPerSec = float64(published) / elapsed
	res.FramesPerSec = float64(st.Frames.Load()) / elapsed
	res.MBPerSec = float64(st.Bytes.Load()) / elapsed / 1e6
	res.Snapshots = st.Snapshots.Load()
	if c.pid > 0 {
		res.ServerCPUCores = (cpu1 - cpu0) / elapsed
	}
	lat := st.Latencies()
	res.LatencySamples = len(lat)
	if len(lat) > 0 {
		res.LatencyP50ms = pct(lat, 0.50)
		res.LatencyP99ms = pct(lat, 0.99)
		res.LatencyMaxms = lat[len(lat)-1]
	}
	res.Disconnects = st.Disconnects.Load()
	cancel()
	wg.Wait()
	b, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(b))
	printSummary(stdout, res)
	if e := st.LastError(); e != "" {
		fmt.Fprintln(os.Stderr, "fanoutbench: a subscriber was disconnected:", e)
	}
	return nil
}

// apiClient is the JSON client of the server's admin API.
func apiClient(base string) *live.Client {
	return &live.Client{Base: base, HTTP: http.DefaultClient}
}

// maxEnrolledProjects is how many projects one enrollment key may cover.
const maxEnrolledProjects = 64

// benchWorkerID is the worker id fanoutbench enrolls as.
const benchWorkerID = "fanoutbench"

// connectNATS connects to the server's NATS as a publisher of projects'
// events: with -nats-creds when given, else with the credentials of an
// enrollment (the projects made if missing, an enrollment key minted with
// the admin token).
func connectNATS(ctx context.Context, c config, token string, projects []string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("fanoutbench")}
	if c.natsCreds != "" {
		if c.natsURL == "" {
			return nil, errors.New("-nats-creds needs -nats, the URL of that NATS")
		}
		nc, err := nats.Connect(c.natsURL, append(opts, nats.UserCredentials(c.natsCreds))...)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", c.natsURL, err)
		}
		return nc, nil
	}
	for _, p := range projects {
		code, err := apiClient(c.base).Do(ctx, token, http.MethodPost, "/api/v1/projects", map[string]string{"id": p, "name": "fan-out bench " + p}, 0, nil)
		if err != nil && code != http.StatusConflict {
			return nil, fmt.Errorf("create project %s: %w", p, err)
		}
	}
	var key struct {
		Key string `json:"key"`
	}
	if _, err := apiClient(c.base).Do(ctx, token, http.MethodPost, "/api/v1/enrollment-keys", map[string]any{"projects": projects, "ttl": "24h"}, 0, &key); err != nil {
		return nil, fmt.Errorf("mint an enrollment key: %w", err)
	}
	g, err := worker.EnrollHTTP(c.base, key.Key, nil)(ctx, worker.EnrollRequest{WorkerID: benchWorkerID, Projects: projects, Host: "fanoutbench"})
	if err != nil {
		return nil, err
	}
	if g.NATS == nil {
		return nil, errors.New("the enrollment gave no NATS credentials (a server on a NATS it cannot mint users for): pass -nats and -nats-creds")
	}
	if len(g.Projects) != len(projects) {
		return nil, fmt.Errorf("the enrollment granted projects %v of %v", g.Projects, projects)
	}
	creds := []byte(g.NATS.Creds)
	jwt, seed, err := natsauth.Parse(creds)
	if err != nil {
		return nil, fmt.Errorf("the enrollment's credentials: %w", err)
	}
	// The user may read replies (JetStream's publish acks) only under its
	// own inbox prefix.
	inbox, err := natsauth.InboxPrefix(creds)
	if err != nil {
		return nil, fmt.Errorf("the enrollment's credentials: %w", err)
	}
	natsURL := cmp.Or(c.natsURL, g.NATS.URL)
	nc, err := nats.Connect(natsURL, append(opts, nats.UserJWTAndSeed(jwt, seed), nats.CustomInboxPrefix(inbox))...)
	if err != nil {
		return nil, fmt.Errorf("connect %s with the enrollment's credentials: %w", natsURL, err)
	}
	return nc, nil
}

// connectAndSeed connects the publisher (connectNATS) and seeds the
// fleet, so that snapshots have their real size.
func connectAndSeed(ctx context.Context, c config, token string, projects []string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := connectNATS(ctx, c, token, projects)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		err = wsload.Seed(ctx, js, projects, c.agents)
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// loadgenSaturated is the load generator's CPU (in cores, on its one
// core) above which its own delay shows in the latencies.
const loadgenSaturated = 0.9

// printSummary prints res as one line a reader can hold against
// docs/performance.md's tables. It names the load generator's own CPU
// beside the server's, so that a run where the generator saturated first
// says so.
func printSummary(w io.Writer, res result) {
	share := 0.0
	if res.FramesExpected > 0 {
		share = 100 * res.FramesPerSec / res.FramesExpected
	}
	wire := "plain"
	if res.Deflate {
		wire = "deflate offered"
	}
	fmt.Fprintf(w, "%d subscribers (%s, %s, scope %s): %.0f events/s in; %.0f frames/s delivered (%.0f %% of one per tick), %.0f bytes/frame, %.0f MB/s; "+
		"publish→receive p50/p99/max %.0f/%.0f/%.0f ms; server CPU %.2f cores, load generator CPU %.2f cores; RSS per idle subscriber %.1f KiB; %d snapshots seen by the probes, %d disconnects\n",
		res.Subscribers, res.Protocol, wire, res.Scope, res.EventsPerSec, res.FramesPerSec, share, res.FrameBytesAvg, res.MBPerSec,
		res.LatencyP50ms, res.LatencyP99ms, res.LatencyMaxms, res.ServerCPUCores, res.LoadgenCPUCores, res.RSSPerSubscriberKB,
		res.Snapshots, res.Disconnects)
	if res.LoadgenCPUCores >= loadgenSaturated {
		fmt.Fprintf(w, "warning: the load generator used %.2f of its core: it may have saturated before the server, and the latencies include its delay\n", res.LoadgenCPUCores)
	}
}

func pct(sorted []float64, p float64) float64 {
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// dialer dials this run's subscribers.
func dialer(c config, host, token string) wsload.Dialer {
	return wsload.Dialer{Host: host, Token: token, Protocol: c.protocol, Deflate: c.deflate}
}

// countSubscriber dials a counting subscriber and hands it to cnt.
func countSubscriber(cnt *wsload.Counters, d wsload.Dialer, scope string) error {
	conn, br, err := d.Dial(scope)
	if err != nil {
		return err
	}
	return cnt.Add(conn, br)
}

// scopeOf is subscriber i's scope.
func scopeOf(c config, projects []string, i int) string {
	if c.scopeMode == "projects" {
		return projects[i%len(projects)]
	}
	return "*"
}

// The measuring side's own process: the publisher and the probes. A
// browser showing the HUD reads its socket as soon as data arrives, and a
// worker publishes when its work is done; sharing a scheduler with
// thousands of counting subscribers, probes would read their sockets
// after every socket the server wrote before theirs, and the publisher
// would send late (each event is timed from its publish time, so the
// latencies would include the load generator's backlog). In a process of
// their own (pinned to the same core, like everything this tool starts)
// they are woken by the kernel when their turn comes. The child speaks
// over its stdin and stdout: "ready" once it has connected to NATS and
// seeded the fleet; "subscribe" (answered "ok") dials the probes; "reset"
// (answered "ok") starts the measurement; "publish" publishes for
// -duration and is answered with the number of events published;
// "report" is answered with its counts and latencies, and ends it.

type probeProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

type probeReport struct {
	Frames, Bytes, Snapshots, Disconnects int64
	Latencies                             []float64
	LastError                             string // why a probe was last disconnected, if one was
}

// startProbes starts this program as the probe child with the parent's
// flags, and waits for it to have seeded the fleet.
func startProbes(ctx context.Context, args []string) (*probeProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, append(slices.Clone(args), "--probe-child")...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &probeProc{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if err := p.expect("ready"); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *probeProc) expect(want string) error {
	line, err := p.out.ReadString('\n')
	if got := strings.TrimSpace(line); got != want {
		return fmt.Errorf("probe process: got %q (%v), want %q", got, err, want)
	}
	return nil
}

// call sends cmd and expects the answer want.
func (p *probeProc) call(cmd, want string) error {
	if _, err := io.WriteString(p.in, cmd+"\n"); err != nil {
		return fmt.Errorf("probe process: %w", err)
	}
	return p.expect(want)
}

// publish has the child publish for -duration and returns how many
// events it published.
func (p *probeProc) publish() (int, error) {
	if _, err := io.WriteString(p.in, "publish\n"); err != nil {
		return 0, fmt.Errorf("probe process: %w", err)
	}
	line, err := p.out.ReadString('\n')
	n, perr := strconv.Atoi(strings.TrimSpace(line))
	if perr != nil {
		return 0, fmt.Errorf("probe process: publish answered %q (%v)", strings.TrimSpace(line), cmp.Or(err, perr))
	}
	return n, nil
}

// report adds the child's counts, latencies and last disconnect to st;
// the child then ends.
func (p *probeProc) report(st *wsload.Stats) error {
	if _, err := io.WriteString(p.in, "report\n"); err != nil {
		return fmt.Errorf("probe process: %w", err)
	}
	var r probeReport
	if err := json.NewDecoder(p.out).Decode(&r); err != nil {
		return fmt.Errorf("probe process: its report: %w", err)
	}
	st.Frames.Add(r.Frames)
	st.Bytes.Add(r.Bytes)
	st.Snapshots.Add(r.Snapshots)
	st.Disconnects.Add(r.Disconnects)
	st.AddLatencies(r.Latencies)
	st.SetLastError(r.LastError)
	return nil
}

// cpu is the child's CPU time so far (0 without a child).
func (p *probeProc) cpu() float64 {
	if p == nil {
		return 0
	}
	return wsload.CPUSeconds(p.cmd.Process.Pid)
}

func (p *probeProc) stop() {
	p.in.Close()
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// probeChild is the measuring side's process: it connects to NATS, seeds
// the fleet, says "ready", and answers the parent (see probeProc).
func probeChild(ctx context.Context, c config, host, token string, projects []string, in io.Reader, out io.Writer) error {
	nc, js, err := connectAndSeed(ctx, c, token, projects)
	if err != nil {
		return err
	}
	defer nc.Close()
	st := &wsload.Stats{}
	d := dialer(c, host, token)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before the wait
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		switch sc.Text() {
		case "subscribe":
			for i := range min(c.probes, c.subs) {
				if err := wsload.Subscribe(ctx, &wg, d, scopeOf(c, projects, i), true, st); err != nil {
					return fmt.Errorf("probe %d: %w", i, err)
				}
			}
			fmt.Fprintln(out, "ok")
		case "reset":
			st.Reset()
			fmt.Fprintln(out, "ok")
		case "publish":
			n, err := wsload.Publish(ctx, js, projects, c.agents, c.rate, c.duration)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, n)
		case "report":
			r := probeReport{Frames: st.Frames.Load(), Bytes: st.Bytes.Load(), Snapshots: st.Snapshots.Load(),
				Disconnects: st.Disconnects.Load(), Latencies: st.Latencies(), LastError: st.LastError()}
			return json.NewEncoder(out).Encode(r)
		}
	}
	return sc.Err()
}
