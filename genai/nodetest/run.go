package nodetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// EnvNodeDir names the directory the node project is installed in (the
// Makefile exports it); without it, Run uses <repo root>/.cache/node.
const EnvNodeDir = "OBSERVATORY_NODE_DIR"

// The scripts Run takes, in node/ beside this package's sources.
const (
	Vercel        = "vercel.mjs"
	OpenInference = "openinference.mjs"
	OpenLLMetry   = "openllmetry.mjs"
)

// Scripts lists every script, for tests that drive them all.
var Scripts = []string{Vercel, OpenInference, OpenLLMetry}

// installHint is how to install the node project: the Makefile's deps
// target, or the script it calls.
const installHint = "make deps, or: genai/nodetest/node/install.sh .cache/node .cache/npm"

// repoRoot returns the directory of go.mod above the working directory:
// tests run in their package's directory inside the repository.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// SourceDir returns genai/nodetest/node in the repository: the committed
// package.json, package-lock.json and scripts.
func SourceDir() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "genai", "nodetest", "node"), nil
}

// NodeDir returns where the node project is installed: $OBSERVATORY_NODE_DIR,
// else <repo root>/.cache/node.
func NodeDir() (string, error) {
	if d := strings.TrimSpace(os.Getenv(EnvNodeDir)); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "node"), nil
}

// installed checks that the node project is installed at the committed
// lock: install.sh leaves a copy of the lock it installed as
// installed.lock once npm ci succeeded, so a stale or half-done install
// never passes for the pin.
func installed(src, dir string) error {
	want, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("read the committed lock: %w", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "installed.lock"))
	if err != nil {
		return fmt.Errorf("the node project is not installed in %s (%s=%q): run %s", dir, EnvNodeDir, os.Getenv(EnvNodeDir), installHint)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("the node project in %s was installed from another package-lock.json than the committed one: run %s", dir, installHint)
	}
	return nil
}

// Run runs one of the scripts (Vercel, OpenInference, OpenLLMetry) with
// node, against the installed node project, with env as its only
// environment beyond PATH, HOME and TMPDIR, so that OTEL_* variables of
// the test's own environment never reach it. It fails t, never skips,
// when node or the node project is missing, with the command that
// installs them. The script's output goes to the test log. It returns an
// error when the script fails or ctx ends first.
func Run(ctx context.Context, t testing.TB, script string, env map[string]string) error {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("nodetest: node is not on PATH: apt-get install -y nodejs npm, then %s", installHint)
	}
	src, err := SourceDir()
	if err != nil {
		t.Fatalf("nodetest: %v", err)
	}
	dir, err := NodeDir()
	if err != nil {
		t.Fatalf("nodetest: %v", err)
	}
	if err := installed(src, dir); err != nil {
		t.Fatalf("nodetest: %v", err)
	}
	body, err := os.ReadFile(filepath.Join(src, script))
	if err != nil {
		t.Fatalf("nodetest: %v", err)
	}

	// Node resolves a script's imports from the script's own directory
	// upwards: run a copy beside a link to the installed node_modules, so
	// that the committed scripts run as they are, against the pinned
	// install, and nothing is installed in the source tree.
	work := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "node_modules"), filepath.Join(work, "node_modules")); err != nil {
		t.Fatalf("nodetest: %v", err)
	}
	path := filepath.Join(work, script)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatalf("nodetest: %v", err)
	}

	cmd := exec.CommandContext(ctx, nodeBin, path)
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work, "TMPDIR=" + work}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A script that ignores the kill must not hold the test past it.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	t.Logf("node %s (%s):\n%s", script, time.Since(start).Round(time.Millisecond), strings.TrimRight(out.String(), "\n"))
	if err != nil {
		return fmt.Errorf("run %s: %w", script, err)
	}
	return nil
}

// Target is where a script's agent sends what it does.
type Target struct {
	// OpenAIURL is the OpenAI-compatible base URL (FakeOpenAI.URL).
	OpenAIURL string
	// TracesURL is the OTLP/HTTP traces endpoint, ending in /v1/traces
	// (Collector.URL, or an observatory serve's).
	TracesURL string
	// Token is sent as Authorization: Bearer <Token> with every export.
	Token string
	// Agent names the agent (the AI SDK's functionId, OpenInference's
	// agent.name, OpenLLMetry's withAgent name).
	Agent string
	// Service is the resource's service.name; empty for the script's own.
	Service string
	// Project, when set, is put on the resource as sagewai.project_id.
	Project string
	// Model is the model to ask for; empty for Model.
	Model string
}

// Env returns the environment that points script at tg, each library
// configured the way its own documentation says: the OTel SDK's
// OTEL_EXPORTER_OTLP_TRACES_* variables for the AI SDK and OpenInference,
// TRACELOOP_BASE_URL and TRACELOOP_HEADERS for OpenLLMetry.
func Env(script string, tg Target) map[string]string {
	env := map[string]string{
		"OPENAI_BASE_URL": tg.OpenAIURL,
		"AGENT_NAME":      tg.Agent,
		"MODEL":           tg.Model,
	}
	if env["MODEL"] == "" {
		env["MODEL"] = Model
	}
	if tg.Service != "" {
		env["OTEL_SERVICE_NAME"] = tg.Service
	}
	if tg.Project != "" {
		env["SAGEWAI_PROJECT_ID"] = tg.Project
	}
	switch script {
	case OpenLLMetry:
		// The SDK appends /v1/traces to its base URL and splits its
		// headers on "=" without URL-decoding them.
		env["TRACELOOP_BASE_URL"] = strings.TrimSuffix(tg.TracesURL, "/v1/traces")
		env["TRACELOOP_HEADERS"] = "Authorization=Bearer " + tg.Token
	default:
		// The OTel SDK's header variable is URL-encoded (W3C baggage
		// format): the space must be %20.
		env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = tg.TracesURL
		env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = "Authorization=Bearer%20" + tg.Token
	}
	return env
}
