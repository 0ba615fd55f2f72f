package exportlease_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sagewai/observatory/exportlease"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/telemetry"
)

// hangBound bounds every wait: a lease that never changes hands fails
// the test, it never decides a pass.
const hangBound = 30 * time.Second

// gate records what the lease told it; the test moves its marks as a
// replica's export would, committing them through the lease first.
type gate struct {
	mu      sync.Mutex
	leading bool
	leads   int
	from    telemetry.Marks // the marks Lead was given
	heard   telemetry.Marks // the last marks Follow was given
	commit  func(telemetry.Marks) error
}

func newGate() *gate { return &gate{} }

func (g *gate) Lead(last telemetry.Marks) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leading, g.from = true, last
	g.leads++
}

func (g *gate) Follow(m telemetry.Marks) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leading, g.heard = false, m
}

func (g *gate) SetCommit(commit func(telemetry.Marks) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.commit = commit
}

// export commits marks up to seq, as an export of items up to seq does
// before it sends them.
func (g *gate) export(t *testing.T, seq uint64) {
	t.Helper()
	g.mu.Lock()
	commit := g.commit
	g.mu.Unlock()
	if err := commit(telemetry.Marks{Traces: seq, Logs: seq}); err != nil {
		t.Fatalf("the holder could not commit marks %d: %v", seq, err)
	}
}

func (g *gate) leadCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leads
}

func (g *gate) state() (leading bool, from, heard telemetry.Marks) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leading, g.from, g.heard
}

type replica struct {
	name  string
	gate  *gate
	lease *exportlease.Lease
	// stop cancels the lease's Run and returns what it returned; it may
	// be called any number of times (the test, then its cleanup).
	stop func() error
}

// TestOneExporterAtATime runs three replicas' leases on a real NATS: one
// leads, the others follow and hear its marks as its export moves them;
// when the leader releases the lease (a clean shutdown) another leads at
// once from the released marks; when that one dies without a word (its
// lease stops renewing), a third leads once the key expired, from the
// last marks the dead one wrote. At no point do two lead.
func TestOneExporterAtATime(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	const ttl = time.Second
	var rs []*replica
	for i := range 3 {
		g := newGate()
		l, err := exportlease.Open(context.Background(), env.JS, g, exportlease.Config{ID: fmt.Sprintf("r%d", i), TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		r := &replica{name: l.ID(), gate: g, lease: l, stop: sync.OnceValue(func() error { cancel(); return <-done })}
		t.Cleanup(func() { r.stop() })
		rs = append(rs, r)
	}
	leaders := func(among []*replica) []*replica {
		var out []*replica
		for _, r := range among {
			if lead, _, _ := r.gate.state(); lead {
				out = append(out, r)
			}
		}
		return out
	}
	var leader *replica
	streamtest.Eventually(t, hangBound, func() bool {
		ls := leaders(rs)
		if len(ls) > 1 {
			t.Fatalf("%d replicas lead at once", len(ls))
		}
		if len(ls) == 1 {
			leader = ls[0]
		}
		return leader != nil
	}, "no replica took the lease")

	// The leader's export moves; the followers hear it.
	leader.gate.export(t, 42)
	for _, r := range rs {
		if r == leader {
			continue
		}
		streamtest.Eventually(t, hangBound, func() bool { _, _, heard := r.gate.state(); return heard.Traces == 42 },
			r.name+" never heard the leader's marks")
	}

	// A clean shutdown: the leader stops and releases with its last marks.
	leader.gate.export(t, 57)
	if err := leader.stop(); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	if err := leader.lease.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	rest := []*replica{}
	for _, r := range rs {
		if r != leader {
			rest = append(rest, r)
		}
	}
	var next *replica
	streamtest.Eventually(t, hangBound, func() bool {
		ls := leaders(rest)
		if len(ls) > 1 {
			t.Fatalf("%d replicas lead at once after the release", len(ls))
		}
		if len(ls) == 1 {
			next = ls[0]
		}
		return next != nil
	}, "nobody took the released lease")
	t.Logf("after a release the lease changed hands in %s (TTL %s)", time.Since(released).Round(time.Millisecond), ttl)
	if _, from, _ := next.gate.state(); from.Traces != 57 || from.Logs != 57 {
		t.Errorf("the next exporter starts from marks %+v; the last one released at 57", from)
	}

	// A crash: the new leader's export moves, then its lease stops
	// without releasing; the key expires and the last replica leads from
	// the marks the dead one wrote.
	next.gate.export(t, 99)
	var last *replica
	for _, r := range rest {
		if r != next {
			last = r
		}
	}
	streamtest.Eventually(t, hangBound, func() bool { _, _, heard := last.gate.state(); return heard.Traces == 99 },
		"the last replica never heard marks 99")
	if err := next.stop(); err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, hangBound, func() bool { lead, _, _ := last.gate.state(); return lead },
		"the lease of a dead holder was never taken over")
	if _, from, _ := last.gate.state(); from.Traces != 99 {
		t.Errorf("after the holder died the next exporter starts from marks %+v, want 99", from)
	}
	if last.gate.leadCount() != 1 || leader.gate.leadCount() != 1 {
		t.Errorf("leads per replica: first %d, last %d; each took the lease once", leader.gate.leadCount(), last.gate.leadCount())
	}
	// A replica that does not hold the lease cannot commit: its export
	// would be a second one.
	if err := leader.gate.commit(telemetry.Marks{Traces: 1000}); err == nil {
		t.Error("a replica that released the lease committed marks")
	}
}
