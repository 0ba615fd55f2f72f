package fleetload

import "syscall"

// procAttr puts a worker process in a process group of its own, so that
// a Ctrl-C on the terminal reaches only the example, which then stops its
// workers cleanly; and asks the kernel to send it SIGTERM should the
// example die without stopping it, so that no worker outlives the run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
