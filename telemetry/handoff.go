package telemetry

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Marks say how far the export of what is derived from the fleet stream
// has gone: every span (Traces) or business log record (Logs) made from an
// event at or below that seq has been exported, or dropped and counted.
type Marks struct {
	Traces uint64 `json:"traces"`
	Logs   uint64 `json:"logs"`
}

// the signals of Marks, as indexes.
const (
	markTraces = iota
	markLogs
	markSignals
)

func (m Marks) of(signal int) uint64 {
	if signal == markTraces {
		return m.Traces
	}
	return m.Logs
}

func (m *Marks) raise(signal int, seq uint64) bool {
	p := &m.Logs
	if signal == markTraces {
		p = &m.Traces
	}
	if seq <= *p {
		return false
	}
	*p = seq
	return true
}

// Handoff decides whether this replica exports what is derived from the
// fleet stream (DESIGN §11.3): the fold's domain metrics, the spans and
// the business log records of fleet events. Every replica folds the same
// stream and makes the same items; only the one holding the exporter
// lease (see package exportlease) sends them.
//
// A replica that leads sends its derived items as it makes them; before
// each export the lease records, through the commit function, how far it
// goes (Marks), and an export whose marks could not be recorded is not
// made: its items are held. A replica that follows holds its items (at
// most maxHeld a signal, the oldest dropped and counted beyond that) and
// drops those the leader's marks cover, as Follow reports them. When it
// comes to lead, it sends what it holds above the last leader's marks:
// the new exporter continues from where the last one stopped, and nothing
// is sent twice. One export can be lost: the one a leader killed between
// recording its marks and the receiver's answer was making.
//
// Its methods are safe for concurrent use.
type Handoff struct {
	mu      sync.Mutex
	leading bool
	marks   Marks // leading: what this replica exported; following: what the leader reported
	held    [markSignals][]heldItem
	maxHeld int
	send    [markSignals]func(item any, seq uint64)
	drops   [markSignals]*atomic.Int64

	// commit records marks before an export (SetCommit); nil: none.
	commit func(Marks) error

	// seq is the fleet event being observed (set by the hub goroutine
	// around ObserveFleet; the items it makes are ended on that goroutine).
	seq atomic.Uint64
	// lead says whether derived metrics are served (read per scrape).
	lead atomic.Bool
}

type heldItem struct {
	seq  uint64
	item any
}

// defaultMaxHeld bounds what a following replica holds per signal: at a
// thousand events a second, a minute of items, far more than the lease's
// time to hand over.
const defaultMaxHeld = 1 << 16

func newHandoff(maxHeld int) *Handoff {
	if maxHeld <= 0 {
		maxHeld = defaultMaxHeld
	}
	return &Handoff{maxHeld: maxHeld}
}

// wire connects a signal to its export queue; until then its items are
// discarded (the signal is off).
func (h *Handoff) wire(signal int, send func(item any, seq uint64), drops *atomic.Int64) {
	h.mu.Lock()
	h.send[signal], h.drops[signal] = send, drops
	h.mu.Unlock()
}

// offer takes a derived item made from the event being observed: sent
// when leading, held when following.
func (h *Handoff) offer(signal int, item any) {
	seq := h.seq.Load()
	h.mu.Lock()
	defer h.mu.Unlock()
	send := h.send[signal]
	if send == nil {
		return
	}
	if h.leading {
		send(item, seq)
		return
	}
	if seq <= h.marks.of(signal) {
		return // the leader has exported it already
	}
	if len(h.held[signal]) >= h.maxHeld {
		h.held[signal][0] = heldItem{}
		h.held[signal] = h.held[signal][1:]
		h.drops[signal].Add(1)
	}
	h.held[signal] = append(h.held[signal], heldItem{seq, item})
}

// SetCommit makes every export of derived items wait for commit to
// record, first, how far it goes (the exporter lease writes the marks);
// when commit fails the items are held, not exported. Without it (no
// lease) a leading replica exports as it goes.
func (h *Handoff) SetCommit(commit func(Marks) error) {
	h.mu.Lock()
	h.commit = commit
	h.mu.Unlock()
}

// permit is the export queue's question before it exports a signal's
// derived items up to seq top: yes when this replica leads and the marks
// covering them are recorded.
func (h *Handoff) permit(signal int, top uint64) bool {
	h.mu.Lock()
	leading, commit := h.leading, h.commit
	h.mu.Unlock()
	if !leading {
		return false
	}
	if commit != nil {
		var m Marks
		m.raise(signal, top)
		if commit(m) != nil {
			return false
		}
	}
	h.mu.Lock()
	h.marks.raise(signal, top)
	h.mu.Unlock()
	return true
}

// hold takes back derived items the export queue was not permitted to
// export, older than any held: sent again at once if this replica leads
// again by now, else held (less what the leader's marks cover).
func (h *Handoff) hold(signal int, items []heldItem) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.leading {
		for _, it := range items {
			h.send[signal](it.item, it.seq)
		}
		return
	}
	keep := items[:0]
	for _, it := range items {
		if it.seq > h.marks.of(signal) {
			keep = append(keep, it)
		}
	}
	held := append(keep, h.held[signal]...)
	if over := len(held) - h.maxHeld; over > 0 {
		clear(held[:over])
		held = held[over:]
		h.drops[signal].Add(int64(over))
	}
	h.held[signal] = held
}

// Lead makes this replica the exporter: the last exporter's marks were
// last; what this replica holds above them is sent now, in order.
func (h *Handoff) Lead(last Marks) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.leading {
		return
	}
	h.leading = true
	h.marks = last
	for s := range markSignals {
		for _, it := range h.held[s] {
			if it.seq > last.of(s) && h.send[s] != nil {
				h.send[s](it.item, it.seq)
			}
		}
		clear(h.held[s])
		h.held[s] = h.held[s][:0]
	}
	h.lead.Store(true)
}

// Follow makes this replica hold its derived items, another replica
// having exported through leader's marks. It is called again each time
// the leader reports new marks. A leader that cannot write its marks
// pauses with Follow(Marks()) and resumes with Lead(Marks()).
func (h *Handoff) Follow(leader Marks) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leading = false
	h.lead.Store(false)
	h.marks = leader
	for s := range markSignals {
		held, n := h.held[s], 0
		for n < len(held) && held[n].seq <= leader.of(s) {
			n++
		}
		clear(held[:n])
		h.held[s] = held[n:]
	}
}

// Leading reports whether this replica exports the derived items.
func (h *Handoff) Leading() bool { return h.lead.Load() }

// Marks returns how far this replica's export has gone, or been
// permitted to go (leading), or the leader's last report (following).
func (h *Handoff) Marks() Marks {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.marks
}

// Held returns how many items a following replica holds, per signal.
func (h *Handoff) Held() (traces, logs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held[markTraces]), len(h.held[markLogs])
}

// leadGatherer serves the derived metrics' registry while handoff leads
// (always when there is no handoff), and nothing otherwise: summed over
// every scraped replica, a domain counter is then the fleet's figure.
type leadGatherer struct {
	reg     *prometheus.Registry
	handoff *Handoff
}

func (g leadGatherer) Gather() ([]*dto.MetricFamily, error) {
	if g.handoff != nil && !g.handoff.Leading() {
		return nil, nil
	}
	return g.reg.Gather()
}
