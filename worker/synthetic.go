package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/synth"
)

// SyntheticConfig configures the synthetic agent.
type SyntheticConfig struct {
	// TimeScale multiplies every latency the agent waits (default 1, real
	// time; tests use a small one). The latencies it reports are unscaled.
	TimeScale float64
	// FailRate is the chance that a mission fails (default 0.03; negative
	// for never).
	FailRate float64
	// Steps bounds the steps of a mission, each an LLM call then a tool
	// call (defaults 2 and 5).
	MinSteps, MaxSteps int
	// Seed makes the agent's choices reproducible for a given mission.
	Seed uint64
}

var syntheticTools = []string{"search.docs", "http.get", "sql.query", "python.exec", "ticket.update", "git.diff"}

// DefaultModel is what the synthetic agent runs a mission without a model on.
const DefaultModel = "claude-haiku-4-5"

// Synthetic returns an agent that plays a mission as a sequence of steps,
// each an llm.call with token counts and latency typical of the mission's
// model and a tool.call, followed by mission.progress; now and then a
// mission fails.
func Synthetic(cfg SyntheticConfig) Agent {
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.FailRate == 0 {
		cfg.FailRate = 0.03
	}
	if cfg.MinSteps <= 0 {
		cfg.MinSteps = 2
	}
	if cfg.MaxSteps < cfg.MinSteps {
		cfg.MaxSteps = max(cfg.MinSteps, 5)
	}
	return func(ctx context.Context, m Mission, emit func(fleet.Event) error) error {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s/%d", m.ID, m.Attempt)
		rng := rand.New(rand.NewPCG(cfg.Seed, h.Sum64()))
		model := m.Model
		if model == "" {
			model = DefaultModel
		}
		// No pricing: a model without a profile is of an "unknown" provider.
		pr := synth.ProfileOf(model, nil)
		steps := cfg.MinSteps + rng.IntN(cfg.MaxSteps-cfg.MinSteps+1)
		failAt := -1
		if rng.Float64() < cfg.FailRate {
			failAt = rng.IntN(steps)
		}
		wait := func(ms float64) error {
			t := time.NewTimer(time.Duration(ms * cfg.TimeScale * float64(time.Millisecond)))
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
		send := func(typ string, data any) error {
			ev, err := eventOf(typ, data)
			if err != nil {
				return err
			}
			return emit(ev)
		}
		for step := range steps {
			grow := float64(step) / float64(steps)
			outFrac := rng.Float64()
			c := fleet.LLMCall{
				Provider: pr.Provider, Model: model,
				InputTokens:  min(pr.InMin+int64(float64(pr.InMax-pr.InMin)*(0.15+0.55*grow+0.3*rng.Float64())), pr.InMax),
				OutputTokens: pr.OutMin + int64(float64(pr.OutMax-pr.OutMin)*outFrac),
				LatencyMS:    math.Round(pr.LatMin + (pr.LatMax-pr.LatMin)*(0.6*outFrac+0.4*rng.Float64())),
				Status:       "ok",
			}
			if pr.Cache {
				if step == 0 {
					c.CacheWriteTokens = 1500 + rng.Int64N(2500)
				} else {
					c.CacheReadTokens = 1500 + rng.Int64N(2500) + int64(step)*(300+rng.Int64N(900))
				}
			}
			fail := step == failAt
			llmFails := fail && rng.IntN(2) == 0
			if llmFails {
				c.Status, c.OutputTokens, c.LatencyMS = "error", 0, math.Round(c.LatencyMS/3)
			}
			if err := wait(c.LatencyMS); err != nil {
				return err
			}
			if err := send(fleet.TypeLLMCall, c); err != nil {
				return err
			}
			if llmFails {
				return errors.New("rate_limited: 429 from provider after 3 retries")
			}
			tool := syntheticTools[rng.IntN(len(syntheticTools))]
			tc := fleet.ToolCall{Tool: tool, LatencyMS: float64(60 + rng.IntN(1340)), Status: "ok"}
			if fail {
				tc.Status = "error"
			}
			if err := wait(tc.LatencyMS); err != nil {
				return err
			}
			if err := send(fleet.TypeToolCall, tc); err != nil {
				return err
			}
			if fail {
				return fmt.Errorf("%s: upstream returned 503 after 3 retries", tool)
			}
			pct := math.Round(100 * float64(step+1) / float64(steps))
			if err := send(fleet.TypeMissionProgress, fleet.MissionProgress{Pct: pct, Step: fmt.Sprintf("step %d of %d: %s", step+1, steps, tool)}); err != nil {
				return err
			}
		}
		return nil
	}
}

// eventOf returns an event of type typ carrying data; emit fills the rest.
func eventOf(typ string, data any) (fleet.Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return fleet.Event{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return fleet.Event{Type: typ, Data: raw}, nil
}
