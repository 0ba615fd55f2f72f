package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
)

// Publisher writes events to the FLEET and AUDIT streams. It is safe for
// concurrent use.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish validates ev and writes it to FLEET on fleet.<project>.<type>,
// with MsgID(ev) as the dedupe key. It returns the stream sequence.
func (p *Publisher) Publish(ctx context.Context, ev fleet.Event) (uint64, error) {
	if err := ev.Validate(); err != nil {
		return 0, fmt.Errorf("publish %s: %w", ev.Type, err)
	}
	return p.publish(ctx, fleet.Subject(ev), ev)
}

// Audit writes ev to AUDIT on audit.<project>.<type>. Events that change
// what the HUD shows (budget.*) go on FLEET too, so the fold sees them.
func (p *Publisher) Audit(ctx context.Context, ev fleet.Event) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("audit %s: %w", ev.Type, err)
	}
	if _, err := p.publish(ctx, "audit."+ev.ProjectID+"."+ev.Type, ev); err != nil {
		return err
	}
	if strings.HasPrefix(ev.Type, "budget.") {
		if _, err := p.publish(ctx, fleet.Subject(ev), ev); err != nil {
			return err
		}
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, subject string, ev fleet.Event) (uint64, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("publish %s: %w", subject, err)
	}
	ack, err := p.js.Publish(ctx, subject, body, jetstream.WithMsgID(MsgID(ev)))
	if err != nil {
		return 0, fmt.Errorf("publish %s: %w", subject, err)
	}
	return ack.Sequence, nil
}

// MsgID is the dedupe key (Nats-Msg-Id) of ev on FLEET and AUDIT:
// "<project>/<id>". JetStream dedupes message ids across the whole stream,
// so the bare event id would let one project's event suppress another's
// that happens to carry the same id; the fold, likewise, keeps each
// project's ids apart.
func MsgID(ev fleet.Event) string { return ev.ProjectID + "/" + ev.ID }

// PublishRaw writes body as it is to subject, for tools and tests that must
// send what a broken worker would.
func (p *Publisher) PublishRaw(ctx context.Context, subject string, body []byte, msgID string) (uint64, error) {
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := p.js.Publish(ctx, subject, body, opts...)
	if err != nil {
		return 0, fmt.Errorf("publish %s: %w", subject, err)
	}
	return ack.Sequence, nil
}

// PublishAll validates every event, then writes them to FLEET in order
// without waiting for each acknowledgement before sending the next, and
// waits for all of them. It returns the highest sequence acknowledged. On
// an error some events may have been stored: each carries its dedupe key,
// so sending the same events again stores each once.
func (p *Publisher) PublishAll(ctx context.Context, evs []fleet.Event) (uint64, error) {
	for i := range evs {
		if err := evs[i].Validate(); err != nil {
			return 0, fmt.Errorf("publish %s: %w", evs[i].Type, err)
		}
	}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for i := range evs {
		body, err := json.Marshal(evs[i])
		if err != nil {
			return 0, fmt.Errorf("publish %s: %w", evs[i].Type, err)
		}
		f, err := p.js.PublishAsync(fleet.Subject(evs[i]), body, jetstream.WithMsgID(MsgID(evs[i])))
		if err != nil {
			return 0, fmt.Errorf("publish %s: %w", fleet.Subject(evs[i]), err)
		}
		futures = append(futures, f)
	}
	var last uint64
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			last = max(last, ack.Sequence)
		case err := <-f.Err():
			return 0, fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return 0, fmt.Errorf("publish: %w", ctx.Err())
		}
	}
	return last, nil
}
