//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// onCreate calls f, from its own goroutine and at most once, with the name
// of the first file whose name starts with prefix created in dir from now
// on, as inotify reports it: as soon as the file exists, before its writer
// has written a byte. stop ends the watch and waits for the goroutine.
func onCreate(t *testing.T, dir, prefix string, f func(name string)) (stop func()) {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE); err != nil {
		syscall.Close(fd)
		t.Fatalf("inotify watch %s: %v", dir, err)
	}
	// A non-blocking descriptor goes through the runtime's poller, so that
	// Close unblocks the Read below.
	file := os.NewFile(uintptr(fd), "inotify")
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := file.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("inotify read: %v", err)
				}
				return
			}
			for b := buf[:n]; len(b) >= syscall.SizeofInotifyEvent; {
				nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
				name := strings.TrimRight(string(b[syscall.SizeofInotifyEvent:syscall.SizeofInotifyEvent+nameLen]), "\x00")
				b = b[syscall.SizeofInotifyEvent+nameLen:]
				if strings.HasPrefix(name, prefix) {
					f(name)
					return
				}
			}
		}
	}()
	return func() {
		file.Close()
		<-done
	}
}
