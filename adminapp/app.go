package adminapp

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

//go:embed assets
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "assets/page.html"))

// App is the admin app: an http.Handler.
type App struct {
	cfg   Config
	users map[string]User
	obs   *observatory
	mux   *http.ServeMux
	log   *slog.Logger
	// csp is the pages' Content-Security-Policy: everything from the app,
	// frames from Observatory only.
	csp string
}

var _ http.Handler = (*App)(nil)

// New checks cfg and makes an App.
func New(cfg Config) (*App, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &App{
		cfg:   cfg,
		users: make(map[string]User, len(cfg.Users)),
		obs: &observatory{base: cfg.ObservatoryURL, user: cfg.AdminUser, password: cfg.AdminPassword,
			ttl: cfg.TTL, client: cfg.Client, log: cfg.Logger},
		log: cfg.Logger,
		csp: "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
			"frame-src " + cfg.PublicURL + "; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
	}
	for _, u := range cfg.Users {
		a.users[u.Name] = u
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", a.page)
	m.HandleFunc("GET /signin", a.signinPage)
	m.HandleFunc("POST /signin", a.signin)
	m.HandleFunc("POST /signout", a.signout)
	m.HandleFunc("POST /embed/refresh", a.refresh)
	// Browsers ask for an icon; the example has none.
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	m.Handle("GET /assets/", http.FileServerFS(assets))
	a.mux = m
	return a, nil
}

// ServeHTTP serves the app and writes one access log line per request:
// its path without the query, never a cookie or a token.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	a.mux.ServeHTTP(rec, r)
	user, _ := a.sessionUser(r)
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("event", "adminapp.request"),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", rec.status),
		slog.String("user", user.Name), slog.Duration("duration", time.Since(start)))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// pageData is what the templates show.
type pageData struct {
	Title, Error, Username         string
	User, Project                  string
	FrameURL                       string
	ObservatoryOrigin, RefreshInMS string
}

func (a *App) render(w http.ResponseWriter, status int, name string, d pageData) {
	d.Title = a.cfg.Title
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		a.log.Error("render a page", "event", "adminapp.render_failed", "page", name, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", a.csp)
	// The app page carries an embed token in its iframe's address: no
	// cache may keep it.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// page is GET /: the signed-in user's project, framed, with a token
// minted for this page view.
func (a *App) page(w http.ResponseWriter, r *http.Request) {
	u, ok := a.sessionUser(r)
	if !ok {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	tok, err := a.mint(r.Context(), u, "page")
	if err != nil {
		a.render(w, http.StatusBadGateway, "error", pageData{Error: "The live view is unavailable right now: Observatory did not give access to project " + u.Project + "."})
		return
	}
	a.render(w, http.StatusOK, "app", pageData{
		User: u.Name, Project: u.Project, FrameURL: a.frameURL(tok),
		ObservatoryOrigin: a.cfg.PublicURL, RefreshInMS: strconv.FormatInt(a.cfg.RefreshAfter.Milliseconds(), 10),
	})
}

// refreshAnswer is the answer of POST /embed/refresh.
type refreshAnswer struct {
	URL         string    `json:"url"`
	ExpiresAt   time.Time `json:"expires_at"`
	RefreshInMS int64     `json:"refresh_in_ms"`
}

// refreshReasons are what the page may say it refreshes for; others are
// logged as "other".
var refreshReasons = map[string]bool{"scheduled": true, "refused": true, "manual": true}

// refresh is POST /embed/refresh: a new embed token of the signed-in
// user's project, as the frame address to load, and when to ask again.
func (a *App) refresh(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused"})
		return
	}
	u, ok := a.sessionUser(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "sign in again"})
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req)
	if !refreshReasons[req.Reason] {
		req.Reason = "other"
	}
	tok, err := a.mint(r.Context(), u, req.Reason)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "observatory did not give access to the project"})
		return
	}
	writeJSON(w, http.StatusOK, refreshAnswer{URL: a.frameURL(tok), ExpiresAt: tok.ExpiresAt, RefreshInMS: a.cfg.RefreshAfter.Milliseconds()})
}

// mint mints an embed token for u and logs it by id; a failure is logged
// here and reported to the caller as a bare error.
func (a *App) mint(ctx context.Context, u User, reason string) (embedToken, error) {
	tok, err := a.obs.mint(ctx, u.Project)
	if err != nil {
		a.log.ErrorContext(ctx, "embed token not minted", "event", "adminapp.embed_token.failed",
			"user", u.Name, "project", u.Project, "reason", reason, "error", err.Error())
		return embedToken{}, err
	}
	a.log.InfoContext(ctx, "embed token minted", "event", "adminapp.embed_token.minted",
		"user", u.Name, "project", u.Project, "reason", reason, "token_id", tok.ID, "expires_at", tok.ExpiresAt.Format(time.RFC3339))
	return tok, nil
}

// frameURL is the HUD address the iframe loads: the embed view of the
// token's project, on the Observatory address browsers reach.
func (a *App) frameURL(tok embedToken) string {
	q := url.Values{"embed": {"1"}, "project": {tok.Project}, "embed_token": {tok.Token}}
	return a.cfg.PublicURL + "/hud?" + q.Encode()
}

// signinPage is GET /signin.
func (a *App) signinPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.sessionUser(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	a.render(w, http.StatusOK, "signin", pageData{})
}

// signin is POST /signin: the form's user and password against the
// configured users.
func (a *App) signin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	name := r.PostFormValue("username")
	u, ok := a.checkPassword(name, r.PostFormValue("password"))
	if !ok {
		a.log.WarnContext(r.Context(), "sign-in refused", "event", "adminapp.signin.refused", "user", truncate(name, 64))
		a.render(w, http.StatusUnauthorized, "signin", pageData{Error: "Wrong user or password.", Username: name})
		return
	}
	a.setSession(w, r, a.signSession(u.Name, a.cfg.Now()), int(a.cfg.SessionTTL.Seconds()))
	a.log.InfoContext(r.Context(), "signed in", "event", "adminapp.signin", "user", u.Name, "project", u.Project)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// signout is POST /signout: the cookie goes. The embed token of the page
// lives on until it expires (at most the configured TTL); Observatory
// could revoke it by id (DELETE /api/v1/tokens/{id}), which this example
// does not do.
func (a *App) signout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	a.setSession(w, r, "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
