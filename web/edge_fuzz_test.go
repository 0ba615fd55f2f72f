package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/sagewai/observatory/web"
)

// The fuzz targets below cover the decoders of the edge (DESIGN §11.2):
// --public-url and --trusted-proxies, the Host and Origin checks, and the
// client address read from X-Forwarded-For. Their seeds run under plain
// go test; `go test -fuzz FuzzX ./web` explores further.

// FuzzPublicURL: a public URL is refused with an error naming the form
// wanted, or accepted as an origin that parses back to itself and has
// nothing but a scheme, a host and a port.
func FuzzPublicURL(f *testing.F) {
	for _, s := range []string{
		"https://observatory.example.com", "http://10.1.2.3:8080", "http://[2001:db8::7]:3001/", "HTTPS://Obs.Example.COM:443",
		"observatory.example.com", "https://user@host", "https://host/path", "https://host:0", "https://host:65536", "http://[::1",
		"http://h%41st", "https://xn--bcher-kva.example", "http://127.0.0.1:3001?", "http://[fe80::1%25eth0]", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := web.ParsePublicURL(s)
		if err != nil {
			if !strings.Contains(err.Error(), "scheme://host[:port]") {
				t.Errorf("ParsePublicURL(%q): %v: the form wanted is not named", s, err)
			}
			return
		}
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			t.Fatalf("ParsePublicURL(%q) = %q: not http(s)", s, o)
		}
		if o != strings.ToLower(o) || strings.ContainsAny(o, "@?#%") || strings.Count(o, "/") != 2 {
			t.Errorf("ParsePublicURL(%q) = %q: not a bare origin", s, o)
		}
		again, err := web.ParsePublicURL(o)
		if err != nil || again != o {
			t.Errorf("ParsePublicURL(%q) = %q, which parses to %q, %v", s, o, again, err)
		}
	})
}

// FuzzTrustedProxies: a list is refused, or accepted as masked, zone-free
// ranges that a list of their own text parses back to.
func FuzzTrustedProxies(f *testing.F) {
	for _, s := range []string{
		"10.0.0.0/8", "10.1.2.3/8, 192.0.2.7", "2001:db8::/32,::1", " , ,", "10.0.0.0/33", "fe80::1%eth0", "::ffff:10.0.0.1/104",
		"proxy.example.com", "0.0.0.0/0", "::/0", "1.2.3.4/32/1", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := web.ParseTrustedProxies(s)
		if err != nil {
			if !strings.Contains(err.Error(), "trusted proxy") {
				t.Errorf("ParseTrustedProxies(%q): %v: does not say which entry", s, err)
			}
			return
		}
		text := make([]string, len(ps))
		for i, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
				t.Errorf("ParseTrustedProxies(%q): %v is not a masked plain range", s, p)
			}
			text[i] = p.String()
		}
		again, err := web.ParseTrustedProxies(strings.Join(text, ","))
		if err != nil || len(again) != len(ps) {
			t.Fatalf("%v does not parse back: %v, %v", text, again, err)
		}
		for i := range ps {
			if again[i] != ps[i] {
				t.Errorf("%v parses back as %v", ps, again)
			}
		}
	})
}

// edgeOracle says, independently of the server, what a Host and Origin
// are for a server with the public URLs of FuzzHostAndOrigin, reached on
// a loopback address (loop) or on another one.
func edgeOracle(host, origin string, loop bool) (hostOK, originOK bool) {
	loopbackName := func(hp string) bool {
		h, p, err := net.SplitHostPort(hp)
		if err != nil {
			h, p = hp, "80"
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || p[0] == '0' || p[0] == '+' {
			return false
		}
		if h == "localhost" {
			return true
		}
		a, err := netip.ParseAddr(h)
		if err != nil || !a.IsLoopback() || a.Zone() != "" {
			return false
		}
		return a.Is4() && !strings.Contains(hp, "[") || a.Is6() && strings.HasPrefix(hp, "[")
	}
	host, origin = strings.ToLower(host), strings.ToLower(origin)
	switch host {
	case "observatory.example.com", "observatory.example.com:443", "10.1.2.3:8080":
		hostOK = true
	default:
		hostOK = loop && loopbackName(host)
	}
	switch origin {
	case "https://observatory.example.com", "http://10.1.2.3:8080":
		originOK = true
	default:
		rest, ok := strings.CutPrefix(origin, "http://")
		if !ok {
			rest, ok = strings.CutPrefix(origin, "https://")
		}
		originOK = ok && loop && rest == host && loopbackName(rest)
	}
	return hostOK, originOK
}

// FuzzHostAndOrigin sends a cookie-authenticated JSON write with any Host
// and Origin, over a loopback connection or another: the answer is 421
// misdirected for a Host the oracle refuses, else 403 csrf for an Origin
// it refuses, else the cookie is looked at (401, it is no session); never
// a 5xx, always the JSON error shape.
func FuzzHostAndOrigin(f *testing.F) {
	srv, err := web.New(web.Config{
		SigningKey: bytes.Repeat([]byte("k"), 32), BcryptCost: 4, Logger: slog.New(slog.DiscardHandler),
		PublicURLs: []string{"https://observatory.example.com", "http://10.1.2.3:8080"},
	}, newTestHub(), &testAuditor{})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	for _, s := range []struct {
		host, origin string
		loop         bool
	}{
		{"observatory.example.com", "https://observatory.example.com", false},
		{"observatory.example.com:443", "http://observatory.example.com", false},
		{"localhost:3001", "http://localhost:3001", true},
		{"localhost:8080", "https://localhost:8080", true},
		{"localhost:3001", "http://localhost:3000", true},
		{"localhost:3001", "http://localhost:3001", false},
		{"[::1]:3001", "http://[::1]:3001", true},
		{"127.0.0.1:3001", "http://127.1:3001", true},
		{"rebind.attacker.example:3001", "http://rebind.attacker.example:3001", true},
		{"10.1.2.3:8080", "null", false},
		{"[::ffff:127.0.0.1]:3001", "", true},
		{"localhost:03001", "http://localhost:3001", true},
		{"", "", true},
	} {
		f.Add(s.host, s.origin, s.loop)
	}
	f.Fuzz(func(t *testing.T, host, origin string, loop bool) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/budgets", strings.NewReader(`{}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cookie", web.SessionCookie+"=not-a-session")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		local := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 3001}
		if loop {
			local.IP = net.IPv4(127, 0, 0, 1)
		}
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		hostOK, originOK := edgeOracle(host, origin, loop)
		want := http.StatusUnauthorized
		switch {
		case !hostOK:
			want = http.StatusMisdirectedRequest
		case !originOK:
			want = http.StatusForbidden
		}
		if rec.Code != want {
			t.Fatalf("Host %q Origin %q loopback %v: %d, want %d: %s", host, origin, loop, rec.Code, want, rec.Body)
		}
		var b struct{ Error struct{ Code string } }
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error.Code == "" || web.StatusOf(b.Error.Code) != rec.Code {
			t.Errorf("body %q is not the error shape for %d", rec.Body, rec.Code)
		}
	})
}

// FuzzForwardedFor: whatever X-Forwarded-For says, a peer that is not a
// trusted proxy is its own client; the client is always the peer or an
// address X-Forwarded-For names; and it is never a trusted proxy unless
// every address is one.
func FuzzForwardedFor(f *testing.F) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, s := range [][2]string{
		{"10.0.0.1:443", "203.0.113.7"}, {"10.0.0.1:443", "198.51.100.1, 203.0.113.7"}, {"10.0.0.1:443", "203.0.113.7, 10.0.0.2"},
		{"192.0.2.1:443", "203.0.113.7"}, {"[2001:db8::1]:443", "[2001:db8::2], 2001:db8::3"}, {"10.0.0.1:443", "garbage"},
		{"10.0.0.1:443", "10.0.0.3, 10.0.0.2"}, {"10.0.0.1:443", ""}, {"[::ffff:10.0.0.1]:443", "203.0.113.7"}, {"nonsense", "203.0.113.7"},
	} {
		f.Add(s[0], s[1])
	}
	isTrusted := func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return false
		}
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = remote
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		got := web.ClientIP(req, trusted)
		peerHost, _, err := net.SplitHostPort(remote)
		if err != nil {
			peerHost = remote
		}
		peer := net.ParseIP(peerHost)
		gotIP := net.ParseIP(got)
		if peer == nil || !isTrusted(peer) {
			if got != peerHost && !(peer != nil && gotIP.Equal(peer)) && !(peer == nil && got == "") {
				t.Fatalf("untrusted peer %q with X-Forwarded-For %q: client %q, want the peer", remote, xff, got)
			}
			return
		}
		if gotIP == nil {
			t.Fatalf("peer %q, X-Forwarded-For %q: client %q is no address", remote, xff, got)
		}
		// An entry that is no address makes the rest unreadable: the
		// client is then the peer, the proxy.
		named, allTrusted, garbled := gotIP.Equal(peer), true, false
		for _, s := range strings.Split(xff, ",") {
			ip := net.ParseIP(strings.Trim(strings.TrimSpace(s), "[]"))
			named = named || ip != nil && ip.Equal(gotIP)
			allTrusted = allTrusted && ip != nil && isTrusted(ip)
			garbled = garbled || ip == nil
		}
		if !named {
			t.Errorf("peer %q, X-Forwarded-For %q: client %q is neither", remote, xff, got)
		}
		if isTrusted(gotIP) && !allTrusted && !garbled {
			t.Errorf("peer %q, X-Forwarded-For %q: client %q is a trusted proxy", remote, xff, got)
		}
	})
}
