package stream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// streamLimits are the bounds of a stream as the server holds them.
type streamLimits struct {
	MaxBytes, MaxMsgsPerSubject int64
	Discard                     jetstream.DiscardPolicy
}

func limitsOf(t *testing.T, js jetstream.JetStream, name string) streamLimits {
	t.Helper()
	s, err := js.Stream(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	return streamLimits{c.MaxBytes, c.MaxMsgsPerSubject, c.Discard}
}

// TestStreamsAreBounded checks the streams' bounds on the server: the
// defaults, the defaults shrunk to fit what JetStream may store, sizes
// set explicitly, and a clear error naming the size when one does not fit.
func TestStreamsAreBounded(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	ctx := testCtx(t)
	check := func(name string, cfg stream.StreamsConfig, fleet, audit streamLimits) {
		t.Helper()
		if err := stream.EnsureStreams(ctx, env.JS, cfg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := map[string]streamLimits{"FLEET": limitsOf(t, env.JS, stream.FleetStream), "AUDIT": limitsOf(t, env.JS, stream.AuditStream)}
		if diff := cmp.Diff(map[string]streamLimits{"FLEET": fleet, "AUDIT": audit}, got); diff != "" {
			t.Errorf("%s: stream bounds (-want +got):\n%s", name, diff)
		}
	}
	old := jetstream.DiscardOld
	check("defaults", stream.StreamsConfig{},
		streamLimits{8 << 30, -1, old}, streamLimits{1 << 30, 250_000, old})
	check("a small disk", stream.StreamsConfig{MaxStore: 3 << 30}, // room for 1.5 GiB: 8:1 of it
		streamLimits{(3 << 30) / 2 * 8 / 9, -1, old}, streamLimits{(3 << 30) / 2 / 9, 250_000, old})
	check("sizes set", stream.StreamsConfig{FleetMaxBytes: 64 << 20, AuditMaxBytes: -1, AuditMaxMsgsPerSubject: 10, MaxStore: 1 << 30},
		streamLimits{64 << 20, -1, old}, streamLimits{-1, 10, old})
	err := stream.EnsureStreams(ctx, env.JS, stream.StreamsConfig{FleetMaxBytes: 1 << 60})
	if err == nil || !strings.Contains(err.Error(), "smaller size") {
		t.Errorf("a FLEET larger than the disk: %v; want an error that says to give it a smaller size", err)
	}
}

// TestAuditKeepsEveryKindThroughAFlood checks AUDIT's per-subject bound: a
// flood of one kind of audit event drops only that kind's oldest, and
// FLEET's byte bound drops the oldest messages of all, keeping the stream
// a suffix of the log.
func TestAuditKeepsEveryKindThroughAFlood(t *testing.T) {
	env := streamtest.Start(t, stream.HubConfig{})
	ctx := testCtx(t)
	if err := stream.EnsureStreams(ctx, env.JS, stream.StreamsConfig{AuditMaxMsgsPerSubject: 100, FleetMaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	publish := func(subject string, n int) {
		t.Helper()
		for i := range n {
			if _, err := env.Publisher.PublishRaw(ctx, subject, []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 1000))), ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish("audit.acme.tenant.cross_access_denied", 5)
	publish("audit.global.auth.login.failed", 2_000) // anyone can cause these
	counts := func(name, filter string) uint64 {
		t.Helper()
		s, err := env.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n
	}
	if got := counts(stream.AuditStream, "audit.acme.>"); got != 5 {
		t.Errorf("AUDIT keeps %d of acme's 5 denials after the flood of failed logins, want all", got)
	}
	if got := counts(stream.AuditStream, "audit.global.>"); got != 100 {
		t.Errorf("AUDIT keeps %d failed logins, want the newest 100", got)
	}

	publish("fleet.acme.custom.thing", 3_000) // ~3 MB into a 1 MiB FLEET
	s, err := env.JS.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := info.State
	if st.Bytes > 1<<20 || st.LastSeq < 3_000 || st.FirstSeq+st.Msgs-1 != st.LastSeq || st.Msgs < 500 {
		t.Errorf("FLEET holds %d bytes, messages %d to %d (%d): want at most 1 MiB of the newest, without gaps",
			st.Bytes, st.FirstSeq, st.LastSeq, st.Msgs)
	}
}
