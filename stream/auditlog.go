package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
)

// MaxAuditRead bounds how many events one AuditLog.Read returns.
const MaxAuditRead = 10_000

// Reading a range of a stream.
const (
	// readIdle bounds the wait for a message the range still counts on; it
	// only matters when messages are deleted while they are being read.
	readIdle = 2 * time.Second
	// readInactive lets the server remove a reader's consumer that was not
	// deleted (the process died mid-read).
	readInactive = 30 * time.Second
)

// AuditLog reads the AUDIT stream back. It is safe for concurrent use.
type AuditLog struct {
	js jetstream.JetStream
}

// NewAuditLog returns a reader of the AUDIT stream of js.
func NewAuditLog(js jetstream.JetStream) *AuditLog { return &AuditLog{js: js} }

// Read returns the audit events of project ("" for every project) and of
// type typ ("" for every type) that AUDIT stored at or after from (zero:
// from its first message) and not after to (zero: no bound), oldest first:
// the first limit of them (1 to MaxAuditRead). The time range applies to
// when AUDIT stored each event. Messages that are not valid events are
// skipped.
func (a *AuditLog) Read(ctx context.Context, project, typ string, from, to time.Time, limit int) ([]fleet.Event, error) {
	if project != "" && !fleet.ValidProjectID(project) {
		return nil, fmt.Errorf("read audit: bad project id %q", project)
	}
	if typ != "" && !validSubjectTokens(typ) {
		return nil, fmt.Errorf("read audit: bad event type %q", typ)
	}
	if limit <= 0 || limit > MaxAuditRead {
		return nil, fmt.Errorf("read audit: limit %d out of 1..%d", limit, MaxAuditRead)
	}
	filter := "audit." + cmpOr(project, "*") + "." + cmpOr(typ, ">")
	var out []fleet.Event
	err := readRange(ctx, a.js, AuditStream, filter, from, func(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
		if !to.IsZero() && md.Timestamp.After(to) {
			return false
		}
		var ev fleet.Event
		if json.Unmarshal(m.Data(), &ev) != nil || ev.Validate() != nil {
			return true
		}
		out = append(out, ev)
		return len(out) < limit
	})
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	return out, nil
}

// validSubjectTokens reports whether s is dot-separated tokens of
// lower-case letters, digits, '_' and '-', as event types are.
func validSubjectTokens(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return false
			}
		}
	}
	return true
}

// readRange calls each with the messages of stream name on subjects
// matching filter, in stream order, from the first one stored at or after
// start (zero: the first one), until each returns false or the messages
// that were in the stream when the read began are exhausted. It reads with
// an ordered consumer, which it deletes when done.
func readRange(ctx context.Context, js jetstream.JetStream, name, filter string, start time.Time, each func(jetstream.Msg, *jetstream.MsgMetadata) bool) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	// Messages stored after this one are not part of the range.
	lastSeq := st.CachedInfo().State.LastSeq
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, InactiveThreshold: readInactive}
	if !start.IsZero() {
		t := start
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	defer deleteReader(ctx, js, name, cons)
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	for {
		m, err := next(ctx, it)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			return nil // what the range counted on was deleted meanwhile
		default:
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if md.Sequence.Stream > lastSeq || !each(m, md) {
			return nil
		}
		if md.Sequence.Stream == lastSeq || md.NumPending == 0 {
			return nil
		}
	}
}

// next waits at most readIdle for the next message of it.
func next(ctx context.Context, it jetstream.MessagesContext) (jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, readIdle)
	defer cancel()
	return it.Next(jetstream.NextContext(ctx))
}

// deleteReader deletes the server side of a finished read, even when ctx
// is already cancelled; the inactive threshold removes it otherwise.
func deleteReader(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, stream, info.Name)
}
