package fleet

import "time"

// window keeps per-minute counts of runs, tokens and errors for the last
// 24 hours, and running sums over 24 h (runs, tokens) and 1 h (errors). It is
// sparse: only minutes with activity hold a bucket.
type window struct {
	Head    int64             `json:"head"` // minute index of the clock
	Buckets map[int64]*bucket `json:"buckets,omitempty"`
	Sum24   bucket            `json:"sum24"`
	Sum1    bucket            `json:"sum1"`
}

type bucket struct {
	Runs   int64 `json:"r,omitempty"`
	Tokens int64 `json:"t,omitempty"`
	Errors int64 `json:"e,omitempty"`
}

const (
	minutesPerDay  = 24 * 60
	minutesPerHour = 60
)

func minuteOf(t time.Time) int64 { return t.Unix() / 60 }

func (b *bucket) add(o bucket) {
	b.Runs += o.Runs
	b.Tokens += o.Tokens
	b.Errors += o.Errors
}

func (b *bucket) sub(o bucket) {
	b.Runs -= o.Runs
	b.Tokens -= o.Tokens
	b.Errors -= o.Errors
}

// add counts v at minute m, which is never after the head.
func (w *window) add(m int64, v bucket) {
	if m > w.Head {
		m = w.Head
	}
	if m <= w.Head-minutesPerDay {
		return // older than 24 h
	}
	if w.Buckets == nil {
		w.Buckets = make(map[int64]*bucket)
	}
	b := w.Buckets[m]
	if b == nil {
		b = new(bucket)
		w.Buckets[m] = b
	}
	b.add(v)
	w.Sum24.add(v)
	if m > w.Head-minutesPerHour {
		w.Sum1.add(v)
	}
}

// advance moves the head to minute m, expiring buckets that leave each window.
func (w *window) advance(m int64) bool {
	if m <= w.Head {
		return false
	}
	old := w.Head
	w.Head = m
	if len(w.Buckets) == 0 {
		return false
	}
	changed := false
	// Minutes in (old-60, m-60] leave the hour.
	// Only minutes in (old-60, old] can be in the hour sum.
	to := min(m-minutesPerHour, old)
	for i := old - minutesPerHour + 1; i <= to; i++ {
		if b := w.Buckets[i]; b != nil {
			w.Sum1.sub(*b)
			changed = true
		}
	}
	// Buckets at or before m-1440 leave the day.
	for k, b := range w.Buckets {
		if k <= m-minutesPerDay {
			w.Sum24.sub(*b)
			delete(w.Buckets, k)
			changed = true
		}
	}
	return changed
}
