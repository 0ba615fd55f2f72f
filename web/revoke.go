package web

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/web/auth"
)

// Audit types of token revocation.
const (
	// TypeTokenRevoked records on AUDIT that a token was revoked, by an
	// admin (DELETE /api/v1/tokens/{id}) or by its own logout.
	TypeTokenRevoked = "auth.token.revoked"
)

// Metrics token lifetimes: 90 days by default and at most.
const (
	DefaultMetricsTokenTTL = auth.MaxMetricsLifetime
	MaxMetricsTokenTTL     = auth.MaxMetricsLifetime
)

const (
	// minEmbedTokenTTL is the shortest embed token the API mints.
	minEmbedTokenTTL = time.Minute
	// Why a token was revoked, in the audit event.
	revocationReasonAdmin  = "admin"
	revocationReasonLogout = "logout"
	// tokenIDRule says what {id} of DELETE /api/v1/tokens/{id} must be.
	tokenIDRule = "16 to 64 lower-case letters and digits, the id of the token"
	// metricsSubjectPrefix starts a metrics token's subject.
	metricsSubjectPrefix = "metrics:"
)

// tokenRoutes registers the routes of token ids under api (/api/v1):
// revocation, embed tokens and metrics tokens.
func (s *Server) tokenRoutes(api *echo.Group) {
	admin := []echo.MiddlewareFunc{noStore, s.requireAuth, refuseEmbed, adminOnly}
	tenantAdmin := []echo.MiddlewareFunc{noStore, s.requireAuth, refuseEmbed, s.tenant, adminOnly}
	api.DELETE("/tokens/:id", s.revokeToken, admin...)
	api.POST("/metrics-tokens", s.createMetricsToken, admin...)
	api.POST("/projects/:project/embed-tokens", s.createEmbedToken, tenantAdmin...)
}

type revocation struct {
	ID        string    `json:"id"`
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revoked_at"`
}

// revokeToken is DELETE /api/v1/tokens/{id} (admins): the token whose id
// (jti) is id is refused from now on, on every replica (401 on HTTP, 4401
// on /ws), until it would have expired. It answers 200 {id, revoked,
// revoked_at}, also for an id already revoked or never issued (tokens are
// not stored, so neither is knowable), and audits auth.token.revoked.
func (s *Server) revokeToken(c echo.Context) error {
	id := c.Param("id")
	if !auth.ValidTokenID(id) {
		return errorf(CodeBadRequest, "the token id must be %s", tokenIDRule)
	}
	if s.cfg.Revocations == nil {
		return unavailable("token revocation")
	}
	ctx := c.Request().Context()
	now := s.cfg.Now().UTC()
	if err := s.cfg.Revocations.Revoke(ctx, id, now.Add(s.maxTokenLifetime())); err != nil {
		return &Error{Code: CodeUnavailable, Message: "the revocation could not be stored; the token is not revoked", Err: err}
	}
	cl := claimsOf(c)
	s.publishAudit(ctx, TypeTokenRevoked, projectGlobal, cl.Subject, map[string]string{
		"token_id": id, "reason": revocationReasonAdmin, "route": routeOf(c),
	})
	return c.JSON(http.StatusOK, revocation{ID: id, Revoked: true, RevokedAt: now})
}

// revokeSession revokes the session token of cl, for its logout, and
// audits it. A token of a release before token ids cannot be revoked.
func (s *Server) revokeSession(c echo.Context, cl auth.Claims) error {
	if cl.ID == "" || s.cfg.Revocations == nil {
		return nil
	}
	ctx := c.Request().Context()
	if err := s.cfg.Revocations.Revoke(ctx, cl.ID, cl.ExpiresAt); err != nil {
		return err
	}
	s.publishAudit(ctx, TypeTokenRevoked, projectOrGlobal(cl.Project), cl.Subject, map[string]string{
		"token_id": cl.ID, "reason": revocationReasonLogout, "route": routeOf(c),
	})
	return nil
}

type embedTokenRequest struct {
	TTL string `json:"ttl"`
}

type issuedEmbedToken struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	Project   string    `json:"project"`
	URL       string    `json:"url"`
}

// createEmbedToken is POST /api/v1/projects/{project}/embed-tokens
// (admins): {ttl?} → 201 {token, id, expires_at, project, url}, a
// read-only embed token of the project for at most MaxEmbedTokenTTL
// (DefaultEmbedTokenTTL when ttl is empty), and url, the
// /hud?embed=1&... address an admin app frames. Audited as
// auth.token.issued; the token itself is never logged.
func (s *Server) createEmbedToken(c echo.Context) error {
	var req embedTokenRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	ttl := DefaultEmbedTokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < minEmbedTokenTTL || d > MaxEmbedTokenTTL {
			return errorf(CodeBadRequest, "ttl must be a duration from %s to %s, like \"15m\"", minEmbedTokenTTL, MaxEmbedTokenTTL)
		}
		ttl = d
	}
	p := tenantOf(c)
	cl := claimsOf(c)
	subject := subjectFor("embed", auth.RoleProject, p.ID)
	tok, id, exp, err := s.issueWithID(subject, auth.RoleProject, p.ID, auth.KindEmbed, ttl)
	if err != nil {
		return err
	}
	s.publishAudit(c.Request().Context(), TypeTokenIssued, p.ID, cl.Subject, map[string]string{
		"kind": auth.KindEmbed, "subject": subject, "token_id": id, "expires_at": exp.Format(time.RFC3339), "route": routeOf(c),
	})
	return c.JSON(http.StatusCreated, issuedEmbedToken{Token: tok, ID: id, ExpiresAt: exp, Project: p.ID, URL: s.embedURL(c.Request(), p.ID, tok)})
}

// embedURL is the address that frames project's HUD with tok, on the
// scheme and host the request came to.
func (s *Server) embedURL(r *http.Request, project, tok string) string {
	scheme := "http"
	if s.isHTTPS(r) {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: r.Host, Path: "/hud",
		RawQuery: url.Values{"embed": {"1"}, "project": {project}, "embed_token": {tok}}.Encode()}
	return u.String()
}

type metricsTokenRequest struct {
	Name string `json:"name"`
	TTL  string `json:"ttl"`
}

type issuedMetricsToken struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	Name      string    `json:"name"`
	Subject   string    `json:"subject"`
}

// createMetricsToken is POST /api/v1/metrics-tokens (admins): {name,
// ttl?} → 201 {token, id, expires_at, name, subject}, a token that may
// read GET /metrics and nothing else, for a scraper, valid for ttl
// (DefaultMetricsTokenTTL when empty, at most MaxMetricsTokenTTL; a
// duration or whole days). Audited as auth.token.issued.
func (s *Server) createMetricsToken(c echo.Context) error {
	var req metricsTokenRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := checkMatch("name", req.Name, tokenNameRE, true); err != nil {
		return err
	}
	ttl := DefaultMetricsTokenTTL
	if req.TTL != "" {
		var err error
		if ttl, err = parseTTL(req.TTL); err != nil {
			return err
		}
	}
	subject := metricsSubjectPrefix + req.Name
	tok, id, exp, err := s.issueWithID(subject, auth.RoleMetrics, "", auth.KindMetrics, ttl)
	if err != nil {
		return err
	}
	s.publishAudit(c.Request().Context(), TypeTokenIssued, projectGlobal, claimsOf(c).Subject, map[string]string{
		"kind": auth.KindMetrics, "name": req.Name, "subject": subject, "token_id": id, "expires_at": exp.Format(time.RFC3339), "route": routeOf(c),
	})
	return c.JSON(http.StatusCreated, issuedMetricsToken{Token: tok, ID: id, ExpiresAt: exp, Name: req.Name, Subject: subject})
}

// IssueMetricsToken mints a metrics token valid for ttl
// (DefaultMetricsTokenTTL when ttl <= 0), as POST /api/v1/metrics-tokens
// does but without an audit event: for programs that hold the server.
func (s *Server) IssueMetricsToken(name string, ttl time.Duration) (token string, expires time.Time, err error) {
	if ttl <= 0 {
		ttl = DefaultMetricsTokenTTL
	}
	tok, _, exp, err := s.issueWithID(metricsSubjectPrefix+name, auth.RoleMetrics, "", auth.KindMetrics, ttl)
	return tok, exp, err
}

// issueWithID mints a token with a fresh id and returns the id too.
func (s *Server) issueWithID(subject, role, project, kind string, ttl time.Duration) (tok, id string, exp time.Time, err error) {
	now := s.cfg.Now().UTC().Truncate(time.Second) // tokens carry whole seconds
	id = auth.NewID()
	exp = now.Add(ttl)
	tok, err = s.signer.Sign(auth.Claims{
		ID: id, Subject: subject, Role: role, Project: project, Kind: kind,
		IssuedAt: now, ExpiresAt: exp,
	})
	if err != nil {
		if errors.Is(err, auth.ErrInvalid) {
			return "", "", time.Time{}, &Error{Code: CodeBadRequest, Message: "the token asked for is not valid: " + err.Error(), Err: err}
		}
		return "", "", time.Time{}, &Error{Code: CodeInternal, Message: "signing the token failed", Err: err}
	}
	return tok, id, exp, nil
}
