package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/stream/streamtest"
)

// TestServeRefusesUnsafeEdges: serve (and demo) refuse, before starting
// anything, to put the default admin password on an address other
// machines reach, or to listen there without being told the public URL
// (the Host allow-list against DNS rebinding); each refusal is a usage
// error (exit status 2) that names what to pass.
func TestServeRefusesUnsafeEdges(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		says []string
	}{
		{"default password on all interfaces", []string{"serve", "--addr", ":0"}, nil,
			[]string{"default admin password", "--admin-password", "OBSERVATORY_ADMIN_PASSWORD", "--addr 127.0.0.1:0"}},
		{"default password, said out loud", []string{"serve", "--addr", "0.0.0.0:0", "--admin-password", "admin"}, nil,
			[]string{"--admin-password", "OBSERVATORY_ADMIN_PASSWORD"}},
		{"default password, address from env", []string{"serve"}, map[string]string{"OBSERVATORY_ADDR": "[::]:0"},
			[]string{"--admin-password", "OBSERVATORY_ADMIN_PASSWORD"}},
		{"demo on all interfaces", []string{"demo", "--addr", ":0"}, nil,
			[]string{"--admin-password", "OBSERVATORY_ADMIN_PASSWORD"}},
		{"no public URL", []string{"serve", "--addr", ":3001", "--admin-password", "s3cret-enough"}, nil,
			[]string{"--public-url http://<host>:3001", "OBSERVATORY_PUBLIC_URL", "--addr 127.0.0.1:3001"}},
		{"no public URL, TLS", []string{"serve", "--addr", ":0", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
			map[string]string{"OBSERVATORY_ADMIN_PASSWORD": "s3cret-enough"}, []string{"--public-url https://<host>:0"}},
		{"a bad public URL", []string{"serve", "--public-url", "observatory.example.com"}, nil,
			[]string{"--public-url", "scheme://host[:port]"}},
		{"a bad public URL from env", []string{"serve"}, map[string]string{"OBSERVATORY_PUBLIC_URL": "https://ok.example.com,ftp://bad"},
			[]string{"--public-url", `"ftp://bad"`}},
		{"bad trusted proxies", []string{"serve", "--trusted-proxies", "10.0.0.0/8,lb.internal"}, nil,
			[]string{"--trusted-proxies", `"lb.internal"`}},
		{"a certificate without its key", []string{"serve", "--tls-cert", "c.pem"}, nil, []string{"--tls-cert and --tls-key"}},
		{"no /ws connections", []string{"serve", "--ws-max-conns", "0"}, nil, []string{"--ws-max-conns"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append(tc.args, "--data-dir", dir, "--nats-listen", "127.0.0.1:0")
			var stdout, stderr strings.Builder
			err := run(context.Background(), args, func(k string) string { return tc.env[k] }, &stdout, &stderr)
			if err == nil {
				t.Fatal("started")
			}
			if code := exitCode(err); code != 2 {
				t.Errorf("exit status %d for %v, want 2", code, err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("something started: the data dir holds %v", entries)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q", stdout.String())
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("listen: address in use"), 1},
		{usagef("serve: no"), 2},
		{fmt.Errorf("wrapped: %w", usagef("serve: no")), 2},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestServeExitStatus runs the binary: main exits 2 for the refusal, with
// the message on stderr.
func TestServeExitStatus(t *testing.T) {
	bin := observatorytest.Build(t)
	cmd := exec.Command(bin, "serve", "--addr", ":0", "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "OBSERVATORY_ADMIN_PASSWORD=", "OBSERVATORY_ADDR=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2\n%s", err, out)
	}
	if !strings.Contains(string(out), "--admin-password") {
		t.Errorf("stderr %q does not name --admin-password", out)
	}
}

var listeningRE = regexp.MustCompile(`\(listening on (\S+)\)`)

// TestServeWithPublicURL: on all interfaces with a password and a public
// URL, serve starts, its banner shows the public URL and where it
// listens, and it answers the public host and refuses another with 421.
func TestServeWithPublicURL(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", ":0", "--nats-listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--admin-password", "s3cret-enough", "--public-url", "http://observatory.test:3001"}, func(string) string { return "" }, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	streamtest.Eventually(t, 30*time.Second, func() bool { return listeningRE.MatchString(stdout.String()) }, "no banner")
	if !strings.Contains(stdout.String(), "serving http://observatory.test:3001 (listening on") {
		t.Errorf("banner:\n%s", stdout.String())
	}
	_, port, _ := net.SplitHostPort(listeningRE.FindStringSubmatch(stdout.String())[1])
	get := func(host string) int {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/login", nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	streamtest.Eventually(t, 10*time.Second, func() bool { return get("observatory.test:3001") == 200 }, "the public host is not answered")
	if got := get("rebind.attacker.example:" + port); got != http.StatusMisdirectedRequest {
		t.Errorf("another host: %d, want 421", got)
	}
}

// TestServeTLS: with --tls-cert and --tls-key serve answers HTTPS with
// HSTS; healthcheck probes it by IP with --insecure.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
			"--tls-cert", certFile, "--tls-key", keyFile}, func(string) string { return "" }, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	re := regexp.MustCompile(`serving (https://\S+)`)
	streamtest.Eventually(t, 30*time.Second, func() bool { return re.MatchString(stdout.String()) }, "no https banner:\n"+stdout.String())
	base := re.FindStringSubmatch(stdout.String())[1]
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	streamtest.Eventually(t, 10*time.Second, func() bool {
		res, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200 && res.Header.Get("Strict-Transport-Security") != ""
	}, "no HTTPS answer with HSTS")

	var out strings.Builder
	if err := run(ctx, []string{"healthcheck", "--url", base + "/readyz"}, func(string) string { return "" }, &out, &out); err == nil {
		t.Error("healthcheck trusted a certificate it cannot verify")
	}
	if err := run(ctx, []string{"healthcheck", "--insecure", "--url", base + "/readyz"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Errorf("healthcheck --insecure: %v", err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now() // TLS clients check validity against the wall clock
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "observatory test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
