package web

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"
)

// Trusted proxies (DESIGN §11.2). X-Forwarded-For and X-Forwarded-Proto
// are whatever a client wrote unless a proxy of ours wrote them, so they
// count only when the request's peer is in Config.TrustedProxies. Then
// the client is the nearest address in X-Forwarded-For, read from the
// right, that is not itself a trusted proxy (echo's
// ExtractIPFromXFFHeader with these ranges and nothing else trusted).
// Without trusted proxies no forwarded header counts: the peer is the
// client and the connection says whether it is HTTPS.

// ParseTrustedProxies parses a comma-separated list of CIDR ranges or
// single addresses (what --trusted-proxies takes), e.g.
// "10.0.0.0/8, 192.0.2.7, 2001:db8::/32". An empty list is no proxies.
// Each range is returned masked (10.1.2.3/8 is 10.0.0.0/8), an address as
// a range of one; IPv4-mapped IPv6 must be written as IPv4.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(f, "/") {
			var err error
			if p, err = netip.ParsePrefix(f); err != nil {
				return nil, fmt.Errorf("trusted proxy %q: want a CIDR range such as 10.0.0.0/8 or an address such as 192.0.2.7", f)
			}
		} else {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: want a CIDR range such as 10.0.0.0/8 or an address such as 192.0.2.7", f)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("trusted proxy %q: an IPv6 zone has no place in it", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		switch {
		case p.Addr().Zone() != "":
			return nil, fmt.Errorf("trusted proxy %q: an IPv6 zone has no place in it", f)
		case p.Addr().Is4In6():
			return nil, fmt.Errorf("trusted proxy %q: write an IPv4-mapped address as IPv4", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// proxyTrust decides whose forwarded headers count.
type proxyTrust struct {
	prefixes []netip.Prefix
	extract  echo.IPExtractor
}

func newProxyTrust(prefixes []netip.Prefix) *proxyTrust {
	p := &proxyTrust{prefixes: prefixes, extract: echo.ExtractIPDirect()}
	if len(prefixes) == 0 {
		return p
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, pr := range prefixes {
		opts = append(opts, echo.TrustIPRange(&net.IPNet{
			IP: net.IP(pr.Addr().AsSlice()), Mask: net.CIDRMask(pr.Bits(), pr.Addr().BitLen()),
		}))
	}
	p.extract = echo.ExtractIPFromXFFHeader(opts...)
	return p
}

// peerTrusted reports whether r's peer is a trusted proxy.
func (p *proxyTrust) peerTrusted(r *http.Request) bool {
	if len(p.prefixes) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, pr := range p.prefixes {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns r's client address (echo's IPExtractor).
func (p *proxyTrust) clientIP(r *http.Request) string { return p.extract(r) }

// isHTTPS reports whether the client reached the server over HTTPS: this
// connection is TLS, or a trusted proxy says so in X-Forwarded-Proto.
func (p *proxyTrust) isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	return p.peerTrusted(r) && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}

// scheme is echo's SchemeExtractor: https or http, as isHTTPS says.
func (p *proxyTrust) scheme(r *http.Request) string {
	if p.isHTTPS(r) {
		return "https"
	}
	return "http"
}

// ClientIP returns the client address of r as a server trusting the
// proxies in trusted sees it: the peer's, or, when the peer is a trusted
// proxy, the nearest untrusted address X-Forwarded-For names.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	return newProxyTrust(trusted).clientIP(r)
}
