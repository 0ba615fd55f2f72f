package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/hud"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/static"
	"github.com/sagewai/observatory/web/auth"
)

// hudRoutes registers the HUD: the page, its login form and its assets.
func (s *Server) hudRoutes(e *echo.Echo) {
	e.GET("/hud", s.hudPage, s.pageHeaders(true))
	e.GET("/login", s.loginPage, s.pageHeaders(false))
	e.POST("/login", s.loginForm, s.pageHeaders(false))
	e.POST("/logout", s.logout, s.pageHeaders(false))
	e.GET("/static/*", s.staticAsset)
}

// embedSource is what --embed-origins accepts: 'self', or an http(s)
// origin whose host may start with a "*." wildcard, with an optional port.
var embedSource = regexp.MustCompile(`^(?:'self'|https?://(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::(?:[0-9]{1,5}|\*))?)$`)

// checkEmbedOrigins validates Config.EmbedOrigins, which go into a CSP
// header as they are.
func checkEmbedOrigins(origins []string) error {
	for _, o := range origins {
		if !embedSource.MatchString(o) {
			return fmt.Errorf("embed origin %q: want 'self' or scheme://host[:port], e.g. https://admin.example.com", o)
		}
	}
	return nil
}

// pageHeaders sets the headers of HTML pages: a strict CSP (everything
// from this origin, no inline script or style), no caching, a referrer for
// this origin only, and framing only where allowed. The HUD may be framed by Config.EmbedOrigins; the
// login page never is.
func (s *Server) pageHeaders(embeddable bool) echo.MiddlewareFunc {
	ancestors := "'none'"
	if embeddable && len(s.cfg.EmbedOrigins) > 0 {
		ancestors = strings.Join(s.cfg.EmbedOrigins, " ")
	}
	csp := "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors " + ancestors
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("Content-Security-Policy", csp)
			h.Set("Cache-Control", "no-store")
			// The site-wide no-referrer would make a browser post the login
			// form with "Origin: null"; same-origin still keeps URLs (and
			// their embed tokens) from every other site.
			h.Set("Referrer-Policy", "same-origin")
			if ancestors == "'none'" {
				h.Set("X-Frame-Options", "DENY")
			}
			return next(c)
		}
	}
}

// hudPage is GET /hud: the page, rendered from the scope's current
// snapshot, so that it is right before any script runs. Without a
// credential it sends the browser to /login (an embedded page, which cannot
// log in, gets a 401 page instead).
func (s *Server) hudPage(c echo.Context) error {
	r := c.Request()
	ctx := r.Context()
	embed := c.QueryParam("embed") == "1"
	cred := credentialOf(r)
	if tok := c.QueryParam("embed_token"); tok != "" && cred.from != fromBearer {
		// In an iframe the URL's token is the credential, whatever cookie
		// the browser may hold for this site.
		cred = credential{token: tok, from: fromQuery, method: r.Method}
	}
	if cred.from == "" {
		if embed {
			return s.renderError(c, http.StatusUnauthorized, "Embed token required", "This embedded view needs an ?embed_token= issued by `observatory embed-token`.")
		}
		return c.Redirect(http.StatusSeeOther, loginURL(r.URL))
	}
	cl, err := s.authenticate(cred)
	if err != nil {
		switch cred.from {
		case fromCookie:
			clearSession(c)
			return c.Redirect(http.StatusSeeOther, loginURL(r.URL))
		case fromQuery:
			return s.renderError(c, http.StatusUnauthorized, "Embed token refused", asError(err).Message+": ask for a new embed token.")
		default:
			return s.renderError(c, http.StatusUnauthorized, "Not signed in", asError(err).Message)
		}
	}
	if cl.Kind == auth.KindEmbed {
		embed = true
	}
	scope, err := s.authorizeScope(ctx, cl, c.QueryParam("project"), routeOf(c))
	if err != nil {
		e := asError(err)
		return s.renderError(c, StatusOf(e.Code), "Not allowed", e.Message)
	}
	setProject(c, scope)
	snap, err := s.snapshot(ctx, scope)
	if err != nil {
		s.log.WarnContext(ctx, "hud snapshot failed", "event", "hud.snapshot_failed", "sagewai.project_id", projectOrGlobal(scope), "error", err.Error())
		return s.renderError(c, http.StatusServiceUnavailable, "Fleet state unavailable", "The server is catching up with the event stream; try again in a moment.")
	}
	page := hud.Page{
		Scope: scope, Epoch: snap.Epoch, Seq: snap.Seq, View: snap.State,
		Admin: cl.Role == auth.RoleAdmin, Embed: embed, User: cl.Subject,
		Assets: static.Version(),
	}
	if cred.from == fromQuery {
		page.EmbedToken = cred.token
	}
	switch {
	case !page.Admin:
		page.Projects = []string{cl.Project}
	case scope == fleet.ScopeAll:
		page.Projects = slices.Sorted(maps.Keys(snap.State.Projects))
	default:
		// The tabs of an admin looking at one project: every project.
		if ids, err := s.projectIDs(ctx); err == nil {
			page.Projects = ids
		}
	}
	return s.render(c, http.StatusOK, hud.HUD(page))
}

// snapshot decodes the hub's snapshot frame of scope.
func (s *Server) snapshot(ctx context.Context, scope string) (protocol.Snapshot, error) {
	var snap protocol.Snapshot
	frame, err := s.hub.Snapshot(ctx, scope)
	if err != nil {
		return snap, err
	}
	if err := json.Unmarshal(frame, &snap); err != nil {
		return snap, fmt.Errorf("decode snapshot: %w", err)
	}
	return snap, nil
}

// projectIDs lists every project of the fleet, for an admin's tabs.
func (s *Server) projectIDs(ctx context.Context) ([]string, error) {
	frame, err := s.hub.Snapshot(ctx, fleet.ScopeAll)
	if err != nil {
		return nil, err
	}
	var f struct {
		State struct {
			Projects map[string]json.RawMessage `json:"projects"`
		} `json:"state"`
	}
	if err := json.Unmarshal(frame, &f); err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(f.State.Projects)), nil
}

// render writes a component as a whole HTML page: rendered first, so that a
// failure leaves no half page behind.
func (s *Server) render(c echo.Context, status int, comp templ.Component) error {
	var buf bytes.Buffer
	if err := comp.Render(c.Request().Context(), &buf); err != nil {
		return &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("render: %w", err)}
	}
	return c.HTMLBlob(status, buf.Bytes())
}

func (s *Server) renderError(c echo.Context, status int, title, message string) error {
	return s.render(c, status, hud.ErrorPage(fmt.Sprintf("%d", status), title, message, static.Version()))
}

// loginURL sends a browser to the login form, and back to where it was
// going after it.
func loginURL(u *url.URL) string {
	next := u.Path
	if u.RawQuery != "" {
		next += "?" + u.RawQuery
	}
	if next == "/hud" {
		return "/login"
	}
	return "/login?" + url.Values{"next": {next}}.Encode()
}

// safeNext is where a login may send the browser: the HUD, nowhere else.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Path != "/hud" || strings.HasPrefix(next, "//") {
		return "/hud"
	}
	q := u.Query()
	q.Del("embed_token")
	if len(q) == 0 {
		return "/hud"
	}
	return "/hud?" + q.Encode()
}

// staticAsset is GET /static/*: the embedded assets. A URL carrying the
// current version (?v=) is cached for good; any other is revalidated.
func (s *Server) staticAsset(c echo.Context) error {
	name := path.Clean("/" + c.Param("*"))[1:]
	b, err := fs.ReadFile(static.FS, name)
	if err != nil || name == "" {
		return errorf(CodeNotFound, "no such asset")
	}
	h := c.Response().Header()
	etag := `"` + static.Version() + `"`
	h.Set("ETag", etag)
	if c.QueryParam("v") == static.Version() {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if c.Request().Header.Get("If-None-Match") == etag {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, contentType(name), b)
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".woff2":
		return "font/woff2"
	default:
		return "application/octet-stream"
	}
}
