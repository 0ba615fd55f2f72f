package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream"
)

// TestEmbedToken issues a token with `observatory embed-token` against a
// running `observatory serve` (the signing key comes from its NATS) and
// checks that it opens that project's embedded HUD and nothing else.
func TestEmbedToken(t *testing.T) {
	s := startServe(t, "--embed-origins", "https://admin.example.com")
	var out, errOut bytes.Buffer
	noEnv := func(string) string { return "" }
	if err := run(context.Background(), []string{"embed-token", "--project", "acme", "--ttl", "1h", "--nats-url", s.nats}, noEnv, &out, &errOut); err != nil {
		t.Fatalf("embed-token: %v\n%s", err, errOut.String())
	}
	tok := strings.TrimSpace(out.String())
	if strings.ContainsAny(tok, " \n") || tok == "" {
		t.Fatalf("stdout %q: want the token alone", out.String())
	}
	if !strings.Contains(errOut.String(), "embed_token="+url.QueryEscape(tok)) {
		t.Errorf("stderr has no iframe snippet with the token:\n%s", errOut.String())
	}

	get := func(query string) *http.Response {
		t.Helper()
		resp, err := http.Get(s.base + "/hud?" + query)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := get("embed=1&embed_token=" + url.QueryEscape(tok))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /hud with the embed token: %s", resp.Status)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, "frame-ancestors https://admin.example.com") {
		t.Errorf("--embed-origins did not reach the CSP: %q", csp)
	}
	if resp := get("embed=1&project=globex&embed_token=" + url.QueryEscape(tok)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /hud?project=globex with acme's token: %s, want 403", resp.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(s.base, "http", "ws", 1)+"/ws?embed_token="+url.QueryEscape(tok),
		&websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"op":"subscribe","scope":"globex"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err = c.Read(ctx); err != nil {
			break
		}
	}
	if st := websocket.CloseStatus(err); st != protocol.CloseForbidden {
		t.Errorf("subscribing to globex with acme's embed token: close %d (%v), want 4403", st, err)
	}
}

func TestEmbedTokenRefusals(t *testing.T) {
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no project", []string{"--nats-url", ns.ClientURL()}, "--project is required"},
		{"too long", []string{"--project", "acme", "--ttl", "2h", "--nats-url", ns.ClientURL()}, "at most 1h0m0s"},
		{"not a project", []string{"--project", "Not A Project", "--nats-url", ns.ClientURL()}, "not a project id"},
		{"no server has run", []string{"--project", "acme", "--nats-url", ns.ClientURL()}, "start `observatory serve` first"},
		{"no NATS", []string{"--project", "acme", "--nats-url", "nats://127.0.0.1:1"}, "connect nats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"embed-token"}, tc.args...), func(string) string { return "" }, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q on failure", out.String())
			}
		})
	}
}
