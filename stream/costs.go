package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
)

// costsLookback is how far before a rollup's window the scan starts, to
// learn which team and user the missions running at its start belong to.
const costsLookback = time.Hour

// costsLate is how long after a rollup's window an event may be stored and
// still count (its own time is inside the window).
const costsLate = 10 * time.Minute

// Costs answers cost rollups by reading FLEET: the same events, the same
// validation, dedupe and pricing as the fold (fleet.Coster), so that a
// rollup over everything equals the fold's spend to the micro-dollar. It
// keeps no state of its own; each rollup reads the window it asks for,
// which FLEET's retention bounds. Costs is safe for concurrent use.
type Costs struct {
	js      jetstream.JetStream
	pricing *fleet.Pricing
}

// NewCosts returns a Costs reading js and pricing calls by p (nil means
// fleet.DefaultPricing(); it must be the fold's table).
func NewCosts(js jetstream.JetStream, p *fleet.Pricing) *Costs {
	if p == nil {
		p = fleet.DefaultPricing()
	}
	return &Costs{js: js, pricing: p}
}

// Pricing returns the table rollups are priced with.
func (c *Costs) Pricing() *fleet.Pricing { return c.pricing }

// Rollup adds up the llm.call events of project (or of every project for
// fleet.ScopeAll) whose time is in [from, to). A zero from reads from the
// start of the stream; a zero to up to now.
func (c *Costs) Rollup(ctx context.Context, project string, from, to time.Time) (*fleet.Rollup, error) {
	if project != fleet.ScopeAll && !fleet.ValidProjectID(project) {
		return nil, fmt.Errorf("costs: project %q is not a project id", project)
	}
	r := fleet.NewRollup(from, to)
	p := project
	if p == fleet.ScopeAll {
		p = "*"
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"fleet." + p + ".llm.call", "fleet." + p + ".mission.>", "fleet." + p + ".agent.run.started"},
	}
	if !from.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		start := from.Add(-costsLookback)
		cfg.OptStartTime = &start
	}
	cons, err := c.js.OrderedConsumer(ctx, FleetStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("costs: consumer: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("costs: consumer info: %w", err)
	}
	pending := info.NumPending
	coster := fleet.NewCoster(c.pricing)
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 1024)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("costs: fetch: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			pending = meta.NumPending
			if !to.IsZero() && meta.Timestamp.After(to.Add(costsLate)) {
				pending = 0
				break
			}
			ev, err := fleet.DecodeEvent(m.Subject(), m.Data())
			if err != nil {
				continue
			}
			if ch, ok := coster.Apply(meta.Timestamp, ev); ok {
				r.Add(ch)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("costs: fetch: %w", err)
		}
		if n == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("costs: %w", err)
		}
	}
	return r, nil
}
