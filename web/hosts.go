package web

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// Which hosts the server answers and which origins it trusts (DESIGN
// §11.2). A DNS-rebinding page (an attacker's name that resolves to this
// server) sends the attacker's host name in Host; a cross-site page sends
// its own origin in Origin. Neither can name this server's own addresses,
// so both are refused:
//
//   - Host must be the host of a public URL (Config.PublicURLs), or, on a
//     connection that arrived on a loopback address, a loopback name
//     (localhost, a loopback IP address) with any port: a port forward
//     (ssh -L, kubectl port-forward) changes the port the browser names,
//     and no rebinding page can name a loopback host. Anything else is 421
//     misdirected. Health probes and /metrics are exempt, so that
//     orchestrators and scrapers asking by IP work.
//   - The origins a browser page of this server may have are the public
//     URLs' and, on a loopback connection whose Host is a loopback name,
//     that Host's (http or https): the page the browser shows at that
//     address. A page of another local server (another port) is another
//     origin. Cookie-authenticated writes (csrf.go), the login form and
//     /ws check Origin against them; /ws also accepts
//     Config.AllowedOrigins.

// ParsePublicURL checks a public URL (what --public-url takes): an http or
// https URL with a host, an optional port and nothing else (no user, path,
// query or fragment). It returns the URL's origin as browsers write it in
// an Origin header: scheme://host[:port] in lower case, the port left out
// when it is the scheme's default, an IPv6 address in brackets.
func ParsePublicURL(s string) (string, error) {
	o, err := parsePublicURL(s)
	if err != nil {
		return "", err
	}
	return o.origin(), nil
}

// publicOrigin is a parsed public URL.
type publicOrigin struct {
	scheme string // "http" or "https"
	host   string // a lower-case DNS name or IP address (IPv6 without brackets)
	port   int    // always set: the scheme's default when the URL has none
}

func defaultPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// hostPort is the host and port as a Host header with a port writes them.
func (o publicOrigin) hostPort() string {
	return net.JoinHostPort(o.host, strconv.Itoa(o.port))
}

// bareHost is the host as a Host header without a port writes it.
func (o publicOrigin) bareHost() string {
	if strings.Contains(o.host, ":") {
		return "[" + o.host + "]"
	}
	return o.host
}

func (o publicOrigin) origin() string {
	if o.port == defaultPort(o.scheme) {
		return o.scheme + "://" + o.bareHost()
	}
	return o.scheme + "://" + o.hostPort()
}

func parsePublicURL(s string) (publicOrigin, error) {
	bad := func(why string) (publicOrigin, error) {
		return publicOrigin{}, fmt.Errorf("public URL %q: %s; want scheme://host[:port], e.g. https://observatory.example.com", s, why)
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return bad("not a URL")
	}
	o := publicOrigin{scheme: strings.ToLower(u.Scheme)}
	switch {
	case o.scheme != "http" && o.scheme != "https":
		return bad("the scheme must be http or https")
	case u.Opaque != "" || u.Host == "":
		return bad("no host")
	case u.User != nil:
		return bad("a user name or password has no place in it")
	case u.Path != "" && u.Path != "/", u.RawPath != "":
		return bad("a path is not supported (Observatory serves from the root of its host)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "":
		return bad("a query or fragment has no place in it")
	}
	o.host = strings.ToLower(u.Hostname())
	if a, err := netip.ParseAddr(o.host); err == nil {
		if a.Zone() != "" {
			return bad("an IPv6 zone has no place in it")
		}
		if strings.Contains(o.host, ":") != strings.HasPrefix(u.Host, "[") {
			return bad("an IPv6 address must be in brackets")
		}
		o.host = a.Unmap().String()
	} else if !validDNSName(o.host) {
		return bad("the host must be a DNS name or an IP address")
	}
	o.port = defaultPort(o.scheme)
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || p[0] == '0' {
			return bad("the port must be a number from 1 to 65535")
		}
		o.port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("an empty port")
	}
	return o, nil
}

// validDNSName reports whether h is a host name of letters, digits and
// hyphens in dot-separated labels (punycode for others), at most 253
// bytes.
func validDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// hostPolicy holds the public URLs in the forms requests name them.
type hostPolicy struct {
	// hosts holds each public URL's host as a Host header writes it: with
	// the port, and also bare when the port is its scheme's default.
	hosts map[string]bool
	// origins holds each public URL's origin (publicOrigin.origin).
	origins map[string]bool
	// allowed are the /ws origin patterns (Config.AllowedOrigins).
	allowed []string
}

func newHostPolicy(publicURLs, allowedOrigins []string) (*hostPolicy, error) {
	p := &hostPolicy{hosts: map[string]bool{}, origins: map[string]bool{}}
	for _, s := range publicURLs {
		o, err := parsePublicURL(s)
		if err != nil {
			return nil, err
		}
		p.hosts[o.hostPort()] = true
		if o.port == defaultPort(o.scheme) {
			p.hosts[o.bareHost()] = true
		}
		p.origins[o.origin()] = true
	}
	for _, pat := range allowedOrigins {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("origin pattern %q: %w", pat, err)
		}
		p.allowed = append(p.allowed, strings.ToLower(pat))
	}
	return p, nil
}

// onLoopback reports whether r arrived on a loopback address: its client
// is on this machine (or a port forward's far end is).
func onLoopback(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// isLoopbackHost reports whether hostport (a lower-case Host header) is a
// loopback name, localhost or a loopback IP address, with a port or
// without.
func isLoopbackHost(hostport string) bool {
	host := hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host = hostport[:i]
		p := hostport[i+1:]
		if p == "" || p[0] == '0' {
			return false
		}
		if n, err := strconv.Atoi(p); err != nil || n > 65535 {
			return false
		}
	}
	if host == "localhost" {
		return true
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		return err == nil && a.Is6() && a.Zone() == "" && a.IsLoopback()
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is4() && a.IsLoopback()
}

// allowHost reports whether the server answers r's Host.
func (p *hostPolicy) allowHost(r *http.Request) bool {
	host := strings.ToLower(r.Host)
	return p.hosts[host] || isLoopbackHost(host) && onLoopback(r)
}

// allowOrigin reports whether origin (an Origin header) is one of the
// server's own: a public URL's, or, on a loopback connection whose Host
// is a loopback name, that Host's.
func (p *hostPolicy) allowOrigin(r *http.Request, origin string) bool {
	origin = strings.ToLower(origin)
	if p.origins[origin] {
		return true
	}
	rest, ok := strings.CutPrefix(origin, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(origin, "https://")
	}
	return ok && rest == strings.ToLower(r.Host) && isLoopbackHost(rest) && onLoopback(r)
}

// allowWSOrigin applies /ws's rule: no Origin (not a browser) passes; a
// browser's must be one of the server's own or match an allowed pattern.
// A pattern is matched with path.Match against the origin's host, or
// against scheme://host if the pattern contains "://".
func (p *hostPolicy) allowWSOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if p.allowOrigin(r, origin) {
		return true
	}
	if len(p.allowed) == 0 {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	for _, pat := range p.allowed {
		target := u.Host
		if strings.Contains(pat, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(pat, strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// hostExempt are the routes answered whatever the Host: the health
// probes, which orchestrators ask by IP address, and /metrics, which
// scrapers ask by IP address too and which needs a bearer token on this
// listener (DESIGN §11.2), something a rebinding page does not have.
func hostExempt(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/metrics"
}

// checkHost answers 421 misdirected to a request naming a host the server
// does not serve, and marks answers over HTTPS with HSTS.
func (s *Server) checkHost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !s.hosts.allowHost(r) && !hostExempt(r.URL.Path) {
			msg := "this server does not answer to that host name"
			if len(s.hosts.hosts) == 0 {
				msg += "; it answers loopback names only until it is given its public URL (--public-url)"
			}
			return &Error{Code: CodeMisdirected, Message: msg}
		}
		if s.proxies.isHTTPS(r) {
			c.Response().Header().Set("Strict-Transport-Security", hstsValue)
		}
		return next(c)
	}
}

// hstsValue tells browsers to use HTTPS only for this host for a year.
// It names no subdomains: those may be other people's servers.
const hstsValue = "max-age=31536000"
