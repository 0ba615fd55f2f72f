package nodetest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sagewai/observatory/genai/nodetest"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does, so a test can see how Run fails
// another test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// runFails runs Run with r in a goroutine of its own and returns the
// message it failed with ("" when it did not fail the test).
func runFails(t *testing.T, script string) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nodetest.Run(context.Background(), r, script, nil)
	}()
	<-done
	return r.msg
}

// TestRunFailsWithoutInstall checks that a test driving a library fails,
// never skips, when the node project is not installed, or was installed
// from another lock than the committed one, and says how to install it.
func TestRunFailsWithoutInstall(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(nodetest.EnvNodeDir, empty)
	if msg := runFails(t, nodetest.Vercel); !strings.Contains(msg, "not installed") || !strings.Contains(msg, "make deps") {
		t.Errorf("Run without an install failed with %q; want it to say the project is not installed and to run make deps", msg)
	}

	// An install from another lock (a stale cache) is refused too.
	if err := os.WriteFile(filepath.Join(empty, "installed.lock"), []byte(`{"lockfileVersion": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(empty, "node_modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if msg := runFails(t, nodetest.Vercel); !strings.Contains(msg, "another package-lock.json") || !strings.Contains(msg, "make deps") {
		t.Errorf("Run with a stale install failed with %q; want it to name the lock mismatch and make deps", msg)
	}
}
