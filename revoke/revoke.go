package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of revocations.
const Bucket = "OBSERVATORY_REVOCATIONS"

// Bounds of the bucket.
const (
	// MaxBytes bounds the bucket: about 300,000 revocations. When it is
	// full a revocation is refused (an error), never an older one dropped.
	MaxBytes = 64 << 20
	// maxValue bounds one entry.
	maxValue = 256
	// slack is added to an entry's TTL, so that a replica whose clock is
	// a little behind still refuses the token until it expires there.
	slack = time.Minute
	// pruneEvery is how often Run drops revocations past their time
	// from memory.
	pruneEvery = time.Minute
)

// ErrBadID is the error of Revoke for an id that cannot be a key.
var ErrBadID = errors.New("revoke: malformed token id")

var idRE = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// Config configures a Store. Zero values mean the defaults.
type Config struct {
	// MaxAge is the longest any revoked credential lives, so how long a
	// revocation is kept at most (required).
	MaxAge time.Duration
	// Replicas of the bucket; 0 leaves it to the JetStream the store is
	// opened on (one, or what stream.WithReplicas sets on a cluster).
	Replicas int
	// Now is the clock that stamps revocations and decides when they no
	// longer matter (time.Now).
	Now func() time.Time
	// Logger receives the watch's problems (discard).
	Logger *slog.Logger
}

// Entry is one revocation as the bucket stores it.
type Entry struct {
	RevokedAt time.Time `json:"revoked_at"`
	Until     time.Time `json:"until"`
}

// Store is the set of revoked token ids.
type Store struct {
	cfg     Config
	kv      jetstream.KeyValue
	watch   jetstream.KeyWatcher
	stop    context.CancelFunc
	keyTTLs bool // the server supports per-key TTLs

	// Owned by Open, then Run: the bucket's last sequence the set
	// reflects, and the last sequence a check found it behind.
	seen, behind uint64

	// mu guards ids: revoked id → until when it matters.
	mu  sync.RWMutex
	ids map[string]time.Time
}

// Open creates the bucket if need be, starts watching it and loads every
// revocation it holds. The caller must call Run.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.MaxAge <= 0 {
		return nil, errors.New("revoke: open: MaxAge is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	kvCfg := jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "revoked token ids (not secret)", History: 1,
		TTL: cfg.MaxAge + slack, MaxBytes: MaxBytes, MaxValueSize: maxValue,
		Storage: jetstream.FileStorage, Replicas: cfg.Replicas, LimitMarkerTTL: time.Minute,
	}
	s := &Store{cfg: cfg, ids: map[string]time.Time{}, keyTTLs: true}
	kv, err := js.CreateOrUpdateKeyValue(ctx, kvCfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		// An older NATS: entries live the bucket's MaxAge.
		kvCfg.LimitMarkerTTL, s.keyTTLs = 0, false
		kv, err = js.CreateOrUpdateKeyValue(ctx, kvCfg)
	}
	if err != nil {
		return nil, fmt.Errorf("revoke: bucket %s: %w", Bucket, err)
	}
	s.kv = kv
	if err := s.watchAll(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// watchAll starts a watch of the bucket and loads what it holds into a
// fresh set, which then replaces the one in use (revocations made here
// meanwhile are in the bucket too).
func (s *Store) watchAll(ctx context.Context) error {
	// Everything up to the last sequence before the watch starts is in
	// its initial values (or was removed, which they reflect too).
	last, err := s.lastSeq(ctx)
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w, err := s.kv.WatchAll(wctx)
	if err != nil {
		stop()
		return fmt.Errorf("revoke: watch: %w", err)
	}
	ids := map[string]time.Time{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				_ = w.Stop()
				stop()
				return errors.New("revoke: the watch ended while loading")
			}
			if e != nil {
				s.applyTo(ids, e)
				last = max(last, e.Revision())
				continue
			}
			s.mu.Lock()
			s.ids = ids
			s.mu.Unlock()
			s.watch, s.stop, s.seen, s.behind = w, stop, last, 0
			return nil
		case <-ctx.Done():
			_ = w.Stop()
			stop()
			return fmt.Errorf("revoke: load: %w", ctx.Err())
		}
	}
}

func (s *Store) close() {
	_ = s.watch.Stop()
	s.stop()
}

// checkEvery is how often Run compares the bucket's last sequence with
// what the watch delivered, and how long it waits before watching again.
const checkEvery = time.Second

// lastSeq is the bucket's last sequence.
func (s *Store) lastSeq(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, checkEvery)
	defer cancel()
	st, err := s.kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("revoke: bucket status: %w", err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, errors.New("revoke: bucket status without stream info")
	}
	return bs.StreamInfo().State.LastSeq, nil
}

// Run applies the watch's updates until ctx ends, then stops the watch
// and returns nil. Every checkEvery it compares the bucket's last
// sequence with what the watch delivered: a watch still behind a
// sequence the previous check saw (a consumer that did not come back
// after NATS restarted), or one that ended, is replaced by a new watch,
// which reloads the whole set.
func (s *Store) Run(ctx context.Context) error {
	defer func() { s.close() }()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	check := time.NewTicker(checkEvery)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-s.watch.Updates():
			if !ok {
				s.cfg.Logger.Warn("the watch of revocations ended; watching anew", "event", "revoke.watch_ended")
				s.rewatch(ctx)
				continue
			}
			if e != nil {
				s.mu.Lock()
				s.applyTo(s.ids, e)
				s.mu.Unlock()
				s.seen = max(s.seen, e.Revision())
			}
		case <-check.C:
			last, err := s.lastSeq(ctx)
			switch {
			case err != nil || last <= s.seen:
				s.behind = 0
			case s.behind != 0 && s.seen < s.behind:
				s.cfg.Logger.Warn("the watch of revocations fell behind; watching anew", "event", "revoke.watch_behind",
					"seen", s.seen, "last", last)
				s.rewatch(ctx)
			default:
				s.behind = last
			}
		case <-prune.C:
			s.prune()
		}
	}
}

// rewatch replaces the watch, trying every checkEvery until it can or ctx
// ends.
func (s *Store) rewatch(ctx context.Context) {
	s.close()
	s.watch, s.stop = stoppedWatch{}, func() {}
	for {
		err := s.watchAll(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		s.cfg.Logger.Warn("revocations not watched", "event", "revoke.watch_failed", "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(checkEvery):
		}
	}
}

// stoppedWatch stands for a watch that could not be made again.
type stoppedWatch struct{}

func (stoppedWatch) Updates() <-chan jetstream.KeyValueEntry { return nil }
func (stoppedWatch) Stop() error                             { return nil }

// applyTo takes one update of the watch into ids; the caller holds mu
// when ids is the set in use.
func (s *Store) applyTo(ids map[string]time.Time, e jetstream.KeyValueEntry) {
	id := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		delete(ids, id)
		return
	}
	ent, err := DecodeEntry(e.Value())
	if err != nil {
		// Fail closed: an entry nobody can read still revokes its id,
		// for as long as any token lives.
		s.cfg.Logger.Warn("revocation entry unreadable", "event", "revoke.entry_invalid", "token_id", id, "error", err.Error())
		ent.Until = s.cfg.Now().Add(s.cfg.MaxAge)
	}
	if ent.Until.After(ids[id]) {
		ids[id] = ent.Until
	}
}

func (s *Store) mark(id string, until time.Time) {
	s.mu.Lock()
	if until.After(s.ids[id]) {
		s.ids[id] = until
	}
	s.mu.Unlock()
}

func (s *Store) prune() {
	now := s.cfg.Now()
	s.mu.Lock()
	for id, until := range s.ids {
		if now.After(until.Add(slack)) {
			delete(s.ids, id)
		}
	}
	s.mu.Unlock()
}

// DecodeEntry decodes a revocation's value: JSON with revoked_at and a
// non-zero until, nothing else.
func DecodeEntry(b []byte) (Entry, error) {
	var e Entry
	if len(b) > maxValue {
		return Entry{}, fmt.Errorf("revoke: entry of %d bytes", len(b))
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, fmt.Errorf("revoke: entry: %w", err)
	}
	if e.Until.IsZero() {
		return Entry{}, errors.New("revoke: entry without until")
	}
	return e, nil
}

// ValidID reports whether id can be revoked: 1 to 64 lower-case letters
// and digits (a token id is), which is a KV key as it is.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Revoke records that the token id is revoked until until (when it
// expires; later does no harm). This replica refuses it at once; the
// others as soon as their watch brings the entry. Revoking an id twice,
// or one whose time has passed, is not an error.
func (s *Store) Revoke(ctx context.Context, id string, until time.Time) error {
	if !ValidID(id) {
		return ErrBadID
	}
	now := s.cfg.Now().UTC()
	if !until.After(now) {
		return nil // the token has expired: nothing to refuse
	}
	if max := now.Add(s.cfg.MaxAge); until.After(max) {
		until = max
	}
	val, err := json.Marshal(Entry{RevokedAt: now, Until: until.UTC()})
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	var opts []jetstream.KVCreateOpt
	if s.keyTTLs {
		opts = append(opts, jetstream.KeyTTL(until.Sub(now).Round(time.Second)+slack))
	}
	if _, err := s.kv.Create(ctx, id, val, opts...); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("revoke: %s: %w", id, err)
	}
	s.mark(id, until)
	return nil
}

// Revoked reports whether the token id is revoked. The empty id (a token
// of a release before token ids) never is.
func (s *Store) Revoked(id string) bool {
	if id == "" {
		return false
	}
	s.mu.RLock()
	_, ok := s.ids[id]
	s.mu.RUnlock()
	return ok
}

// Len is how many revocations the Store holds.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.ids)
}
