//go:build !linux

package lbtest

import "syscall"

// procAttr is nil where the kernel cannot tie a child's life to its
// parent's: the test's cleanup stops nginx.
func procAttr() *syscall.SysProcAttr { return nil }
