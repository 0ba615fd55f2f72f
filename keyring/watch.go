package keyring

import (
	"context"
	"os"
	"time"
)

// DefaultPoll is how often a Watcher looks at its file.
const DefaultPoll = time.Second

// Watcher polls a key file and hands each new ring read from it to a
// function, so that a running server takes up a rotation (observatory
// rotate-key) within a poll. It compares the file's identity, size and
// modification time, which an atomic rename (Write) always changes, and
// reads the file only when they change. A file that does not read (gone,
// exposed, malformed) leaves the ring in service as it was; the error is
// reported once per change of the file.
type Watcher struct {
	path   string
	every  time.Duration
	set    func(*Ring)
	report func(error)

	// Owned by Run.
	last os.FileInfo
	ring *Ring
}

// NewWatcher returns a Watcher of the file at path, whose ring in service
// is current (what the caller read from it), polling every every
// (DefaultPoll when <= 0). set receives each new ring; report, when not
// nil, each error.
func NewWatcher(path string, current *Ring, every time.Duration, set func(*Ring), report func(error)) *Watcher {
	if every <= 0 {
		every = DefaultPoll
	}
	w := &Watcher{path: path, every: every, set: set, report: report, ring: current}
	w.last, _ = os.Stat(path)
	return w
}

// Run polls until ctx ends; it returns nil then.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.poll()
		}
	}
}

func (w *Watcher) poll() {
	fi, err := os.Stat(w.path)
	if err != nil {
		if w.last != nil && w.report != nil {
			w.report(err)
		}
		w.last = nil
		return
	}
	if w.last != nil && os.SameFile(fi, w.last) && fi.Size() == w.last.Size() && fi.ModTime().Equal(w.last.ModTime()) && fi.Mode() == w.last.Mode() {
		return
	}
	w.last = fi
	r, err := Read(w.path)
	if err != nil {
		if w.report != nil {
			w.report(err)
		}
		return
	}
	if r.Equal(w.ring) {
		return
	}
	w.ring = r
	w.set(r)
}
