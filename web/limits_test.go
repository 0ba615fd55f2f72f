package web_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/web/auth"
)

// TestWSConnectionCaps: a credential may hold MaxWSConnsPerCredential
// sockets and the server MaxWSConns; an upgrade over either cap is
// refused with 429 too_many_connections before it reaches the hub, and a
// closed socket frees its place. Sockets without a valid credential count
// against their client address.
func TestWSConnectionCaps(t *testing.T) {
	e := newEnv(t, func(c *web.Config) { c.MaxWSConnsPerCredential, c.MaxWSConns = 2, 3 })
	a, b := e.adminToken(t), e.token(t, auth.RoleProject, "acme")
	open := func(tok, scope string) *websocket.Conn {
		t.Helper()
		c := e.mustDial(t, "", bearer(tok))
		send(t, c, subscribeFrame(scope))
		if h := head(t, mustRead(t, c)); h.Op != "snapshot" {
			t.Fatalf("got %+v, want a snapshot", h)
		}
		return c
	}
	refused := func(h http.Header, why string) {
		t.Helper()
		hubBefore := e.hub.count()
		c, res, err := e.dial(t, "", h)
		if err == nil {
			c.CloseNow()
			t.Fatalf("%s: upgraded", why)
		}
		if res == nil || res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s: %v (response %v), want 429", why, err, res)
		}
		if e.hub.count() != hubBefore {
			t.Errorf("%s: a refused socket reached the hub", why)
		}
	}
	a1 := open(a, "*")
	open(a, "*")
	refused(bearer(a), "a third socket of one token")
	// The answer is the JSON error shape.
	res := e.do(t, "GET", "/ws", "", http.Header{
		"Authorization": {"Bearer " + a}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
	})
	if res.status != http.StatusTooManyRequests || res.errorCode(t) != "too_many_connections" {
		t.Errorf("over the cap: %d %s, want 429 too_many_connections", res.status, res.body)
	}
	open(b, "acme")
	refused(bearer(e.token(t, auth.RoleProject, "globex")), "a fourth socket on the server")
	a1.Close(websocket.StatusNormalClosure, "")
	// The server frees the place once the connection has ended.
	streamtest.Eventually(t, hangBound, func() bool {
		c, _, err := e.dial(t, "", bearer(a))
		if err != nil {
			return false
		}
		c.Close(websocket.StatusNormalClosure, "")
		return true
	}, "a closed socket's place was not freed")
}

func TestWSConnectionCapWithoutCredential(t *testing.T) {
	e := newEnv(t, func(c *web.Config) { c.MaxWSConnsPerCredential = 2 })
	for range 2 {
		e.mustDial(t, "", bearer("not-a-token"))
	}
	if c, res, err := e.dial(t, "", nil); err == nil || res == nil || res.StatusCode != http.StatusTooManyRequests {
		if c != nil {
			c.CloseNow()
		}
		t.Fatalf("a third socket without a credential from one address: %v %v, want 429", err, res)
	}
	// Another token is not held back by them.
	c := e.mustDial(t, "", bearer(e.adminToken(t)))
	send(t, c, subscribeFrame("*"))
	if h := head(t, mustRead(t, c)); h.Op != "snapshot" {
		t.Fatalf("got %+v", h)
	}
}

// serveHTTP serves srv with its own http.Server (HTTPServer) on a
// loopback listener until the test ends; it returns the base URL.
func serveHTTP(t *testing.T, srv *web.Server, scheme string) string {
	t.Helper()
	hs := srv.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		if hs.TLSConfig != nil {
			done <- hs.ServeTLS(ln, "", "")
		} else {
			done <- hs.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangBound)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("web shutdown: %v", err)
		}
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("http shutdown: %v", err)
		}
		<-done
	})
	return scheme + "://" + ln.Addr().String()
}

func newServer(t *testing.T, hub web.Hub, edit func(*web.Config)) *web.Server {
	t.Helper()
	cfg := web.Config{
		AdminPassword: adminPassword,
		SigningKey:    bytes.Repeat([]byte("k"), 32),
		Logger:        slog.New(slog.DiscardHandler),
		Now:           fleettest.NewClock().Now,
		BcryptCost:    bcrypt.MinCost,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := web.New(cfg, hub, &testAuditor{})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestHTTPTimeouts: the server's timeouts cut a client that sends its
// headers too slowly (slowloris) and an idle keep-alive connection, and a
// header block over MaxHeaderBytes gets 431; a /ws connection opened
// before them is still served after all of them have run out, because it
// keeps no HTTP deadline.
func TestHTTPTimeouts(t *testing.T) {
	hub := newTestHub()
	const d = 300 * time.Millisecond
	srv := newServer(t, hub, func(c *web.Config) {
		c.ReadHeaderTimeout, c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = d, d, d, d
		c.MaxHeaderBytes = 8 << 10
	})
	base := serveHTTP(t, srv, "http")
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{
		Subprotocols: []string{protocol.Subprotocol},
		HTTPHeader:   bearer(mustToken(t, srv)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	send(t, ws, subscribeFrame("*"))
	if h := head(t, mustRead(t, ws)); h.Op != "snapshot" {
		t.Fatalf("got %+v", h)
	}
	sub := hub.nextSub(t)

	// Slowloris: half a request line and no more. The server hangs up
	// once ReadHeaderTimeout has run out.
	slow, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /api/v1/fleet HTTP/1.1\r\nHost: "); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := slow.SetReadDeadline(time.Now().Add(hangBound)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("the slow client was not cut: %v", err)
	}
	if waited := time.Since(start); waited < d/2 {
		t.Errorf("cut after %s, before the timeout (%s)", waited, d)
	}

	// An idle keep-alive connection is closed after IdleTimeout.
	idle, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := idle.SetReadDeadline(time.Now().Add(hangBound)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(idle)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("probe: %v %v", res, err)
	}
	io.Copy(io.Discard, res.Body)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the idle connection was not closed: %v", err)
	}

	// Headers over MaxHeaderBytes.
	req, _ := http.NewRequest("GET", base+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("x", 16<<10))
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("16 KiB of headers: %v %v, want 431", res, err)
	} else {
		res.Body.Close()
	}

	// Every timeout has run out since the socket opened; it still works
	// both ways.
	if !sub.sub.Send(diffFrame("*", 7, 8)) {
		t.Fatal("the socket's queue refused a frame")
	}
	if h := head(t, mustRead(t, ws)); h.Op != "diff" || h.Seq != 8 {
		t.Fatalf("after the timeouts: %+v, want the diff", h)
	}
	send(t, ws, subscribeFrame("acme"))
	if h := head(t, mustRead(t, ws)); h.Op != "snapshot" || h.Scope != "acme" {
		t.Fatalf("after the timeouts, a scope switch: %+v", h)
	}
}

func mustToken(t *testing.T, srv *web.Server) string {
	t.Helper()
	tok, _, err := srv.IssueToken(auth.RoleAdmin, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// writeCert writes a self-signed certificate for 127.0.0.1 and
// observatory.example.com with serial to dir and returns its files.
func writeCert(t *testing.T, dir string, serial int64) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The certificate's validity is the wall clock's: TLS clients check it
	// against the wall clock, not the server's.
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "observatory test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames: []string{"observatory.example.com"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
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
	write := func(name, typ string, b []byte, mod time.Time) {
		tmp := name + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tmp, mod, mod); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, name); err != nil { // as cert-manager swaps files
			t.Fatal(err)
		}
	}
	mod := time.Unix(1_000_000+serial, 0) // a distinct time per certificate
	write(keyFile, "EC PRIVATE KEY", kder, mod)
	write(certFile, "CERTIFICATE", der, mod)
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// TestTLS: with a certificate and key the server serves HTTPS: answers
// carry HSTS, the login form's cookie is Secure, /ws works over TLS, and
// a renewed certificate is served from the next handshake on.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := writeCert(t, dir, 1)
	hub := newTestHub()
	srv := newServer(t, hub, func(c *web.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	base := serveHTTP(t, srv, "https")
	trust := func(c *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(c)
		return &http.Client{
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	client := trust(cert)

	res := sendAs(t, client, base, "", "GET", "/login", "", nil)
	if res.status != 200 || res.header.Get("Strict-Transport-Security") != "max-age=31536000" {
		t.Fatalf("GET /login over TLS: %d, HSTS %q", res.status, res.header.Get("Strict-Transport-Security"))
	}
	form := url.Values{"username": {"admin"}, "password": {adminPassword}}.Encode()
	res = sendAs(t, client, base, "", "POST", "/login", form, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	ck := (&http.Response{Header: res.header}).Cookies()
	if res.status != http.StatusSeeOther || len(ck) != 1 || !ck[0].Secure || !ck[0].HttpOnly {
		t.Fatalf("login over TLS: %d, cookies %+v, want one Secure HttpOnly session cookie", res.status, ck)
	}

	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(base, "https")+"/ws", &websocket.DialOptions{
		Subprotocols: []string{protocol.Subprotocol}, HTTPClient: client,
		HTTPHeader: http.Header{"Cookie": {web.SessionCookie + "=" + ck[0].Value}, "Origin": {base}},
	})
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	defer ws.CloseNow()
	send(t, ws, subscribeFrame("*"))
	if h := head(t, mustRead(t, ws)); h.Op != "snapshot" {
		t.Fatalf("wss: got %+v", h)
	}

	// Renewal: new files in place; the next handshake presents them.
	_, _, renewed := writeCert(t, dir, 2)
	if res := sendAs(t, trust(renewed), base, "", "GET", "/healthz", "", nil); res.status != 200 {
		t.Fatalf("with the renewed certificate: %d", res.status)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 2 {
		t.Errorf("serial %d after the renewal, want 2", got)
	}
	// A renewal half written (a key that does not match) keeps the last
	// good pair in service.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := sendAs(t, trust(renewed), base, "", "GET", "/healthz", "", nil); res.status != 200 {
		t.Fatalf("with a broken key file: %d", res.status)
	}
}

// TestHSTSAndSecureCookieBehindProxy: X-Forwarded-Proto https makes the
// answer HSTS and the cookie Secure only when a trusted proxy sends it.
func TestHSTSAndSecureCookieBehindProxy(t *testing.T) {
	form := url.Values{"username": {"admin"}, "password": {adminPassword}}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		secure  bool
	}{
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true},
		{"no trusted proxies", nil, false},
		{"another proxy", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *web.Config) { c.TrustedProxies = tc.trusted })
			p := e.page(t, http.MethodPost, "/login", form, http.Header{"X-Forwarded-Proto": {"https"}})
			ck := p.cookie(web.SessionCookie)
			if p.status != http.StatusSeeOther || ck == nil {
				t.Fatalf("login: %d", p.status)
			}
			if ck.Secure != tc.secure || (p.header.Get("Strict-Transport-Security") != "") != tc.secure {
				t.Errorf("Secure %v, HSTS %q; want both %v", ck.Secure, p.header.Get("Strict-Transport-Security"), tc.secure)
			}
		})
	}
}

func TestNewRefusesBadTLSFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, 1)
	for name, files := range map[string][2]string{
		"cert without key": {certFile, ""},
		"key without cert": {"", keyFile},
		"missing files":    {filepath.Join(dir, "nope.crt"), filepath.Join(dir, "nope.key")},
		"swapped":          {keyFile, certFile},
	} {
		cfg := web.Config{SigningKey: bytes.Repeat([]byte("k"), 32), TLSCertFile: files[0], TLSKeyFile: files[1]}
		if _, err := web.New(cfg, newTestHub(), &testAuditor{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
