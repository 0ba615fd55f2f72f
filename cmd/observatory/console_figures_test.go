package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/console"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// foldedHub runs a hub on a real NATS with n generated events of three
// tenants (budgets, spend, missions, workers) folded.
func foldedHub(tb testing.TB, n int) (*stream.Hub, []fleettest.Msg) {
	tb.Helper()
	env := streamtest.Start(tb, stream.HubConfig{Tick: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	msgs := fleettest.Generate(rand.New(rand.NewPCG(17, 18)), n, fleettest.Options{Start: time.Now().Add(-2 * time.Hour)})
	for _, m := range msgs {
		env.Publisher.PublishRaw(context.Background(), m.Subject, m.Body, "")
	}
	st, err := env.JS.Stream(context.Background(), stream.FleetStream)
	if err != nil {
		tb.Fatal(err)
	}
	var stored []fleettest.Msg
	for seq := uint64(1); ; seq++ {
		raw, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			break // past the last message
		}
		stored = append(stored, fleettest.Msg{Subject: raw.Subject, Body: raw.Data, At: raw.Time})
	}
	streamtest.WaitSeq(tb, env.Hub, uint64(len(stored)))
	return env.Hub, stored
}

// TestStatusFigures checks the block's figures against a fresh fold of
// the same stream: each tenant's spend today and own budget, missions in
// flight and workers online are what the HUD shows, not something else.
func TestStatusFigures(t *testing.T) {
	hub, stored := foldedHub(t, 3000)
	f := statusFigures(hub)(context.Background())
	if f.Problem != "" || !f.Live {
		t.Fatalf("figures: live %v, problem %q", f.Live, f.Problem)
	}
	ref := fleettest.Fold(stored[:f.Seq]).View(fleet.ScopeAll)
	if f.MissionsInFlight != ref.Posture.MissionsInFlight || f.WorkersOnline != ref.Posture.WorkersOnline || f.Workers != ref.Posture.Workers {
		t.Errorf("fleet line: %d in flight, %d of %d online; the fold has %d, %d of %d", f.MissionsInFlight, f.WorkersOnline, f.Workers,
			ref.Posture.MissionsInFlight, ref.Posture.WorkersOnline, ref.Posture.Workers)
	}
	var want []console.Tenant
	for _, id := range []string{"acme", "globex", "initech"} {
		p := ref.Projects[id]
		tn := console.Tenant{Project: id, SpendToday: p.SpendToday}
		if b := p.Budget; b != nil {
			tn.Budget = &console.Budget{Spent: b.SpentUSD, Limit: b.LimitUSD, Pct: b.Pct, Period: b.Period, Action: b.Action, Status: budgetStatus(ref.Budgets, id, b)}
		}
		want = append(want, tn)
	}
	if d := cmp.Diff(want, f.Tenants); d != "" {
		t.Errorf("tenant rows (-fold +block):\n%s", d)
	}
	spent, budgets := false, false
	for _, tn := range f.Tenants {
		spent = spent || tn.SpendToday > 0
		budgets = budgets || tn.Budget != nil
	}
	if !spent || !budgets {
		t.Errorf("the stream gave no spend today (%v) or no budget (%v): the comparison shows nothing", spent, budgets)
	}
}

// BenchmarkStatusFigures measures what one frame of the block costs: the
// hub's view of the whole fleet, taken once a second on a terminal.
func BenchmarkStatusFigures(b *testing.B) {
	hub, _ := foldedHub(b, 20000)
	read := statusFigures(hub)
	ctx := context.Background()
	for b.Loop() {
		if f := read(ctx); f.Problem != "" {
			b.Fatal(f.Problem)
		}
	}
}
