// Package console draws the live status block `observatory demo` and
// `observatory serve` show on a terminal: a few lines (uptime, the fold's
// rate, missions in flight, workers online, subscribers, each tenant's
// spend today and budget, where the HUD is) redrawn in place about once a
// second, so that the banner above them stays on screen instead of being
// pushed off by a waterfall of log lines.
//
// A Block takes its figures from a function (Config.Figures), so it knows
// nothing of the server: the command reads the hub and hands over plain
// values. Each redraw moves the cursor up over the previous frame and
// erases it (ESC[nA, ESC[J), the multi-line form of the progress line of
// `observatory fleet` and `observatory live`. Lines are cut to the
// terminal's width and the block to its height, because a wrapped or
// scrolled line would make the cursor land in the wrong place and eat the
// lines above. When Run ends it draws a last frame marked stopped and
// leaves it on screen, so that whatever is printed next (the demo's proof
// block) comes below it.
//
// The package imports only the standard library and fleet (for money).
// consoletest holds a small terminal emulator for tests.
//
// # Time
//
// Config.Now (default time.Now) is the clock of the uptime and of the
// events-per-second rate; Config.Tick, when set, replaces the ticker of
// Config.Every, so that tests decide when frames are drawn.
//
// # Concurrency
//
// A Block belongs to one goroutine: the one calling Run, or, in tests,
// the one calling Draw. Run returns once its last frame is written; it
// owns no other goroutine. Config.Figures is called from that goroutine.
package console
