package stream

import (
	"context"
	"encoding/json"
	"fmt"
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

// MissionSubject returns the subject of project's missions:
// missions.<project_id>.
func MissionSubject(project string) string { return "missions." + project }

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
	return &MissionQueue{js: js}, nil
}

// Enqueue appends ev, a valid mission.queued event with a mission id, to
// missions.<project>, deduplicated on the mission id. It returns the stream
// sequence, which Withdraw takes.
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
	ack, err := q.js.Publish(ctx, MissionSubject(ev.ProjectID), body,
		jetstream.WithMsgID("mission:"+ev.MissionID), jetstream.WithExpectStream(MissionsStream))
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
