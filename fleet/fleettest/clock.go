package fleettest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ClockEnv names the environment variable that moves every test clock:
// an RFC 3339 time, or a whole number of days relative to the wall clock's
// date ("+400d", "-1100d"). Unset, the test clock starts at DefaultEpoch.
// The Makefile's clock check runs the suites once more with it set, so
// that code reading the wall clock where it should read the injected one
// fails instead of passing by luck of the date.
const ClockEnv = "OBSERVATORY_TEST_CLOCK"

// DefaultEpoch is where test clocks start when ClockEnv is unset: a fixed
// instant, so that no test depends on today's date.
var DefaultEpoch = time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)

var (
	epochOnce sync.Once
	epoch     time.Time
	epochErr  error
)

// Epoch is the instant test clocks start at: DefaultEpoch, or what
// ClockEnv says. A relative ClockEnv keeps DefaultEpoch's time of day on
// the shifted date, so that a test near a day boundary stays there.
// It panics on a malformed ClockEnv (a test run that asked for a moved
// clock and silently got the default would prove nothing).
func Epoch() time.Time {
	epochOnce.Do(func() { epoch, epochErr = ParseEpoch(os.Getenv(ClockEnv), time.Now()) })
	if epochErr != nil {
		panic(epochErr)
	}
	return epoch
}

// ParseEpoch is Epoch's parser: v as ClockEnv takes it, relative forms
// counted from wall's date.
func ParseEpoch(v string, wall time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultEpoch, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if n, ok := strings.CutSuffix(v, "d"); ok && (strings.HasPrefix(n, "+") || strings.HasPrefix(n, "-")) {
		days, err := strconv.Atoi(n)
		if err == nil {
			w := wall.UTC()
			d := DefaultEpoch
			return time.Date(w.Year(), w.Month(), w.Day()+days, d.Hour(), d.Minute(), d.Second(), d.Nanosecond(), time.UTC), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s=%q: want an RFC 3339 time or a day offset such as +400d or -1100d", ClockEnv, v)
}

// Clock is a settable clock for tests, safe for concurrent use. Its Now
// is what components take as their injected clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at Epoch().
func NewClock() *Clock { return &Clock{t: Epoch()} }

// NewClockAt returns a clock standing at t.
func NewClockAt(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
