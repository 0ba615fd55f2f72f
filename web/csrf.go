package web

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Cross-site request forgery (DESIGN §11.2). A browser attaches the
// session cookie to requests other sites' pages make: a form post, or a
// fetch in no-cors mode, both of which may carry any body as text/plain
// and neither of which the page can read the answer of. So a request
// that the session cookie authenticates, other than GET and HEAD, must
// come from this server's own pages and say it is JSON, which no form
// and no no-cors fetch can:
//
//   - Sec-Fetch-Site must be same-origin; a browser that does not send it
//     must send an Origin that is one of the server's own (hosts.go);
//   - Content-Type must be application/json.
//
// Otherwise the answer is 403 csrf before anything is read or written.
// A request with an Authorization header is not authenticated by the
// cookie (credentialOf), and another site's page cannot add one without
// a CORS preflight, which the server never grants, so it passes. The
// login form and logout post forms and check their own origin
// (sameOrigin in login.go).

// csrfExempt are the form posts that check their origin themselves.
func csrfExempt(route string) bool {
	return route == "/login" || route == "/logout"
}

// checkCSRF refuses cookie-authenticated writes from other origins and
// those that are not JSON.
func (s *Server) checkCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Header.Get("Authorization") != "" ||
			!hasSessionCookie(r) || csrfExempt(c.Path()) {
			return next(c)
		}
		if !s.fromOwnPage(r) {
			s.logCSRF(c, "cross_origin")
			return errorf(CodeCSRF, "a request the session cookie authenticates must come from this server's own pages; "+
				"programs should send Authorization: Bearer <token> instead of the cookie")
		}
		if !isJSON(r.Header.Get("Content-Type")) {
			s.logCSRF(c, "not_json")
			return errorf(CodeCSRF, "a request the session cookie authenticates must have Content-Type application/json; "+
				"programs should send Authorization: Bearer <token> instead of the cookie")
		}
		return next(c)
	}
}

// fromOwnPage reports whether a browser says r comes from a page of this
// server: Sec-Fetch-Site same-origin, or, from a browser that does not
// send Sec-Fetch-Site, an Origin of the server's own.
func (s *Server) fromOwnPage(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	origin := r.Header.Get("Origin")
	return origin != "" && s.hosts.allowOrigin(r, origin)
}

// hasSessionCookie reports whether r carries a session cookie.
func hasSessionCookie(r *http.Request) bool {
	ck, err := r.Cookie(SessionCookie)
	return err == nil && ck.Value != ""
}

// isJSON reports whether a Content-Type is application/json, parameters
// (a charset) allowed.
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// logCSRF logs a refused forgery attempt: which route, what the browser
// said about where it came from.
func (s *Server) logCSRF(c echo.Context, reason string) {
	r := c.Request()
	s.log.WarnContext(r.Context(), "cross-site request refused", "event", "http.csrf_refused", "reason", reason,
		"method", r.Method, "route", routeOf(c), "sec_fetch_site", clip(r.Header.Get("Sec-Fetch-Site")),
		"origin", clip(r.Header.Get("Origin")), "content_type", clip(r.Header.Get("Content-Type")))
}

// clip shortens a header value a client chose to what a log line needs.
func clip(s string) string {
	const n = 200
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
