package auth

import (
	"sync"
	"time"
)

// Limiter slows password guessing down. Each login attempt is counted
// against several keys at once (a user at a client address, a client
// address); once a key has its Max failures within Window, it is locked
// for Lockout, doubling with every further failure up to MaxLockout. While a key is locked, attempts are
// refused before any password is checked, so a locked account is no oracle.
//
// An attempt counts as a failure from the moment it starts: Attempt records
// it atomically with the lock check, so concurrent guesses cannot slip past
// the limit while their passwords are being hashed. A successful attempt is
// then forgiven.
type Limiter struct {
	max        int
	window     time.Duration
	lockout    time.Duration
	maxLockout time.Duration

	// mu guards recs, seq and nextPrune.
	mu        sync.Mutex
	recs      map[string]*limitRecord
	seq       uint64
	nextPrune int
}

type limitRecord struct {
	fails   []attemptMark // within the window, oldest first
	until   time.Time     // locked until
	lockSeq uint64        // the attempt that set until
}

type attemptMark struct {
	at  time.Time
	seq uint64
}

// Attempt is one reserved login attempt, for Forgive.
type Attempt struct {
	seq  uint64
	keys []string
}

// Limiter defaults.
const (
	DefaultMaxFailures = 5
	DefaultWindow      = 15 * time.Minute
	DefaultLockout     = 30 * time.Second
	DefaultMaxLockout  = 15 * time.Minute
)

// maxMarks bounds the failures kept per key.
const maxMarks = 64

// NewLimiter returns a Limiter; zero arguments take the defaults.
func NewLimiter(max int, window, lockout, maxLockout time.Duration) *Limiter {
	if max <= 0 {
		max = DefaultMaxFailures
	}
	if window <= 0 {
		window = DefaultWindow
	}
	if lockout <= 0 {
		lockout = DefaultLockout
	}
	if maxLockout <= 0 {
		maxLockout = DefaultMaxLockout
	}
	if maxLockout < lockout {
		maxLockout = lockout
	}
	return &Limiter{
		max: max, window: window, lockout: lockout, maxLockout: maxLockout,
		recs: map[string]*limitRecord{}, nextPrune: 1024,
	}
}

// Limit is a key and the failures it may have within the window before
// it locks (0: the Limiter's Max).
type Limit struct {
	Key string
	Max int
}

// Attempt starts a login attempt at now against keys, each with the
// Limiter's Max. If any key is locked it returns ok false and how long the
// longest lock still runs; nothing is recorded. Otherwise the attempt is
// recorded as a failure on every key (locking those that reach the limit)
// and ok is true.
func (l *Limiter) Attempt(now time.Time, keys ...string) (a Attempt, retryAfter time.Duration, ok bool) {
	limits := make([]Limit, len(keys))
	for i, k := range keys {
		limits[i] = Limit{Key: k}
	}
	return l.AttemptLimits(now, limits...)
}

// AttemptLimits is Attempt with a limit of its own for each key.
func (l *Limiter) AttemptLimits(now time.Time, limits ...Limit) (a Attempt, retryAfter time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lim := range limits {
		if r := l.recs[lim.Key]; r != nil && now.Before(r.until) {
			retryAfter = max(retryAfter, r.until.Sub(now))
		}
	}
	if retryAfter > 0 {
		return Attempt{}, retryAfter, false
	}
	l.seq++
	a = Attempt{seq: l.seq, keys: make([]string, len(limits))}
	for i, lim := range limits {
		k, maxFails := lim.Key, lim.Max
		if maxFails <= 0 {
			maxFails = l.max
		}
		maxFails = min(maxFails, maxMarks) // a key keeps no more marks
		a.keys[i] = k
		r := l.recs[k]
		if r == nil {
			r = &limitRecord{}
			l.recs[k] = r
		}
		r.prune(now, l.window)
		if len(r.fails) == maxMarks {
			r.fails = append(r.fails[:0], r.fails[1:]...)
		}
		r.fails = append(r.fails, attemptMark{at: now, seq: a.seq})
		if n := len(r.fails); n >= maxFails {
			r.until = now.Add(l.lockFor(n - maxFails))
			r.lockSeq = a.seq
		}
	}
	if len(l.recs) >= l.nextPrune {
		l.prune(now)
	}
	return a, 0, true
}

// lockFor returns the lock after the extra-th failure beyond the limit.
func (l *Limiter) lockFor(extra int) time.Duration {
	d := l.lockout
	for range extra {
		d *= 2
		if d >= l.maxLockout {
			return l.maxLockout
		}
	}
	return min(d, l.maxLockout)
}

// Forgive undoes a successful attempt: it no longer counts as a failure and
// no longer locks anything.
func (l *Limiter) Forgive(a Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range a.keys {
		r := l.recs[k]
		if r == nil {
			continue
		}
		for i, m := range r.fails {
			if m.seq == a.seq {
				r.fails = append(r.fails[:i], r.fails[i+1:]...)
				break
			}
		}
		if r.lockSeq == a.seq {
			r.until, r.lockSeq = time.Time{}, 0
		}
	}
}

// Reset forgets every failure and lock of key.
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.recs, key)
}

func (r *limitRecord) prune(now time.Time, window time.Duration) {
	i := 0
	for i < len(r.fails) && now.Sub(r.fails[i].at) >= window {
		i++
	}
	if i > 0 {
		r.fails = append(r.fails[:0], r.fails[i:]...)
	}
}

// prune drops records that neither lock nor count anything any more, so
// that guesses from many addresses cannot grow memory without bound.
func (l *Limiter) prune(now time.Time) {
	for k, r := range l.recs {
		r.prune(now, l.window)
		if len(r.fails) == 0 && !now.Before(r.until) {
			delete(l.recs, k)
		}
	}
	l.nextPrune = max(1024, 2*len(l.recs))
}
