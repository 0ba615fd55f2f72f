package auth_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/web/auth"
)

func TestLimiterLocksAfterMaxFailures(t *testing.T) {
	l := auth.NewLimiter(5, 15*time.Minute, 30*time.Second, 4*time.Minute)
	now := epoch
	for i := range 5 {
		if _, wait, ok := l.Attempt(now, "user:a", "addr:1"); !ok {
			t.Fatalf("attempt %d refused (wait %s)", i+1, wait)
		}
	}
	// Locked: the lock doubles with every failure past the limit, capped.
	var waits []time.Duration
	for range 6 {
		_, wait, ok := l.Attempt(now, "user:a", "addr:1")
		if ok {
			t.Fatal("attempt accepted while locked")
		}
		waits = append(waits, wait)
		now = now.Add(wait)
		if _, _, ok := l.Attempt(now, "user:a", "addr:1"); !ok { // fails again
			t.Fatal("attempt refused after the lock ran out")
		}
	}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute, 4 * time.Minute}
	if diff := cmp.Diff(want, waits); diff != "" {
		t.Errorf("lock durations (-want +got):\n%s", diff)
	}
}

func TestLimiterKeysAreSeparate(t *testing.T) {
	l := auth.NewLimiter(5, 0, 0, 0)
	for i := range 5 {
		// Five users from one address.
		if _, _, ok := l.Attempt(epoch, "user:"+string(rune('a'+i)), "addr:1"); !ok {
			t.Fatal("refused before the limit")
		}
	}
	if _, _, ok := l.Attempt(epoch, "user:z", "addr:1"); ok {
		t.Error("a new user from a locked address was let through")
	}
	if _, _, ok := l.Attempt(epoch, "user:a", "addr:2"); !ok {
		t.Error("user a from another address was refused: its own count is 1")
	}
}

func TestLimiterWindow(t *testing.T) {
	l := auth.NewLimiter(5, 15*time.Minute, 0, 0)
	for i := range 4 {
		l.Attempt(epoch.Add(time.Duration(i)*time.Minute), "k")
	}
	// All four failures are older than the window 19 minutes on.
	now := epoch.Add(19 * time.Minute)
	for i := range 4 {
		if _, _, ok := l.Attempt(now, "k"); !ok {
			t.Fatalf("attempt %d in a fresh window refused", i+1)
		}
	}
}

func TestLimiterForgiveAndReset(t *testing.T) {
	l := auth.NewLimiter(5, 0, 0, 0)
	for range 4 {
		l.Attempt(epoch, "user:a", "addr:1")
	}
	// The fifth attempt locks both keys while it runs; it succeeds.
	a, _, ok := l.Attempt(epoch, "user:a", "addr:1")
	if !ok {
		t.Fatal("fifth attempt refused")
	}
	if _, _, ok := l.Attempt(epoch, "addr:1"); ok {
		t.Fatal("a concurrent attempt got past the pending fifth")
	}
	l.Forgive(a)
	l.Reset("user:a")
	if _, _, ok := l.Attempt(epoch, "user:a"); !ok {
		t.Error("user still locked after a success")
	}
	// The address keeps its four failures: one more locks it.
	l.Attempt(epoch, "addr:1")
	if _, _, ok := l.Attempt(epoch, "addr:1"); ok {
		t.Error("address not locked after its fifth failure")
	}
}

// TestLimiterConcurrentGuesses: many guesses at once get exactly Max
// attempts, however the password checks interleave.
func TestLimiterConcurrentGuesses(t *testing.T) {
	l := auth.NewLimiter(5, 0, 0, 0)
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for range 200 {
		wg.Go(func() {
			if _, _, accepted := l.Attempt(epoch, "user:admin"); accepted {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 5 {
		t.Errorf("%d concurrent attempts got through, want 5", ok)
	}
}

// TestLimiterLimitsPerKey: each key locks at its own limit, and a locked
// key refuses the attempt for every key it comes with, recording nothing.
func TestLimiterLimitsPerKey(t *testing.T) {
	l := auth.NewLimiter(5, 0, 0, 0)
	attempt := func(user string) bool {
		_, _, ok := l.AttemptLimits(epoch, auth.Limit{Key: "user:" + user + "@1"}, auth.Limit{Key: "addr:1", Max: 8})
		return ok
	}
	for i := range 5 {
		if !attempt("a") {
			t.Fatalf("user a refused at attempt %d, before its limit of 5", i+1)
		}
	}
	if attempt("a") {
		t.Fatal("user a at the address past its limit of 5 was let through")
	}
	// The address has 5 failures of its 8: three more users get one each.
	for i := range 3 {
		if !attempt(string(rune('b' + i))) {
			t.Fatalf("user %c refused before the address's limit of 8", 'b'+i)
		}
	}
	if attempt("z") {
		t.Error("a new user from the address past its limit of 8 was let through")
	}
}
