package lbtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sagewai/observatory/lbtest"
	"github.com/sagewai/observatory/natscluster"
)

// hangBound turns a hang into a failure; it decides no outcome.
const hangBound = 30 * time.Second

// seen is what an upstream tells about the request it got.
type seen struct {
	Replica, Host, XFF, Proto string
}

// upstream serves, on addr, what it saw of each request, and echoes
// WebSocket messages on /ws; it stops when the test ends or stop is
// called.
func upstream(t *testing.T, name, addr string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(name+":"), b...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(seen{Replica: name, Host: r.Host, XFF: r.Header.Get("X-Forwarded-For"), Proto: r.Header.Get("X-Forwarded-Proto")})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	stop = func() { srv.Close() }
	t.Cleanup(stop)
	return stop
}

// clientFrom is an HTTP client whose connections leave from the loopback
// address src, so that the balancer sees a client other than itself.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: hangBound}
}

// TestBalancerInFront: nginx with the tested configuration spreads
// requests over both upstreams, passes the Host the client named (port
// included, which serve's --public-url check needs) and appends the
// client's address to X-Forwarded-For; a WebSocket goes through; and when
// an upstream dies, every request is answered by the other.
func TestBalancerInFront(t *testing.T) {
	ports := natscluster.FreePorts(t, 2)
	addrA, addrB := "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1])
	stopA := upstream(t, "a", addrA)
	upstream(t, "b", addrB)
	lb := lbtest.Start(t, lbtest.Config{Upstreams: []string{addrA, addrB}})
	client := clientFrom("127.0.0.2")

	get := func() (seen, int) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, lb.URL+"/api/v1/fleet", nil)
		req.Host = "observatory.test:8443"
		req.Header.Set("X-Forwarded-For", "203.0.113.9") // a client's own claim
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s seen
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
				t.Fatal(err)
			}
		}
		return s, resp.StatusCode
	}
	replicas := map[string]int{}
	for range 6 {
		s, code := get()
		if code != http.StatusOK {
			t.Fatalf("through nginx: %d", code)
		}
		replicas[s.Replica]++
		if s.Host != "observatory.test:8443" {
			t.Errorf("the upstream saw Host %q, want the client's observatory.test:8443", s.Host)
		}
		if s.XFF != "203.0.113.9, 127.0.0.2" {
			t.Errorf("the upstream saw X-Forwarded-For %q, want the client's own value then its address 127.0.0.2", s.XFF)
		}
		if s.Proto != "http" {
			t.Errorf("X-Forwarded-Proto %q, want http", s.Proto)
		}
	}
	if replicas["a"] == 0 || replicas["b"] == 0 {
		t.Errorf("requests per upstream %v, want both used", replicas)
	}

	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+lb.Addr+"/ws", nil)
	if err != nil {
		t.Fatalf("a WebSocket through nginx: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(ctx); err != nil || !strings.HasSuffix(string(b), ":hello") {
		t.Fatalf("the echo through nginx: %q, %v", b, err)
	}
	c.Close(websocket.StatusNormalClosure, "")

	stopA()
	for range 6 {
		s, code := get()
		if code != http.StatusOK || s.Replica != "b" {
			t.Fatalf("with a gone: %d from %q, want 200 from b", code, s.Replica)
		}
	}
}

// TestBalancerCutsQuietConnections: a WebSocket that carries nothing for
// longer than proxy_read_timeout is cut by nginx: the reason serve pings
// quiet /ws connections.
func TestBalancerCutsQuietConnections(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(natscluster.FreePorts(t, 1)[0])
	upstream(t, "a", addr)
	lb := lbtest.Start(t, lbtest.Config{Upstreams: []string{addr}, ReadTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+lb.Addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	start := time.Now()
	_, _, err = c.Read(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a quiet WebSocket behind a 1 s proxy_read_timeout was still open after %s (%v)", hangBound, err)
	}
	t.Logf("cut after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestDocsShowTheTestedSnippet: the nginx configuration docs/deploy.md
// gives operators is the one these tests run, with an operator's
// addresses.
func TestDocsShowTheTestedSnippet(t *testing.T) {
	doc, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	want := lbtest.Snippet(lbtest.Config{
		Upstreams: []string{"10.0.0.11:3001", "10.0.0.12:3001"}, Listen: "80", ServerName: "observatory.example.com",
	})
	if !strings.Contains(string(doc), want) {
		t.Errorf("docs/deploy.md does not show the tested nginx configuration; it should contain:\n%s", want)
	}
}
