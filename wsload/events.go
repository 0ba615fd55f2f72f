package wsload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/fleet"
)

// Seed creates agents agents in each project, so that snapshots have
// their real size, and waits for JetStream to acknowledge them.
func Seed(ctx context.Context, js jetstream.JetStream, projects []string, agents int) error {
	now := time.Now().UTC()
	for _, p := range projects {
		for a := range agents {
			ev := fleet.Event{ID: fmt.Sprintf("seed-%s-%d-%d", p, a, now.UnixNano()), Type: fleet.TypeAgentCreated, Time: now, ProjectID: p,
				AgentID: agentID(p, a),
				Data:    json.RawMessage(`{"name":"bench agent","role":"worker","model":"claude-sonnet-4-5","tools":["search","code"],"skills":["triage"]}`)}
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			if _, err := js.PublishAsync(fleet.Subject(ev), b); err != nil {
				return err
			}
		}
	}
	return acked(ctx, js)
}

func agentID(project string, i int) string { return fmt.Sprintf("%s-agent-%03d", project, i) }

// Publish sends llm.call events at rate per second for d, spread over the
// projects and their agents agents, each id carrying its publish time
// (b-<unix nanos>-<n>), and returns how many it sent once JetStream has
// acknowledged them.
func Publish(ctx context.Context, js jetstream.JetStream, projects []string, agents, rate int, d time.Duration) (int, error) {
	const batch = 10
	tick := time.NewTicker(time.Second * batch / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	n := 0
	var buf bytes.Buffer
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-tick.C:
		}
		for range batch {
			now := time.Now()
			p := projects[n%len(projects)]
			buf.Reset()
			fmt.Fprintf(&buf, `{"id":"b-%d-%d","type":"llm.call","time":%q,"project_id":%q,"agent_id":%q,"run_id":"r-%d","data":{"provider":"anthropic","model":"claude-sonnet-4-5","input_tokens":1200,"output_tokens":300,"cache_read_tokens":800,"latency_ms":900,"status":"ok"}}`,
				now.UnixNano(), n, now.UTC().Format(time.RFC3339Nano), p, agentID(p, (n/len(projects))%agents), n%500)
			if _, err := js.PublishAsync("fleet."+p+".llm.call", slices.Clone(buf.Bytes())); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, acked(ctx, js)
}

func acked(ctx context.Context, js jetstream.JetStream) error {
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for JetStream's acknowledgements: %w", ctx.Err())
	}
}
