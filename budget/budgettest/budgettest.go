package budgettest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
)

// keepAll is the per-key revision limit KeepHistory sets: more writes
// than any test makes. (Unlimited, -1, would do for JetStream, but the KV
// client then refuses to open the bucket.)
const keepAll = 1 << 30

// cursorKey is the ledger bucket's one key that is not a ledger entry: the
// follower's shared cursor.
const cursorKey = "cursor"

// KeepHistory lifts the ledger bucket's limit of one revision per key, so
// that every later write of every ledger entry stays in the bucket for
// History to read. Call it after the first NewLedger created the bucket
// and before the writes to check; a ledger opened later (a replica
// restarted) leaves a bucket that keeps more history as it is
// (stream.ConsistentKV). (The KV option History stops
// at 64 revisions per key, too few for hundreds of reservations on one
// budget; the limit is lifted on the bucket's stream instead.)
func KeepHistory(ctx context.Context, js jetstream.JetStream) error {
	st, err := js.Stream(ctx, "KV_"+budget.LedgerBucket)
	if err != nil {
		return fmt.Errorf("keep ledger history: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("keep ledger history: %w", err)
	}
	cfg := info.Config
	cfg.MaxMsgsPerSubject = keepAll
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("keep ledger history: %w", err)
	}
	return nil
}

// Entry is one revision of one ledger entry, as the ledger wrote it.
type Entry struct {
	Key      string
	Revision uint64
	Stored   time.Time // when JetStream stored the revision
	Budget   string    // the budget's id
	Gen      string
	Window   string
	Spent    fleet.Micros
	Calls    int64
	Holds    map[string]Hold // by reservation id
}

// Hold is what one reservation holds on one entry.
type Hold struct {
	Ref     string
	Amount  fleet.Micros // still held
	Charged fleet.Micros // real cost drawn from it
	Expires time.Time
	Settled bool
}

// Reserved is what e holds at time at: the amounts of the holds that have
// not expired at at. The ledger counts a hold while its clock reads
// strictly before the hold's expiry.
func (e Entry) Reserved(at time.Time) fleet.Micros {
	var sum fleet.Micros
	for _, h := range e.Holds {
		if at.Before(h.Expires) {
			sum += h.Amount
		}
	}
	return sum
}

// storedEntry is the JSON of a ledger entry (budget's ledgerEntry).
type storedEntry struct {
	Budget string                `json:"budget"`
	Gen    string                `json:"gen"`
	Window string                `json:"window"`
	Spent  fleet.Micros          `json:"spent_usd"`
	Calls  int64                 `json:"calls"`
	Epoch  string                `json:"epoch"`
	Seq    uint64                `json:"seq"`
	Holds  map[string]storedHold `json:"holds"`
}

type storedHold struct {
	Ref     string       `json:"ref"`
	Amount  fleet.Micros `json:"amount_usd"`
	Charged fleet.Micros `json:"charged_usd"`
	Expires time.Time    `json:"expires"`
	Settled bool         `json:"settled"`
}

// History returns every revision of every ledger entry, in the order they
// were written. It fails if the bucket lost a revision (KeepHistory was not
// called, or a NewLedger after it set the limit back), holds a deletion, or
// holds a value that is not a ledger entry as this package knows it.
func History(ctx context.Context, js jetstream.JetStream) ([]Entry, error) {
	kv, err := js.KeyValue(ctx, budget.LedgerBucket)
	if err != nil {
		return nil, fmt.Errorf("ledger history: %w", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IncludeHistory())
	if err != nil {
		return nil, fmt.Errorf("ledger history: %w", err)
	}
	defer w.Stop()
	var (
		out  []Entry
		revs []uint64
	)
	for e := range w.Updates() {
		if e == nil {
			break // every revision stored when the watch began is read
		}
		revs = append(revs, e.Revision())
		if e.Operation() != jetstream.KeyValuePut {
			return nil, fmt.Errorf("ledger history: %s at revision %d: %s; the ledger never deletes", e.Key(), e.Revision(), e.Operation())
		}
		if e.Key() == cursorKey {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(e.Value()))
		dec.DisallowUnknownFields()
		var s storedEntry
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("ledger history: %s at revision %d: %w", e.Key(), e.Revision(), err)
		}
		if s.Budget == "" || s.Window == "" {
			return nil, fmt.Errorf("ledger history: %s at revision %d names no budget or window: %s", e.Key(), e.Revision(), e.Value())
		}
		ent := Entry{Key: e.Key(), Revision: e.Revision(), Stored: e.Created(), Budget: s.Budget, Gen: s.Gen, Window: s.Window,
			Spent: s.Spent, Calls: s.Calls, Holds: make(map[string]Hold, len(s.Holds))}
		for id, h := range s.Holds {
			ent.Holds[id] = Hold(h)
		}
		out = append(out, ent)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ledger history: %w", err)
	}
	// A revision is a stream sequence: all of them, from the first on,
	// means nothing was dropped.
	slices.Sort(revs)
	for i, r := range revs {
		if r != uint64(i+1) {
			return nil, fmt.Errorf("ledger history: revision %d missing (found %d next): the bucket did not keep every revision", i+1, r)
		}
	}
	return out, nil
}

// Check is what the history of the ledger must satisfy.
type Check struct {
	// Caps are the caps of the stop budgets to check, by budget id;
	// entries of other budgets are left alone.
	Caps map[string]fleet.Micros
	// Now returns the ledger's clock at the write of a revision, at which
	// its holds are counted; nil takes the time JetStream stored it,
	// which is right for ledgers on the wall clock.
	Now func(Entry) time.Time
	// Overshoot is how much more than the hold it draws from one charged
	// call may cost: zero when no work costs more than its estimate.
	Overshoot fleet.Micros
}

// Result is what a check saw.
type Result struct {
	Revisions int                     // revisions checked, of the budgets in Caps
	Worst     map[string]fleet.Micros // the highest spent plus reserved of each budget
	// Placed lists, per budget, the reservations whose hold was placed
	// on one of its entries, in the order of the writes.
	Placed map[string][]string
	// Expired counts holds found in a revision past their expiry (at the
	// ledger's clock), which therefore did not count.
	Expired int
}

// Verify checks every revision of history, key by key in write order,
// and returns what it saw and one line per violation. With reserved at a
// revision meaning the holds in it that have not expired at the ledger's
// clock when it was written (Entry.Reserved at c.Now):
//
//   - a revision that places a hold (one its key's previous revision does
//     not have) has spent + reserved ≤ cap: the stop check and the hold
//     are one atomic write;
//   - a revision that places none has reserved ≤ the previous revision's:
//     nothing else adds to what is held;
//   - every revision has spent + reserved ≤ cap + calls × Overshoot: a
//     charge passes the cap only by what real work cost beyond its hold.
func (c Check) Verify(history []Entry) (Result, []string) {
	res := Result{Worst: map[string]fleet.Micros{}, Placed: map[string][]string{}}
	var bad []string
	prev := map[string]Entry{}
	for _, e := range history {
		limit, ok := c.Caps[e.Budget]
		if !ok {
			continue
		}
		res.Revisions++
		at := e.Stored
		if c.Now != nil {
			at = c.Now(e)
		}
		p, seen := prev[e.Key]
		var prevReserved fleet.Micros
		if seen {
			pat := p.Stored
			if c.Now != nil {
				pat = c.Now(p)
			}
			prevReserved = p.Reserved(pat)
		}
		prev[e.Key] = e
		reserved := e.Reserved(at)
		committed := e.Spent + reserved
		res.Worst[e.Budget] = max(res.Worst[e.Budget], committed)
		var placed []string
		for _, id := range sortedIDs(e.Holds) {
			if !at.Before(e.Holds[id].Expires) {
				res.Expired++
			}
			if _, had := p.Holds[id]; !had {
				placed = append(placed, id)
			}
		}
		res.Placed[e.Budget] = append(res.Placed[e.Budget], placed...)
		where := fmt.Sprintf("%s revision %d", e.Key, e.Revision)
		switch {
		case len(placed) > 0 && committed > limit:
			bad = append(bad, fmt.Sprintf("%s places hold %v: spent $%s + reserved $%s = $%s, past the $%s cap",
				where, placed, e.Spent, reserved, committed, limit))
		case len(placed) == 0 && reserved > prevReserved:
			bad = append(bad, fmt.Sprintf("%s places no hold, yet reserved grew from $%s to $%s", where, prevReserved, reserved))
		}
		if allowed := limit + fleet.Micros(e.Calls)*c.Overshoot; committed > allowed {
			bad = append(bad, fmt.Sprintf("%s: spent $%s + reserved $%s = $%s, past the $%s cap plus %d calls' overshoot ($%s)",
				where, e.Spent, reserved, committed, limit, e.Calls, allowed))
		}
	}
	return res, bad
}

func sortedIDs(m map[string]Hold) []string {
	out := make([]string, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
