package browser_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/budget"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
)

// lockedBuffer is a log sink safe to read while the server writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// attackerPages are the pages of a site on another port of the same
// host (as Grafana's is in the compose stack) that write with the admin's
// session cookie: a no-cors fetch of a $0.01 global stop budget, which
// would halt all work, and a text/plain form post of a project. Neither
// can read the answer; both can make the browser send the cookie, and
// both bodies are ones the API would accept.
func attackerPages(target string) http.Handler {
	body := `{"scope":"global","period":"daily","limit_usd":"0.01","action":"stop"}`
	mux := http.NewServeMux()
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>loading</title><script>
fetch(%q, {method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "text/plain"}, body: %q})
  .then(() => { document.title = "sent"; }, () => { document.title = "sent"; });
</script>`, target+"/api/v1/budgets", body)
	})
	mux.HandleFunc("/form", func(w http.ResponseWriter, r *http.Request) {
		// enctype text/plain sends name=value: the name opens the JSON and
		// a string the value closes, so the "=" is part of the project's
		// name: {"id":"evil","name":"=pwned"}.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>form</title>
<form id="f" method="POST" enctype="text/plain" action="%s/api/v1/projects">
<input type="hidden" name='{"id":"evil","name":"' value='pwned"}'></form>
<script>document.getElementById("f").submit();</script>`, target)
	})
	return mux
}

// TestCSRFFromAnotherOrigin: in Chromium, with the admin logged in to the
// HUD (the session cookie set by the login form), pages served from
// another port of the same host post a budget with a no-cors fetch and a
// project with a form. The browser sends the cookie with both (the server
// logs both refusals, which it logs only for requests carrying the
// cookie), the server answers 403 csrf, and the budgets and registry
// buckets, FLEET and AUDIT do not change. The same budget from the HUD's
// own page, as JSON, is accepted: the browser's cookie works, and the
// check would see a write.
func TestCSRFFromAnotherOrigin(t *testing.T) {
	n := streamtest.Start(t, stream.HubConfig{Tick: 20 * time.Millisecond, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	ledger, err := budget.NewLedger(ctx, n.JS, budget.Config{Auditor: n.Publisher, Logger: quiet})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ledger.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("ledger: %v", err)
		}
	})
	streamtest.Eventually(t, 30*time.Second, func() bool { return ledger.Ready() == nil }, "ledger not ready")

	reg, err := stream.OpenRegistry(ctx, n.JS, stream.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv, err := web.New(web.Config{
		AdminPassword: adminPassword,
		SigningKey:    bytes.Repeat([]byte("observatory-hud-test-key!"), 2),
		BcryptCost:    bcrypt.MinCost,
		Logger:        slog.New(slog.NewJSONHandler(logs, nil)),
		Records:       reg.Records,
		Work:          reg.Work,
		Events:        n.Publisher,
		Missions:      reg.Missions,
		Budgets:       ledger,
		BudgetStore:   ledger,
	}, n.Hub, n.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	ln := listen(t)
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		_ = hs.Shutdown(sctx)
	})
	base := "http://" + ln.Addr().String()

	evilLn := listen(t)
	evil := &http.Server{Handler: attackerPages(base), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = evil.Serve(evilLn) }()
	t.Cleanup(func() { _ = evil.Close() })
	evilBase := "http://" + evilLn.Addr().String()

	watched := func() map[string]uint64 {
		t.Helper()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		out := map[string]uint64{}
		for _, name := range []string{"KV_" + budget.BudgetsBucket, "KV_" + stream.RegistryBucket, stream.FleetStream, stream.AuditStream} {
			st, err := n.JS.Stream(sctx, name)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = st.CachedInfo().State.LastSeq
		}
		return out
	}
	refusals := func() int { return strings.Count(logs.String(), `"event":"http.csrf_refused"`) }
	// answered returns the statuses the access log shows for POSTs to route.
	answered := func(route string) []string {
		re := regexp.MustCompile(`"method":"POST","route":"` + regexp.QuoteMeta(route) + `","status":(\d+)`)
		var out []string
		for _, m := range re.FindAllStringSubmatch(logs.String(), -1) {
			out = append(out, m[1])
		}
		return out
	}

	tb := newTab(t, 1280, 720)
	// The browser reports the refused requests as failed loads, and the
	// favicon it asks for on the API's JSON answer (which has none).
	tb.allow(`status of 403`)
	tb.allow(`status of 404`)
	loginAt(tb, base, "/hud", adminPassword, 30*time.Second)
	before := watched()

	tb.do(chromedp.Navigate(evilBase + "/fetch"))
	tb.waitTrue("the no-cors fetch", `document.title === "sent"`, 20*time.Second)
	streamtest.Eventually(t, 10*time.Second, func() bool { return len(answered("/api/v1/budgets")) == 1 }, "the fetch never reached the server")

	tb.do(chromedp.Navigate(evilBase + "/form"))
	tb.waitTrue("the form post", fmt.Sprintf(`location.href === %q`, base+"/api/v1/projects"), 20*time.Second)
	streamtest.Eventually(t, 10*time.Second, func() bool { return len(answered("/api/v1/projects")) == 1 }, "the form post never reached the server")

	if after := watched(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the attacks wrote: before %v, after %v", before, after)
	}
	if got := append(answered("/api/v1/budgets"), answered("/api/v1/projects")...); fmt.Sprint(got) != "[403 403]" {
		t.Errorf("the attacks were answered %v, want 403 and 403", got)
	}
	if page := eval[string](tb, `document.body.innerText`); !strings.Contains(page, `"code":"csrf"`) {
		t.Errorf("the form post's answer: %s, want 403 csrf", page)
	}
	// The server logs a refusal only for a request with the cookie: the
	// browser sent it with both.
	if got := refusals(); got != 2 {
		t.Fatalf("%d refusals logged, want 2: the browser did not send the cookie with both", got)
	}

	// The HUD's own page, as JSON, with the same cookie: accepted.
	tb.do(chromedp.Navigate(base + "/hud"))
	status := eval[float64](tb, `fetch("/api/v1/budgets", {method: "POST", headers: {"Content-Type": "application/json"},
		body: JSON.stringify({scope: "project", project_id: "acme", period: "daily", limit_usd: 5, action: "warn"})}).then(r => r.status)`,
		chromedp.EvalAwaitPromise)
	if status != http.StatusCreated {
		t.Fatalf("the HUD's own JSON write: %v, want 201", status)
	}
	if after := watched(); after["KV_"+budget.BudgetsBucket] == before["KV_"+budget.BudgetsBucket] {
		t.Error("the accepted write did not show in the budgets bucket: the check above could not see a write")
	}
	if got := refusals(); got != 2 {
		t.Errorf("%d refusals logged, want 2", got)
	}
}
