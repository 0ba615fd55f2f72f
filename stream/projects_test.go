package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestProjectSetFollowsTheRegistry checks that the set holds the projects
// the registry held when it started as soon as Wait returns, then follows
// creations and deletions, and ignores other records (agents).
func TestProjectSetFollowsTheRegistry(t *testing.T) {
	_, reg := openRegistry(t)
	ctx := testCtx(t)
	create := func(key string) uint64 {
		t.Helper()
		rev, ok, err := reg.Records.Create(ctx, key, []byte(`{}`))
		if err != nil || !ok {
			t.Fatalf("create %s: %v %v", key, ok, err)
		}
		return rev
	}
	create("projects.acme")
	create("agents.acme.triager")
	set := stream.NewProjectSet(reg.Records)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- set.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	if err := set.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !set.Has("acme") || set.Len() != 1 {
		t.Fatalf("after Wait: has acme %v, %d projects; want acme alone", set.Has("acme"), set.Len())
	}
	rev := create("projects.globex")
	streamtest.Eventually(t, 10*time.Second, func() bool { return set.Has("globex") }, "globex never joined the set")
	if err := reg.Records.Delete(ctx, "projects.globex", rev); err != nil {
		t.Fatal(err)
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return !set.Has("globex") }, "globex never left the set")
	if !set.Has("acme") || set.Has("triager") {
		t.Errorf("has acme %v, triager %v", set.Has("acme"), set.Has("triager"))
	}
}
