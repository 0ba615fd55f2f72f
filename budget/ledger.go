package budget

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
)

// KV buckets of the budget gate (DESIGN §3).
const (
	// BudgetsBucket holds one key per budget (fleet.BudgetID).
	BudgetsBucket = "OBSERVATORY_BUDGETS"
	// LedgerBucket holds one entry per budget incarnation and period window
	// (spent, holds of work in flight, the last FLEET sequence charged) and
	// the follower's cursor.
	LedgerBucket = "OBSERVATORY_LEDGER"
	// ReservationsBucket holds one record per reservation, and an index
	// from the work a reservation is for (mission or run) to it.
	ReservationsBucket = "OBSERVATORY_RESERVATIONS"
)

// Defaults of Config.
const (
	DefaultHoldTTL           = 30 * time.Minute
	DefaultSettleGrace       = 2 * time.Minute
	DefaultBudgetEventEvery  = time.Second
	DefaultStatusEvery       = 5 * time.Second
	DefaultLedgerMaxAge      = 400 * 24 * time.Hour
	DefaultReservationMaxAge = 7 * 24 * time.Hour
	cursorKey                = "cursor"
	ledgerBatch              = 512
	cursorEvery              = time.Second
	auditQueue               = 1024
)

// Auditor publishes server-emitted events (Publisher.Audit).
type Auditor interface {
	Audit(ctx context.Context, ev fleet.Event) error
}

// Config configures a Ledger. Zero values mean the defaults.
type Config struct {
	// Pricing prices llm.call events; it must be the fold's table
	// (default fleet.DefaultPricing()).
	Pricing *fleet.Pricing
	// Auditor receives budget.warning, budget.throttled and budget.exceeded
	// events (AUDIT, and FLEET for the HUD); nil publishes none.
	Auditor Auditor
	// Now is the ledger's clock (time.Now): reservations and their expiry,
	// the period window a reservation or a standing falls in, budgets'
	// creation and update times, event times and their rate limit. Real
	// costs are charged in the window of their llm.call's time, which is
	// never later than the time FLEET stored it (the NATS server's wall
	// clock): a Now far from the wall clock puts holds and charges in
	// different windows.
	Now func() time.Time
	// HoldTTL is how long a reservation holds budget when nobody settles or
	// releases it, e.g. because its worker crashed (30 min).
	HoldTTL time.Duration
	// SettleGrace is how long a settled reservation keeps covering the part
	// of its real cost the follower has not charged yet (2 min).
	SettleGrace time.Duration
	// EventEvery bounds budget events to one per budget and type per this
	// interval on this instance (1 s); negative publishes every one.
	EventEvery time.Duration
	// LedgerMaxAge and ReservationMaxAge bound how long untouched ledger
	// entries (400 days) and reservation records (7 days) are kept.
	LedgerMaxAge      time.Duration
	ReservationMaxAge time.Duration
	// Events, when set, receives a budget.status event per budget (with a
	// project) every StatusEvery and after each change of a budget, on
	// FLEET, so the HUD shows every budget's standing from the start
	// (Publisher.Publish).
	Events EventPublisher
	// StatusEvery is the interval of those events (5 s).
	StatusEvery time.Duration
	// Logger receives lifecycle and failure lines (slog.Default()).
	Logger *slog.Logger
}

// EventPublisher publishes an event on FLEET (Publisher.Publish).
type EventPublisher interface {
	Publish(ctx context.Context, ev fleet.Event) (uint64, error)
}

func (c *Config) defaults() {
	if c.Pricing == nil {
		c.Pricing = fleet.DefaultPricing()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.HoldTTL = cmp.Or(c.HoldTTL, DefaultHoldTTL)
	c.SettleGrace = cmp.Or(c.SettleGrace, DefaultSettleGrace)
	c.EventEvery = cmp.Or(c.EventEvery, DefaultBudgetEventEvery)
	c.StatusEvery = cmp.Or(c.StatusEvery, DefaultStatusEvery)
	c.LedgerMaxAge = cmp.Or(c.LedgerMaxAge, DefaultLedgerMaxAge)
	c.ReservationMaxAge = cmp.Or(c.ReservationMaxAge, DefaultReservationMaxAge)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Ledger is the budget gate: budgets in a KV bucket, their spend per
// period window in another, reservations in a third. Reserve holds an
// estimate on every budget that applies with compare-and-swap; the
// follower (part of Run) charges the real cost of every llm.call on FLEET,
// drawing it from the work's hold, and releases the rest when the mission
// or run ends. Settle and Release do the same on request. Any number of
// Ledgers, in any number of processes, may share the buckets.
type Ledger struct {
	js       jetstream.JetStream
	cfg      Config
	log      *slog.Logger
	budgets  jetstream.KeyValue
	entries  jetstream.KeyValue
	reserves jetstream.KeyValue

	// cacheMu guards cache: the budgets as last seen, by id.
	cacheMu sync.RWMutex
	cache   map[string]cachedBudget

	loaded     chan struct{} // closed once the budgets are loaded
	loadedOnce sync.Once
	// ready is closed once, besides, the follower has fixed where in FLEET
	// it starts: a budget created (or a call made) after that is counted.
	ready     chan struct{}
	readyOnce sync.Once
	done      chan struct{} // closed when Run returns

	audits chan fleet.Event // to the audit goroutine
	// statusKick asks the status goroutine for an early round (a budget
	// changed).
	statusKick chan struct{}

	locks keyLocks // this process's writers, one at a time per ledger key

	// eventsMu guards lastEvent: when each (budget, type) was last published.
	eventsMu  sync.Mutex
	lastEvent map[string]time.Time

	stat ledgerStats
	// epoch is FLEET's lineage as the follower found it ("" until then):
	// an entry's sequence mark means something only in its own lineage.
	epoch atomic.Pointer[string]
}

type cachedBudget struct {
	b       fleet.BudgetLimit
	rev     uint64
	deleted bool
}

type ledgerStats struct {
	reserves, allowed, refused, throttled, warned, unbudgeted atomic.Int64
	conflicts, settles, releases, expired                     atomic.Int64
	charges, chargedMicros, unpriced, drawn                   atomic.Int64
	events, eventsQueued, eventsDropped, eventErrors          atomic.Int64
	seq                                                       atomic.Uint64
	lastSeq                                                   atomic.Uint64 // FLEET's last sequence when the follower last looked
}

// Stats are a Ledger's counters since it started, for metrics.
type Stats struct {
	Reserves        int64  // Reserve calls answered
	Allowed         int64  // of which allowed (warn and throttle included)
	Refused         int64  // refused by a stop budget
	Throttled       int64  // routed to a cheaper model
	Warned          int64  // allowed past a warn threshold or a warn cap
	Unbudgeted      int64  // no budget applied
	Conflicts       int64  // compare-and-swap conflicts retried
	Settles         int64  // reservations settled
	Releases        int64  // reservations released (by request or by their work ending)
	Charges         int64  // llm.call events charged to at least one budget
	ChargedMicros   int64  // their cost
	Unpriced        int64  // llm.call events of unpriced models (never charged)
	Drawn           int64  // charges drawn from a reservation's hold
	Events          int64  // budget events published
	EventsQueued    int64  // budget events queued for publishing
	EventsDropped   int64  // budget events dropped (queue full or rate limit)
	EventErrors     int64  // budget events that failed to publish
	FollowSeq       uint64 // the last FLEET sequence the follower has applied
	Budgets         int    // budgets known
	ReservationsTTL time.Duration
}

// NewLedger creates (or opens) the buckets on js and returns a Ledger.
// Run must be running for Reserve and the budget calls to answer.
func NewLedger(ctx context.Context, js jetstream.JetStream, cfg Config) (*Ledger, error) {
	cfg.defaults()
	l := &Ledger{
		js: js, cfg: cfg, log: cfg.Logger,
		cache:      make(map[string]cachedBudget),
		loaded:     make(chan struct{}),
		ready:      make(chan struct{}),
		done:       make(chan struct{}),
		audits:     make(chan fleet.Event, auditQueue),
		statusKick: make(chan struct{}, 1),
		lastEvent:  make(map[string]time.Time),
	}
	// Reads must see the gate's own writes (a reservation just made, the
	// revision a compare-and-swap starts from), also on a replicated
	// bucket.
	var err error
	if l.budgets, err = stream.ConsistentKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: BudgetsBucket, Description: "Observatory budgets (DESIGN §10)", History: 8, Storage: jetstream.FileStorage,
	}); err != nil {
		return nil, fmt.Errorf("ledger: budgets bucket: %w", err)
	}
	if l.entries, err = stream.ConsistentKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: LedgerBucket, Description: "Observatory budget ledger: spend and holds per budget and window", History: 1,
		TTL: cfg.LedgerMaxAge, Storage: jetstream.FileStorage,
	}); err != nil {
		return nil, fmt.Errorf("ledger: ledger bucket: %w", err)
	}
	if l.reserves, err = stream.ConsistentKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: ReservationsBucket, Description: "Observatory budget reservations", History: 1,
		TTL: cfg.ReservationMaxAge, Storage: jetstream.FileStorage,
	}); err != nil {
		return nil, fmt.Errorf("ledger: reservations bucket: %w", err)
	}
	return l, nil
}

// Run keeps the budget cache current, follows FLEET to charge real costs
// and publishes budget events, until ctx ends. It returns nil on a clean
// stop.
func (l *Ledger) Run(ctx context.Context) error {
	defer close(l.done)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return l.watchBudgets(gctx) })
	g.Go(func() error { return l.follow(gctx) })
	g.Go(func() error { return l.publishAudits(gctx) })
	if l.cfg.Events != nil {
		g.Go(func() error { return l.publishStatuses(gctx) })
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Ready reports nil once the budgets are loaded and the follower has fixed
// where it starts in FLEET, so that every call stored from then on is
// charged to the budgets that exist at its time.
func (l *Ledger) Ready() error {
	select {
	case <-l.ready:
		return nil
	default:
		return errors.New("ledger: budgets not loaded yet")
	}
}

// waitReady waits until the ledger is ready (see Ready), Run stopped or ctx
// ends.
func (l *Ledger) waitReady(ctx context.Context) error {
	select {
	case <-l.ready:
		return nil
	case <-l.done:
		return fmt.Errorf("ledger: %w", stream.ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("ledger: waiting for budgets: %w", ctx.Err())
	}
}

// Stats returns the ledger's counters. It is safe from any goroutine.
func (l *Ledger) Stats() Stats {
	s := &l.stat
	l.cacheMu.RLock()
	n := 0
	for _, c := range l.cache {
		if !c.deleted {
			n++
		}
	}
	l.cacheMu.RUnlock()
	return Stats{
		Reserves: s.reserves.Load(), Allowed: s.allowed.Load(), Refused: s.refused.Load(), Throttled: s.throttled.Load(),
		Warned: s.warned.Load(), Unbudgeted: s.unbudgeted.Load(), Conflicts: s.conflicts.Load(), Settles: s.settles.Load(),
		Releases: s.releases.Load(), Charges: s.charges.Load(), ChargedMicros: s.chargedMicros.Load(), Unpriced: s.unpriced.Load(),
		Drawn: s.drawn.Load(), Events: s.events.Load(), EventsQueued: s.eventsQueued.Load(), EventsDropped: s.eventsDropped.Load(), EventErrors: s.eventErrors.Load(),
		FollowSeq: s.seq.Load(), Budgets: n, ReservationsTTL: l.cfg.HoldTTL,
	}
}

// Seq returns the last FLEET sequence the follower has applied.
func (l *Ledger) Seq() uint64 { return l.stat.seq.Load() }

// WaitSeq waits until the follower has applied FLEET up to seq.
func (l *Ledger) WaitSeq(ctx context.Context, seq uint64) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for l.Seq() < seq {
		select {
		case <-ctx.Done():
			return fmt.Errorf("ledger: wait for seq %d (at %d): %w", seq, l.Seq(), ctx.Err())
		case <-l.done:
			return fmt.Errorf("ledger: %w", stream.ErrClosed)
		case <-t.C:
		}
	}
	return nil
}

// ---- budgets ----

// watchBudgets loads the budgets and keeps the cache current.
func (l *Ledger) watchBudgets(ctx context.Context) error {
	w, err := l.budgets.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("ledger: watch budgets: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("ledger: budget watcher closed")
			}
			if e == nil {
				l.loadedOnce.Do(func() { close(l.loaded) })
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				l.remember(e.Key(), fleet.BudgetLimit{}, e.Revision(), true)
				continue
			}
			var b fleet.BudgetLimit
			if err := json.Unmarshal(e.Value(), &b); err != nil {
				l.log.Error("budget unreadable; ignored", "event", "budget.unreadable", "key", e.Key(), "err", err.Error())
				continue
			}
			l.remember(e.Key(), b, e.Revision(), false)
		}
	}
}

// remember records a budget revision unless a newer one is known.
func (l *Ledger) remember(id string, b fleet.BudgetLimit, rev uint64, deleted bool) {
	l.cacheMu.Lock()
	defer l.cacheMu.Unlock()
	if c, ok := l.cache[id]; ok && c.rev >= rev {
		return
	}
	l.cache[id] = cachedBudget{b: b, rev: rev, deleted: deleted}
	select {
	case l.statusKick <- struct{}{}:
	default:
	}
}

// budget returns the budget id as cached.
func (l *Ledger) budget(id string) (fleet.BudgetLimit, bool) {
	l.cacheMu.RLock()
	defer l.cacheMu.RUnlock()
	c, ok := l.cache[id]
	if !ok || c.deleted {
		return fleet.BudgetLimit{}, false
	}
	return c.b, true
}

// applicable returns the budgets that apply to req, in fleet.BudgetIDs order.
func (l *Ledger) applicable(req fleet.BudgetRequest) []fleet.BudgetLimit {
	var out []fleet.BudgetLimit
	for _, id := range fleet.BudgetIDs(req) {
		if b, ok := l.budget(id); ok && b.Applies(req) {
			out = append(out, b)
		}
	}
	return out
}

// Budgets returns every budget of project ("" for all) with its standing
// in the current window, ordered by id.
func (l *Ledger) Budgets(ctx context.Context, project string) ([]fleet.BudgetStanding, error) {
	if err := l.waitReady(ctx); err != nil {
		return nil, err
	}
	l.cacheMu.RLock()
	var list []fleet.BudgetLimit
	for _, c := range l.cache {
		if !c.deleted && (project == "" || c.b.ProjectID == project) {
			list = append(list, c.b)
		}
	}
	l.cacheMu.RUnlock()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	out := make([]fleet.BudgetStanding, 0, len(list))
	now := l.cfg.Now()
	for _, b := range list {
		st, err := l.standing(ctx, b, now)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Budget returns one budget and its standing now.
func (l *Ledger) Budget(ctx context.Context, id string) (fleet.BudgetStanding, error) {
	if err := l.waitReady(ctx); err != nil {
		return fleet.BudgetStanding{}, err
	}
	e, err := l.budgets.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return fleet.BudgetStanding{}, fmt.Errorf("budget %q: %w", id, fleet.ErrBudgetNotFound)
	}
	if err != nil {
		return fleet.BudgetStanding{}, fmt.Errorf("ledger: get budget %q: %w", id, err)
	}
	var b fleet.BudgetLimit
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		return fleet.BudgetStanding{}, fmt.Errorf("ledger: budget %q: %w", id, err)
	}
	l.remember(id, b, e.Revision(), false)
	return l.standing(ctx, b, l.cfg.Now())
}

// standing reads b's ledger entry for the window holding now.
func (l *Ledger) standing(ctx context.Context, b fleet.BudgetLimit, now time.Time) (fleet.BudgetStanding, error) {
	w, err := fleet.WindowOf(b.Period, now)
	if err != nil {
		return fleet.BudgetStanding{}, err
	}
	snap, err := l.getEntry(ctx, entryKey(b, w))
	if err != nil {
		return fleet.BudgetStanding{}, err
	}
	return snap.entry.standing(b, w, now, l.fleetEpoch()), nil
}

// CreateBudget stores a new budget; fleet.ErrBudgetExists if its scope and
// period already have one. Its ledger starts at zero.
func (l *Ledger) CreateBudget(ctx context.Context, b fleet.BudgetLimit) (fleet.BudgetStanding, error) {
	if err := l.checkBudget(&b); err != nil {
		return fleet.BudgetStanding{}, err
	}
	if err := l.waitReady(ctx); err != nil {
		return fleet.BudgetStanding{}, err
	}
	now := l.cfg.Now().UTC()
	b.Gen, b.CreatedAt, b.UpdatedAt = newGen(now), now, now
	body, err := json.Marshal(b)
	if err != nil {
		return fleet.BudgetStanding{}, fmt.Errorf("ledger: create budget: %w", err)
	}
	rev, err := l.budgets.Create(ctx, b.ID, body)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fleet.BudgetStanding{}, fmt.Errorf("budget %s: %w", b.ID, fleet.ErrBudgetExists)
	}
	if err != nil {
		return fleet.BudgetStanding{}, fmt.Errorf("ledger: create budget %s: %w", b.ID, err)
	}
	l.remember(b.ID, b, rev, false)
	l.log.Info("budget created", "event", "budget.created", "budget", b.ID, "sagewai.project_id", orGlobal(b.ProjectID),
		"limit_usd", b.LimitUSD.String(), "action", b.Action)
	return l.standing(ctx, b, now)
}

// UpdateBudget changes the cap, warn threshold, action or throttle model
// of an existing budget (its scope and period are its identity). Spend in
// the current window is kept.
func (l *Ledger) UpdateBudget(ctx context.Context, b fleet.BudgetLimit) (fleet.BudgetStanding, error) {
	if err := l.checkBudget(&b); err != nil {
		return fleet.BudgetStanding{}, err
	}
	if err := l.waitReady(ctx); err != nil {
		return fleet.BudgetStanding{}, err
	}
	for {
		e, err := l.budgets.Get(ctx, b.ID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fleet.BudgetStanding{}, fmt.Errorf("budget %s: %w", b.ID, fleet.ErrBudgetNotFound)
		}
		if err != nil {
			return fleet.BudgetStanding{}, fmt.Errorf("ledger: update budget %s: %w", b.ID, err)
		}
		var old fleet.BudgetLimit
		if err := json.Unmarshal(e.Value(), &old); err != nil {
			return fleet.BudgetStanding{}, fmt.Errorf("ledger: budget %s: %w", b.ID, err)
		}
		now := l.cfg.Now().UTC()
		b.Gen, b.CreatedAt, b.UpdatedAt = old.Gen, old.CreatedAt, now
		body, err := json.Marshal(b)
		if err != nil {
			return fleet.BudgetStanding{}, fmt.Errorf("ledger: update budget: %w", err)
		}
		rev, err := l.budgets.Update(ctx, b.ID, body, e.Revision())
		if isConflict(err) {
			l.stat.conflicts.Add(1)
			continue
		}
		if err != nil {
			return fleet.BudgetStanding{}, fmt.Errorf("ledger: update budget %s: %w", b.ID, err)
		}
		l.remember(b.ID, b, rev, false)
		l.log.Info("budget updated", "event", "budget.updated", "budget", b.ID, "sagewai.project_id", orGlobal(b.ProjectID),
			"limit_usd", b.LimitUSD.String(), "action", b.Action)
		return l.standing(ctx, b, now)
	}
}

// DeleteBudget removes a budget. A budget created later on the same scope
// and period is a new one: its ledger starts at zero.
func (l *Ledger) DeleteBudget(ctx context.Context, id string) error {
	if err := l.waitReady(ctx); err != nil {
		return err
	}
	e, err := l.budgets.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return fmt.Errorf("budget %q: %w", id, fleet.ErrBudgetNotFound)
	}
	if err != nil {
		return fmt.Errorf("ledger: delete budget %q: %w", id, err)
	}
	if err := l.budgets.Delete(ctx, id, jetstream.LastRevision(e.Revision())); err != nil {
		if isConflict(err) {
			return l.DeleteBudget(ctx, id)
		}
		return fmt.Errorf("ledger: delete budget %q: %w", id, err)
	}
	l.remember(id, fleet.BudgetLimit{}, e.Revision()+1, true)
	l.log.Info("budget deleted", "event", "budget.deleted", "budget", id)
	return nil
}

func (l *Ledger) checkBudget(b *fleet.BudgetLimit) error {
	if err := b.Normalize(); err != nil {
		return err
	}
	return b.CheckThrottleModel(l.cfg.Pricing)
}

// ---- ledger entries ----

// ledgerEntry is the ledger of one budget incarnation in one window.
type ledgerEntry struct {
	Budget string `json:"budget"`
	Gen    string `json:"gen"`
	Window string `json:"window"`
	// Spent is the real cost charged: every priced llm.call in the window.
	Spent fleet.Micros `json:"spent_usd"`
	Calls int64        `json:"calls"`
	// Epoch and Seq are the FLEET lineage and the last sequence charged:
	// an event at or below Seq has been charged here already.
	Epoch string `json:"epoch,omitempty"`
	Seq   uint64 `json:"seq"`
	// Holds are reservations of work in flight, by reservation id.
	Holds map[string]*hold `json:"holds,omitempty"`
}

// hold is what one reservation holds on one entry.
type hold struct {
	Ref     string       `json:"ref,omitempty"` // project/mission or project/run
	Amount  fleet.Micros `json:"amount_usd"`    // still held
	Charged fleet.Micros `json:"charged_usd"`   // real cost drawn from it so far
	Expires time.Time    `json:"expires"`
	Settled bool         `json:"settled,omitempty"`
}

func (e *ledgerEntry) clone() *ledgerEntry {
	c := *e
	if e.Holds != nil {
		c.Holds = make(map[string]*hold, len(e.Holds))
		for id, h := range e.Holds {
			hc := *h
			c.Holds[id] = &hc
		}
	}
	return &c
}

// reserved is the sum of the holds that have not expired at now.
func (e *ledgerEntry) reserved(now time.Time) fleet.Micros {
	var sum fleet.Micros
	for _, h := range e.Holds {
		if now.Before(h.Expires) {
			sum += h.Amount
		}
	}
	return sum
}

// prune drops holds that expired before now; it reports how many.
func (e *ledgerEntry) prune(now time.Time) int {
	n := 0
	for id, h := range e.Holds {
		if !now.Before(h.Expires) || h.Amount <= 0 && h.Settled {
			delete(e.Holds, id)
			n++
		}
	}
	return n
}

// standing is the entry's standing at now. epoch is FLEET's lineage: the
// entry's sequence mark is reported as ChargedThrough only in its own
// (an entry nothing was charged to yet is charged through 0 in any).
func (e *ledgerEntry) standing(b fleet.BudgetLimit, w fleet.BudgetWindow, now time.Time, epoch string) fleet.BudgetStanding {
	st := fleet.BudgetStanding{Budget: b, Window: w, Spent: e.Spent, Reserved: e.reserved(now)}
	switch {
	case e.Seq == 0 && e.Spent == 0:
		st.ChargedThrough = new(uint64)
	case epoch != "" && e.Epoch == epoch:
		seq := e.Seq
		st.ChargedThrough = &seq
	}
	return st
}

// fleetEpoch is FLEET's lineage as the follower found it, "" before.
func (l *Ledger) fleetEpoch() string {
	if p := l.epoch.Load(); p != nil {
		return *p
	}
	return ""
}

type entrySnap struct {
	entry *ledgerEntry
	rev   uint64 // 0: the key does not exist yet
}

// entryKey is the ledger key of budget b in window w:
// "<budget id>.<gen>.<window>". The generation makes a budget created
// again start at zero; the window makes every period start at zero.
func entryKey(b fleet.BudgetLimit, w fleet.BudgetWindow) string {
	return b.ID + "." + fleet.KeyToken(b.Gen) + "." + w.Key
}

func newEntry(b fleet.BudgetLimit, w fleet.BudgetWindow) *ledgerEntry {
	return &ledgerEntry{Budget: b.ID, Gen: b.Gen, Window: w.Key}
}

// getEntry reads the entry at key; a missing one is empty with revision 0.
func (l *Ledger) getEntry(ctx context.Context, key string) (*entrySnap, error) {
	e, err := l.entries.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &entrySnap{entry: &ledgerEntry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: get %s: %w", key, err)
	}
	var le ledgerEntry
	if err := json.Unmarshal(e.Value(), &le); err != nil {
		return nil, fmt.Errorf("ledger: entry %s: %w", key, err)
	}
	return &entrySnap{entry: &le, rev: e.Revision()}, nil
}

// errNoWrite tells casEntry that fn decided to change nothing.
var errNoWrite = errors.New("no write")

// keyLocks serializes this process's writers of one ledger key, so that
// they queue instead of failing each other's compare-and-swap; writers in
// other processes are still kept apart by the compare-and-swap alone.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sem  chan struct{} // holds one token while a writer has the key
	refs int           // writers holding or waiting; guarded by keyLocks.mu
	last *entrySnap    // the entry as last read or written here; guarded by sem
}

func (k *keyLocks) lock(ctx context.Context, key string) (*keyLock, error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyLock)
	}
	kl := k.m[key]
	if kl == nil {
		kl = &keyLock{sem: make(chan struct{}, 1)}
		k.m[key] = kl
	}
	kl.refs++
	k.mu.Unlock()
	select {
	case kl.sem <- struct{}{}:
		return kl, nil
	case <-ctx.Done():
		k.release(key, kl, false)
		return nil, ctx.Err()
	}
}

func (k *keyLocks) release(key string, kl *keyLock, held bool) {
	if held {
		<-kl.sem
	}
	k.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
}

// casEntry applies fn to the entry at key and writes the result with
// compare-and-swap on the revision read, reading again and retrying on a
// conflict: never check-then-act. cur, if not nil, is a recent read to try
// first (this process's own last write of the key is used when newer). fn
// returns errNoWrite to leave the entry as it is, or another error to give
// up. It returns the entry as written (or as last read).
func (l *Ledger) casEntry(ctx context.Context, key string, cur *entrySnap, init func() *ledgerEntry, fn func(e *ledgerEntry) error) (*entrySnap, error) {
	kl, err := l.locks.lock(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("ledger: write %s: %w", key, err)
	}
	defer l.locks.release(key, kl, true)
	if kl.last != nil && (cur == nil || kl.last.rev > cur.rev) {
		cur = kl.last
	}
	for attempt := 0; ; attempt++ {
		if cur == nil {
			var err error
			if cur, err = l.getEntry(ctx, key); err != nil {
				return nil, err
			}
		}
		var e *ledgerEntry
		if cur.rev == 0 {
			e = init()
		} else {
			e = cur.entry.clone()
		}
		if err := fn(e); err != nil {
			kl.last = cur
			if errors.Is(err, errNoWrite) {
				return &entrySnap{entry: e, rev: cur.rev}, nil
			}
			return &entrySnap{entry: e, rev: cur.rev}, err
		}
		body, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("ledger: encode %s: %w", key, err)
		}
		var rev uint64
		if cur.rev == 0 {
			rev, err = l.entries.Create(ctx, key, body)
		} else {
			rev, err = l.entries.Update(ctx, key, body, cur.rev)
		}
		if err == nil {
			kl.last = &entrySnap{entry: e, rev: rev}
			return kl.last, nil
		}
		kl.last = nil
		if !isConflict(err) {
			return nil, fmt.Errorf("ledger: write %s: %w", key, err)
		}
		l.stat.conflicts.Add(1)
		cur = nil
		if err := backoff(ctx, attempt); err != nil {
			return nil, fmt.Errorf("ledger: write %s: %w", key, err)
		}
	}
}

// isConflict reports whether err is a lost compare-and-swap: JetStream's
// "wrong last sequence" (10071) on Update, or an existing key on Create.
func isConflict(err error) bool {
	return err != nil && (errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists))
}

// backoff waits a little after a lost compare-and-swap, more after each,
// with jitter, so that a crowd on one key does not retry in lockstep.
func backoff(ctx context.Context, attempt int) error {
	if attempt < 2 {
		return ctx.Err()
	}
	limit := 50 * time.Microsecond << min(attempt-2, 7) // up to 6.4 ms
	var b [8]byte
	_, _ = rand.Read(b[:])
	d := time.Duration(binary.LittleEndian.Uint64(b[:]) % uint64(limit))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ---- events ----

// notify queues a budget event about standing st of type typ, unless one
// of the same budget and type went out within EventEvery.
func (l *Ledger) notify(typ string, st fleet.BudgetStanding, project string, req *fleet.BudgetRequest, decidedModel string) {
	if l.cfg.Auditor == nil {
		return
	}
	b := st.Budget
	if b.ProjectID != "" {
		project = b.ProjectID
	}
	if !fleet.ValidProjectID(project) {
		return
	}
	now := l.cfg.Now().UTC()
	if l.cfg.EventEvery > 0 {
		k := project + "|" + b.ID + "|" + typ
		l.eventsMu.Lock()
		last, seen := l.lastEvent[k]
		if seen && now.Sub(last) < l.cfg.EventEvery {
			l.eventsMu.Unlock()
			l.stat.eventsDropped.Add(1)
			return
		}
		l.lastEvent[k] = now
		if len(l.lastEvent) > 4096 {
			for k, t := range l.lastEvent {
				if now.Sub(t) >= l.cfg.EventEvery {
					delete(l.lastEvent, k)
				}
			}
		}
		l.eventsMu.Unlock()
	}
	data := budgetEventData{
		BudgetNotice: fleet.BudgetNotice{Scope: b.Scope, ScopeID: b.ScopeID, Period: b.Period, LimitUSD: b.LimitUSD,
			SpentUSD: st.Spent, Action: b.Action, Model: b.ThrottleModel, ResetsAt: st.Window.End, ThroughSeq: st.ChargedThrough},
		BudgetID: b.ID, ReservedUSD: st.Reserved, Window: st.Window.Key,
		WarnPct: b.WarnPct,
	}
	ev := fleet.Event{ID: fleet.NewID(now), Type: typ, Time: now, ProjectID: project}
	if req != nil {
		data.EstimateUSD, data.RequestedModel, data.Ref = req.Estimate, req.Model, req.Ref
		if typ == fleet.TypeBudgetThrottled {
			data.Model = decidedModel
		}
		ev.TeamID, ev.UserID = req.TeamID, req.UserID
	}
	ev.Data, _ = json.Marshal(data)
	select {
	case l.audits <- ev:
		l.stat.eventsQueued.Add(1)
	default:
		l.stat.eventsDropped.Add(1)
	}
}

// budgetEventData is the data of budget.* events: what the fold reads
// (fleet.BudgetNotice, with resets_at) and more for the audit trail.
//
// A global budget's events are published under the project whose work
// reached it, with the cap and the spend of every project: the fold shows
// them in the whole fleet's view only, and GET /api/v1/audit gives a
// project's token their data without the figures (DESIGN §11.2).
type budgetEventData struct {
	fleet.BudgetNotice
	BudgetID       string       `json:"budget_id"`
	ReservedUSD    fleet.Micros `json:"reserved_usd"`
	WarnPct        float64      `json:"warn_pct"`
	Window         string       `json:"window"`
	EstimateUSD    fleet.Micros `json:"estimate_usd,omitzero"`
	RequestedModel string       `json:"requested_model,omitempty"`
	Ref            string       `json:"ref,omitempty"`
}

// publishAudits publishes queued budget events until ctx ends, then what
// is still queued, under a fresh timeout.
func (l *Ledger) publishAudits(ctx context.Context) error {
	publish := func(ctx context.Context, ev fleet.Event) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := l.cfg.Auditor.Audit(pctx, ev); err != nil {
			l.stat.eventErrors.Add(1)
			l.log.Error("budget event not published", "event", ev.Type, "sagewai.project_id", ev.ProjectID, "err", err.Error())
			return
		}
		l.stat.events.Add(1)
		l.log.Info(ev.Type, "event", ev.Type, "sagewai.project_id", ev.ProjectID, "event_id", ev.ID, "data", string(ev.Data))
	}
	for {
		select {
		case ev := <-l.audits:
			publish(ctx, ev)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for {
				select {
				case ev := <-l.audits:
					publish(dctx, ev)
				default:
					return nil
				}
			}
		}
	}
}

// ---- ids ----

// newGen returns a short random budget generation: the last ten characters
// of a ULID made at now, which are all random bits.
func newGen(now time.Time) string { return strings.ToLower(fleet.NewID(now)[16:]) }

func orGlobal(project string) string {
	if project == "" {
		return "global"
	}
	return project
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
