package stream

import (
	"context"
	"log/slog"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// Clock publishes the clock ticks of FLEET (fleet.ClockSubject): one per
// fleet.ClockEvery, with the message id fleet.ClockID of its interval, so
// that the stream keeps one tick per interval however many servers run a
// Clock. The fold moves its clock on them when nothing else is published:
// workers that went quiet turn stale and offline, windows decay.
type Clock struct {
	pub   *Publisher
	every time.Duration
	now   func() time.Time
	log   *slog.Logger
}

// ClockConfig configures a Clock. Zero values mean the defaults.
type ClockConfig struct {
	// Every is the interval between ticks (fleet.ClockEvery).
	Every time.Duration
	// Now names the interval a tick belongs to (time.Now); replicas store
	// one tick per interval only if their clocks agree. The fold moves on
	// the ticks' stored times (the NATS server's clock), not on Now.
	Now func() time.Time
	// Logger receives failed ticks (discarded when nil).
	Logger *slog.Logger
}

// NewClock returns a Clock publishing with pub every interval (zero:
// fleet.ClockEvery), on the wall clock.
func NewClock(pub *Publisher, every time.Duration, log *slog.Logger) *Clock {
	return NewClockWith(pub, ClockConfig{Every: every, Logger: log})
}

// NewClockWith returns a Clock publishing with pub as cfg says.
func NewClockWith(pub *Publisher, cfg ClockConfig) *Clock {
	if cfg.Every <= 0 {
		cfg.Every = fleet.ClockEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Clock{pub: pub, every: cfg.Every, now: cfg.Now, log: cfg.Logger}
}

// Run publishes a tick at once and then every interval until ctx ends. A
// failed publish is logged and the next tick tries again; Run returns nil
// when ctx ends. Its ticker only paces the ticks: which interval a tick
// stands for is Now's.
func (c *Clock) Run(ctx context.Context) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		if _, err := c.Tick(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("clock tick not published", "event", "clock.tick.failed", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick publishes the tick of the current interval and returns its stream
// sequence (the first tick's, when another server published it already).
func (c *Clock) Tick(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.pub.PublishRaw(ctx, fleet.ClockSubject, []byte("{}"), fleet.ClockID(c.now(), c.every))
}
