package web_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web"
)

// clientFrom is an HTTP client whose connections leave from the loopback
// address src (127.0.0.2, 127.0.0.3, ...: Linux answers the whole of
// 127/8), so that the server sees distinct client addresses for real.
func clientFrom(t *testing.T, src string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// loginFrom logs in through client, with X-Forwarded-For xff if not "".
func loginFrom(t *testing.T, e *env, client *http.Client, user, password, xff string) response {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"username": user, "password": password})
	h := http.Header{"Content-Type": {"application/json"}}
	if xff != "" {
		h.Set("X-Forwarded-For", xff)
	}
	return sendAs(t, client, e.url, "", http.MethodPost, "/api/v1/auth/login", string(b), h)
}

// TestLoginLockoutIsPerSource reproduces the lock-out attack of issue 12:
// an attacker fails logins as admin until the limiter locks. Today's
// limiter locks (the user, the client address) and the client address,
// never the user everywhere: the attacker's address is locked, even for
// the right password, and the admin, from another address, logs in.
func TestLoginLockoutIsPerSource(t *testing.T) {
	e := newEnv(t, nil)
	attacker, admin := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")
	for i := range 30 {
		res := loginFrom(t, e, attacker, "admin", "guess"+strconv.Itoa(i), "")
		if want := map[bool]int{true: 401, false: 429}[i < 5]; res.status != want {
			t.Fatalf("attacker's attempt %d: %d, want %d", i+1, res.status, want)
		}
	}
	if res := loginFrom(t, e, attacker, "admin", adminPassword, ""); res.status != http.StatusTooManyRequests {
		t.Errorf("the right password from the locked address: %d, want 429", res.status)
	}
	if res := loginFrom(t, e, admin, "admin", adminPassword, ""); res.status != http.StatusOK {
		t.Fatalf("the admin from another address: %d %s, want 200", res.status, res.body)
	}
	recs := e.audit.records(t)
	if got := recs[0].Data["addr"]; got != "127.0.0.2" {
		t.Errorf("the attacker's failure is audited from %q, want 127.0.0.2", got)
	}
	if last := recs[len(recs)-1]; last.Type != fleet.TypeLoginSucceeded || last.Data["addr"] != "127.0.0.3" {
		t.Errorf("last audit %+v, want the admin's success from 127.0.0.3", last)
	}
}

// TestLoginLockoutPerAddress: one address guessing many user names is
// locked after LoginMaxFailuresPerAddr (20), for every user there, and
// only there.
func TestLoginLockoutPerAddress(t *testing.T) {
	e := newEnv(t, nil)
	attacker, admin := clientFrom(t, "127.0.0.4"), clientFrom(t, "127.0.0.5")
	for i := range web.DefaultLoginMaxFailuresPerAddr {
		if res := loginFrom(t, e, attacker, "user"+strconv.Itoa(i), "guess", ""); res.status != 401 {
			t.Fatalf("attempt %d: %d, want 401", i+1, res.status)
		}
	}
	if res := loginFrom(t, e, attacker, "admin", adminPassword, ""); res.status != http.StatusTooManyRequests {
		t.Errorf("from the guessing address: %d, want 429", res.status)
	}
	if res := loginFrom(t, e, admin, "admin", adminPassword, ""); res.status != http.StatusOK {
		t.Errorf("from another address: %d %s, want 200", res.status, res.body)
	}
}

// TestLoginForgedForwardedFor: without trusted proxies, X-Forwarded-For
// counts for nothing: an attacker naming a new address with every guess
// is still one address, locked after five, and audited as what it is.
func TestLoginForgedForwardedFor(t *testing.T) {
	e := newEnv(t, nil)
	attacker := clientFrom(t, "127.0.0.6")
	for i := range 5 {
		loginFrom(t, e, attacker, "admin", "guess", "203.0.113."+strconv.Itoa(i+1))
	}
	if res := loginFrom(t, e, attacker, "admin", adminPassword, "198.51.100.9"); res.status != http.StatusTooManyRequests {
		t.Fatalf("a forged X-Forwarded-For escaped the limit: %d", res.status)
	}
	for _, r := range e.audit.records(t) {
		if r.Data["addr"] != "127.0.0.6" {
			t.Errorf("audited address %q, want the peer's, 127.0.0.6", r.Data["addr"])
		}
	}
}

// TestLoginBehindTrustedProxy: behind a trusted proxy (here the server's
// peer, 127.0.0.1), the client is the address the proxy appended to
// X-Forwarded-For; an attacker there is locked out alone, and one that
// writes its own X-Forwarded-For in front of the proxy's gains nothing.
func TestLoginBehindTrustedProxy(t *testing.T) {
	e := newEnv(t, func(c *web.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	proxy := clientFrom(t, "127.0.0.1")
	for i := range 5 {
		// The attacker forged the left part; the proxy appended its peer.
		loginFrom(t, e, proxy, "admin", "guess", "198.51.100."+strconv.Itoa(i+1)+", 203.0.113.7")
	}
	if res := loginFrom(t, e, proxy, "admin", adminPassword, "203.0.113.7"); res.status != http.StatusTooManyRequests {
		t.Fatalf("the attacker with the right password: %d, want 429", res.status)
	}
	if res := loginFrom(t, e, proxy, "admin", adminPassword, "192.0.2.44"); res.status != http.StatusOK {
		t.Fatalf("the admin behind the same proxy: %d %s, want 200", res.status, res.body)
	}
	recs := e.audit.records(t)
	if got := recs[0].Data["addr"]; got != "203.0.113.7" {
		t.Errorf("audited address %q, want the one the proxy saw, 203.0.113.7", got)
	}
	if got := recs[len(recs)-1].Data["addr"]; got != "192.0.2.44" {
		t.Errorf("audited address %q, want 192.0.2.44", got)
	}
	// A peer that is not a trusted proxy is its own client, whatever it
	// forwards.
	other := clientFrom(t, "127.0.0.7")
	for range 5 {
		loginFrom(t, e, other, "admin", "guess", "192.0.2.44")
	}
	if res := loginFrom(t, e, proxy, "admin", adminPassword, "192.0.2.44"); res.status != http.StatusOK {
		t.Errorf("an untrusted peer forwarding the admin's address locked it: %d", res.status)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := web.ParseTrustedProxies(" 10.1.2.3/8, 192.0.2.7,2001:db8::1/32 ,, ")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.com", "10.0.0.1/8/8", "fe80::1%eth0", "::ffff:10.0.0.1", "10.0.0.0/-1"} {
		if _, err := web.ParseTrustedProxies(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
