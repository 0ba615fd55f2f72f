package web_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/web"
)

// send sends one request to base with the Host header host ("" keeps
// the URL's), and returns the answer. client nil is the default client.
func sendAs(t *testing.T, client *http.Client, base, host, method, path, body string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func portOf(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestDNSRebindingRefused reproduces DNS rebinding against a server on
// loopback without a public URL: a page on rebind.attacker.example, whose
// name the attacker points at 127.0.0.1, logs in with the known password
// and reads the fleet. The browser sends the attacker's name as Host, so
// the server answers 421 misdirected, checks no password and audits
// nothing; its own loopback names (with any port: a port forward, ssh -L
// or kubectl port-forward, changes the port the browser names) and the
// health probes are answered.
func TestDNSRebindingRefused(t *testing.T) {
	e := newEnv(t, nil)
	port := portOf(t, e.url)
	login := `{"username":"admin","password":"` + adminPassword + `"}`
	for _, tc := range []struct {
		host, method, path, body string
		status                   int
	}{
		{"rebind.attacker.example:" + port, "POST", "/api/v1/auth/login", login, 421},
		{"rebind.attacker.example:" + port, "GET", "/hud", "", 421},
		{"rebind.attacker.example:" + port, "GET", "/api/v1/fleet", "", 421},
		{"rebind.attacker.example", "GET", "/login", "", 421},
		{"localhost.attacker.example:" + port, "GET", "/login", "", 421},
		{"127.0.0.1.nip.io:" + port, "GET", "/login", "", 421},
		{"127.0.0.1:0" + port, "GET", "/login", "", 421},
		{"localhost:65536", "GET", "/login", "", 421}, // no such port
		{"localhost:8080", "GET", "/login", "", 200},  // a port forward
		{"localhost", "GET", "/login", "", 200},
		{"localhost:" + port, "GET", "/login", "", 200},
		{"LocalHost:" + port, "GET", "/login", "", 200},
		{"127.0.0.1:" + port, "GET", "/login", "", 200},
		{"127.0.0.2:" + port, "GET", "/login", "", 200},
		{"[::1]:" + port, "GET", "/login", "", 200},
		{"rebind.attacker.example:" + port, "GET", "/healthz", "", 200},
		{"rebind.attacker.example:" + port, "GET", "/readyz", "", 200},
		{"10.0.0.7:" + port, "GET", "/readyz", "", 200},
	} {
		t.Run(tc.method+" "+tc.host+tc.path, func(t *testing.T) {
			h := http.Header{}
			if tc.body != "" {
				h.Set("Content-Type", "application/json")
			}
			res := sendAs(t, nil, e.url, tc.host, tc.method, tc.path, tc.body, h)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			if tc.status == http.StatusMisdirectedRequest {
				if code, msg := res.errorOf(t); code != "misdirected" || !strings.Contains(msg, "--public-url") {
					t.Errorf("error %s %q, want misdirected naming --public-url", code, msg)
				}
			}
		})
	}
	if got := e.audit.all(); len(got) != 0 {
		t.Errorf("the refused login was checked and audited: %+v", got)
	}
}

// nonLoopback presents the connections a listener accepts as arriving on
// a non-loopback address (192.0.2.10), as a server listening on all
// interfaces sees a client from another machine. Only the local address
// the server reads is changed; the bytes go over loopback.
type nonLoopback struct{ net.Listener }

func (l nonLoopback) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (c remoteConn) LocalAddr() net.Addr {
	a := c.Conn.LocalAddr().(*net.TCPAddr)
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: a.Port}
}

// TestPublicURLHosts: with public URLs, the server answers their hosts on
// any connection and loopback names only on loopback connections; it
// answers nothing else.
func TestPublicURLHosts(t *testing.T) {
	public := func(c *web.Config) {
		c.PublicURLs = []string{"https://Observatory.Example.com", "http://10.1.2.3:8080", "http://[2001:db8::7]:3001/"}
	}
	loop := newEnv(t, public)
	remote := newEnvOn(t, public, func(l net.Listener) net.Listener { return nonLoopback{l} })
	rport := portOf(t, remote.url)
	for _, tc := range []struct {
		host             string
		onLoop, onRemote int
	}{
		{"observatory.example.com", 200, 200},
		{"OBSERVATORY.example.com", 200, 200},
		{"observatory.example.com:443", 200, 200},
		{"observatory.example.com:8443", 421, 421},
		{"observatory.example.com.", 421, 421},
		{"10.1.2.3:8080", 200, 200},
		{"10.1.2.3", 421, 421},
		{"[2001:db8::7]:3001", 200, 200},
		{"attacker.example", 421, 421},
		{"localhost:" + rport, 200, 421},
		{"127.0.0.1:8080", 200, 421},
		{"[::1]", 200, 421},
	} {
		for _, side := range []struct {
			e    *env
			want int
		}{{loop, tc.onLoop}, {remote, tc.onRemote}} {
			if res := sendAs(t, nil, side.e.url, tc.host, "GET", "/login", "", nil); res.status != side.want {
				t.Errorf("Host %q on %s: %d, want %d", tc.host, side.e.url, res.status, side.want)
			}
		}
	}
	// A server without public URLs answers a remote client nothing, and
	// says what to pass; its probes still answer.
	bare := newEnvOn(t, nil, func(l net.Listener) net.Listener { return nonLoopback{l} })
	if res := sendAs(t, nil, bare.url, "", "GET", "/login", "", nil); res.status != 421 {
		t.Errorf("no public URL, remote client: %d, want 421", res.status)
	}
	if res := sendAs(t, nil, bare.url, "", "GET", "/readyz", "", nil); res.status != 200 {
		t.Errorf("no public URL, remote probe: %d, want 200", res.status)
	}
}

func TestNewRefusesBadPublicURLs(t *testing.T) {
	for _, u := range []string{
		"observatory.example.com", "ftp://observatory.example.com", "https://", "https://user:pw@observatory.example.com",
		"https://observatory.example.com/hud", "https://observatory.example.com/?x=1", "https://observatory.example.com#top",
		"https://observatory.example.com:0", "https://observatory.example.com:65536", "https://observatory.example.com:",
		"https://*.example.com", "https://exa_mple.com", "http://[fe80::1%25eth0]:3001", "http://::1:3001",
	} {
		cfg := web.Config{SigningKey: bytes.Repeat([]byte("k"), 32), PublicURLs: []string{u}}
		if _, err := web.New(cfg, newTestHub(), &testAuditor{}); err == nil {
			t.Errorf("PublicURLs %q accepted", u)
		} else if !strings.Contains(err.Error(), "scheme://host[:port]") {
			t.Errorf("PublicURLs %q: %v, want the expected form named", u, err)
		}
	}
	for in, want := range map[string]string{
		"https://Observatory.Example.com":     "https://observatory.example.com",
		"https://observatory.example.com:443": "https://observatory.example.com",
		"http://observatory.example.com:443/": "http://observatory.example.com:443",
		"http://[2001:DB8::7]:3001":           "http://[2001:db8::7]:3001",
		"http://127.0.0.1:80":                 "http://127.0.0.1",
	} {
		if got, err := web.ParsePublicURL(in); err != nil || got != want {
			t.Errorf("ParsePublicURL(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
}

// TestWSOriginRebinding: /ws no longer takes Origin == Host for its own,
// but for a loopback name on a loopback connection, which no rebinding
// page can send. A rebinding page's socket fails at the Host; a page
// whose origin shares a public host but not its scheme, a page of another
// local server, or any other page, is refused with 403 before the
// upgrade; the server's own origins and the allowed patterns pass.
func TestWSOriginRebinding(t *testing.T) {
	e := newEnv(t, func(c *web.Config) {
		c.PublicURLs = []string{"https://observatory.example.com"}
		c.AllowedOrigins = []string{"https://admin.example.com"}
	})
	admin := e.adminToken(t)
	port := portOf(t, e.url)
	for _, tc := range []struct {
		host, origin string
		status       int // 101 for an upgrade
	}{
		{"rebind.attacker.example:" + port, "http://rebind.attacker.example:" + port, 421},
		{"observatory.example.com", "http://observatory.example.com", 403},
		{"observatory.example.com", "https://evil.example", 403},
		{"observatory.example.com", "null", 403},
		{"observatory.example.com", "https://observatory.example.com", 101},
		{"observatory.example.com", "https://admin.example.com", 101},
		{"127.0.0.1:" + port, "http://127.0.0.1:" + port, 101},
		{"localhost:8080", "http://localhost:8080", 101},    // through a port forward
		{"localhost:" + port, "http://localhost:3000", 403}, // another local server's page
		{"127.0.0.1:" + port, "http://localhost:" + port, 403},
		{"127.0.0.1:" + port, "", 101}, // not a browser
	} {
		t.Run(tc.host+" "+tc.origin, func(t *testing.T) {
			h := bearer(admin)
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), hangBound)
			defer cancel()
			c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/ws", &websocket.DialOptions{
				Subprotocols: []string{protocol.Subprotocol}, HTTPHeader: h, Host: tc.host,
			})
			if tc.status == http.StatusSwitchingProtocols {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				send(t, c, subscribeFrame("*"))
				if got := head(t, mustRead(t, c)); got.Op != "snapshot" {
					t.Errorf("got %+v, want a snapshot", got)
				}
				c.Close(websocket.StatusNormalClosure, "")
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatal("upgraded")
			}
			if res == nil || res.StatusCode != tc.status {
				t.Fatalf("dial: %v (response %v), want %d", err, res, tc.status)
			}
		})
	}
	if got := e.audit.all(); len(got) != 0 {
		t.Errorf("audit events %+v, want none", got)
	}
}
