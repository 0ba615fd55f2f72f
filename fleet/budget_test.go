package fleet_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

func TestWindowOfUTCCalendarBoundaries(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		at, period, key, start, end string
	}{
		{"2026-11-30T23:59:59.999999999Z", "daily", "2026-11-30", "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"2026-12-01T00:00:00Z", "daily", "2026-12-01", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"},
		{"2026-11-30T23:59:59.999999999Z", "monthly", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"2026-12-01T00:00:00Z", "monthly", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"2026-12-31T23:59:59Z", "monthly", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"2027-01-01T00:00:00Z", "daily", "2027-01-01", "2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z"},
		{"2028-02-29T12:00:00Z", "monthly", "2028-02", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"}, // leap year
		{"2028-02-29T23:59:59Z", "daily", "2028-02-29", "2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"},
		// Another zone's evening is already the next UTC day.
		{"2026-11-30T19:30:00-05:00", "daily", "2026-12-01", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"},
		{"2026-11-30T19:30:00-05:00", "monthly", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		w, err := fleet.WindowOf(tt.period, utc(tt.at))
		if err != nil {
			t.Fatal(err)
		}
		want := fleet.BudgetWindow{Period: tt.period, Key: tt.key, Start: utc(tt.start), End: utc(tt.end)}
		if diff := cmp.Diff(want, w); diff != "" {
			t.Errorf("WindowOf(%s, %s) (-want +got):\n%s", tt.period, tt.at, diff)
		}
	}
	// The month and the year that hold the test clock end where they must,
	// whatever day OBSERVATORY_TEST_CLOCK chose.
	e := fleettest.Epoch()
	for _, end := range []time.Time{
		time.Date(e.Year(), e.Month()+1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(e.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		last := end.Add(-time.Nanosecond)
		for _, tt := range []struct {
			at         time.Time
			period     string
			start, end time.Time
		}{
			{last, "monthly", time.Date(last.Year(), last.Month(), 1, 0, 0, 0, 0, time.UTC), end},
			{end, "monthly", end, end.AddDate(0, 1, 0)},
			{last, "daily", end.AddDate(0, 0, -1), end},
			{end, "daily", end, end.AddDate(0, 0, 1)},
		} {
			w, err := fleet.WindowOf(tt.period, tt.at)
			key := tt.start.Format("2006-01")
			if tt.period == "daily" {
				key = tt.start.Format(time.DateOnly)
			}
			want := fleet.BudgetWindow{Period: tt.period, Key: key, Start: tt.start, End: tt.end}
			if diff := cmp.Diff(want, w); err != nil || diff != "" {
				t.Errorf("WindowOf(%s, %s) = %v (-want +got):\n%s", tt.period, tt.at.Format(time.RFC3339Nano), err, diff)
			}
		}
	}
	if _, err := fleet.WindowOf("weekly", fleettest.Epoch()); !errors.Is(err, fleet.ErrBadBudget) {
		t.Errorf("WindowOf(weekly) = %v, want ErrBadBudget", err)
	}
}

func TestBudgetLimitNormalize(t *testing.T) {
	good := []struct {
		in   fleet.BudgetLimit
		id   string
		warn float64
	}{
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1, Action: "stop"}, "project.acme.acme.daily", 80},
		{fleet.BudgetLimit{Scope: "project", ScopeID: "acme", Period: "monthly", LimitUSD: 1, WarnPct: 50, Action: "warn"}, "project.acme.acme.monthly", 50},
		{fleet.BudgetLimit{Scope: "team", ProjectID: "acme", ScopeID: "support", Period: "daily", LimitUSD: 1, Action: "throttle", ThrottleModel: "gpt-5-mini"}, "team.acme.support.daily", 80},
		{fleet.BudgetLimit{Scope: "user", ProjectID: "acme", ScopeID: "alice@example.com", Period: "daily", LimitUSD: 1, WarnPct: 100, Action: "stop"}, "user.acme.=YWxpY2VAZXhhbXBsZS5jb20.daily", 100},
		{fleet.BudgetLimit{Scope: "user", ProjectID: "acme", ScopeID: "_", Period: "daily", LimitUSD: 1, Action: "stop"}, "user.acme.=Xw.daily", 80},
		{fleet.BudgetLimit{Scope: "global", Period: "monthly", LimitUSD: 1, Action: "stop"}, "global._._.monthly", 80},
	}
	for _, tt := range good {
		b := tt.in
		if err := b.Normalize(); err != nil {
			t.Errorf("Normalize(%+v): %v", tt.in, err)
			continue
		}
		if b.ID != tt.id || b.WarnPct != tt.warn || !fleet.ValidBudgetID(b.ID) {
			t.Errorf("Normalize(%+v): id %q warn %v; want %q and %v", tt.in, b.ID, b.WarnPct, tt.id, tt.warn)
		}
	}
	bad := []struct {
		in         fleet.BudgetLimit
		field, say string
	}{
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: -1, Action: "stop"}, "limit_usd", "more than 0"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", Action: "stop"}, "limit_usd", "more than 0"},
		{fleet.BudgetLimit{Scope: "org", ProjectID: "acme", Period: "daily", LimitUSD: 1, Action: "stop"}, "scope", "unknown"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "hourly", LimitUSD: 1, Action: "stop"}, "period", "daily or monthly"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1, Action: "nap"}, "action", "warn, throttle or stop"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1, WarnPct: 101, Action: "stop"}, "warn_pct", "at most 100"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1, WarnPct: -3, Action: "stop"}, "warn_pct", "more than 0"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1, Action: "throttle"}, "throttle_model", "cheaper model"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", Period: "daily", LimitUSD: 1, Action: "stop", ThrottleModel: "gpt-5-mini"}, "throttle_model", "only for action throttle"},
		{fleet.BudgetLimit{Scope: "project", ProjectID: "acme", ScopeID: "globex", Period: "daily", LimitUSD: 1, Action: "stop"}, "scope_id", "its project_id"},
		{fleet.BudgetLimit{Scope: "team", ProjectID: "acme", Period: "daily", LimitUSD: 1, Action: "stop"}, "scope_id", "team id"},
		{fleet.BudgetLimit{Scope: "user", ScopeID: "u-1", Period: "daily", LimitUSD: 1, Action: "stop"}, "project_id", "project_id"},
		{fleet.BudgetLimit{Scope: "global", ProjectID: "acme", Period: "daily", LimitUSD: 1, Action: "stop"}, "scope_id", "no project_id"},
		{fleet.BudgetLimit{Scope: "user", ProjectID: "acme", ScopeID: "a\nb", Period: "daily", LimitUSD: 1, Action: "stop"}, "scope_id", "control"},
	}
	for _, tt := range bad {
		b := tt.in
		err := b.Normalize()
		var be *fleet.BudgetError
		if !errors.As(err, &be) || be.Field != tt.field || !strings.Contains(be.Message, tt.say) || !errors.Is(err, fleet.ErrBadBudget) {
			t.Errorf("Normalize(%+v) = %v; want a BudgetError on %s saying %q", tt.in, err, tt.field, tt.say)
		}
	}
	b := fleet.BudgetLimit{Scope: "team", ProjectID: "acme", ScopeID: "t", Period: "daily", LimitUSD: 1, Action: "throttle", ThrottleModel: "house-model-9"}
	if err := b.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckThrottleModel(fleet.DefaultPricing()); err == nil {
		t.Errorf("an unpriced throttle model was accepted")
	}
}

// standing is a budget of action with cap limit and warn threshold warn,
// spent and reserved as given.
func standing(scope, id, action string, limit, spent, reserved fleet.Micros, warn float64, throttle string) fleet.BudgetStanding {
	b := fleet.BudgetLimit{Scope: scope, ProjectID: "acme", ScopeID: id, Period: "daily", LimitUSD: limit, WarnPct: warn, Action: action, ThrottleModel: throttle}
	if scope == "global" {
		b.ProjectID, b.ScopeID = "", ""
	}
	if err := b.Normalize(); err != nil {
		panic(err)
	}
	w, _ := fleet.WindowOf("daily", t0)
	return fleet.BudgetStanding{Budget: b, Window: w, Spent: spent, Reserved: reserved}
}

func TestEvaluateBudgets(t *testing.T) {
	p := fleet.DefaultPricing()
	req := fleet.BudgetRequest{ProjectID: "acme", TeamID: "research", UserID: "u-1", Model: "gpt-5", Estimate: 100_000}
	tests := []struct {
		name      string
		standings []fleet.BudgetStanding
		estimate  fleet.Micros
		allowed   bool
		action    string
		model     string
		reserve   fleet.Micros
		verdicts  []string
	}{
		{"no budget: allowed, nothing to say", nil, 100_000, true, "", "gpt-5", 100_000, []string{}},
		{"within the threshold", []fleet.BudgetStanding{standing("project", "acme", "stop", 1_000_000, 600_000, 0, 80, "")},
			100_000, true, "", "gpt-5", 100_000, []string{""}},
		{"the threshold reached exactly warns", []fleet.BudgetStanding{standing("project", "acme", "stop", 1_000_000, 600_000, 100_000, 80, "")},
			100_000, true, "warn", "gpt-5", 100_000, []string{"warn"}},
		{"the cap reached exactly is allowed", []fleet.BudgetStanding{standing("project", "acme", "stop", 1_000_000, 600_000, 300_000, 80, "")},
			100_000, true, "warn", "gpt-5", 100_000, []string{"warn"}},
		{"one micro-dollar past a stop cap refuses", []fleet.BudgetStanding{standing("project", "acme", "stop", 1_000_000, 600_000, 300_001, 80, "")},
			100_000, false, "stop", "gpt-5", 100_000, []string{"stop"}},
		{"past a warn cap: allowed with a warning", []fleet.BudgetStanding{standing("user", "u-1", "warn", 1_000_000, 2_000_000, 0, 80, "")},
			100_000, true, "warn", "gpt-5", 100_000, []string{"warn"}},
		{"an overspent stop cap refuses even an empty estimate", []fleet.BudgetStanding{standing("project", "acme", "stop", 1_000_000, 1_000_001, 0, 80, "")},
			0, false, "stop", "gpt-5", 0, []string{"stop"}},
		{"throttle routes to the cheaper model and scales the estimate", []fleet.BudgetStanding{
			standing("team", "research", "throttle", 1_000_000, 950_000, 0, 80, "gpt-5-mini")},
			100_000, true, "throttle", "gpt-5-mini", 20_000, []string{"throttle"}}, // gpt-5-mini costs a fifth of gpt-5
		{"the harshest wins: stop over throttle over warn", []fleet.BudgetStanding{
			standing("user", "u-1", "warn", 100_000, 100_000, 0, 80, ""),
			standing("team", "research", "throttle", 1_000_000, 950_000, 0, 80, "gpt-5-mini"),
			standing("project", "acme", "stop", 1_000_000, 990_000, 0, 80, "")},
			100_000, false, "stop", "gpt-5", 20_000, []string{"warn", "throttle", "stop"}},
		{"throttling makes room under a stop cap", []fleet.BudgetStanding{
			standing("team", "research", "throttle", 1_000_000, 950_000, 0, 80, "gpt-5-mini"),
			standing("project", "acme", "stop", 1_000_000, 950_000, 0, 99, "")},
			100_000, true, "throttle", "gpt-5-mini", 20_000, []string{"throttle", ""}},
		{"the cheapest of two throttle models wins", []fleet.BudgetStanding{
			standing("user", "u-1", "throttle", 100_000, 100_000, 0, 80, "gpt-5-mini"),
			standing("team", "research", "throttle", 100_000, 100_000, 0, 80, "gpt-5-nano")},
			100_000, true, "throttle", "gpt-5-nano", 4_000, []string{"throttle", "throttle"}}, // nano: 0.05/1.25 and 0.40/10
		{"a model already cheaper than the throttle model stays", []fleet.BudgetStanding{
			standing("team", "research", "throttle", 100_000, 100_000, 0, 80, "gpt-5-mini")},
			100_000, true, "throttle", "gpt-5-nano", 100_000, []string{"throttle"}},
		{"the global budget counts too", []fleet.BudgetStanding{standing("global", "", "stop", 5_000_000, 4_950_000, 0, 80, "")},
			100_000, false, "stop", "gpt-5", 100_000, []string{"stop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req
			r.Estimate = tt.estimate
			if strings.Contains(tt.name, "already cheaper") {
				r.Model = "gpt-5-nano"
			}
			out := fleet.EvaluateBudgets(r, tt.standings, p)
			d := out.Decision
			if d.Allowed != tt.allowed || d.Action != tt.action || d.Model != tt.model || out.Estimate != tt.reserve {
				t.Errorf("allowed %v action %q model %q reserve %d; want %v %q %q %d", d.Allowed, d.Action, d.Model, out.Estimate,
					tt.allowed, tt.action, tt.model, tt.reserve)
			}
			if diff := cmp.Diff(tt.verdicts, out.Verdicts); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
			// A breach for every verdict, with the figures that decided.
			n := 0
			for i, v := range out.Verdicts {
				if v == "" {
					continue
				}
				b := d.Breaches[n]
				n++
				st := tt.standings[i]
				if b.Action != v || b.LimitUSD != st.Budget.LimitUSD || b.SpentUSD != st.Spent || b.Reserved != st.Reserved ||
					!b.ResetsAt.Equal(st.Window.End) || b.Scope != st.Budget.Scope {
					t.Errorf("breach %+v does not describe %+v (%s)", b, st, v)
				}
			}
			if n != len(d.Breaches) {
				t.Errorf("%d breaches for %d verdicts", len(d.Breaches), n)
			}
		})
	}
}

func TestScaleEstimate(t *testing.T) {
	p := fleet.DefaultPricing()
	tests := []struct {
		from, to string
		est      fleet.Micros
		want     fleet.Micros
	}{
		{"gpt-5", "gpt-5-mini", 1_000_000, 200_000},
		{"claude-sonnet-4-5", "claude-haiku-4-5", 3_000_001, 1_000_001}, // a third, rounded up
		{"claude-opus-4-1", "claude-haiku-4-5", 1_500_000, 100_000},
		// Dearer, and tiered: claude-sonnet-4-5's cache-write price above
		// 200k input tokens, 7.50, over gpt-5's, 1.25 (the list gives gpt-5
		// none, so cache writes cost what input does), is the largest ratio.
		{"gpt-5", "claude-sonnet-4-5", 1_000_000, 6_000_000},
		// From a tiered model: over its lowest prices (the base ones).
		{"claude-sonnet-4-5", "gpt-5", 1_500_000, 1_000_000}, // output 10/15
		{"gpt-5", "llama3.1", 1_000_000, 0},                  // local: free
		{"llama3.1", "gpt-5", 1_000_000, 1_000_000},          // nothing to scale a free model by
		{"gpt-5", "no-such-model", 1_000_000, 1_000_000},     // unpriced: unchanged
		{"gpt-5", "gpt-5-mini", 999_999_999_999_999, 200_000_000_000_000},
	}
	for _, tt := range tests {
		if got := fleet.ScaleEstimate(p, tt.from, tt.to, tt.est); got != tt.want {
			t.Errorf("ScaleEstimate(%s → %s, %d) = %d, want %d", tt.from, tt.to, tt.est, got, tt.want)
		}
	}
}

func TestBudgetIDsCoverEveryScope(t *testing.T) {
	got := fleet.BudgetIDs(fleet.BudgetRequest{ProjectID: "acme", TeamID: "support", UserID: "u 1"})
	want := []string{
		"user.acme.=dSAx.daily", "user.acme.=dSAx.monthly",
		"team.acme.support.daily", "team.acme.support.monthly",
		"project.acme.acme.daily", "project.acme.acme.monthly",
		"global._._.daily", "global._._.monthly",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BudgetIDs (-want +got):\n%s", diff)
	}
	if got := fleet.BudgetIDs(fleet.BudgetRequest{ProjectID: "acme"}); len(got) != 4 {
		t.Errorf("without team and user: %v", got)
	}
	for _, id := range []string{"", "project.acme.acme", "project.acme.acme.weekly", "tenant.acme.acme.daily", "project.ac me.acme.daily", "project..acme.daily"} {
		if fleet.ValidBudgetID(id) {
			t.Errorf("ValidBudgetID(%q) = true", id)
		}
	}
}

// kvKeyRE is what NATS accepts as a KV key.
var kvKeyRE = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// FuzzBudgetLimitNormalize checks that whatever a client sends, Normalize
// either refuses it with a BudgetError or gives an id that is a valid KV
// key and URL segment, which ValidBudgetID accepts, and that two budgets of
// different scope ids never share an id.
func FuzzBudgetLimitNormalize(f *testing.F) {
	f.Add("team", "acme", "support", "daily", int64(5_000_000), 80.0, "throttle", "gpt-5-mini")
	f.Add("user", "acme", "alice@example.com", "monthly", int64(1), 100.0, "stop", "")
	f.Add("user", "acme", "_", "daily", int64(1), 0.0, "warn", "")
	f.Add("global", "", "", "monthly", int64(-3), 50.0, "stop", "")
	f.Add("project", "acme", "", "weekly", int64(7), 81.5, "stop", "")
	f.Fuzz(func(t *testing.T, scope, project, scopeID, period string, limit int64, warn float64, action, model string) {
		b := fleet.BudgetLimit{Scope: scope, ProjectID: project, ScopeID: scopeID, Period: period, LimitUSD: fleet.Micros(limit),
			WarnPct: warn, Action: action, ThrottleModel: model}
		if err := b.Normalize(); err != nil {
			var be *fleet.BudgetError
			if !errors.As(err, &be) || be.Field == "" || be.Message == "" {
				t.Fatalf("Normalize error %v is not a BudgetError naming a field", err)
			}
			return
		}
		if !kvKeyRE.MatchString(b.ID) || !fleet.ValidBudgetID(b.ID) || len(b.ID) > 400 {
			t.Fatalf("id %q of %+v is not a valid key", b.ID, b)
		}
		if b.WarnPct <= 0 || b.WarnPct > 100 || b.LimitUSD <= 0 {
			t.Fatalf("accepted %+v", b)
		}
		other := b
		other.ScopeID += "x"
		if b.Scope == "user" || b.Scope == "team" {
			if err := other.Normalize(); err == nil && other.ID == b.ID {
				t.Fatalf("scope ids %q and %q share the id %q", b.ScopeID, other.ScopeID, b.ID)
			}
		}
	})
}
