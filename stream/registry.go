package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Buckets of the admin API's registry (DESIGN §3).
const (
	// RegistryBucket keeps projects and agents until they are deleted.
	RegistryBucket = "OBSERVATORY_REGISTRY"
	// WorkBucket keeps missions and runs for WorkMaxAge after their last write.
	WorkBucket = "OBSERVATORY_WORK"
	// WorkMaxAge is how long a mission or run record outlives its last write
	// by default: as long as FLEET keeps the events that made it.
	WorkMaxAge = FleetMaxAge
	// maxRecordSize bounds one record; the admin API's records are small.
	maxRecordSize = 64 << 10
	// kvOperationHeader marks KV delete and purge markers.
	kvOperationHeader = "KV-Operation"
)

// RegistryConfig sets the retention of the registry's buckets and streams.
type RegistryConfig struct {
	// WorkMaxAge is how long mission and run records are kept (WorkMaxAge).
	WorkMaxAge time.Duration
	// MissionsMaxAge is how long a mission waits on MISSIONS to be claimed
	// (MissionsMaxAge).
	MissionsMaxAge time.Duration
}

// Registry is what the admin API keeps in NATS: two KV buckets and the
// MISSIONS work queue.
type Registry struct {
	// Records holds projects and agents.
	Records *KVStore
	// Work holds missions and runs.
	Work *KVStore
	// Missions is the MISSIONS work queue.
	Missions *MissionQueue
}

// OpenRegistry creates or updates the registry buckets and the MISSIONS
// stream and returns them.
func OpenRegistry(ctx context.Context, js jetstream.JetStream, cfg RegistryConfig) (*Registry, error) {
	records, err := OpenKVStore(ctx, js, jetstream.KeyValueConfig{
		Bucket:       RegistryBucket,
		Description:  "Observatory projects and agents (DESIGN §3)",
		History:      1,
		MaxValueSize: maxRecordSize,
		Storage:      jetstream.FileStorage,
	})
	if err != nil {
		return nil, err
	}
	work, err := OpenKVStore(ctx, js, jetstream.KeyValueConfig{
		Bucket:       WorkBucket,
		Description:  "Observatory missions and runs created through the admin API (DESIGN §3)",
		History:      1,
		TTL:          cmpOr(cfg.WorkMaxAge, WorkMaxAge),
		MaxValueSize: maxRecordSize,
		Storage:      jetstream.FileStorage,
	})
	if err != nil {
		return nil, err
	}
	missions, err := OpenMissionQueue(ctx, js, cfg.MissionsMaxAge)
	if err != nil {
		return nil, err
	}
	return &Registry{Records: records, Work: work, Missions: missions}, nil
}

// KVStore is a JetStream KV bucket seen as the admin API's record store:
// create-only writes, compare-and-swap updates and deletes, and listing by
// key prefix. Keys are dot-separated tokens of [-/_=a-zA-Z0-9]. It is safe
// for concurrent use.
type KVStore struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream string // KV_<bucket>
	prefix string // $KV.<bucket>.
}

// OpenKVStore creates or updates the bucket cfg describes.
func OpenKVStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (*KVStore, error) {
	// The admin API reads what it has just written (a project, a worker
	// id claimed): reads go to the leader on a replicated bucket.
	kv, err := ConsistentKV(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", cfg.Bucket, err)
	}
	return &KVStore{js: js, kv: kv, stream: "KV_" + cfg.Bucket, prefix: "$KV." + cfg.Bucket + "."}, nil
}

// Bucket returns the bucket's name.
func (s *KVStore) Bucket() string { return s.kv.Bucket() }

// Create stores value under key unless key holds a value; then created is
// false and err nil. A deleted key can be created again.
func (s *KVStore) Create(ctx context.Context, key string, value []byte) (rev uint64, created bool, err error) {
	rev, err = s.kv.Create(ctx, key, value)
	switch {
	case err == nil:
		return rev, true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return 0, false, nil
	default:
		return 0, false, fmt.Errorf("%s: create %s: %w", s.Bucket(), key, err)
	}
}

// Get returns the value of key and its revision; found is false when key
// holds no value (never written, deleted or expired).
func (s *KVStore) Get(ctx context.Context, key string) (value []byte, rev uint64, found bool, err error) {
	e, err := s.kv.Get(ctx, key)
	switch {
	case err == nil:
		return e.Value(), e.Revision(), true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return nil, 0, false, nil
	default:
		return nil, 0, false, fmt.Errorf("%s: get %s: %w", s.Bucket(), key, err)
	}
}

// Update replaces the value of key if its revision is still rev; ok is false
// (and err nil) when another write came first.
func (s *KVStore) Update(ctx context.Context, key string, value []byte, rev uint64) (newRev uint64, ok bool, err error) {
	newRev, err = s.kv.Update(ctx, key, value, rev)
	switch {
	case err == nil:
		return newRev, true, nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		return 0, false, nil
	default:
		return 0, false, fmt.Errorf("%s: update %s: %w", s.Bucket(), key, err)
	}
}

// Delete removes key if its revision is still rev: the undo of a write that
// went no further. It leaves a delete marker, which Get and List skip.
func (s *KVStore) Delete(ctx context.Context, key string, rev uint64) error {
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("%s: delete %s: %w", s.Bucket(), key, err)
	}
	return nil
}

// List returns the values of the keys under prefix ("agents.acme" lists
// "agents.acme.<anything>"), in the order they were last written, oldest
// first: the newest limit of them (every one when limit <= 0) among those
// last written at or after since (every one when since is zero).
func (s *KVStore) List(ctx context.Context, prefix string, since time.Time, limit int) ([][]byte, error) {
	if prefix == "" || strings.ContainsAny(prefix, "*> ") {
		return nil, fmt.Errorf("%s: list: bad prefix %q", s.Bucket(), prefix)
	}
	var ring [][]byte
	head := 0 // where the oldest kept value is once the ring is full
	err := readRange(ctx, s.js, s.stream, s.prefix+prefix+".>", since, func(m jetstream.Msg, _ *jetstream.MsgMetadata) bool {
		switch m.Headers().Get(kvOperationHeader) {
		case "DEL", "PURGE":
			return true
		}
		v := m.Data()
		if limit <= 0 || len(ring) < limit {
			ring = append(ring, v)
			return true
		}
		ring[head] = v
		head = (head + 1) % limit
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("%s: list %s: %w", s.Bucket(), prefix, err)
	}
	return append(ring[head:], ring[:head]...), nil
}
