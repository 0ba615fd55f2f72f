package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
)

// The MISSIONS work queue of DESIGN §3.
const (
	MissionsStream   = "MISSIONS"
	MissionsSubjects = "missions.>"
	// MissionsMaxAge is how long a mission waits to be claimed by default.
	MissionsMaxAge = FleetMaxAge
)

// DefaultPool names the default pool of a project, whose missions are on
// missions.<project_id> (DESIGN §3); a mission or worker that names no pool
// is in it.
const DefaultPool = "default"

// MissionSkipsBucket is the KV bucket where workers count, per MISSIONS
// message, the deliveries they passed on because they do not match the
// mission (see package worker).
const MissionSkipsBucket = "mission_skips"

// MissionSubject returns the subject of project's missions in the default
// pool: missions.<project_id>.
func MissionSubject(project string) string { return "missions." + project }

// PoolSubject returns the subject of project's missions in pool:
// missions.<project_id> for the default pool ("" or DefaultPool),
// missions.<project_id>.<pool> for a named one. Pool names are shaped like
// project ids, so no two (project, pool) pairs share a subject, and the
// filters of their work-queue consumers never overlap.
func PoolSubject(project, pool string) string {
	if pool == "" || pool == DefaultPool {
		return MissionSubject(project)
	}
	return "missions." + project + "." + pool
}

// ParsePoolSubject returns the project and pool of a MISSIONS subject
// (pool DefaultPool for missions.<project_id>); ok is false for a subject
// of another shape.
func ParsePoolSubject(subject string) (project, pool string, ok bool) {
	rest, found := strings.CutPrefix(subject, "missions.")
	if !found {
		return "", "", false
	}
	project, pool, named := strings.Cut(rest, ".")
	if !named {
		pool = DefaultPool
	}
	if !fleet.ValidProjectID(project) || !fleet.ValidProjectID(pool) || (named && pool == DefaultPool) {
		return "", "", false
	}
	return project, pool, true
}

// MissionSkips opens the MissionSkipsBucket, creating it if need be: one
// key per MISSIONS message, kept as long as a mission may wait.
func MissionSkips(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, MissionSkipsBucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open bucket %s: %w", MissionSkipsBucket, err)
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      MissionSkipsBucket,
		Description: "Observatory: deliveries of each mission passed on by workers that do not match it",
		History:     1,
		TTL:         MissionsMaxAge,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", MissionSkipsBucket, err)
	}
	return kv, nil
}

// MissionQueue appends missions to the MISSIONS work-queue stream, where
// the dispatcher claims them. Each message is the mission.queued event
// that announced the mission on FLEET, with everything the dispatcher needs
// in its data (model, reservation, estimate). It is safe for concurrent
// use.
type MissionQueue struct {
	js jetstream.JetStream
}

// OpenMissionQueue creates or updates the MISSIONS stream (work-queue
// retention, file storage, dedupe on the mission id) and returns its queue.
// maxAge is how long an unclaimed mission waits (MissionsMaxAge when 0).
func OpenMissionQueue(ctx context.Context, js jetstream.JetStream, maxAge time.Duration) (*MissionQueue, error) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        MissionsStream,
		Subjects:    []string{MissionsSubjects},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      cmpOr(maxAge, MissionsMaxAge),
		Duplicates:  DedupeWindow,
		Description: "Observatory missions waiting for a worker (DESIGN §3)",
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", MissionsStream, err)
	}
	if _, err := MissionSkips(ctx, js); err != nil {
		return nil, err
	}
	return &MissionQueue{js: js}, nil
}

// Enqueue appends ev, a valid mission.queued event with a mission id, to
// the subject of its project and pool (PoolSubject; the pool is the data's
// "pool"), deduplicated on the mission id. It returns the stream sequence,
// which Withdraw takes.
func (q *MissionQueue) Enqueue(ctx context.Context, ev fleet.Event) (uint64, error) {
	if err := ev.Validate(); err != nil {
		return 0, fmt.Errorf("enqueue mission: %w", err)
	}
	if ev.Type != fleet.TypeMissionQueued || ev.MissionID == "" {
		return 0, fmt.Errorf("enqueue mission: want a %s event with a mission id, got %q", fleet.TypeMissionQueued, ev.Type)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("enqueue mission %s: %w", ev.MissionID, err)
	}
	if len(body) > fleet.MaxEventSize {
		return 0, fmt.Errorf("enqueue mission %s: %d bytes > %d", ev.MissionID, len(body), fleet.MaxEventSize)
	}
	var routing struct {
		Pool string `json:"pool"`
	}
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, &routing); err != nil {
			return 0, fmt.Errorf("enqueue mission %s: data: %w", ev.MissionID, err)
		}
	}
	if routing.Pool != "" && !fleet.ValidProjectID(routing.Pool) {
		return 0, fmt.Errorf("enqueue mission %s: bad pool %q", ev.MissionID, routing.Pool)
	}
	ack, err := q.js.Publish(ctx, PoolSubject(ev.ProjectID, routing.Pool), body,
		jetstream.WithMsgID("mission:"+ev.ProjectID+"/"+ev.MissionID), jetstream.WithExpectStream(MissionsStream))
	if err != nil {
		return 0, fmt.Errorf("enqueue mission %s: %w", ev.MissionID, err)
	}
	return ack.Sequence, nil
}

// Withdraw removes the mission at seq from the queue: the undo of an
// Enqueue whose mission was never announced. It fails if a worker has
// already taken the mission off the queue.
func (q *MissionQueue) Withdraw(ctx context.Context, seq uint64) error {
	st, err := q.js.Stream(ctx, MissionsStream)
	if err != nil {
		return fmt.Errorf("withdraw mission at %d: %w", seq, err)
	}
	if err := st.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("withdraw mission at %d: %w", seq, err)
	}
	return nil
}
