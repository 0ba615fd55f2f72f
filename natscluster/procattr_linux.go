package natscluster

import "syscall"

// procAttr makes a node die with the test binary, so that a test killed
// outright leaves no nats-server listening behind it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
