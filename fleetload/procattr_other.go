//go:build !linux

package fleetload

import "syscall"

// procAttr leaves a worker process's attributes as they are: only Linux
// has the parent-death signal that keeps a worker from outliving the run.
func procAttr() *syscall.SysProcAttr { return nil }
