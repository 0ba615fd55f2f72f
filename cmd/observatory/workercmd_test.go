package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// workerProc is an `observatory worker` process.
type workerProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
	err            error // set before exited is closed
}

// startWorkerProc runs bin worker with args, and env added to the test's
// environment less its OBSERVATORY_* and OTEL_* variables. The test's
// cleanup kills it if it still runs.
func startWorkerProc(t *testing.T, bin string, env []string, args ...string) *workerProc {
	t.Helper()
	p := &workerProc{cmd: exec.Command(bin, append([]string{"worker"}, args...)...), stdout: &syncBuffer{}, stderr: &syncBuffer{},
		exited: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "OBSERVATORY_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// exitCode waits up to bound (a hang bound) for the process to exit and
// returns its status.
func (p *workerProc) exitCode(t *testing.T, bound time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(bound):
		t.Fatalf("the worker did not exit within %s\nstdout:\n%s\nstderr (tail):\n%s", bound, p.stdout, observatorytest.Tail(p.stderr.String(), 20))
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("the worker: %v", p.err)
	return -1
}

func (p *workerProc) output() string { return p.stdout.String() + p.stderr.String() }

// summary reads the JSON line the worker ends its output with.
func (p *workerProc) summary(t *testing.T) workerSummary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
	var s workerSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("the worker's last line %q: %v", lines[len(lines)-1], err)
	}
	return s
}

// projectEvents records a project's events on FLEET.
type projectEvents struct {
	mu     sync.Mutex
	events []fleet.Event
}

func recordProject(t *testing.T, js jetstream.JetStream, project string) *projectEvents {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream.FleetStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"fleet." + project + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &projectEvents{}
	cc, err := c.Consume(func(m jetstream.Msg) {
		if ev, err := fleet.DecodeEvent(m.Subject(), m.Data()); err == nil {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return r
}

func (r *projectEvents) all(keep func(fleet.Event) bool) []fleet.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []fleet.Event
	for _, e := range r.events {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func missionEvents(id, typ string) func(fleet.Event) bool {
	return func(e fleet.Event) bool { return e.MissionID == id && e.Type == typ }
}

func missionEnds(id string) func(fleet.Event) bool {
	return func(e fleet.Event) bool {
		return e.MissionID == id && (e.Type == fleet.TypeMissionCompleted || e.Type == fleet.TypeMissionFailed)
	}
}

// enrollmentKey makes, as the admin, an enrollment key for projects.
func enrollmentKey(t *testing.T, c *live.Client, admin string, projects ...string) string {
	t.Helper()
	var k struct{ Key string }
	if _, err := c.Do(context.Background(), admin, http.MethodPost, "/api/v1/enrollment-keys", map[string]any{"projects": projects, "ttl": "1h"},
		http.StatusCreated, &k); err != nil {
		t.Fatal(err)
	}
	return k.Key
}

func createProject(t *testing.T, c *live.Client, admin, id string) {
	t.Helper()
	if _, err := c.Do(context.Background(), admin, http.MethodPost, "/api/v1/projects", map[string]string{"id": id, "name": id}, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
}

func createMission(t *testing.T, c *live.Client, admin, project string) string {
	t.Helper()
	var m struct{ ID string }
	if _, err := c.Do(context.Background(), admin, http.MethodPost, "/api/v1/projects/"+project+"/missions",
		map[string]any{"title": "worker process test", "model": "gpt-5"}, http.StatusCreated, &m); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

// nkeySeedRE matches an nkey user seed, the secret half of NATS credentials.
var nkeySeedRE = regexp.MustCompile(`SU[A-Z2-7]{56}`)

// checkNoSecrets fails t if the output of a worker shows the enrollment
// key or NATS credentials.
func checkNoSecrets(t *testing.T, name, out, key string) {
	t.Helper()
	if strings.Contains(out, key) {
		t.Errorf("%s printed its enrollment key", name)
	}
	if strings.Contains(out, "NATS USER JWT") || nkeySeedRE.MatchString(out) {
		t.Errorf("%s printed its NATS credentials", name)
	}
}

// TestWorkerProcessesStopCleanly runs three `observatory worker` processes
// against a real serve and stops two mid-mission with SIGTERM: the one
// whose mission cannot end within its --grace hands it back, and another
// worker completes it at once (not after the 10-minute lease); the one
// whose mission ends within its grace finishes it. Both exit 0 and leave
// (worker.left, offline in the fold); every mission ends exactly once; no
// output shows the enrollment key or the NATS credentials.
func TestWorkerProcessesStopCleanly(t *testing.T) {
	s := startServe(t)
	admin := login(t, s.base, "admin", "admin")
	c := &live.Client{Base: s.base, HTTP: http.DefaultClient}
	createProject(t, c, admin, "acme")
	key := enrollmentKey(t, c, admin, "acme")
	_, js := s.natsAdmin(t)
	rec := recordProject(t, js, "acme")
	bin := observatorytest.Build(t)
	env := []string{"OBSERVATORY_ENROLL_KEY=" + key}
	// A lease far beyond every bound below: a mission claimed again within
	// them was handed back, not lost.
	common := []string{"--url", s.base, "--lease", "10m", "--log-level", "debug"}
	claimedBy := func(id, worker string) {
		t.Helper()
		streamtest.Eventually(t, 2*time.Minute, func() bool {
			return slices.ContainsFunc(rec.all(missionEvents(id, fleet.TypeMissionClaimed)), func(e fleet.Event) bool { return e.WorkerID == worker })
		}, "mission "+id+" was not claimed by "+worker)
	}

	// w-slow's agent runs fifty times slower than real time: its mission
	// cannot end within its 1 s grace.
	slow := startWorkerProc(t, bin, env, append(common, "--worker-id", "w-slow", "--time-scale", "50", "--grace", "1s")...)
	m1 := createMission(t, c, admin, "acme")
	claimedBy(m1, "w-slow")
	// w-slow's one slot is taken: the next mission goes to w-steady, whose
	// mission ends well within its grace.
	steady := startWorkerProc(t, bin, env, append(common, "--worker-id", "w-steady", "--time-scale", "0.5", "--grace", "2m")...)
	m2 := createMission(t, c, admin, "acme")
	claimedBy(m2, "w-steady")
	fast := startWorkerProc(t, bin, env, append(common, "--worker-id", "w-fast", "--time-scale", "0.01", "--grace", "10s")...)

	for _, p := range []*workerProc{slow, steady} {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for name, p := range map[string]*workerProc{"w-slow": slow, "w-steady": steady} {
		if code := p.exitCode(t, 3*time.Minute); code != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0\nstdout:\n%s\nstderr (tail):\n%s", name, code, p.stdout, observatorytest.Tail(p.stderr.String(), 20))
		}
	}
	if st := slow.summary(t); st.Claimed != 1 || st.HandedBack != 1 || st.Completed+st.Failed != 0 {
		t.Errorf("w-slow's summary %+v, want its one mission handed back", st)
	}
	if st := steady.summary(t); st.Claimed != 1 || st.Completed+st.Failed != 1 || st.HandedBack != 0 {
		t.Errorf("w-steady's summary %+v, want its one mission finished", st)
	}

	ids := []string{m1, m2}
	for range 4 {
		ids = append(ids, createMission(t, c, admin, "acme"))
	}
	streamtest.Eventually(t, 2*time.Minute, func() bool {
		for _, id := range ids {
			if len(rec.all(missionEnds(id))) == 0 {
				return false
			}
		}
		return true
	}, "not every mission ended")
	if err := fast.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := fast.exitCode(t, time.Minute); code != 0 {
		t.Errorf("w-fast exited %d after SIGTERM, want 0\nstderr (tail):\n%s", code, observatorytest.Tail(fast.stderr.String(), 20))
	}

	for _, id := range ids {
		if ends := rec.all(missionEnds(id)); len(ends) != 1 {
			t.Errorf("mission %s ended %d times, want once", id, len(ends))
		}
	}
	// m1: handed back by w-slow, then claimed again at once, as its second
	// attempt, and ended by another worker.
	var claimers []string
	for _, e := range rec.all(missionEvents(m1, fleet.TypeMissionClaimed)) {
		claimers = append(claimers, e.WorkerID)
	}
	if len(claimers) != 2 || claimers[0] != "w-slow" || claimers[1] == "w-slow" {
		t.Errorf("m1 claimed by %v, want w-slow, then another worker", claimers)
	}
	if n := len(rec.all(missionEvents(m1, fleet.TypeMissionRetrying))); n != 1 {
		t.Errorf("m1: %d mission.retrying, want 1", n)
	}
	if ends := rec.all(missionEnds(m1)); len(ends) == 1 && ends[0].WorkerID == "w-slow" {
		t.Error("m1 was ended by w-slow, which handed it back")
	}
	runFailed := rec.all(func(e fleet.Event) bool {
		return e.MissionID == m1 && e.Type == fleet.TypeRunFailed && e.WorkerID == "w-slow"
	})
	if len(runFailed) != 1 || !strings.Contains(string(runFailed[0].Data), "handed back") {
		t.Errorf("w-slow's run of m1 ended with %+v, want one agent.run.failed saying it was handed back", runFailed)
	}
	// m2: finished by w-steady within its grace.
	if ends := rec.all(missionEnds(m2)); len(ends) != 1 || ends[0].WorkerID != "w-steady" {
		t.Errorf("m2 ended %+v, want once, by w-steady", ends)
	}

	for _, id := range []string{"w-slow", "w-steady", "w-fast"} {
		left := rec.all(func(e fleet.Event) bool { return e.Type == fleet.TypeWorkerLeft && e.WorkerID == id })
		if len(left) != 1 {
			t.Errorf("%d worker.left of %s, want 1", len(left), id)
		}
	}
	streamtest.Eventually(t, time.Minute, func() bool {
		_, snap := getFleet(t, s.base, admin, "acme")
		for _, id := range []string{"w-slow", "w-steady", "w-fast"} {
			if w, ok := snap.State.Workers[id]; !ok || w.Status != fleet.WorkerOffline {
				return false
			}
		}
		return true
	}, "the fold does not show the stopped workers offline")

	for name, p := range map[string]*workerProc{"w-slow": slow, "w-steady": steady, "w-fast": fast} {
		checkNoSecrets(t, name, p.output(), key)
	}
}

// TestWorkerCommandErrors: a worker the server refuses, or whose command
// line is wrong, exits non-zero with a message that names the cause and
// what to fix, and never shows the key it was given.
func TestWorkerCommandErrors(t *testing.T) {
	s := startServe(t)
	admin := login(t, s.base, "admin", "admin")
	c := &live.Client{Base: s.base, HTTP: http.DefaultClient}
	createProject(t, c, admin, "acme")
	createProject(t, c, admin, "globex")
	acmeKey := enrollmentKey(t, c, admin, "acme")
	globexKey := enrollmentKey(t, c, admin, "globex")
	// acme owns w-taken from here on.
	if _, err := c.Do(context.Background(), "", http.MethodPost, "/api/v1/workers/enroll", map[string]string{"key": acmeKey, "worker_id": "w-taken"},
		http.StatusOK, nil); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(globexKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := observatorytest.Build(t)
	const wrongKey = "ek-not-a-real-key-0123456789abcdef"
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		code     int
		want     []string
		noSecret string
	}{
		{"a wrong key", []string{"OBSERVATORY_ENROLL_KEY=" + wrongKey}, []string{"--url", s.base, "--worker-id", "w-1"}, 1,
			[]string{"enrollment refused", "the enrollment key is not valid", "OBSERVATORY_ENROLL_KEY"}, wrongKey},
		{"a key for another project", []string{"OBSERVATORY_ENROLL_KEY=" + globexKey}, []string{"--url", s.base, "--worker-id", "w-2", "--projects", "acme"}, 1,
			[]string{"enrollment refused", "covers none of the projects", "--projects"}, globexKey},
		{"a worker id of another project", nil, []string{"--url", s.base, "--worker-id", "w-taken", "--enroll-key-file", keyFile}, 1,
			[]string{"enrollment refused", `worker id "w-taken" belongs to another project`, "--worker-id"}, globexKey},
		{"no key", nil, []string{"--url", s.base}, 2, []string{"an enrollment key is required"}, ""},
		{"an unknown flag", []string{"OBSERVATORY_ENROLL_KEY=" + globexKey}, []string{"--url", s.base, "--bogus"}, 2,
			[]string{"flag provided but not defined: -bogus", "usage: observatory worker"}, globexKey},
		{"no slots", []string{"OBSERVATORY_ENROLL_KEY=" + globexKey}, []string{"--url", s.base, "--slots", "0"}, 2, []string{"--slots 0"}, globexKey},
		{"bad labels", []string{"OBSERVATORY_ENROLL_KEY=" + globexKey}, []string{"--url", s.base, "--labels", "=eu"}, 2, []string{"--labels"}, globexKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startWorkerProc(t, bin, tc.env, tc.args...)
			if code := p.exitCode(t, time.Minute); code != tc.code {
				t.Errorf("exit status %d, want %d\n%s", code, tc.code, p.output())
			}
			out := p.output()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the output does not say %q:\n%s", w, out)
				}
			}
			if tc.noSecret != "" {
				checkNoSecrets(t, "the worker", out, tc.noSecret)
			}
		})
	}
}

// TestFleetWorkerProcesses runs `observatory fleet --worker-processes`:
// its workers are `observatory worker` processes, every mission ends once
// in its tenant, it exits 0, and no worker process outlives it.
func TestFleetWorkerProcesses(t *testing.T) {
	bin := observatorytest.Build(t)
	cmd := exec.Command(bin, "fleet", "--worker-processes", "--workers", "4", "--missions", "16", "--rate", "40", "--time-scale", "0.01")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "OBSERVATORY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fleet --worker-processes: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, observatorytest.Tail(stderr.String(), 30))
		}
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("fleet --worker-processes did not end within 5 minutes\nstderr:\n%s", observatorytest.Tail(stderr.String(), 30))
	}
	out := stdout.String()
	if !strings.Contains(out, "4 workers (processes)") {
		t.Errorf("the header does not say the workers are processes:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var f struct {
		Workers           int   `json:"workers"`
		MissionsEnqueued  int64 `json:"missions_enqueued"`
		MissionsCompleted int64 `json:"missions_completed"`
		MissionsFailed    int64 `json:"missions_failed"`
		MissionsLost      int64 `json:"missions_lost"`
		DoubleEnded       int64 `json:"missions_double_ended"`
		CrossTenantLeaks  int64 `json:"cross_tenant_leaks"`
		WorkersUnclean    int64 `json:"workers_unclean"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(lines[len(lines)-1])), &f); err != nil {
		t.Fatalf("the proof's JSON line: %v\n%s", err, out)
	}
	if f.Workers != 4 || f.MissionsEnqueued != 16 || f.MissionsCompleted+f.MissionsFailed != 16 {
		t.Errorf("figures %+v: want 4 workers and 16 missions, all ended", f)
	}
	if f.MissionsLost+f.DoubleEnded+f.CrossTenantLeaks+f.WorkersUnclean != 0 {
		t.Errorf("figures %+v: want no mission lost or ended twice, no leak, every worker stopped cleanly", f)
	}
	if left := workerProcessesOf(t, bin); len(left) > 0 {
		t.Errorf("worker processes outlived the example: %v", left)
	}
}

// workerProcessesOf lists the running `bin worker` processes (Linux /proc).
func workerProcessesOf(t *testing.T, bin string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(dirs) == 0 {
		t.Log("no /proc: not looking for leftover worker processes")
		return nil
	}
	var out []string
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && args[0] == bin && args[1] == "worker" {
			out = append(out, f)
		}
	}
	return out
}

// TestWorkerOptions pins how the command reads its flags: lists, labels
// and the key's sources.
func TestWorkerOptions(t *testing.T) {
	getenv := func(k string) string {
		return map[string]string{"OBSERVATORY_ENROLL_KEY": "  from-env  ", "OBSERVATORY_WORKER_SLOTS": "3"}[k]
	}
	fs, o := workerFlags(getenv, &syncBuffer{})
	if err := fs.Parse([]string{"--url", "http://h:3001/", "--worker-id", "gpu-01", "--projects", "acme, globex", "--pool", "gpu",
		"--models", "gpt-5,claude-sonnet-4-5", "--labels", "region=eu,gpu"}); err != nil {
		t.Fatal(err)
	}
	if err := o.check(getenv); err != nil {
		t.Fatal(err)
	}
	type parsed struct {
		ID                      string
		Projects, Pools, Models []string
		Labels                  map[string]string
		Slots                   int
		Key, URL                string
	}
	got := parsed{o.id, o.parsedProjects, o.parsedPools, o.modelList, o.labelMap, o.slots, o.key, o.url}
	want := parsed{ID: "gpu-01", Projects: []string{"acme", "globex"}, Pools: []string{"gpu"}, Models: []string{"gpt-5", "claude-sonnet-4-5"},
		Labels: map[string]string{"region": "eu", "gpu": ""}, Slots: 3, Key: "from-env", URL: "http://h:3001"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("parsed options (-want +got):\n%s", d)
	}
	if id := defaultWorkerID(); !workerIDRE.MatchString(id) {
		t.Errorf("the default worker id %q is not one the server accepts", id)
	}
}
