package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/term"

	"github.com/sagewai/observatory/console"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/telemetry"
)

// logFileName is the log file's name in --data-dir, where serve and demo
// write their log lines when they run on a terminal.
const logFileName = "observatory.log"

// logStderr is the --log-file value that sends the lines to stderr even
// on a terminal.
const logStderr = "-"

// logSink is where serve's log lines go: a file, or stderr.
type logSink struct {
	w    io.Writer
	path string   // the file's path; "" for stderr
	file *os.File // nil for stderr
}

// openLogSink opens where the log lines go. flagValue is --log-file: ""
// means the default, which is <data-dir>/observatory.log when stderr is
// a terminal (the lines would bury the banner and the status block) and
// stderr otherwise, where log collectors expect JSON lines; "-" is
// stderr; anything else is a file, appended to.
func openLogSink(flagValue, dataDir string, stderr io.Writer) (logSink, error) {
	path := flagValue
	switch {
	case path == logStderr:
		return logSink{w: stderr}, nil
	case path == "" && !isTerminal(stderr):
		return logSink{w: stderr}, nil
	case path == "":
		path = filepath.Join(dataDir, logFileName)
	}
	// The data dir may not exist before the first run; it holds keys,
	// so it is made private as the embedded NATS would make it.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return logSink{}, fmt.Errorf("--log-file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return logSink{}, fmt.Errorf("--log-file: %w", err)
	}
	return logSink{w: f, path: path, file: f}, nil
}

// close closes the file, if the lines go to one.
func (s logSink) close() error {
	if s.file == nil {
		return nil
	}
	return s.file.Close()
}

// printBanner adds the file's path to the banner.
func (s logSink) printBanner(w io.Writer, format string) {
	if s.path != "" {
		fmt.Fprintf(w, "  logs         %s (%s lines; --log-file, --log-format)\n", s.path, format)
	}
}

// checkLogFormat refuses a --log-format telemetry would not take.
func checkLogFormat(f string) error {
	switch f {
	case telemetry.LogFormatJSON, telemetry.LogFormatText:
		return nil
	}
	return fmt.Errorf("--log-format %q: want %s or %s", f, telemetry.LogFormatJSON, telemetry.LogFormatText)
}

// statusBlock is the live status serve and demo draw on a terminal under
// their banner (package console). Its goroutine is started by start and
// stopped, with its last frame left on screen, by stop.
type statusBlock struct {
	block  *console.Block
	cancel context.CancelFunc
	done   chan struct{}
	log    *slog.Logger
}

// newStatusBlock returns the block for stdout, or nil when stdout is not
// a terminal or the log lines go to one (they would break the redraws).
func newStatusBlock(stdout io.Writer, logs logSink, name, hud string, defaultLogin bool, began time.Time, hub *stream.Hub, log *slog.Logger) *statusBlock {
	if !isTerminal(stdout) || isTerminal(logs.w) {
		return nil
	}
	hint, stopped := "Ctrl-C stops it", "stopping"
	if name == "demo" {
		hint, stopped = "Ctrl-C stops it and prints the proof", "stopping: the workers end their missions, then the proof"
	}
	if defaultLogin {
		hud += " (admin / admin)"
	}
	footer := []string{fmt.Sprintf("  %-12s %s", "HUD", hud)}
	if logs.path != "" {
		footer = append(footer, fmt.Sprintf("  %-12s %s", "logs", logs.path))
	}
	return &statusBlock{log: log, block: console.New(console.Config{
		Out: stdout, Title: "observatory " + name, Hint: hint, Stopped: stopped, Footer: footer,
		Start: began, Figures: statusFigures(hub), Size: func() (int, int) { return terminalSize(stdout) },
	})}
}

// start draws the block until ctx ends or stop is called.
func (s *statusBlock) start(ctx context.Context) {
	if s == nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.block.Run(ctx); err != nil {
			s.log.Warn("the status block stopped", "event", "console.failed", "error", err.Error())
		}
	}()
}

// stop ends the block, leaving its last frame on screen, and waits for it.
func (s *statusBlock) stop() {
	if s == nil || s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
}

// statusFigures reads the block's figures from the hub: its counters,
// and the whole fleet's view once the hub is live.
func statusFigures(hub *stream.Hub) func(context.Context) console.Figures {
	return func(ctx context.Context) console.Figures {
		st := hub.Stats()
		f := console.Figures{Live: st.Ready, Seq: st.Seq, Folded: st.Applied + st.Unknown, Subscribers: st.Subscribers}
		if !st.Ready {
			return f // replaying: the view would wait for the replay
		}
		// A view waits its turn behind the fold; a busy hub is shown as
		// such rather than holding the redraws up.
		vctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		v, _, err := hub.View(vctx, fleet.ScopeAll)
		switch {
		case errors.Is(err, stream.ErrClosed) || errors.Is(err, context.Canceled):
			f.Problem = "the server is stopping"
			return f
		case err != nil:
			f.Problem = err.Error()
			return f
		}
		f.MissionsInFlight, f.WorkersOnline, f.Workers = v.Posture.MissionsInFlight, v.Posture.WorkersOnline, v.Posture.Workers
		f.Tenants = statusTenants(v)
		return f
	}
}

// statusTenants are the projects' rows, by id: spend today, and the
// project's own budget with the status of its last notice.
func statusTenants(v fleet.View) []console.Tenant {
	ids := make([]string, 0, len(v.Projects))
	for id := range v.Projects {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]console.Tenant, 0, len(ids))
	for _, id := range ids {
		p := v.Projects[id]
		t := console.Tenant{Project: id, SpendToday: p.SpendToday}
		if b := p.Budget; b != nil {
			t.Budget = &console.Budget{Spent: b.SpentUSD, Limit: b.LimitUSD, Pct: b.Pct, Period: b.Period, Action: b.Action,
				Status: budgetStatus(v.Budgets, id, b)}
		}
		out = append(out, t)
	}
	return out
}

// budgetStatus is the status of project id's own budget b: that of its
// last notice, or reached once it is spent.
func budgetStatus(budgets fleet.BudgetMap, id string, b *fleet.BudgetStatus) string {
	for _, x := range budgets {
		if x.ProjectID == id && x.Scope == "project" && x.ScopeID == id && x.Period == b.Period && x.Status != "" {
			return x.Status
		}
	}
	if b.Pct >= 100 {
		return "reached"
	}
	return ""
}

// terminalSize is w's width and height, 0 when w is not a terminal.
func terminalSize(w io.Writer) (cols, rows int) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, 0
	}
	cols, rows, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0, 0
	}
	return cols, rows
}
