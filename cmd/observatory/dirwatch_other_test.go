//go:build !linux

package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// onCreate calls f, from its own goroutine and at most once, with the name
// of the first file whose name starts with prefix that appears in dir from
// now on (polled every millisecond where inotify is missing). stop ends the
// watch and waits for the goroutine.
func onCreate(t *testing.T, dir, prefix string, f func(name string)) (stop func()) {
	t.Helper()
	old := map[string]bool{}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			old[e.Name()] = true
		}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if !old[e.Name()] && strings.HasPrefix(e.Name(), prefix) {
					f(e.Name())
					return
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
