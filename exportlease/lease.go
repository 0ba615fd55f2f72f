package exportlease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/telemetry"
)

// Bucket is the key-value bucket of the lease; Key its one key.
const (
	Bucket = "OBSERVATORY_EXPORTER"
	Key    = "lease"
)

// DefaultTTL is how long a lease lasts without renewal: the longest time
// derived items wait for a new exporter after the holder died.
const DefaultTTL = 10 * time.Second

// Gate is what the lease drives: telemetry.Handoff.
type Gate interface {
	Lead(last telemetry.Marks)
	Follow(leader telemetry.Marks)
	// SetCommit makes the gate record its marks through commit before
	// each export.
	SetCommit(commit func(telemetry.Marks) error)
}

// errNotHolding refuses a commit of a replica that does not hold the
// lease (any more), or holds it paused.
var errNotHolding = errors.New("exporter lease: not held")

// Config configures a Lease.
type Config struct {
	// ID names this replica in the lease (default: host name, process id
	// and a random suffix, so a restarted process is a new holder).
	ID string
	// TTL is the lease's lifetime without renewal (DefaultTTL). Every
	// replica must use the same: the bucket has one max age.
	TTL time.Duration
	// Logger receives the lease's changes of hands.
	Logger *slog.Logger
	// Now is the clock of the holder's own renewal deadline (time.Now).
	Now func() time.Time
	// Ready, when set, says whether this replica may take the lease: its
	// hub has caught up with the stream, so that what it folds from then
	// on is live and makes spans and records (a replaying replica makes
	// none, and would leave a gap).
	Ready func() bool
}

// record is the lease's value.
type record struct {
	Holder string          `json:"holder"`
	Marks  telemetry.Marks `json:"marks"`
}

// Lease takes part in the choice of the exporter.
type Lease struct {
	kv   jetstream.KeyValue
	gate Gate
	cfg  Config

	// mu guards the fields below and orders the writes of the key: the
	// renewals of Run and the commits of the export queues.
	mu      sync.Mutex
	leading bool
	// paused: leading, but the last write of the marks failed, so the
	// gate holds what it makes until a write succeeds (what it sent
	// meanwhile would be sent again by a replica taking over from the
	// marks it last heard).
	paused  bool
	rev     uint64          // the revision of our record, while leading
	renewed time.Time       // when our last write was sent, while leading
	marks   telemetry.Marks // what we recorded, while leading
	last    telemetry.Marks // the newest marks another holder reported
}

// Open creates or updates the bucket (its replicas are those of js, see
// stream.WithReplicas) and returns a Lease driving gate.
func Open(ctx context.Context, js jetstream.JetStream, gate Gate, cfg Config) (*Lease, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	kv, err := stream.ConsistentKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "Observatory: which replica exports what is derived from FLEET",
		History: 1, TTL: cfg.TTL, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("exporter lease: %w", err)
	}
	l := &Lease{kv: kv, gate: gate, cfg: cfg}
	gate.SetCommit(l.commit)
	return l, nil
}

// ID is this replica's name in the lease.
func (l *Lease) ID() string { return l.cfg.ID }

// Run takes part in the lease until ctx ends. It does not release the
// lease: call Release after the last export was flushed.
func (l *Lease) Run(ctx context.Context) error {
	w, err := l.kv.Watch(ctx, Key)
	if err != nil {
		return fmt.Errorf("exporter lease: watch: %w", err)
	}
	defer w.Stop()
	tick := time.NewTicker(l.cfg.TTL / 4)
	defer tick.Stop()
	l.locked(func() { l.try(ctx) })
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					// Cancelling ctx closes the watch too, and select
					// may see that first: a stop, not a failure.
					return nil
				}
				return fmt.Errorf("exporter lease: watch ended")
			}
			if e == nil {
				continue // the current value has been delivered
			}
			l.locked(func() { l.seen(ctx, e) })
		case <-tick.C:
			l.locked(func() { l.try(ctx) })
		}
	}
}

func (l *Lease) locked(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
}

// commit records marks m (merged with those recorded, signal by signal)
// before the gate exports what they cover. It fails, and the gate holds
// the items, unless this replica holds the lease and the write succeeds.
func (l *Lease) commit(m telemetry.Marks) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading || l.paused {
		return errNotHolding
	}
	next := telemetry.Marks{Traces: max(l.marks.Traces, m.Traces), Logs: max(l.marks.Logs, m.Logs)}
	if next == l.marks {
		return nil
	}
	if err := l.write(context.Background(), next); err != nil {
		return err
	}
	l.marks = next
	return nil
}

// write writes our record with marks m, renewing the lease; on failure it
// pauses the export or, after half the TTL without a write, gives the
// lease up.
func (l *Lease) write(ctx context.Context, m telemetry.Marks) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.TTL/4)
	defer cancel()
	sent := l.cfg.Now()
	rev, err := l.kv.Update(ctx, Key, l.value(m), l.rev)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Another revision: a spurious refusal under R3 when the record
		// is still ours, else the lease expired and was taken.
		if e, gerr := l.kv.Get(ctx, Key); gerr == nil {
			var r record
			if json.Unmarshal(e.Value(), &r) == nil && r.Holder == l.cfg.ID {
				l.rev = e.Revision()
				rev, err = l.kv.Update(ctx, Key, l.value(m), l.rev)
			}
		}
	}
	if err == nil {
		l.rev, l.renewed = rev, sent
		if l.paused {
			l.paused = false
			l.gate.Lead(l.marks)
			l.cfg.Logger.Info("exporter lease renewed; exporting again", "event", "exporter.lease.resumed", "replica", l.cfg.ID)
		}
		return nil
	}
	// Not written: hold what is made from now on until a write succeeds,
	// so that a replica taking over from the last marks written sends
	// nothing this one sent.
	if !l.paused {
		l.paused = true
		l.gate.Follow(l.marks)
		l.cfg.Logger.Warn("exporter lease not renewed; holding the export", "event", "exporter.lease.paused",
			"replica", l.cfg.ID, "error", err.Error())
	}
	// Once half the TTL has passed since the last write, the key may
	// expire before the next one lands and another replica take over:
	// this one no longer holds the lease.
	if l.cfg.Now().Sub(l.renewed) >= l.cfg.TTL/2 {
		l.leading, l.paused = false, false
		l.last = l.marks
		l.cfg.Logger.Warn("exporter lease not renewed in time; another replica may take it", "event", "exporter.lease.lost",
			"replica", l.cfg.ID, "error", err.Error())
	}
	return err
}

// seen handles a change of the key another replica (or this one) made.
func (l *Lease) seen(ctx context.Context, e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		l.try(ctx) // purged by an operator: take it if nobody is faster
		return
	}
	var r record
	if json.Unmarshal(e.Value(), &r) != nil || r.Holder == l.cfg.ID {
		return
	}
	l.last = r.Marks
	if r.Holder == released {
		if !l.leading {
			l.take(ctx, e.Revision())
		}
		return
	}
	if l.leading {
		l.cfg.Logger.Warn("exporter lease lost", "event", "exporter.lease.lost", "replica", l.cfg.ID, "holder", r.Holder)
		l.leading, l.paused = false, false
	}
	l.gate.Follow(r.Marks)
}

// released is the holder of a lease its last holder handed on: the
// record keeps the marks, and the next replica takes it with a
// compare-and-swap on its revision.
const released = ""

// try renews the lease while leading, or takes it when it is free.
func (l *Lease) try(ctx context.Context) {
	if l.leading {
		_ = l.write(ctx, l.marks)
		return
	}
	l.take(ctx, 0)
}

// take takes the lease when it is free: gone (its holder died and it
// expired, or nobody ever held it), or released at revision rev (0: look
// it up). A replica whose hub is still replaying never takes it.
func (l *Lease) take(ctx context.Context, rev uint64) {
	if l.cfg.Ready != nil && !l.cfg.Ready() {
		return
	}
	sent := l.cfg.Now()
	if rev == 0 {
		r, err := l.kv.Create(ctx, Key, l.value(l.last))
		if err == nil {
			l.took(r, sent)
			return
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return // NATS is away: keep following
		}
		e, err := l.kv.Get(ctx, Key)
		if err != nil {
			return
		}
		var cur record
		if json.Unmarshal(e.Value(), &cur) != nil || cur.Holder != released {
			return // held by another
		}
		l.last, rev = cur.Marks, e.Revision()
	}
	r, err := l.kv.Update(ctx, Key, l.value(l.last), rev)
	if err != nil {
		return // another replica was faster
	}
	l.took(r, sent)
}

func (l *Lease) took(rev uint64, sent time.Time) {
	l.leading, l.paused, l.rev, l.renewed, l.marks = true, false, rev, sent, l.last
	l.gate.Lead(l.last)
	l.cfg.Logger.Info("exporter lease taken", "event", "exporter.lease.taken", "replica", l.cfg.ID,
		"traces_from", l.last.Traces, "logs_from", l.last.Logs)
}

func (l *Lease) value(m telemetry.Marks) []byte {
	b, _ := json.Marshal(record{Holder: l.cfg.ID, Marks: m})
	return b
}

// Release hands the lease on: it writes the final marks (call it after
// the export was flushed, so they cover everything sent) in a record
// that names no holder, which another replica takes at once rather than
// after the TTL. It does nothing when this replica does not hold the
// lease.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return nil
	}
	l.leading, l.paused = false, false
	m := l.marks
	l.last = m
	b, _ := json.Marshal(record{Holder: released, Marks: m})
	if _, err := l.kv.Update(ctx, Key, b, l.rev); err != nil {
		return fmt.Errorf("exporter lease: release: %w", err)
	}
	l.gate.Follow(m)
	l.cfg.Logger.Info("exporter lease released", "event", "exporter.lease.released", "replica", l.cfg.ID,
		"traces", m.Traces, "logs", m.Logs)
	return nil
}
