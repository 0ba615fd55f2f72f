package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/console/consoletest"
	"github.com/sagewai/observatory/stream/streamtest"
)

// The pty's size: wide enough for the block's lines, narrower than the
// banner's longest (they wrap, as on a laptop's terminal).
const ptyCols, ptyRows = 100, 50

// hangBound only turns a hang into a failure: the machine may be busy
// with other suites.
const hangBound = 2 * time.Minute

// demoArgs are a quick demo's flags: few workers, fast missions.
func demoArgs(dataDir string, extra ...string) []string {
	return append([]string{"demo", "--addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data-dir", dataDir,
		"--tick", "50ms", "--workers", "6", "--mission-rate", "4", "--time-scale", "0.05", "--cross-tenant-every", "1s"}, extra...)
}

// childEnv is the test's environment without OBSERVATORY_* and OTEL_*
// variables, which would change what the command does.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "OBSERVATORY_") {
			env = append(env, kv)
		}
	}
	return env
}

// ttyProc is the real binary running on a pseudo-terminal, its output fed
// to an emulated screen.
type ttyProc struct {
	cmd     *exec.Cmd
	pty     *os.File
	screen  *consoletest.Screen
	raw     syncBuffer    // every byte the process wrote to its terminal
	changed chan struct{} // a read arrived (capacity 1: a wake-up, not a count)
	eof     chan struct{} // the terminal closed: the process and its children are gone
	exited  chan struct{}
	err     error // the process's exit, set before exited is closed

	// frameMu guards frame, the screen as the last read that ended a
	// frame of the status block left it: a read may end in the middle of
	// a frame, when the screen shows parts of two.
	frameMu sync.Mutex
	frame   frameShot
}

// frameShot is the screen when a frame of the block was complete.
type frameShot struct {
	text string
	used int
}

// frameEnd ends every frame of the block (console.Block.draw).
const frameEnd = "\x1b[J"

func (p *ttyProc) lastFrame() frameShot {
	p.frameMu.Lock()
	defer p.frameMu.Unlock()
	return p.frame
}

func startOnPty(t *testing.T, bin string, args ...string) *ttyProc {
	t.Helper()
	p := &ttyProc{cmd: exec.Command(bin, args...), screen: consoletest.NewScreen(ptyCols, ptyRows),
		changed: make(chan struct{}, 1), eof: make(chan struct{}), exited: make(chan struct{})}
	p.cmd.Env = childEnv()
	f, err := pty.StartWithSize(p.cmd, &pty.Winsize{Cols: ptyCols, Rows: ptyRows})
	if errors.Is(err, pty.ErrUnsupported) {
		t.Skip("no pseudo-terminals here")
	}
	if err != nil {
		t.Fatal(err)
	}
	p.pty = f
	go func() {
		defer close(p.eof)
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				p.screen.Write(buf[:n])
				p.raw.Write(buf[:n])
				if bytes.HasSuffix(buf[:n], []byte(frameEnd)) {
					p.frameMu.Lock()
					p.frame = frameShot{text: p.screen.Text(), used: p.screen.Used()}
					p.frameMu.Unlock()
				}
				select {
				case p.changed <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return // EIO once the process is gone
			}
		}
	}()
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
		f.Close()
	})
	return p
}

// await waits until cond holds, checking it after every read of the
// terminal (the block redraws every second, so a condition on files is
// checked that often too).
func (p *ttyProc) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	hang := time.NewTimer(hangBound)
	defer hang.Stop()
	for !cond() {
		select {
		case <-p.changed:
		case <-p.eof:
			if cond() {
				return
			}
			t.Fatalf("the terminal closed before %s (exit: %v)\nscreen:\n%s", what, p.err, p.screen.Text())
		case <-hang.C:
			t.Fatalf("no %s within %s\nscreen:\n%s", what, hangBound, p.screen.Text())
		}
	}
}

var (
	uptimeRE    = regexp.MustCompile(`(?m)^  uptime       (\S+)$`)
	ptyHUDRE    = regexp.MustCompile(`(?m)^  HUD          (http://127\.0\.0\.1:\d+/hud)$`)
	loginLineRE = regexp.MustCompile(`(?m)^  login        admin / admin `)
	logsLineRE  = regexp.MustCompile(`  logs         (\S+) \(json lines; --log-file, --log-format\)`)
)

// onScreen says whether re matches a line of what the terminal shows now.
func onScreen(s *consoletest.Screen, re *regexp.Regexp) bool { return re.MatchString(s.Text()) }

// TestDemoTerminal runs the real `observatory demo` on a pseudo-terminal,
// as a new user's `go run ./cmd/observatory demo` does, with an emulated
// screen behind it: the banner's HUD URL and login stay on screen while
// the status block redraws in place (its uptime changes, the fleet's
// figures fill in, and the output uses no more lines than the first full
// frame did: the log waterfall this replaces printed some 13 lines a
// second); the JSON log records go to <data-dir>/observatory.log, whose
// path the banner prints; and Ctrl-C, typed on the terminal, ends with
// the last frame on screen, the proof block and the CFO line.
func TestDemoTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := observatorytest.Build(t)
	dataDir := t.TempDir()
	p := startOnPty(t, bin, demoArgs(dataDir)...)
	scr := p.screen

	p.await(t, "banner and status block", func() bool {
		return onScreen(scr, ptyHUDRE) && onScreen(scr, loginLineRE) && onScreen(scr, uptimeRE) &&
			strings.Contains(scr.Text(), "observatory demo: Ctrl-C stops it and prints the proof")
	})
	m := logsLineRE.FindStringSubmatch(p.raw.String())
	if m == nil {
		t.Fatalf("the banner does not say where the logs go:\n%s", scr.Text())
	}
	logFile := m[1]
	if want := filepath.Join(dataDir, logFileName); logFile != want {
		t.Errorf("the logs go to %s, want %s", logFile, want)
	}
	hud := ptyHUDRE.FindStringSubmatch(scr.Text())[1]

	// The block fills in once the workload has set the tenants up and
	// the workers are online.
	tenantsRE := regexp.MustCompile(`(?m)^  acme         \$\d+\.\d\d spent today; budget .*\n  globex       \$.*\n  initech      \$`)
	p.await(t, "the fleet's figures in the block", func() bool {
		f := p.lastFrame().text
		return strings.Contains(f, "6 of 6 workers online") && tenantsRE.MatchString(f)
	})
	// Frames are read whole: a read may end in the middle of one.
	first := p.lastFrame()
	since := time.Now()
	uptimes := map[string]bool{}
	var latest frameShot
	p.await(t, "five different uptimes", func() bool {
		latest = p.lastFrame()
		if m := uptimeRE.FindStringSubmatch(latest.text); m != nil {
			uptimes[m[1]] = true
		}
		return len(uptimes) >= 5
	})
	grew, took := latest.used-first.used, time.Since(since)
	t.Logf("%d redraws in %s; the output used %d more lines (%d scrolled off the screen)", len(uptimes), took.Round(time.Millisecond), grew, scr.Scrolled())
	// The block has all its rows by now: a redraw in place adds no line.
	// A few are allowed for a project the workload adds meanwhile.
	const maxGrowth = 3
	if grew > maxGrowth {
		t.Errorf("the output grew by %d lines in %s while the block redrew %d times (want at most %d): it does not redraw in place\nscreen:\n%s",
			grew, took, len(uptimes), maxGrowth, scr.Text())
	}
	for _, re := range []*regexp.Regexp{ptyHUDRE, loginLineRE} {
		if !onScreen(scr, re) {
			t.Errorf("the banner's %q line is no longer on screen:\n%s", re, scr.Text())
		}
	}
	if !strings.Contains(scr.Text(), "  HUD          "+hud+" (admin / admin)") {
		t.Errorf("the block does not repeat the HUD's URL %s:\n%s", hud, scr.Text())
	}
	if n := scr.Unknown(); n != 0 {
		t.Errorf("the demo wrote %d escape sequences beyond cursor up and erase", n)
	}

	// The log records are in the file, as JSON, and not on the terminal.
	p.await(t, "the demo.alive record in the log file", func() bool {
		return len(logRecords(t, logFile, "demo.alive")) > 0
	})
	for _, l := range append(scr.Scrollback(), scr.Lines()...) {
		if strings.HasPrefix(l, `{"time"`) {
			t.Fatalf("a log line reached the terminal: %s", l)
		}
	}

	// Ctrl-C, typed: the terminal sends SIGINT to the demo.
	if _, err := p.pty.Write([]byte{0x03}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(hangBound):
		t.Fatalf("the demo did not stop within %s of Ctrl-C\nscreen:\n%s", hangBound, scr.Text())
	}
	<-p.eof
	if p.err != nil {
		t.Fatalf("the demo exited with %v\nscreen:\n%s", p.err, scr.Text())
	}
	all := strings.Join(append(scr.Scrollback(), scr.Lines()...), "\n")
	last := strings.Index(all, "observatory demo: stopping: the workers end their missions, then the proof")
	proof := strings.Index(all, "\nProof\n")
	if last < 0 || proof < last {
		t.Errorf("the block's last frame is not left above the proof block:\n%s", all)
	}
	if !cfoLineRE.MatchString(all) {
		t.Errorf("no CFO line at the end:\n%s", all)
	}
	if strings.Count(all, "  uptime       ") != 1 {
		t.Errorf("the block is on screen %d times, want once:\n%s", strings.Count(all, "  uptime       "), all)
	}
}

// logRecords reads path's JSON lines and returns those of event; it fails
// the test on a line that is not JSON with a time, a level and a message.
func logRecords(t *testing.T, path, event string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return jsonRecords(t, path, b, event)
}

// jsonRecords is logRecords of b, read from what; a last line not yet
// ended is left for the next read.
func jsonRecords(t *testing.T, what string, b []byte, event string) []map[string]any {
	t.Helper()
	var out []map[string]any
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s: a line is not JSON (%v): %s", what, err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("%s: a record without %q: %s", what, k, line)
			}
		}
		if m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}

// TestDemoPipe runs the real demo with stdout and stderr pipes, as CI, a
// container or systemd does: no status block and no escape sequence on
// stdout, the JSON log records on stderr where collectors expect them,
// and no log file. It starts with --fresh on a data dir an earlier run
// left, which it empties.
func TestDemoPipe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := observatorytest.Build(t)
	dataDir := t.TempDir()
	// What an earlier run leaves, with a stale file in its checkpoints.
	for _, d := range []string{"nats/jetstream", "checkpoints", "keys"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	stale := filepath.Join(dataDir, "checkpoints", "stale")
	if err := os.WriteFile(stale, []byte("from an earlier run"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := observatorytest.Start(t, bin, nil, demoArgs(dataDir, "--fresh")...)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--fresh left %s (stat: %v)", stale, err)
	}
	streamtest.Eventually(t, hangBound, func() bool {
		return len(jsonRecords(t, "stderr", []byte(p.Stderr.String()), "demo.alive")) > 0
	}, "no demo.alive record on stderr")
	p.Stop(t)
	out := p.Stdout.String()
	if strings.Contains(out, "\x1b") {
		t.Errorf("stdout, a pipe, has escape sequences:\n%q", out)
	}
	for _, unwanted := range []string{"  uptime ", "  logs  "} {
		if strings.Contains(out, unwanted) {
			t.Errorf("stdout, a pipe, has %q:\n%s", unwanted, out)
		}
	}
	if !cfoLineRE.MatchString(out) {
		t.Errorf("no CFO line on stdout:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dataDir, logFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a log file was written though stderr is a pipe (stat: %v)", err)
	}
}

// TestServeLogFileText runs serve with --log-file and --log-format text:
// the lines go to the file as key=value text, nothing to stderr, and the
// banner says where they are.
func TestServeLogFileText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "serve.log")
	s := startServe(t, "--log-file", path, "--log-format", "text")
	if want := "  logs         " + path + " (text lines; --log-file, --log-format)"; !strings.Contains(s.stdout.String(), want) {
		t.Errorf("the banner lacks %q:\n%s", want, s.stdout.String())
	}
	s.stop(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	textRE := regexp.MustCompile(`^time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=`)
	for _, l := range lines {
		if !textRE.MatchString(l) {
			t.Fatalf("a line is not slog text: %s", l)
		}
	}
	if !strings.Contains(string(b), " event=") {
		t.Errorf("no event in the text lines:\n%s", b)
	}
	if e := s.stderr.String(); e != "" {
		t.Errorf("stderr is not empty though the logs go to a file:\n%s", e)
	}
}

// TestServeLogFormatRefused: a format telemetry does not know is a usage
// error, before anything starts.
func TestServeLogFormatRefused(t *testing.T) {
	err := run(t.Context(), []string{"serve", "--log-format", "xml", "--data-dir", t.TempDir()}, noEnv, &syncBuffer{}, &syncBuffer{})
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), `--log-format "xml"`) {
		t.Errorf("serve --log-format xml: %v (exit %d), want a usage error", err, exitCode(err))
	}
}

// TestFreshDataDir checks what --fresh removes and what it refuses: it
// empties a dir laid out as observatory lays its data dir out, and leaves
// any other untouched.
func TestFreshDataDir(t *testing.T) {
	tests := []struct {
		name    string
		files   []string // ending in / for a dir
		refused bool
	}{
		{"missing", nil, false},
		{"empty", []string{}, false},
		{"an observatory data dir", []string{"nats/jetstream/", "checkpoints/hub-checkpoint.json", "keys/signing.json", "observatory.log"}, false},
		{"checkpoints only", []string{"checkpoints/"}, false},
		{"something else in it", []string{"nats/jetstream/", "checkpoints/", "thesis.tex"}, true},
		{"keys only", []string{"keys/signing.json"}, true},
		{"a file named nats", []string{"nats"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if tt.files != nil {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.files {
				p := filepath.Join(dir, f)
				if strings.HasSuffix(f, "/") {
					if err := os.MkdirAll(p, 0o700); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := listTree(t, dir)
			err := freshDataDir(dir)
			after := listTree(t, dir)
			if tt.refused {
				if err == nil || !strings.Contains(err.Error(), "does not look like an observatory data dir") {
					t.Errorf("freshDataDir = %v, want a refusal", err)
				}
				if d := cmp.Diff(before, after); d != "" {
					t.Errorf("a refused --fresh changed the dir (-before +after):\n%s", d)
				}
				return
			}
			if err != nil {
				t.Fatalf("freshDataDir: %v", err)
			}
			if len(after) != 0 {
				t.Errorf("left %v", after)
			}
			if tt.files != nil {
				if st, err := os.Stat(dir); err != nil || !st.IsDir() {
					t.Errorf("the data dir itself is gone: %v", err)
				}
			}
		})
	}
}

// listTree lists the paths under dir, nil when it does not exist.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// TestIsTerminal: a pseudo-terminal is a terminal; /dev/null, a character
// device, is not (it was taken for one, and got the redrawn lines).
func TestIsTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if errors.Is(err, pty.ErrUnsupported) {
		t.Skip("no pseudo-terminals here")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, c := range []struct {
		name string
		f    *os.File
		want bool
	}{{"a pty", tty, true}, {os.DevNull, null, false}} {
		if got := isTerminal(c.f); got != c.want {
			t.Errorf("isTerminal(%s) = %v, want %v", c.name, got, c.want)
		}
	}
	if isTerminal(&syncBuffer{}) {
		t.Error("a buffer is taken for a terminal")
	}
}
