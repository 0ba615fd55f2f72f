package fleetload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sagewai/observatory/worker"
)

// crewStopWait bounds a clean stop of the workers: past it, goroutines are
// cancelled and processes killed. A process gets its own grace
// (procGrace) and hand-back first, so the bound is above both.
const crewStopWait = 30 * time.Second

// procGrace is the --grace of a worker process: at the end of a run its
// missions have ended, so it only bounds a stop that comes early (a
// cancelled run).
const procGrace = 10 * time.Second

// member is one worker of the run: its id and projects.
type member struct {
	id       string
	projects []string
}

// crew is the run's workers, as goroutines or as processes.
type crew interface {
	// failed receives the error of a worker that stopped by itself.
	failed() <-chan error
	// stop stops every worker cleanly (abruptly after crewStopWait) and
	// waits for them; later calls do nothing.
	stop()
	// stats sums the workers' counts; complete once stop returned.
	stats() worker.Stats
	// unclean counts the workers that did not stop cleanly.
	unclean() int64
}

// goroutines is a crew of worker runtimes in this process.
type goroutines struct {
	workers []*worker.Worker
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
	once    sync.Once
}

var _ crew = (*goroutines)(nil)

func startGoroutines(ctx context.Context, workers []*worker.Worker) *goroutines {
	g := &goroutines{workers: workers, errs: make(chan error, len(workers))}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.cancel = cancel
	for _, wk := range workers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := wk.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				g.errs <- err
			}
		}()
	}
	return g
}

func (g *goroutines) failed() <-chan error { return g.errs }

func (g *goroutines) stop() {
	g.once.Do(func() {
		for _, wk := range g.workers {
			wk.Stop()
		}
		done := make(chan struct{})
		go func() { g.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(crewStopWait):
			g.cancel()
			<-done
		}
		g.cancel()
	})
}

func (g *goroutines) stats() worker.Stats {
	var st worker.Stats
	for _, wk := range g.workers {
		s := wk.Stats()
		st.Claimed += s.Claimed
		st.Completed += s.Completed
		st.Failed += s.Failed
		st.Leaks += s.Leaks
		st.HandedBack += s.HandedBack
	}
	return st
}

func (g *goroutines) unclean() int64 { return 0 }

// processes is a crew of `observatory worker` processes.
type processes struct {
	procs []*proc
	errs  chan error
	once  sync.Once
}

var _ crew = (*processes)(nil)

// proc is one worker process. Its goroutine waits for it to exit, sets
// err and closes exited.
type proc struct {
	id       string
	cmd      *exec.Cmd
	stdout   *tailBuffer
	stderr   *tailBuffer
	exited   chan struct{}
	err      error
	stopping chan struct{} // closed before the crew signals the process
}

// startProcesses starts one `observatory worker` process per member with
// command (the binary and its "worker" word), enrolling at base with key.
// The key goes in the processes' environment, not on their command lines,
// which every user of the machine can read.
func startProcesses(command []string, base, key string, members []member, cfg Config) (*processes, error) {
	p := &processes{errs: make(chan error, len(members))}
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		// The workers take their settings from the flags below, not from
		// whatever OBSERVATORY_* variables the example runs with.
		if !strings.HasPrefix(kv, "OBSERVATORY_") {
			env = append(env, kv)
		}
	}
	env = append(env, "OBSERVATORY_ENROLL_KEY="+key)
	level := "warn"
	if cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		level = "debug"
	}
	for _, m := range members {
		args := append(append([]string{}, command[1:]...),
			"--url", base, "--worker-id", m.id, "--projects", strings.Join(m.projects, ","), "--slots", "1",
			"--time-scale", strconv.FormatFloat(cfg.TimeScale, 'g', -1, 64), "--seed", strconv.FormatUint(cfg.Seed, 10),
			"--grace", procGrace.String(), "--enroll-wait", "30s", "--log-level", level)
		pr := &proc{id: m.id, cmd: exec.Command(command[0], args...), stdout: &tailBuffer{max: 64 << 10}, stderr: &tailBuffer{max: 64 << 10},
			exited: make(chan struct{}), stopping: make(chan struct{})}
		pr.cmd.Env = env
		pr.cmd.Stdout, pr.cmd.Stderr = pr.stdout, pr.stderr
		pr.cmd.SysProcAttr = procAttr()
		if err := pr.cmd.Start(); err != nil {
			p.stop()
			return nil, fmt.Errorf("start worker %s: %w", m.id, err)
		}
		p.procs = append(p.procs, pr)
		go func() {
			pr.err = pr.cmd.Wait()
			close(pr.exited)
			select {
			case <-pr.stopping:
			default:
				p.errs <- fmt.Errorf("worker process %s exited: %v\n%s", pr.id, pr.err, pr.stderr.tail(20))
			}
		}()
	}
	return p, nil
}

func (p *processes) failed() <-chan error { return p.errs }

// stop sends every process SIGTERM (a clean stop: missions end or are
// handed back, worker.left) and waits; one still running after
// crewStopWait is killed.
func (p *processes) stop() {
	p.once.Do(func() {
		for _, pr := range p.procs {
			close(pr.stopping)
			_ = pr.cmd.Process.Signal(syscall.SIGTERM)
		}
		deadline := time.NewTimer(crewStopWait)
		defer deadline.Stop()
		for _, pr := range p.procs {
			select {
			case <-pr.exited:
			case <-deadline.C:
				for _, pr := range p.procs {
					_ = pr.cmd.Process.Kill()
				}
				<-pr.exited
			}
		}
		for _, pr := range p.procs {
			<-pr.exited
		}
	})
}

// stats reads the counts each process printed as its last line (the
// summary of `observatory worker`); a process that printed none (killed)
// adds nothing.
func (p *processes) stats() worker.Stats {
	var st worker.Stats
	for _, pr := range p.procs {
		s, ok := pr.summary()
		if !ok {
			continue
		}
		st.Claimed += s.Claimed
		st.Completed += s.Completed
		st.Failed += s.Failed
		st.Leaks += s.Leaks
		st.HandedBack += s.HandedBack
	}
	return st
}

func (p *processes) unclean() int64 {
	var n int64
	for _, pr := range p.procs {
		select {
		case <-pr.exited:
			if pr.err != nil {
				n++
			}
		default:
			n++
		}
	}
	return n
}

// procSummary is the JSON line `observatory worker` ends its output with.
type procSummary struct {
	WorkerID   string `json:"worker_id"`
	Claimed    int64  `json:"claimed"`
	Completed  int64  `json:"completed"`
	Failed     int64  `json:"failed"`
	HandedBack int64  `json:"handed_back"`
	Leaks      int64  `json:"cross_tenant_leaks"`
}

func (pr *proc) summary() (procSummary, bool) {
	var last string
	sc := bufio.NewScanner(strings.NewReader(pr.stdout.String()))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "{") {
			last = l
		}
	}
	var s procSummary
	if last == "" || json.Unmarshal([]byte(last), &s) != nil || s.WorkerID != pr.id {
		return s, false
	}
	return s, true
}

// tailBuffer keeps the last max bytes written to it; safe for one writer
// and many readers.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// tail returns the last n lines.
func (t *tailBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(t.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
