package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
)

// metricsTokens holds a metrics token per server (base URL), minted once.
var metricsTokens sync.Map

// getMetrics GETs base/metrics with a metrics token of that server, which
// it mints the first time (POST /api/v1/metrics-tokens as admin/admin):
// /metrics on the main listener needs one.
func getMetrics(t *testing.T, base string) *http.Response {
	t.Helper()
	tok, ok := metricsTokens.Load(base)
	if !ok {
		var out struct{ Token string }
		status := postJSON(t, base, "/api/v1/metrics-tokens", login(t, base, "admin", "admin"), `{"name":"test"}`, &out)
		if status != http.StatusCreated || out.Token == "" {
			t.Fatalf("POST /api/v1/metrics-tokens: %d", status)
		}
		tok, _ = metricsTokens.LoadOrStore(base, out.Token)
	}
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// postJSON sends a JSON request with a bearer token ("" for none),
// decodes a 2xx answer into out (when not nil) and returns the status.
func postJSON(t *testing.T, base, path, token, body string, out any) int {
	t.Helper()
	return call(t, http.MethodPost, base+path, token, body, out)
}

func call(t *testing.T, method, url, token, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return resp.StatusCode
}

// testNATS is a NATS the test runs, for serve --nats-url: a client of it
// may do what an attacker with NATS access could.
func testNATS(t *testing.T) (url string, js jetstream.JetStream) {
	t.Helper()
	ns, err := stream.StartServer(stream.ServerConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return ns.ClientURL(), js
}

// plantKey writes key where releases before keyring kept the signing
// key, as such a release (or an attacker) would.
func plantKey(t *testing.T, js jetstream.JetStream, key []byte) {
	t.Helper()
	ctx := context.Background()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: legacyCredentialsBucket, Storage: jetstream.FileStorage, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, legacySigningKeyName, key); err != nil {
		t.Fatal(err)
	}
}

// legacyToken is a token in the format of releases before key ids, signed
// with key: base64url(claims) "." HMAC with the token key derived from it.
func legacyToken(key []byte, claims map[string]any) string { return forge(key, "", claims) }

// forge signs claims with key as docs/api.md describes tokens: kid "."
// base64url(claims) "." HMAC of the two; without kid, the legacy format.
func forge(key []byte, kid string, claims map[string]any) string {
	raw, _ := json.Marshal(claims)
	d := hmac.New(sha256.New, key)
	d.Write([]byte("observatory/token/v1"))
	p := base64.RawURLEncoding.EncodeToString(raw)
	if kid != "" {
		p = kid + "." + p
	}
	m := hmac.New(sha256.New, d.Sum(nil))
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// adminClaims are an admin API token's claims in the legacy format, a
// 300-day token as those releases allowed.
func adminClaims() map[string]any {
	now := time.Now() // the server under test runs on the wall clock
	return map[string]any{"sub": "api:admin", "role": "admin", "kind": "api",
		"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(300 * 24 * time.Hour).Unix()}
}

func bucketGone(t *testing.T, js jetstream.JetStream) bool {
	t.Helper()
	_, err := js.KeyValue(context.Background(), legacyCredentialsBucket)
	return errors.Is(err, jetstream.ErrBucketNotFound)
}

// TestServeMovesLegacyKeyOutOfNATS: a data directory of a release that
// kept its signing key in NATS: the first start imports the key into the
// key file (0600), so the tokens it signed keep working, and deletes the
// bucket; new tokens are signed by a new key.
func TestServeMovesLegacyKeyOutOfNATS(t *testing.T) {
	natsURL, js := testNATS(t)
	old := bytes.Repeat([]byte{0x5a}, 32)
	plantKey(t, js, old)
	legacy := legacyToken(old, adminClaims())
	dataDir := t.TempDir()
	s := startServe(t, "--nats-url", natsURL, "--data-dir", dataDir)

	if code := call(t, http.MethodGet, s.base+"/api/v1/projects", legacy, "", nil); code != http.StatusOK {
		t.Errorf("a token of the old release after the upgrade: %d, want 200", code)
	}
	if !bucketGone(t, js) {
		t.Error("the credentials bucket is still in NATS")
	}
	path := filepath.Join(dataDir, "keys", "signing.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	r, err := keyring.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := r.Keys()
	if len(keys) != 2 || keys[1].ID != keyring.LegacyID || !bytes.Equal(keys[1].Secret, old) || bytes.Equal(keys[0].Secret, old) {
		t.Fatalf("key file holds %d keys (%v): want a new current key and the old one as %q", len(keys), ids(keys), keyring.LegacyID)
	}
	if life := keys[1].Retires.Sub(keys[1].Created); life != legacyGrace {
		t.Errorf("the old key verifies for %s, want %s", life, legacyGrace)
	}
	admin := login(t, s.base, "admin", "admin")
	if kid, _, _ := strings.Cut(admin, "."); kid != keys[0].ID {
		t.Errorf("a new login is signed by %q, want the new key %q", kid, keys[0].ID)
	}
	if !strings.Contains(s.stdout.String(), "signing keys "+path) {
		t.Errorf("the banner does not say where the keys are:\n%s", s.stdout.String())
	}
}

func ids(keys []keyring.Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

// TestServeRefusesPlantedKey: issue 12's key theft the other way round:
// whoever can write to NATS plants a key of their own in the old
// credentials bucket and forges an admin token with it. A server whose
// keys already left NATS never takes it: the forged token is refused,
// nothing is written, the bucket is deleted and the key file unchanged.
func TestServeRefusesPlantedKey(t *testing.T) {
	natsURL, js := testNATS(t)
	dataDir := t.TempDir()
	first := startServe(t, "--nats-url", natsURL, "--data-dir", dataDir)
	first.stop(t)
	path := filepath.Join(dataDir, "keys", "signing.json")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	planted := bytes.Repeat([]byte{0x66}, 32)
	plantKey(t, js, planted)
	forged := []string{legacyToken(planted, adminClaims())}
	r, err := keyring.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{keyring.LegacyID, keyring.StaticID, r.Current().ID} {
		c := adminClaims()
		c["jti"] = "forgedforgedforged00"
		c["exp"] = time.Now().Add(24 * time.Hour).Unix()
		forged = append(forged, forge(planted, kid, c))
	}
	s := startServe(t, "--nats-url", natsURL, "--data-dir", dataDir)
	for _, tok := range forged {
		if code := postJSON(t, s.base, "/api/v1/projects", tok, `{"id":"evil","name":"Evil"}`, nil); code != http.StatusUnauthorized {
			t.Errorf("a token forged with the planted key: %d, want 401", code)
		}
	}
	admin := login(t, s.base, "admin", "admin")
	var list struct{ Projects []struct{ ID string } }
	if code := call(t, http.MethodGet, s.base+"/api/v1/projects", admin, "", &list); code != http.StatusOK || len(list.Projects) != 0 {
		t.Errorf("projects after the forged requests: %d %+v, want none", code, list.Projects)
	}
	if !bucketGone(t, js) {
		t.Error("the planted bucket is still in NATS")
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the planted key changed the key file")
	}
}

var keyIDRE = regexp.MustCompile(`key ([a-z0-9]+) signs`)

// TestRotateKeyReachesRunningServers: two servers on one NATS share a key
// file; after `observatory rotate-key` both sign with the new key within
// seconds and accept each other's new tokens, old tokens keep working
// through the grace; after `rotate-key --drop-old` the old tokens are
// refused by both.
func TestRotateKeyReachesRunningServers(t *testing.T) {
	natsURL, _ := testNATS(t)
	keyFile := filepath.Join(t.TempDir(), "shared", "signing.json")
	a := startServe(t, "--nats-url", natsURL, "--signing-key-file", keyFile)
	b := startServe(t, "--nats-url", natsURL, "--signing-key-file", keyFile)
	old := login(t, a.base, "admin", "admin")
	if code := call(t, http.MethodGet, b.base+"/api/v1/projects", old, "", nil); code != http.StatusOK {
		t.Fatalf("a's token on b: %d", code)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"rotate-key", "--signing-key-file", keyFile, "--grace", "1h"}, noEnv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	m := keyIDRE.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("rotate-key said %q", out.String())
	}
	newKey := m[1]
	for _, s := range []*serveProc{a, b} {
		streamtest.Eventually(t, 10*time.Second, func() bool {
			kid, _, _ := strings.Cut(login(t, s.base, "admin", "admin"), ".")
			return kid == newKey
		}, "a server never took up the rotated key")
	}
	fresh := login(t, b.base, "admin", "admin")
	for _, s := range []*serveProc{a, b} {
		for name, tok := range map[string]string{"old": old, "new": fresh} {
			if code := call(t, http.MethodGet, s.base+"/api/v1/projects", tok, "", nil); code != http.StatusOK {
				t.Errorf("%s token within the grace: %d", name, code)
			}
		}
	}
	if err := run(context.Background(), []string{"rotate-key", "--signing-key-file", keyFile, "--drop-old"}, noEnv, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*serveProc{a, b} {
		streamtest.Eventually(t, 10*time.Second, func() bool {
			return call(t, http.MethodGet, s.base+"/api/v1/projects", old, "", nil) == http.StatusUnauthorized &&
				call(t, http.MethodGet, s.base+"/api/v1/projects", fresh, "", nil) == http.StatusUnauthorized
		}, "a server still takes tokens of keys dropped from the ring")
	}
}

// TestRotateKeyCmd: the file rotate-key writes: made when missing, mode
// 0600, the old key retiring after the grace, old keys dropped on
// request; no secret printed; bad input refused.
func TestRotateKeyCmd(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "signing.json")
	rotate := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"rotate-key", "--data-dir", dir}, args...), noEnv, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	if out, err := rotate(); err != nil || !strings.Contains(out, "made "+path) {
		t.Fatalf("rotate-key on a new data dir: %v %s", err, out)
	}
	first, err := keyring.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := rotate("--grace", "2h")
	if err != nil {
		t.Fatal(err)
	}
	r, err := keyring.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := r.Keys()
	if len(keys) != 2 || keys[1].ID != first.Current().ID || keys[0].ID == first.Current().ID {
		t.Fatalf("after a rotation: keys %v, want a new one and %s", ids(keys), first.Current().ID)
	}
	if grace := keys[1].Retires.Sub(keys[0].Created); grace != 2*time.Hour {
		t.Errorf("the old key retires %s after the rotation, want 2h", grace)
	}
	for _, k := range keys {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(k.Secret), base64.RawURLEncoding.EncodeToString(k.Secret)} {
			if strings.Contains(out, enc[:16]) {
				t.Errorf("rotate-key printed a secret: %s", out)
			}
		}
	}
	if _, err := rotate("--drop-old"); err != nil {
		t.Fatal(err)
	}
	if r, err = keyring.Read(path); err != nil || len(r.Keys()) != 1 {
		t.Errorf("after --drop-old: %v, %v; want one key", r, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if _, err := rotate("--grace", "-1h"); err == nil {
		t.Error("a negative grace was taken")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rotate(); !errors.Is(err, keyring.ErrExposed) {
		t.Errorf("an exposed key file: %v, want ErrExposed", err)
	}
}

// TestServeMetricsAuth: the main listener's /metrics wants a token (the
// banner says how to mint one); --metrics-addr serves it without one on
// its own listener.
func TestServeMetricsAuth(t *testing.T) {
	s := startServe(t, "--metrics-addr", "127.0.0.1:0")
	if code := call(t, http.MethodGet, s.base+"/metrics", "", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token: %d, want 401", code)
	}
	out := s.stdout.String()
	if !strings.Contains(out, "POST /api/v1/metrics-tokens") {
		t.Errorf("the banner does not say how to mint a metrics token:\n%s", out)
	}
	m := regexp.MustCompile(`metrics open (http://\S+/metrics)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no open metrics address in the banner:\n%s", out)
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("sagewai_hub_events_ingested_total")) {
		t.Errorf("--metrics-addr: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp = getMetrics(t, s.base)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /metrics with a metrics token: %d", resp.StatusCode)
	}
}

// TestServeKeysFromEnv: OBSERVATORY_SIGNING_KEY gives serve and
// embed-token the same key without a file; both places at once is an
// error.
func TestServeKeysFromEnv(t *testing.T) {
	r, err := keyring.New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	text, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == signingKeyEnv {
			return string(text)
		}
		return ""
	}
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"embed-token", "--project", "acme", "--data-dir", dir}, env, &out, &errOut); err != nil {
		t.Fatalf("embed-token with the key in the environment: %v %s", err, errOut.String())
	}
	if kid, _, _ := strings.Cut(out.String(), "."); kid != r.Current().ID {
		t.Errorf("embed token signed by %q, want %q", kid, r.Current().ID)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key file was made although the key came from the environment: %v", err)
	}
	both := func(k string) string {
		if k == "OBSERVATORY_SIGNING_KEY_FILE" {
			return filepath.Join(dir, "k.json")
		}
		return env(k)
	}
	if err := run(context.Background(), []string{"embed-token", "--project", "acme"}, both, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "use one") {
		t.Errorf("both a key file and the environment: %v", err)
	}
}
