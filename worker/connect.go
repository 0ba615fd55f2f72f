package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/stream"
)

// Errors of an enrolled worker's credentials.
var (
	// ErrNoCredentials is returned by Run of an Enrolled worker whose
	// grant carries no NATS credentials (a server on an external NATS
	// without an account signing key issues none).
	ErrNoCredentials = errors.New("the enrollment gave no NATS credentials")
	// ErrCredentialsExpired is returned by Run of an Enrolled worker when
	// its NATS credentials expire (it stops cleanly just before).
	ErrCredentialsExpired = errors.New("the worker's NATS credentials expire")
)

// EnsureConsumer creates, or updates to the runtime's settings, the
// durable pull consumer of project's missions in pool (PoolConsumerName,
// filtering PoolSubject) with lease as its AckWait. The server makes the
// consumers of a grant when a worker enrolls (enrolled workers may not
// manage consumers); a trusted worker (New) makes its own. The consumer
// is shared by the workers of the pair: the last call sets the lease.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, project, pool string, lease time.Duration) (jetstream.Consumer, error) {
	pool = cmp.Or(pool, stream.DefaultPool)
	c, err := js.CreateOrUpdateConsumer(ctx, stream.MissionsStream, jetstream.ConsumerConfig{
		Durable:       PoolConsumerName(project, pool),
		Description:   "workers claiming the missions of project " + project + ", pool " + pool,
		FilterSubject: stream.PoolSubject(project, pool),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cmp.Or(lease, DefaultLease),
		// Unlimited: JetStream counts passes as deliveries, and a bound on
		// deliveries would drop a mission whose matching worker is busy.
		// The runtime bounds lost leases (MaxAttempts) and passes
		// (MatchWait) itself.
		MaxDeliver: -1,
		MaxWaiting: 4096,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer for %s pool %s: %w", project, pool, err)
	}
	return c, nil
}

// Consumers makes mission consumers on a trusted connection for the
// server, which makes those of a grant when a worker enrolls
// (web.WorkersConfig.Consumers).
type Consumers struct{ js jetstream.JetStream }

// NewConsumers makes consumers through js.
func NewConsumers(js jetstream.JetStream) *Consumers { return &Consumers{js: js} }

// Ensure makes (or updates) the consumer of project's missions in pool
// with lease (EnsureConsumer) and returns its stream and name.
func (c *Consumers) Ensure(ctx context.Context, project, pool string, lease time.Duration) (streamName, consumer string, err error) {
	if _, err := EnsureConsumer(ctx, c.js, project, pool, lease); err != nil {
		return "", "", err
	}
	return stream.MissionsStream, PoolConsumerName(project, pool), nil
}

// bindConsumers looks up the consumers of queues, which the server made:
// what an enrolled worker's credentials allow (CONSUMER.INFO).
func bindConsumers(ctx context.Context, js jetstream.JetStream, queues []queue) (map[queue]jetstream.Consumer, error) {
	out := make(map[queue]jetstream.Consumer, len(queues))
	for _, q := range queues {
		c, err := js.Consumer(ctx, stream.MissionsStream, PoolConsumerName(q.project, q.pool))
		if err != nil {
			return nil, fmt.Errorf("consumer for %s pool %s (the server makes it at enrollment): %w", q.project, q.pool, err)
		}
		out[q] = c
	}
	return out, nil
}

// session is an enrolled worker's NATS connection.
type session struct {
	nc    *nats.Conn
	timer *time.Timer
	// expiring fires when the credentials are about to expire.
	expiring <-chan time.Time
}

func (s *session) close() {
	if s.timer != nil {
		s.timer.Stop()
	}
	// Drain sends what is buffered (acknowledgements, the last events)
	// before closing; Close ends what is left after a bound.
	done := make(chan struct{})
	s.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := s.nc.Drain(); err != nil {
		s.nc.Close()
		return
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.nc.Close()
	}
}

// connect dials the NATS of the grant with its credentials and sets the
// worker's JetStream context, publisher and pass counter.
func (w *Worker) connect(ctx context.Context, g Grant) (*session, error) {
	if g.NATS == nil {
		return nil, fmt.Errorf("worker %s: %w (see docs/deploy.md)", w.cfg.ID, ErrNoCredentials)
	}
	if g.Passes == nil {
		return nil, fmt.Errorf("worker %s: the grant has no pass counter", w.cfg.ID)
	}
	creds := []byte(g.NATS.Creds)
	tok, seed, err := natsauth.Parse(creds)
	if err != nil {
		return nil, fmt.Errorf("worker %s: the enrollment's credentials: %w", w.cfg.ID, err)
	}
	inbox, err := natsauth.InboxPrefix(creds)
	if err != nil {
		return nil, fmt.Errorf("worker %s: the enrollment's credentials: %w", w.cfg.ID, err)
	}
	opts := append([]nats.Option{
		nats.UserJWTAndSeed(tok, seed),
		// The user may read replies only under its own inbox prefix.
		nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
				w.lostOnce.Do(func() { close(w.lost) })
				return
			}
			w.log.Warn("NATS", "event", "worker.nats_error", "error", err.Error())
		}),
	}, w.cfg.NATSOptions...)
	url := cmp.Or(w.cfg.NATSURL, g.NATS.URL)
	nc, err := stream.Connect(url, nil, "observatory worker "+w.cfg.ID, opts...)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", w.cfg.ID, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("worker %s: jetstream: %w", w.cfg.ID, err)
	}
	w.js, w.pub, w.passes = js, stream.NewPublisher(js), g.Passes
	if hp, ok := g.Passes.(*HTTPPasses); ok {
		hp.Now = w.cfg.Now
	}
	s := &session{nc: nc}
	if !g.NATS.ExpiresAt.IsZero() {
		// The NATS server judges expiry by its wall clock, not by the
		// worker's Config.Now: the timer runs on the wall clock too. The
		// worker stops two leases early, so its running missions can end.
		s.timer = time.NewTimer(max(time.Until(g.NATS.ExpiresAt)-2*w.cfg.Lease, 0))
		s.expiring = s.timer.C
	}
	return s, nil
}
