//go:build !linux

package natscluster

import "syscall"

// procAttr: only Linux can tie a child's life to its parent's; elsewhere
// the test's cleanup stops the nodes.
func procAttr() *syscall.SysProcAttr { return nil }
