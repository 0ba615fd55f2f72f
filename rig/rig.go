package rig

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/stream"
)

// Config configures a Pipeline. Zero values mean the defaults.
type Config struct {
	// NATSURL is an existing NATS to run on (a running server's); empty
	// embeds one in a temporary directory that Stop removes, in operator
	// mode as serve runs its own (Pipeline.Authority).
	NATSURL string
	// NATSCreds is the credentials file of a user of NATSURL allowed what
	// the pipeline does (streams, buckets, consumers); empty connects
	// without credentials.
	NATSCreds string
	// Pricing prices the calls (default fleet.DefaultPricing).
	Pricing *fleet.Pricing
	// Logger receives the pipeline's logs (default: discard).
	Logger *slog.Logger
	// Now stamps published events and is the ledger's and the web
	// server's clock (default time.Now); see the package doc.
	Now func() time.Time
	// EventEvery is the ledger's budget.status interval (default -1:
	// none, as the examples want).
	EventEvery time.Duration
}

func (c *Config) defaults() {
	if c.Pricing == nil {
		c.Pricing = fleet.DefaultPricing()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.EventEvery == 0 {
		c.EventEvery = -1
	}
}

// readyWait bounds how long Start waits for the hub and the ledger to
// catch up with the streams.
const readyWait = 20 * time.Second

// Pipeline is the real thing, small: NATS, the streams, a hub folding
// FLEET, the budget ledger and cost rollups. Its fields are set by Start
// and read-only after.
type Pipeline struct {
	// NS is the embedded NATS server (nil on an existing NATS).
	NS *server.Server
	// Dir is the embedded server's temporary directory ("" on an existing NATS).
	Dir string
	// Authority is the embedded server's trust chain (nil on an existing
	// NATS): the pipeline connects as a user it mints, and the Server
	// mints enrolled workers' credentials with it.
	Authority *natsauth.Authority
	NC        *nats.Conn
	JS        jetstream.JetStream
	Pub       *stream.Publisher
	Hub       *stream.Hub
	Ledger    *budget.Ledger
	Costs     *stream.Costs
	Pricing   *fleet.Pricing

	cfg    Config
	cancel context.CancelFunc
	g      *errgroup.Group
}

// Start starts the pipeline and waits until the hub and the ledger have
// caught up with the streams; Stop ends it.
func Start(ctx context.Context, cfg Config) (*Pipeline, error) {
	cfg.defaults()
	p := &Pipeline{Pricing: cfg.Pricing, cfg: cfg}
	if cfg.NATSURL == "" {
		dir, err := os.MkdirTemp("", "observatory-example-")
		if err != nil {
			return nil, err
		}
		p.Dir = dir
		if p.Authority, err = natsauth.Embedded(filepath.Join(dir, "keys")); err != nil {
			p.Stop()
			return nil, err
		}
		if p.NS, err = stream.StartServer(stream.ServerConfig{StoreDir: dir, Listen: "127.0.0.1:0", SyncAlways: true,
			Authority: p.Authority}); err != nil {
			p.Stop()
			return nil, err
		}
	}
	var opts []nats.Option
	switch {
	case p.Authority != nil:
		creds, err := p.Authority.Creds(natsauth.User{Name: "observatory-example", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
		if err != nil {
			p.Stop()
			return nil, err
		}
		tok, seed, err := natsauth.Parse(creds)
		if err != nil {
			p.Stop()
			return nil, err
		}
		opts = append(opts, nats.UserJWTAndSeed(tok, seed))
	case cfg.NATSCreds != "":
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	var err error
	if p.NC, err = stream.Connect(cfg.NATSURL, p.NS, "observatory-example", opts...); err != nil {
		p.Stop()
		return nil, err
	}
	if p.JS, err = jetstream.New(p.NC); err != nil {
		p.Stop()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := stream.EnsureStreams(setup, p.JS, stream.StreamsConfig{}); err != nil {
		p.Stop()
		return nil, err
	}
	p.Pub = stream.NewPublisher(p.JS)
	p.Hub = stream.NewHub(p.JS, stream.HubConfig{Tick: 20 * time.Millisecond, Pricing: cfg.Pricing, Logger: cfg.Logger})
	if p.Ledger, err = budget.NewLedger(setup, p.JS, budget.Config{Pricing: cfg.Pricing, Auditor: p.Pub, Logger: cfg.Logger,
		EventEvery: cfg.EventEvery, Now: cfg.Now}); err != nil {
		p.Stop()
		return nil, err
	}
	p.Costs = stream.NewCosts(p.JS, cfg.Pricing)
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = rcancel
	p.g, rctx = errgroup.WithContext(rctx)
	p.g.Go(func() error { return p.Hub.Run(rctx) })
	p.g.Go(func() error { return p.Ledger.Run(rctx) })
	wait, cancelWait := context.WithTimeout(ctx, readyWait)
	defer cancelWait()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for p.Hub.Ready() != nil || p.Ledger.Ready() != nil {
		select {
		case <-wait.Done():
			p.Stop()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("the hub or the ledger did not get ready in %s", readyWait)
		case <-tick.C:
		}
	}
	return p, nil
}

// Stop ends the pipeline and removes its temporary directory.
func (p *Pipeline) Stop() {
	if p.cancel != nil {
		p.cancel()
		_ = p.g.Wait()
	}
	if p.NC != nil {
		Drain(p.NC)
	}
	if p.NS != nil {
		p.NS.Shutdown()
		p.NS.WaitForShutdown()
	}
	if p.Dir != "" {
		os.RemoveAll(p.Dir)
	}
}

// Now is the pipeline's clock.
func (p *Pipeline) Now() time.Time { return p.cfg.Now() }

// Logger is the pipeline's logger.
func (p *Pipeline) Logger() *slog.Logger { return p.cfg.Logger }

// Publish stamps ev with a new id and the pipeline's time and publishes
// it to FLEET; it returns the stream sequence.
func (p *Pipeline) Publish(ctx context.Context, ev fleet.Event) (uint64, error) {
	ev.ID = NewEventID()
	ev.Time = p.cfg.Now().UTC()
	return p.Pub.Publish(ctx, ev)
}

// Settle waits until the fold and the ledger have taken in FLEET up to seq.
func (p *Pipeline) Settle(ctx context.Context, seq uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for p.Hub.Stats().Seq < seq {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the fold did not reach seq %d: %w", seq, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return p.Ledger.WaitSeq(ctx, seq)
}

// Flush waits until the ledger has published the budget events it queued
// and the fold has taken in FLEET up to its end.
func (p *Pipeline) Flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		st := p.Ledger.Stats()
		if st.Events+st.EventErrors >= st.EventsQueued {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("budget events not published: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	s, err := p.JS.Stream(ctx, stream.FleetStream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	for p.Hub.Stats().Seq < info.State.LastSeq {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the fold did not reach seq %d: %w", info.State.LastSeq, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// NewEventID returns a unique event id.
func NewEventID() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return fmt.Sprintf("ev-%x", b)
}

// Drain drains nc and waits up to 5 s for it to close.
func Drain(nc *nats.Conn) {
	done := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := nc.Drain(); err != nil {
		return
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}
