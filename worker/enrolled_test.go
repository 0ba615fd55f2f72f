package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/worker"
)

// authFixture is a fixture on a NATS in operator mode, and an Enroll that
// grants acme's default pool as the server does: it makes the consumer
// and mints credentials that expire at expires (the wall clock's: the
// NATS server judges by it), counting passes in KV for the worker.
func authFixture(t *testing.T) (*fixture, func(expires time.Time) func(context.Context, worker.EnrollRequest) (worker.Grant, error)) {
	t.Helper()
	env := streamtest.StartWith(t, stream.HubConfig{Logger: quiet}, streamtest.Options{Auth: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := stream.OpenMissionQueue(ctx, env.JS, 0)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := stream.MissionSkips(ctx, env.JS)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{env: env, queue: q, rec: record(t, env.JS)}
	enroll := func(expires time.Time) func(context.Context, worker.EnrollRequest) (worker.Grant, error) {
		return func(ctx context.Context, req worker.EnrollRequest) (worker.Grant, error) {
			lease, err := time.ParseDuration(req.Lease)
			if err != nil {
				return worker.Grant{}, err
			}
			cons := worker.NewConsumers(env.JS)
			st, name, err := cons.Ensure(ctx, "acme", "default", lease)
			if err != nil {
				return worker.Grant{}, err
			}
			creds := env.Creds(t, natsauth.User{Name: req.WorkerID, Publish: append([]string{"fleet.acme.>"}, natsauth.PullConsumer(st, name)...),
				Inbox: true, Expires: expires})
			return worker.Grant{WorkerID: req.WorkerID, Projects: []string{"acme"}, Pools: []string{"default"}, Lease: req.Lease,
				NATS:   &worker.NATSGrant{URL: env.Server.ClientURL(), Creds: string(creds), ExpiresAt: expires},
				Passes: worker.NewKVPasses(kv)}, nil
		}
	}
	return f, enroll
}

// TestEnrolledWorkerRunsOnItsCredentials: a worker made with Enrolled
// connects with the credentials of its grant (which allow no stream or
// consumer management and no KV), binds to the consumer the grant's
// server made and completes a mission; shortly before its credentials
// expire it stops cleanly (worker.left) and Run says they expire.
func TestEnrolledWorkerRunsOnItsCredentials(t *testing.T) {
	f, enroll := authFixture(t)
	const lease = time.Second
	// Credentials that last a few leases: the worker stops two leases
	// before they end. The wall clock decides when, as it decides for the
	// NATS server; the bound below only ends a hang.
	w := worker.Enrolled(worker.Config{ID: "w-1", Projects: []string{"acme"}, Lease: lease, Heartbeat: lease / 4, Logger: quiet,
		Agent: fast(-1), Enroll: enroll(time.Now().Add(8 * lease))})
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	streamtest.Eventually(t, 10*time.Second, func() bool {
		return f.rec.count(func(e fleet.Event) bool { return e.Type == fleet.TypeWorkerHeartbeat && e.WorkerID == "w-1" }) > 0
	}, "the enrolled worker published no heartbeat")
	f.enqueue(t, "acme", "m-1", "")
	f.rec.waitEnded(t, 20*time.Second, []string{"m-1"})
	select {
	case err := <-done:
		if !errors.Is(err, worker.ErrCredentialsExpired) {
			t.Fatalf("Run = %v, want ErrCredentialsExpired", err)
		}
	case <-time.After(time.Minute):
		w.Stop()
		t.Fatal("the worker did not stop before its credentials expired")
	}
	if st := w.Stats(); st.Completed != 1 {
		t.Errorf("stats %+v, want the mission completed", st)
	}
	if n := f.rec.count(func(e fleet.Event) bool { return e.Type == fleet.TypeWorkerLeft && e.WorkerID == "w-1" }); n != 1 {
		t.Errorf("%d worker.left, want 1: the stop before expiry is clean", n)
	}
}

// TestEnrolledWorkerNeedsCredentials: a grant without NATS credentials
// (a server on an external NATS without an account signing key) does not
// start an Enrolled worker, and neither does an Enrolled worker without
// Enroll.
func TestEnrolledWorkerNeedsCredentials(t *testing.T) {
	w := worker.Enrolled(worker.Config{ID: "w-1", Logger: quiet, Enroll: func(context.Context, worker.EnrollRequest) (worker.Grant, error) {
		return worker.Grant{WorkerID: "w-1", Projects: []string{"acme"}, Pools: []string{"default"}}, nil
	}})
	if err := w.Run(context.Background()); !errors.Is(err, worker.ErrNoCredentials) {
		t.Errorf("Run = %v, want ErrNoCredentials", err)
	}
	if err := worker.Enrolled(worker.Config{ID: "w-1", Projects: []string{"acme"}, Logger: quiet}).Run(context.Background()); err == nil {
		t.Error("an enrolled worker without Enroll ran")
	}
}
