//go:build !linux

package vmstack

import "os/exec"

// dieWithParent is Linux's parent-death signal; elsewhere the cleanups
// alone stop the processes.
func dieWithParent(*exec.Cmd) {}
