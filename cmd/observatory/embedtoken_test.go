package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sagewai/observatory/protocol"
)

// TestEmbedToken issues a token with `observatory embed-token` for a
// running `observatory serve` (the signing keys come from its data
// directory, never from NATS) and checks that it opens that project's
// embedded HUD and nothing else.
func TestEmbedToken(t *testing.T) {
	dataDir := t.TempDir()
	s := startServe(t, "--embed-origins", "https://admin.example.com", "--data-dir", dataDir)
	var out, errOut bytes.Buffer
	noEnv := func(string) string { return "" }
	if err := run(context.Background(), []string{"embed-token", "--project", "acme", "--ttl", "1h", "--data-dir", dataDir}, noEnv, &out, &errOut); err != nil {
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
	dir := t.TempDir()
	exposed := filepath.Join(t.TempDir(), "signing.json")
	if err := run(context.Background(), []string{"rotate-key", "--signing-key-file", exposed}, noEnv, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(exposed, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no project", []string{"--data-dir", dir}, "--project is required"},
		{"too long", []string{"--project", "acme", "--ttl", "2h", "--data-dir", dir}, "at most 1h0m0s"},
		{"not a project", []string{"--project", "Not A Project", "--data-dir", dir}, "not a project id"},
		{"no server has run", []string{"--project", "acme", "--data-dir", dir}, "start `observatory serve`"},
		{"a key file others can read", []string{"--project", "acme", "--signing-key-file", exposed}, "chmod 600"},
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
	if _, err := os.Stat(filepath.Join(dir, "keys")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("embed-token made a key file: %v", err)
	}
}
