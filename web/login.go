package web

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/hud"
	"github.com/sagewai/observatory/static"
	"github.com/sagewai/observatory/web/auth"
)

// loginPage is GET /login: the form, or straight to the HUD for a browser
// that already holds a valid session.
func (s *Server) loginPage(c echo.Context) error {
	next := safeNext(c.QueryParam("next"))
	if ck, err := c.Cookie(SessionCookie); err == nil && ck.Value != "" {
		if _, err := s.authenticate(credential{token: ck.Value, from: fromCookie, method: http.MethodGet}); err == nil {
			return c.Redirect(http.StatusSeeOther, next)
		}
	}
	return s.renderLogin(c, http.StatusOK, hud.LoginPage{Next: nextField(next)})
}

// loginForm is POST /login: the form's username and password. A good pair
// sets the HttpOnly session cookie and sends the browser to the HUD; a bad
// one shows the form again with the error. Failures are slowed down and
// audited exactly as POST /api/v1/auth/login does.
func (s *Server) loginForm(c echo.Context) error {
	if !s.sameOrigin(c.Request()) {
		return s.renderError(c, http.StatusForbidden, "Not allowed", "A login form may only be posted from this site.")
	}
	username := strings.TrimSpace(c.FormValue("username"))
	password := c.FormValue("password")
	next := safeNext(c.FormValue("next"))
	form := hud.LoginPage{Username: username, Next: nextField(next)}
	if !auth.ValidSubject(username) || password == "" {
		form.Error = "Enter a user name and a password."
		return s.renderLogin(c, http.StatusBadRequest, form)
	}
	tok, exp, err := s.passwordLogin(c.Request().Context(), username, password, c.RealIP(), "hud")
	if err != nil {
		e := asError(err)
		form.Error = e.Message
		if secs, ok := e.Details["retry_after_seconds"].(int); ok {
			c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
			form.Error = "Too many failed logins: try again in " + strconv.Itoa(secs) + " s."
		}
		return s.renderLogin(c, StatusOf(e.Code), form)
	}
	c.SetCookie(&http.Cookie{
		Name: SessionCookie, Value: tok, Path: "/",
		Expires: exp, MaxAge: cookieMaxAge(exp, s.cfg.Now()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.isHTTPS(c.Request()),
	})
	return c.Redirect(http.StatusSeeOther, next)
}

// cookieMaxAge is a session cookie's Max-Age: the whole seconds from now
// until the token expires at exp, both on the server's clock, rounded up
// (a token carries whole seconds, so a cookie set the second it was issued
// lives exactly as long as the token). It is at least 1: 0 would mean no
// Max-Age, and a negative one deletes the cookie.
func cookieMaxAge(exp, now time.Time) int {
	return max(1, int(math.Ceil(exp.Sub(now).Seconds())))
}

// logout is POST /logout: it revokes the session token the cookie
// carries (on every replica, audited as auth.token.revoked) and drops the
// cookie. When the revocation cannot be stored the cookie is dropped all
// the same and the answer says that the session stays valid until it
// expires.
func (s *Server) logout(c echo.Context) error {
	if !s.sameOrigin(c.Request()) {
		return s.renderError(c, http.StatusForbidden, "Not allowed", "Log out from this site.")
	}
	var err error
	if ck, cerr := c.Cookie(SessionCookie); cerr == nil && ck.Value != "" {
		if cl, aerr := s.authenticate(credential{token: ck.Value, from: fromCookie, method: http.MethodGet}); aerr == nil {
			err = s.revokeSession(c, cl)
		}
	}
	clearSession(c)
	if err != nil {
		s.log.ErrorContext(c.Request().Context(), "session not revoked", "event", "auth.logout.revoke_failed", "error", err.Error())
		return s.renderError(c, http.StatusServiceUnavailable, "Logged out here only",
			"The session cookie is gone, but the session could not be revoked: it stays valid until it expires.")
	}
	return c.Redirect(http.StatusSeeOther, "/login")
}

func clearSession(c echo.Context) {
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func (s *Server) renderLogin(c echo.Context, status int, form hud.LoginPage) error {
	form.Assets = static.Version()
	return s.render(c, status, hud.Login(form))
}

// nextField is the form's hidden "next", left out when it is the default.
func nextField(next string) string {
	if next == "/hud" {
		return ""
	}
	return next
}

// sameOrigin refuses cross-site form posts (login CSRF). Browsers say
// where a request comes from in Sec-Fetch-Site; older ones only in Origin,
// which must then be one of the server's own (hosts.go). A request with
// neither is no browser's.
func (s *Server) sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "same-site", "cross-site":
		return false
	}
	switch o := r.Header.Get("Origin"); o {
	case "":
		return true
	case "null":
		return false
	default:
		return s.hosts.allowOrigin(r, o)
	}
}

// isHTTPS reports whether the client reached the server over HTTPS
// (directly, or through a trusted proxy that says so).
func (s *Server) isHTTPS(r *http.Request) bool { return s.proxies.isHTTPS(r) }

// passwordLogin checks a user name and password with the login slow-down
// and the auth.login.* audit, for both POST /api/v1/auth/login and the HUD's
// form (form names it in the success event; "" for the API), and mints a
// session token. Its errors are *Error: unauthorized, or
// too_many_attempts with Details["retry_after_seconds"].
func (s *Server) passwordLogin(ctx context.Context, username, password, addr, form string) (string, time.Time, error) {
	limits := s.loginLimits(username, addr)
	a, wait, ok := s.limiter.AttemptLimits(s.cfg.Now(), limits...)
	if !ok {
		secs := int(math.Ceil(wait.Seconds()))
		s.publishAudit(ctx, fleet.TypeLoginFailed, projectGlobal, username, map[string]string{"addr": addr, "reason": "too_many_attempts"})
		return "", time.Time{}, &Error{
			Code:    CodeTooManyAttempts,
			Message: "too many failed logins; retry later",
			Details: map[string]any{"retry_after_seconds": secs},
		}
	}
	usr, err := s.users.Authenticate(username, password)
	if err != nil {
		s.publishAudit(ctx, fleet.TypeLoginFailed, projectGlobal, username, map[string]string{"addr": addr, "reason": "bad_credentials"})
		return "", time.Time{}, errorf(CodeUnauthorized, "bad username or password")
	}
	s.limiter.Forgive(a)
	s.limiter.Reset(limits[0].Key) // the user's count at this address
	tok, exp, err := s.issue(usr.Name, usr.Role, usr.Project, auth.KindSession, s.cfg.TokenTTL)
	if err != nil {
		return "", time.Time{}, err
	}
	data := map[string]string{"addr": addr}
	if form != "" {
		data["form"] = form
	}
	s.publishAudit(ctx, fleet.TypeLoginSucceeded, projectGlobal, usr.Name, data)
	return tok, exp, nil
}
