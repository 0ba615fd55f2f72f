package lbtest

import "syscall"

// procAttr makes nginx die with the test binary, so that a test killed
// outright leaves no balancer listening behind it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
