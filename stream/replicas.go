package stream

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

// WithReplicas returns js, except that every stream and key-value bucket
// created or updated through it that names no replica count gets n
// (DESIGN §11.3: --nats-replicas 3 on a three-node cluster, so that an
// acknowledged write survives the loss of any one node). Every package
// creates its streams and buckets through the JetStream it is given, so
// serve sets the count in one place. n ≤ 1 returns js itself: one replica,
// JetStream's default, as the embedded single node runs.
//
// On a cluster, creating or updating a replicated stream or bucket through
// it also waits, until its ctx ends, while the cluster cannot place it
// yet: a replica that starts while the cluster is still forming, or while
// a node is briefly offline, then waits for the peers instead of failing
// its start.
func WithReplicas(js jetstream.JetStream, n int) (jetstream.JetStream, error) {
	switch {
	case n < 0 || n > MaxReplicas:
		return nil, fmt.Errorf("replicas: %d is not between 1 and %d", n, MaxReplicas)
	case n <= 1:
		return js, nil
	}
	return replicated{JetStream: js, n: n}, nil
}

// replicated is a JetStream whose created streams and buckets get n
// replicas unless their configuration names a count, and whose creates and
// updates wait while the cluster is forming (whileForming).
type replicated struct {
	jetstream.JetStream
	n int
}

func (r replicated) stream(cfg jetstream.StreamConfig) jetstream.StreamConfig {
	if cfg.Replicas == 0 {
		cfg.Replicas = r.n
	}
	return cfg
}

func (r replicated) kv(cfg jetstream.KeyValueConfig) jetstream.KeyValueConfig {
	if cfg.Replicas == 0 {
		cfg.Replicas = r.n
	}
	return cfg
}

func (r replicated) CreateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return whileForming(ctx, func() (jetstream.Stream, error) { return r.JetStream.CreateStream(ctx, r.stream(cfg)) })
}

func (r replicated) UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return whileForming(ctx, func() (jetstream.Stream, error) { return r.JetStream.UpdateStream(ctx, r.stream(cfg)) })
}

func (r replicated) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return whileForming(ctx, func() (jetstream.Stream, error) { return r.JetStream.CreateOrUpdateStream(ctx, r.stream(cfg)) })
}

func (r replicated) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return whileForming(ctx, func() (jetstream.KeyValue, error) { return r.JetStream.CreateKeyValue(ctx, r.kv(cfg)) })
}

func (r replicated) UpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return whileForming(ctx, func() (jetstream.KeyValue, error) { return r.JetStream.UpdateKeyValue(ctx, r.kv(cfg)) })
}

func (r replicated) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return whileForming(ctx, func() (jetstream.KeyValue, error) { return r.JetStream.CreateOrUpdateKeyValue(ctx, r.kv(cfg)) })
}

// ConsistentKV creates or updates the bucket cfg describes and returns it
// with reads that see every write acknowledged before them. A replicated
// bucket answers gets from any replica ("direct get"), and a replica may
// be a write behind the leader: the budget gate would then not find the
// reservation it has just made, or compare-and-swap against a revision
// that is already gone. So on a bucket of more than one replica direct
// gets are turned off, and reads go to the stream's leader; a bucket of
// one replica is left as it is (its one copy is always current).
//
// A bucket that keeps more history than cfg asks for (an operator, or an
// audit, raised it) is bound as it is, never updated: updating would trim
// the revisions it keeps.
func ConsistentKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	var err error
	if st, serr := js.Stream(ctx, "KV_"+cfg.Bucket); serr == nil && keepsMore(st.CachedInfo().Config.MaxMsgsPerSubject, cfg.History) {
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	} else {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, err
	}
	sc := st.CachedInfo().Config
	if sc.Replicas <= 1 || !sc.AllowDirect {
		return kv, nil
	}
	sc.AllowDirect = false
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		return nil, fmt.Errorf("bucket %s: leader reads: %w", cfg.Bucket, err)
	}
	// A handle bound now reads the way the stream says.
	return js.KeyValue(ctx, cfg.Bucket)
}

// keepsMore reports whether a bucket's stream keeping keep revisions per
// key (-1: all) keeps more than history (0 means 1).
func keepsMore(keep int64, history uint8) bool {
	return keep < 0 || keep > int64(max(history, 1))
}
