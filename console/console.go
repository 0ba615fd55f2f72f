package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sagewai/observatory/fleet"
)

// Figures are what one frame of the block shows.
type Figures struct {
	// Live is true once the fold has caught up with the stream; until
	// then it replays what was stored before the process started.
	Live bool
	// Seq is the stream sequence the fold stands at.
	Seq uint64
	// Folded counts the events folded since the process started; the
	// block shows how fast it grows between two frames.
	Folded int64
	// Subscribers are the live subscribers of /ws.
	Subscribers int64

	MissionsInFlight int
	WorkersOnline    int
	Workers          int
	// Tenants are the projects' rows, in the order shown.
	Tenants []Tenant

	// Problem, when set, says why the fleet figures could not be read:
	// the block shows it and keeps the fleet and tenant rows of the last
	// frame that had them.
	Problem string
}

// Tenant is one project's row.
type Tenant struct {
	Project    string
	SpendToday fleet.Micros
	// Budget is the project's own budget; nil when it has none.
	Budget *Budget
}

// Budget is where a project's own budget stands.
type Budget struct {
	Spent, Limit fleet.Micros
	Pct          float64
	// Period is daily or monthly.
	Period string
	// Status is ok, warning, reached, exceeded or throttled ("" unknown).
	Status string
	// Action is what the budget does at its limit: warn, throttle or stop.
	Action string
}

// Config configures a Block. Zero values mean the defaults given.
type Config struct {
	// Out is the terminal the block is drawn on.
	Out io.Writer
	// Figures reads the figures of a frame. It is called once per frame,
	// from the goroutine that draws.
	Figures func(context.Context) Figures
	// Title heads the block ("observatory demo"); Hint follows it while
	// the block runs ("Ctrl-C stops it and prints the proof"), Stopped in
	// the last frame ("stopped").
	Title, Hint, Stopped string
	// Footer lines come under the figures, e.g. the HUD's URL.
	Footer []string
	// Every is how often Run redraws (1 s).
	Every time.Duration
	// Tick, when set, replaces the ticker of Every: Run redraws on each
	// receive.
	Tick <-chan time.Time
	// Now is the clock of the uptime and of the rate (time.Now).
	Now func() time.Time
	// Start is the origin of the uptime (Now when New is called).
	Start time.Time
	// Size returns the terminal's width and height, 0 when unknown.
	Size func() (cols, rows int)
	// MaxTenants bounds the tenant rows (8); the rest are counted on one line.
	MaxTenants int
}

// Block is a status block redrawn in place. See the package doc.
type Block struct {
	cfg Config

	drawn    int     // lines of the frame on screen, 0 before the first
	last     Figures // the last figures read without a problem
	haveLast bool
	// prevFolded and prevAt are the previous frame's count and time, for
	// the rate.
	prevFolded int64
	prevAt     time.Time
	rate       float64
	haveRate   bool
	havePrev   bool
}

// New returns a Block drawing on cfg.Out.
func New(cfg Config) *Block {
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Start.IsZero() {
		cfg.Start = cfg.Now()
	}
	if cfg.Stopped == "" {
		cfg.Stopped = "stopped"
	}
	if cfg.MaxTenants <= 0 {
		cfg.MaxTenants = 8
	}
	if cfg.Figures == nil {
		cfg.Figures = func(context.Context) Figures { return Figures{} }
	}
	if cfg.Size == nil {
		cfg.Size = func() (int, int) { return 0, 0 }
	}
	return &Block{cfg: cfg}
}

// Run draws a frame now and one on every tick until ctx ends; then it
// draws a last frame marked Config.Stopped, leaves it on screen with the cursor
// on the line below, and returns. It returns early only if writing to the
// terminal fails.
func (b *Block) Run(ctx context.Context) error {
	tick := b.cfg.Tick
	if tick == nil {
		t := time.NewTicker(b.cfg.Every)
		defer t.Stop()
		tick = t.C
	}
	if err := b.draw(ctx, false); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			// The last figures are read too: the server may still run
			// (the demo's does while its workers stop).
			return b.draw(context.WithoutCancel(ctx), true)
		case _, ok := <-tick:
			if !ok {
				tick = nil
				continue
			}
			if err := b.draw(ctx, false); err != nil {
				return err
			}
		}
	}
}

// Draw draws one running frame now, over the previous one. Run calls it
// on every tick; tests call it to decide when frames are drawn.
func (b *Block) Draw(ctx context.Context) error { return b.draw(ctx, false) }

func (b *Block) draw(ctx context.Context, final bool) error {
	f := b.cfg.Figures(ctx)
	now := b.cfg.Now()
	if b.havePrev && now.After(b.prevAt) {
		b.rate = float64(f.Folded-b.prevFolded) / now.Sub(b.prevAt).Seconds()
		b.haveRate = true
	}
	b.prevFolded, b.prevAt, b.havePrev = f.Folded, now, true
	if f.Problem == "" {
		b.last, b.haveLast = f, true
	} else if b.haveLast {
		f.MissionsInFlight, f.WorkersOnline, f.Workers, f.Tenants = b.last.MissionsInFlight, b.last.WorkersOnline, b.last.Workers, b.last.Tenants
	}
	cols, rows := b.cfg.Size()
	lines := b.lines(f, now, final, rows)

	var buf bytes.Buffer
	if b.drawn > 0 {
		// Back to the first line of the previous frame; each line below
		// overwrites one of it and erases what is left of it, and the
		// erase at the end takes the lines a longer frame had.
		fmt.Fprintf(&buf, "\x1b[%dA", b.drawn)
	}
	for _, l := range lines {
		buf.WriteByte('\r')
		buf.WriteString(cut(l, cols))
		buf.WriteString("\x1b[K\n")
	}
	buf.WriteString("\x1b[J")
	if _, err := b.cfg.Out.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	b.drawn = len(lines)
	return nil
}

// lines renders a frame, fitted to rows (0: unknown) by dropping tenant
// rows first: a block taller than the terminal would scroll, and the
// cursor could not come back to its top.
func (b *Block) lines(f Figures, now time.Time, final bool, rows int) []string {
	title := b.cfg.Title
	switch {
	case final:
		title += ": " + b.cfg.Stopped
	case b.cfg.Hint != "":
		title += ": " + b.cfg.Hint
	}
	head := []string{
		title,
		row("uptime", now.Sub(b.cfg.Start).Truncate(time.Second).String()),
		row("fold", b.foldLine(f)),
		row("fleet", fmt.Sprintf("%d missions in flight, %d of %d workers online, %d subscribers", f.MissionsInFlight, f.WorkersOnline, f.Workers, f.Subscribers)),
	}
	room := b.cfg.MaxTenants
	if rows > 0 {
		room = min(room, rows-1-len(head)-len(b.cfg.Footer))
	}
	tenants := make([]string, 0, min(len(f.Tenants), max(room, 0)))
	for i, t := range f.Tenants {
		if len(f.Tenants) > room && i == room-1 {
			tenants = append(tenants, row("", fmt.Sprintf("and %d more projects (the HUD shows them all)", len(f.Tenants)-i)))
			break
		}
		if i >= room {
			break
		}
		tenants = append(tenants, row(t.Project, tenantLine(t)))
	}
	out := append(append(head, tenants...), b.cfg.Footer...)
	if rows > 0 && len(out) > rows-1 {
		out = out[:max(rows-1, 1)]
	}
	return out
}

func (b *Block) foldLine(f Figures) string {
	var s strings.Builder
	if f.Live {
		s.WriteString("live at seq ")
	} else {
		s.WriteString("replaying the stream, at seq ")
	}
	s.WriteString(strconv.FormatUint(f.Seq, 10))
	if b.haveRate {
		fmt.Fprintf(&s, ", %.1f events/s folded", b.rate)
	}
	if f.Problem != "" {
		s.WriteString("; figures not read: ")
		s.WriteString(f.Problem)
	}
	return s.String()
}

func tenantLine(t Tenant) string {
	s := "$" + t.SpendToday.Cents() + " spent today"
	bu := t.Budget
	if bu == nil {
		return s + "; no budget"
	}
	s += fmt.Sprintf("; budget $%s of $%s", bu.Spent.Cents(), bu.Limit.Cents())
	if bu.Period != "" {
		s += " " + bu.Period
	}
	s += fmt.Sprintf(", %.1f%%", bu.Pct)
	if bu.Status != "" {
		s += " " + bu.Status
	}
	if a := actionPhrase(bu.Action); a != "" {
		s += ", " + a + " at the limit"
	}
	return s
}

func actionPhrase(action string) string {
	switch action {
	case fleet.ActionWarn:
		return "warns"
	case fleet.ActionThrottle:
		return "throttles"
	case fleet.ActionStop:
		return "stops"
	}
	return action
}

// row lays a line out as the banner does: a label column, then the text.
func row(label, text string) string { return fmt.Sprintf("  %-12s %s", label, text) }

// cut shortens s to fit a terminal cols wide (0: unknown), leaving the
// last column free: a character there makes some terminals wrap.
func cut(s string, cols int) string {
	if cols <= 1 || utf8.RuneCountInString(s) < cols {
		return s
	}
	r := []rune(s)
	return string(r[:cols-1])
}
