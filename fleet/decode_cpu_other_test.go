//go:build !unix

package fleet_test

import "time"

// processCPU is not measured here; the benchmarks then report no
// events/cpu-s.
func processCPU() time.Duration { return 0 }
