package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const usersJSON = `[{"name":"alice","password":"alice-pass","project":"acme"}]`

// TestRunRefusesWhatCannotWork: each missing or malformed setting stops
// the command with a message naming the flag or variable to fix.
func TestRunRefusesWhatCannotWork(t *testing.T) {
	users := writeFile(t, "users.json", usersJSON)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no password", []string{"--users-file", users}, nil, "ADMINAPP_OBSERVATORY_PASSWORD"},
		{"no users", nil, map[string]string{"ADMINAPP_OBSERVATORY_PASSWORD": "p"}, "--users-file"},
		{"unknown user field", []string{"--users-file", writeFile(t, "u.json", `[{"name":"a","password":"b","project":"acme","role":"x"}]`)},
			map[string]string{"ADMINAPP_OBSERVATORY_PASSWORD": "p"}, "unknown field"},
		{"missing credential file", []string{"--users-file", users, "--credential-file", "/nonexistent/pw"}, nil, "--credential-file"},
		{"ttl over an hour", []string{"--users-file", users, "--embed-ttl", "2h"}, map[string]string{"ADMINAPP_OBSERVATORY_PASSWORD": "p"}, "ttl"},
		{"bad env ttl", []string{"--users-file", users}, map[string]string{"ADMINAPP_OBSERVATORY_PASSWORD": "p", "ADMINAPP_EMBED_TTL": "soon"}, "ADMINAPP_EMBED_TTL"},
		{"observatory url with a path", []string{"--users-file", users, "--observatory-url", "http://o:3001/hud"}, map[string]string{"ADMINAPP_OBSERVATORY_PASSWORD": "p"}, "ObservatoryURL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			err := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestRunServesUntilCancelled: with a users file and the password in a
// file, run serves the app on the address it prints, logs JSON lines to
// stderr without the password, and returns nil when its context ends.
func TestRunServesUntilCancelled(t *testing.T) {
	const password = "observatory-secret-pw"
	args := []string{"--listen", "127.0.0.1:0", "--users-file", writeFile(t, "users.json", usersJSON),
		"--credential-file", writeFile(t, "pw", password+"\n")}
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(string) string { return "" }, &stdout, &stderr) }()

	re := regexp.MustCompile(`serving (http://\S+)`)
	var base string
	deadline := time.Now().Add(time.Minute)
	for base == "" {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("run never printed its address")
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/signin" {
		t.Errorf("GET /: %s to %q, want 303 to /signin", res.Status, res.Header.Get("Location"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after its context ended")
	}
	if !strings.Contains(stderr.String(), `"event":"adminapp.request"`) {
		t.Errorf("stderr has no JSON access log line:\n%s", stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), password) {
		t.Error("the Observatory password was printed")
	}
}
