//go:build unix

package fleet_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) this process has used. On
// a machine shared with other work, events per CPU second vary much less
// than events per wall-clock second: the benchmarks report both.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
