// Package synth is a synthetic agent fleet for `observatory demo`: a few
// tenants, each with a team of agents on real model names, workers that
// join and heartbeat, and a steady stream of missions that are queued,
// claimed, run through several LLM and tool calls with realistic token
// counts and latencies, reported step by step, and completed (or, now and
// then, failed). Its events are the worker events of DESIGN §4 and pass
// fleet.DecodeEvent; it publishes them through the function it is given,
// so it knows nothing of NATS. A later issue replaces it with a real
// dispatcher and workers.
//
// The simulation is a deterministic discrete-event core: Step(now) returns
// the events due up to now and Next says when the next one is due. With the
// same Config.Rand seed and the same sequence of Step times it produces the
// same events (ids included), so tests drive simulated minutes without
// sleeping. Run drives the same core in real time. Stop ends the fleet the
// way workers shutting down would (missions in flight fail, workers leave),
// and Run publishes its events when its context ends, so that a HUD is not
// left showing missions that will never finish.
//
// synth imports fleet and the standard library only.
//
// # Concurrency
//
// A Fleet is not safe for concurrent use: either one goroutine calls Run,
// which owns it until ctx ends, or the caller drives Step and Next itself.
// Run starts no goroutines; it waits on one timer and calls publish from its
// own goroutine, one event at a time, in time order.
package synth
