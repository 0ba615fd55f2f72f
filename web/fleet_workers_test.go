package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/worker"
)

// startWorker runs a real worker with a fast synthetic agent until the
// test ends.
func startWorker(t *testing.T, n *streamtest.Env, cfg worker.Config) *worker.Worker {
	t.Helper()
	if cfg.Agent == nil {
		cfg.Agent = worker.Synthetic(worker.SyntheticConfig{TimeScale: 0.001, FailRate: -1, Seed: 3})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := worker.New(n.JS, n.Publisher, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// doneIn returns how many missions of project the fold has seen end.
func doneIn(t *testing.T, n *streamtest.Env, project string) (completed, failed int64) {
	t.Helper()
	v, _, err := n.Hub.View(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	p := v.Projects[project]
	return p.MissionsDone, p.MissionsFailed
}

// TestMissionPoolAndLabels creates missions with a pool and labels through
// the admin API: they are recorded and queued on the pool's subject, run
// only by a worker of that pool that offers the labels, never by the
// default pool's worker; bad pools and labels are 400.
func TestMissionPoolAndLabels(t *testing.T) {
	a := newAdminEnv(t, nil)
	a.project(t, "acme")
	var m missionPoolOut
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin,
		`{"title":"render","model":"gpt-5","pool":"gpu","labels":["gpu=a100","ssd"]}`, http.StatusCreated, &m)
	if m.Pool != "gpu" || !cmp.Equal(m.Labels, map[string]string{"gpu": "a100", "ssd": ""}) {
		t.Errorf("mission pool %q labels %v", m.Pool, m.Labels)
	}
	var m2 missionPoolOut
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin,
		`{"title":"render 2","model":"gpt-5","pool":"gpu","labels":{"gpu":"a100"}}`, http.StatusCreated, &m2)
	var plain missionPoolOut
	a.must(t, "POST", "/api/v1/projects/acme/missions", a.admin, `{"title":"triage","model":"gpt-5"}`, http.StatusCreated, &plain)
	if plain.Pool != "default" || plain.Labels != nil {
		t.Errorf("a mission without a pool: pool %q labels %v, want the default pool", plain.Pool, plain.Labels)
	}
	ctx := context.Background()
	st, err := a.nats.JS.Stream(ctx, stream.MissionsStream)
	if err != nil {
		t.Fatal(err)
	}
	for subject, id := range map[string]string{"missions.acme.gpu": m2.ID, "missions.acme": plain.ID} {
		msg, err := st.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if ev, err := fleet.DecodeEvent("", msg.Data); err != nil || ev.MissionID != id {
			t.Errorf("last mission on %s is %s (%v), want %s", subject, ev.MissionID, err, id)
		}
	}

	for _, tc := range []struct{ body, want string }{
		{`{"title":"x","model":"m","pool":"GPU"}`, "pool"},
		{`{"title":"x","model":"m","pool":"gpu.a100"}`, "pool"},
		{`{"title":"x","model":"m","labels":"gpu"}`, "labels"},
		{`{"title":"x","model":"m","labels":{"GPU":"x"}}`, "label"},
		{`{"title":"x","model":"m","labels":["a=1","a=2"]}`, "twice"},
		{`{"title":"x","model":"m","labels":{"gpu":"a b"}}`, "value"},
	} {
		res := a.call(t, "POST", "/api/v1/projects/acme/missions", a.admin, tc.body)
		if res.status != http.StatusBadRequest || res.errorCode(t) != "bad_request" {
			t.Errorf("%s: %d %s, want 400", tc.body, res.status, res.body)
		}
	}

	def := startWorker(t, a.nats, worker.Config{ID: "w-default", Projects: []string{"acme"}})
	gpu := startWorker(t, a.nats, worker.Config{ID: "w-gpu", Projects: []string{"acme"}, Pools: []string{"gpu"},
		Labels: map[string]string{"gpu": "a100", "ssd": "nvme"}})
	streamtest.Eventually(t, 20*time.Second, func() bool { c, _ := doneIn(t, a.nats, "acme"); return c == 3 }, "the missions did not complete")
	if s := gpu.Stats(); s.Completed != 2 {
		t.Errorf("the gpu worker completed %d missions, want the 2 of its pool", s.Completed)
	}
	if s := def.Stats(); s.Completed != 1 {
		t.Errorf("the default worker completed %d missions, want 1", s.Completed)
	}
}

type missionPoolOut struct {
	ID     string            `json:"id"`
	Pool   string            `json:"pool"`
	Labels map[string]string `json:"labels"`
}

// TestBudgetStopsOneTenantOthersGoOn runs real workers behind the real
// budget gate (the admin API and the ledger): acme has a $0.25 daily stop
// cap, globex none. Missions are created three at a time per tenant and
// run by the workers. Acme's creations turn 402 budget_exceeded once its
// spent plus reserved would pass the cap, and stay refused; globex's keep
// being created and completed all along. When everything has ended, acme's
// ledger holds nothing reserved and what it spent is what the fold shows.
func TestBudgetStopsOneTenantOthersGoOn(t *testing.T) {
	n, srvs := newBudgetServers(t, 1)
	s := srvs[0]
	for _, p := range []string{"acme", "globex"} {
		s.must(t, "POST", "/api/v1/projects", s.admin, `{"id":"`+p+`","name":"`+p+`"}`, http.StatusCreated, nil)
	}
	const limit, estimate = fleet.Micros(250_000), fleet.Micros(20_000)
	s.must(t, "POST", "/api/v1/budgets", s.admin,
		`{"scope":"project","project_id":"acme","period":"daily","limit_usd":"0.25","action":"stop"}`, http.StatusCreated, nil)
	streamtest.Eventually(t, 5*time.Second, func() bool { return s.ledger.Stats().Budgets == 1 }, "budget not seen")
	for i, p := range []string{"acme", "acme", "globex", "globex"} {
		startWorker(t, n, worker.Config{ID: fmt.Sprintf("w-%s-%d", p, i), Projects: []string{p}, Capacity: 2})
	}

	const budgetID = "project.acme.acme.daily"
	created := map[string]int{}
	refusedRounds, lastCreatedRound := 0, -1
	for round := 0; refusedRounds < 3; round++ {
		if round == 40 {
			t.Fatalf("acme was never stopped: %d missions created", created["acme"])
		}
		acmeRefused := 0
		for _, p := range []string{"acme", "globex", "acme", "globex", "acme", "globex"} {
			body := fmt.Sprintf(`{"title":"answer ticket","model":"claude-haiku-4-5","estimate_usd":"%s"}`, estimate)
			res := s.call(t, "POST", "/api/v1/projects/"+p+"/missions", s.admin, body)
			switch {
			case res.status == http.StatusCreated:
				created[p]++
				if p == "acme" {
					lastCreatedRound = round
				}
			case res.status == http.StatusPaymentRequired && p == "acme":
				var eb struct {
					Error struct {
						Code    string `json:"code"`
						Details struct {
							Action   string               `json:"action"`
							Breaches []fleet.BudgetBreach `json:"breaches"`
						} `json:"details"`
					} `json:"error"`
				}
				if err := json.Unmarshal(res.body, &eb); err != nil || eb.Error.Code != "budget_exceeded" || eb.Error.Details.Action != "stop" || len(eb.Error.Details.Breaches) != 1 {
					t.Fatalf("402 body %s", res.body)
				}
				b := eb.Error.Details.Breaches[0]
				if b.LimitUSD != limit || b.SpentUSD+b.Reserved+estimate <= limit {
					t.Errorf("refused with $%s spent and $%s reserved of $%s: the mission would have fitted", b.SpentUSD, b.Reserved, b.LimitUSD)
				}
				acmeRefused++
			default:
				t.Fatalf("POST %s mission: %d %s", p, res.status, res.body)
			}
		}
		// Let the round's missions run before the next.
		streamtest.Eventually(t, 20*time.Second, func() bool {
			a, _ := doneIn(t, n, "acme")
			g, _ := doneIn(t, n, "globex")
			return a == int64(created["acme"]) && g == int64(created["globex"])
		}, "the round's missions did not complete")
		if acmeRefused == 3 {
			refusedRounds++
		} else if refusedRounds > 0 {
			t.Errorf("round %d: acme created a mission after a round where all were refused", round)
		}
	}
	if created["acme"] == 0 || lastCreatedRound < 0 {
		t.Fatal("acme never created a mission")
	}
	if want := created["acme"] + 3*refusedRounds; created["globex"] < want {
		t.Errorf("globex created %d missions, want at least %d: it must go on while acme is stopped", created["globex"], want)
	}
	if _, failed := doneIn(t, n, "globex"); failed != 0 {
		t.Errorf("%d globex missions failed", failed)
	}

	// Every reservation ended with its mission: nothing stays reserved.
	ctx := context.Background()
	fl, err := n.JS.Stream(ctx, stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := fl.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitLedger(t, s.ledger, info.State.LastSeq)
	var b budgetJSON
	s.must(t, "GET", "/api/v1/budgets/"+budgetID, s.admin, "", http.StatusOK, &b)
	if b.ReservedUSD != 0 {
		t.Errorf("acme still has $%s reserved after every mission ended", b.ReservedUSD)
	}
	if b.SpentUSD+estimate <= limit {
		t.Errorf("acme spent $%s of $%s: the cap was not what stopped it", b.SpentUSD, b.LimitUSD)
	}
	streamtest.WaitSeq(t, n.Hub, info.State.LastSeq)
	v, _, err := n.Hub.View(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Projects["acme"].SpendTotal; got != b.SpentUSD {
		t.Errorf("the fold shows acme spent $%s, the ledger $%s", got, b.SpentUSD)
	}
	t.Logf("acme: %d missions created, stopped at $%s spent of $%s; globex: %d created", created["acme"], b.SpentUSD, b.LimitUSD, created["globex"])
}
