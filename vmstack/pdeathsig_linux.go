package vmstack

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd's process when the test binary
// dies, so that a test killed by its timeout (whose cleanups never run)
// leaks no VictoriaMetrics, VictoriaLogs or vmalert.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
