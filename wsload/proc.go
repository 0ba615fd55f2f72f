package wsload

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPUSeconds is the user and system CPU time pid has used, from
// /proc/<pid>/stat (0 when it cannot be read).
func CPUSeconds(pid int) float64 {
	s, ok := readProc(pid, "stat")
	if !ok {
		return 0
	}
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	stt, _ := strconv.ParseFloat(f[12], 64)
	return (ut + stt) / 100 // USER_HZ
}

// RSSMB is pid's resident set in MiB, from /proc/<pid>/status (0 when it
// cannot be read).
func RSSMB(pid int) float64 {
	s, ok := readProc(pid, "status")
	if !ok {
		return 0
	}
	for _, line := range strings.Split(s, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// readProc reads /proc/<pid>/<name>; false for no pid or an unreadable file.
func readProc(pid int, name string) (string, bool) {
	if pid <= 0 {
		return "", false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	return string(b), err == nil
}
