//go:build race

package telemetry_test

// raceEnabled is true under the race detector, which slows the embedded
// NATS server (it runs in the test process) about fourfold: the flood test
// then sends fewer events.
const raceEnabled = true
