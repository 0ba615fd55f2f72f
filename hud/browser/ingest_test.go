package browser_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/genai/nodetest"
	"github.com/sagewai/observatory/ingest/ingesttest"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/stream/streamtest"
)

// apiCall sends a JSON request to base with a bearer token and decodes a
// 2xx answer into out; it returns the status.
func apiCall(t *testing.T, base, method, path, token string, body any, out any) int {
	t.Helper()
	c := &live.Client{Base: base, HTTP: http.DefaultClient}
	status, err := c.Do(context.Background(), token, method, path, body, 0, out)
	if err != nil && (status == 0 || status/100 == 2) {
		t.Fatalf("%s %s: %v", method, path, err) // no answer, or one that does not decode
	}
	return status
}

// exportTap forwards OTLP exports to a server and keeps their bodies, so
// that the test can send them again as an exporter's retry would.
type exportTap struct {
	mu      sync.Mutex
	exports []tapped
	srv     *httptest.Server
}

type tapped struct {
	header http.Header
	body   []byte
}

func newExportTap(t *testing.T, target string) *exportTap {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	tap := &exportTap{}
	tap.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tap.mu.Lock()
		tap.exports = append(tap.exports, tapped{r.Header.Clone(), b})
		tap.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(tap.srv.Close)
	return tap
}

// resend posts every export kept again, as it was sent.
func (tap *exportTap) resend(t *testing.T, target string) int {
	t.Helper()
	tap.mu.Lock()
	defer tap.mu.Unlock()
	for _, e := range tap.exports {
		req, _ := http.NewRequest(http.MethodPost, target+"/v1/traces", bytes.NewReader(e.body))
		req.Header = e.header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("re-sent export: %d", resp.StatusCode)
		}
	}
	return len(tap.exports)
}

// meteredCost reads acme's sagewai_llm_cost_usd_total from /metrics.
func meteredCost(t *testing.T, base, admin string) fleet.Micros {
	t.Helper()
	c, err := ingesttest.MeteredCost(context.Background(), base, admin, "acme")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestInstrumentedAgentsLiveOnTheHUD runs real GenAI instrumentation
// libraries from npm (the Vercel AI SDK, OpenInference's OpenAI
// instrumentation, OpenLLMetry), each as a small agent calling a fake
// OpenAI server, exporting their spans to a real `observatory serve` with
// a project token and nothing else configured. For each, the agent comes
// onto the HUD's roster in Chromium and its tool call into the ticker;
// the project's spend on /api/v1/fleet and in sagewai_llm_cost_usd_total
// is the pricing table applied to the token counts the fake returned (as
// the library reports them), to the micro-dollar; and sending every
// export again changes neither.
func TestInstrumentedAgentsLiveOnTheHUD(t *testing.T) {
	bin := observatorytest.Build(t)
	p := observatorytest.Start(t, bin, nil, "serve", "--addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--tick", "50ms")
	var login struct {
		Token string `json:"token"`
	}
	if st := apiCall(t, p.Base, "POST", "/api/v1/auth/login", "", map[string]string{"username": "admin", "password": "admin"}, &login); st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}
	admin := login.Token
	if st := apiCall(t, p.Base, "POST", "/api/v1/projects", admin, map[string]string{"id": "acme", "name": "Acme"}, nil); st != http.StatusCreated {
		t.Fatalf("create project: %d", st)
	}
	var minted struct {
		Token string `json:"token"`
	}
	if st := apiCall(t, p.Base, "POST", "/api/v1/projects/acme/tokens", admin, map[string]string{"name": "agents"}, &minted); st != http.StatusCreated {
		t.Fatalf("mint a project token: %d", st)
	}
	tap := newExportTap(t, p.Base)

	tb := newTab(t, 1600, 900)
	loginAt(tb, p.Base, "/hud?project=acme", "admin", time.Minute)

	spend := func() fleet.Micros {
		var snap struct {
			State fleet.View `json:"state"`
		}
		if st := apiCall(t, p.Base, "GET", "/api/v1/fleet?scope=acme", minted.Token, nil, &snap); st != http.StatusOK {
			t.Fatalf("GET /api/v1/fleet: %d", st)
		}
		return snap.State.Projects["acme"].SpendTotal
	}
	pricing := fleet.DefaultPricing()
	var want fleet.Micros
	for i, script := range nodetest.Scripts {
		agent := strings.TrimSuffix(script, ".mjs") + "-bot"
		fake := nodetest.NewFakeOpenAI(t)
		env := nodetest.Env(script, nodetest.Target{OpenAIURL: fake.URL, TracesURL: tap.srv.URL + "/v1/traces", Token: minted.Token, Agent: agent})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := nodetest.Run(ctx, t, script, env)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		cost, priced := nodetest.Expected(pricing, script, fake.Calls())
		if !priced || cost == 0 {
			t.Fatalf("%s: its calls are unpriced (%v): the test would prove nothing", script, fake.Calls())
		}
		want += cost
		// The HUD follows: the agent on the roster, its tool call in the
		// ticker (one more "tool get_weather" line for each library).
		tb.waitTrue(agent+" on the roster and its tool call in the ticker", `(() => {
			const roster = [...document.querySelectorAll('[data-testid=agent-roster] li')].map((e) => e.textContent);
			const ticker = [...document.querySelectorAll('[data-testid=ticker] li')].map((e) => e.textContent);
			return roster.some((s) => s.includes(`+strconv.Quote(agent)+`)) &&
				ticker.filter((s) => s.includes("tool.call tool get_weather ok")).length === `+strconv.Itoa(i+1)+`;
		})()`, time.Minute)
		// The bill follows, library by library: the spend so far is the
		// pricing of every call the libraries reported.
		streamtest.Eventually(t, time.Minute, func() bool { return spend() == want },
			script+": acme's spend never equalled the pricing of the token counts the libraries reported")
		if got := meteredCost(t, p.Base, admin); got != want {
			t.Errorf("after %s: sagewai_llm_cost_usd_total{acme} = %d µ$, want %d µ$", script, got, want)
		}
	}
	tb.screenshot("hud-ingested-agents.png")

	// Every export again, as exporters retry. Then an agent registered
	// through the API: FLEET is folded in order, so once it is on the
	// roster the fold has gone past the re-sent exports.
	if n := tap.resend(t, p.Base); n < len(nodetest.Scripts) {
		t.Fatalf("%d exports kept, want at least one a library", n)
	}
	if st := apiCall(t, p.Base, "POST", "/api/v1/projects/acme/agents", admin,
		map[string]string{"id": "marker", "name": "marker", "role": "barrier", "model": "gpt-5-mini"}, nil); st != http.StatusCreated {
		t.Fatalf("register the marker agent: %d", st)
	}
	streamtest.Eventually(t, time.Minute, func() bool {
		var snap struct {
			State fleet.View `json:"state"`
		}
		apiCall(t, p.Base, "GET", "/api/v1/fleet?scope=acme", minted.Token, nil, &snap)
		_, ok := snap.State.Agents["marker"]
		return ok
	}, "the marker agent never reached the fold")
	if got := spend(); got != want {
		t.Errorf("spend after every export was sent again: %d µ$, want %d", got, want)
	}
	if got := meteredCost(t, p.Base, admin); got != want {
		t.Errorf("sagewai_llm_cost_usd_total{acme} after the re-sent exports = %d µ$, want %d µ$", got, want)
	}
	tb.waitTrue("the marker agent on the roster", `[...document.querySelectorAll('[data-testid=agent-roster] li')].some((e) => e.textContent.includes("marker"))`, time.Minute)
	if n := eval[int](tb, `[...document.querySelectorAll('[data-testid=agent-roster] li')].length`); n != len(nodetest.Scripts)+1 {
		t.Errorf("%d agents on acme's roster after the re-sent exports, want %d (one per library and the marker)", n, len(nodetest.Scripts)+1)
	}
	if n := eval[int](tb, `[...document.querySelectorAll('[data-testid=ticker] li')].filter((e) => e.textContent.includes("tool.call tool get_weather ok")).length`); n != len(nodetest.Scripts) {
		t.Errorf("%d tool calls in the ticker after the re-sent exports, want %d", n, len(nodetest.Scripts))
	}
}
