//go:build !unix

package stream_test

import (
	"testing"
	"time"
)

// cpuTime is not measured here: the benchmarks report 0 CPU per event.
func cpuTime(*testing.B) time.Duration { return 0 }
