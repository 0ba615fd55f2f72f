package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/sagewai/observatory/web"
)

// defaultAddr is where serve and demo listen unless told otherwise:
// loopback only, where the default admin password and the loopback host
// names are safe.
const defaultAddr = "127.0.0.1:3001"

// defaultAdminPassword is the development password serve refuses beyond
// loopback.
const defaultAdminPassword = "admin"

// edgeConfig holds serve's flags for the HTTP edge (DESIGN §11.2).
type edgeConfig struct {
	publicURLs     []string
	trustedProxies string
	tlsCert        string
	tlsKey         string
	maxWSConns     int
	maxWSPerCred   int

	// Parsed by check.
	proxies []netip.Prefix
}

// edgeFlags registers the edge flags on fs. demo has no TLS flags: its
// workload talks to the server over plain HTTP on loopback.
func edgeFlags(fs *flag.FlagSet, getenv func(string) string, e *edgeConfig, demo bool) {
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	e.publicURLs = splitList(env("OBSERVATORY_PUBLIC_URL", ""))
	fs.Var(&listFlag{vals: &e.publicURLs}, "public-url",
		"an address browsers and clients reach the server at, scheme://host[:port] (repeatable); the server answers no other host name (421) "+
			"and trusts no other origin; needed to listen beyond loopback (env OBSERVATORY_PUBLIC_URL, comma-separated)")
	fs.StringVar(&e.trustedProxies, "trusted-proxies", env("OBSERVATORY_TRUSTED_PROXIES", ""),
		"comma-separated CIDR ranges or addresses of the proxies whose X-Forwarded-For and X-Forwarded-Proto count; empty: none (env OBSERVATORY_TRUSTED_PROXIES)")
	if !demo {
		fs.StringVar(&e.tlsCert, "tls-cert", env("OBSERVATORY_TLS_CERT", ""),
			"serve HTTPS with this certificate (PEM, read again when it changes) and --tls-key (env OBSERVATORY_TLS_CERT)")
		fs.StringVar(&e.tlsKey, "tls-key", env("OBSERVATORY_TLS_KEY", ""), "the key of --tls-cert (PEM) (env OBSERVATORY_TLS_KEY)")
	}
	fs.IntVar(&e.maxWSConns, "ws-max-conns", envInt(getenv, "OBSERVATORY_WS_MAX_CONNS", web.DefaultMaxWSConns),
		"most /ws connections open at once; more are refused with 429 (env OBSERVATORY_WS_MAX_CONNS)")
	fs.IntVar(&e.maxWSPerCred, "ws-max-conns-per-credential", envInt(getenv, "OBSERVATORY_WS_MAX_CONNS_PER_CREDENTIAL", web.DefaultMaxWSConnsPerKey),
		"most /ws connections one token holds at once (env OBSERVATORY_WS_MAX_CONNS_PER_CREDENTIAL)")
}

// listFlag is a repeatable string flag. Given on the command line, it
// replaces what its env twin said; each value may itself be a
// comma-separated list.
type listFlag struct {
	vals *[]string
	set  bool
}

func (f *listFlag) String() string {
	if f == nil || f.vals == nil {
		return ""
	}
	return strings.Join(*f.vals, ",")
}

func (f *listFlag) Set(v string) error {
	if !f.set {
		*f.vals, f.set = nil, true
	}
	*f.vals = append(*f.vals, splitList(v)...)
	return nil
}

// check validates the edge flags against the listen address and the
// admin password before anything starts. Its refusals are usage errors
// (exit status 2) that say what to pass.
func (e *edgeConfig) check(ctx context.Context, name, addr, password string) error {
	for _, u := range e.publicURLs {
		if _, err := web.ParsePublicURL(u); err != nil {
			return usagef("%s: --public-url: %v", name, err)
		}
	}
	var err error
	if e.proxies, err = web.ParseTrustedProxies(e.trustedProxies); err != nil {
		return usagef("%s: --trusted-proxies: %v", name, err)
	}
	if (e.tlsCert == "") != (e.tlsKey == "") {
		return usagef("%s: --tls-cert and --tls-key go together", name)
	}
	if e.maxWSConns < 1 || e.maxWSPerCred < 1 {
		return usagef("%s: --ws-max-conns and --ws-max-conns-per-credential must be at least 1", name)
	}
	loopback, err := loopbackOnly(ctx, addr)
	if err != nil {
		return usagef("%s: --addr %s: %v", name, addr, err)
	}
	if loopback {
		return nil
	}
	_, port, _ := net.SplitHostPort(addr)
	if password == defaultAdminPassword {
		return usagef("%s: refusing to serve the default admin password on %s, which other machines can reach: "+
			"set a password with --admin-password or OBSERVATORY_ADMIN_PASSWORD, or listen on loopback only (--addr 127.0.0.1:%s)",
			name, addr, port)
	}
	if len(e.publicURLs) == 0 {
		scheme := "http"
		if e.tlsCert != "" {
			scheme = "https"
		}
		return usagef("%s: --addr %s listens beyond loopback, so the server must be told the address browsers and clients "+
			"reach it at (it answers no other host name, against DNS rebinding): pass --public-url %s://<host>:%s "+
			"(repeatable, one per name, e.g. --public-url %s://observatory.example.com:%s; env OBSERVATORY_PUBLIC_URL, comma-separated), "+
			"or listen on loopback only (--addr 127.0.0.1:%s)", name, addr, scheme, port, scheme, port, port)
	}
	return nil
}

// loopbackOnly reports whether addr (a listen address) listens on
// loopback only: a loopback IP address, or a name all of whose addresses
// are loopback ones. An empty host listens everywhere.
func loopbackOnly(ctx context.Context, addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, errors.New("want host:port, e.g. 127.0.0.1:3001 or :3001")
	}
	if host == "" {
		return false, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().IsLoopback(), nil
	}
	if host == "localhost" {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return false, nil
		}
	}
	return len(addrs) > 0, nil
}

// apply adds the edge settings to a web.Config.
func (e *edgeConfig) apply(cfg web.Config) web.Config {
	cfg.PublicURLs = e.publicURLs
	cfg.TrustedProxies = e.proxies
	cfg.TLSCertFile, cfg.TLSKeyFile = e.tlsCert, e.tlsKey
	cfg.MaxWSConns, cfg.MaxWSConnsPerCredential = e.maxWSConns, e.maxWSPerCred
	return cfg
}

// baseURL is the address the banner shows: the first public URL, else
// the listener's (https with TLS).
func (e *edgeConfig) baseURL(addr net.Addr) string {
	if len(e.publicURLs) > 0 {
		if o, err := web.ParsePublicURL(e.publicURLs[0]); err == nil {
			return o
		}
	}
	if e.tlsCert != "" {
		return "https://" + displayAddr(addr)
	}
	return "http://" + displayAddr(addr)
}

// listening says where the server listens when the banner's address is
// a public URL, which may not be that of this machine: " (listening on
// host:port)", else "".
func (e *edgeConfig) listening(addr net.Addr) string {
	if len(e.publicURLs) == 0 {
		return ""
	}
	return " (listening on " + addr.String() + ")"
}

// serveHTTP serves hs on ln, over TLS when hs has a TLS configuration
// (web.Server.HTTPServer sets one for --tls-cert).
func serveHTTP(hs *http.Server, ln net.Listener) error {
	var err error
	if hs.TLSConfig != nil {
		err = hs.ServeTLS(ln, "", "")
	} else {
		err = hs.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}
