package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web/auth"
)

// Where a credential came from.
const (
	fromBearer = "bearer"
	fromCookie = "cookie"
	fromQuery  = "query"
)

// credential is the token a request presents, not yet verified. It is
// taken from the request once (for /ws, at the upgrade) and verified when
// needed, against the clock of that moment.
type credential struct {
	token  string
	from   string // "" when the request carries none
	method string
}

// credentialOf finds the request's token: an Authorization bearer token,
// else the session cookie, else (on GET only) ?embed_token=. A malformed
// Authorization header counts as a bad credential; it never falls back to
// the cookie.
func credentialOf(r *http.Request) credential {
	cr := credential{method: r.Method}
	if h := r.Header.Get("Authorization"); h != "" {
		cr.from = fromBearer
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			cr.token = strings.TrimSpace(tok)
		}
		return cr
	}
	if ck, err := r.Cookie(SessionCookie); err == nil && ck.Value != "" {
		cr.token, cr.from = ck.Value, fromCookie
		return cr
	}
	if r.Method == http.MethodGet {
		if tok := r.URL.Query().Get("embed_token"); tok != "" {
			cr.token, cr.from = tok, fromQuery
		}
	}
	return cr
}

// authenticate verifies cr (verify). The cookie carries session tokens
// only, the URL embed tokens only, embed tokens are good for GET requests
// only, and metrics tokens for GET /metrics alone (requireMetricsToken).
func (s *Server) authenticate(cr credential) (auth.Claims, error) {
	cl, _, err := s.authenticateUntil(cr)
	return cl, err
}

// authenticateUntil is authenticate that also returns until when the
// credential verifies (verifyUntil).
func (s *Server) authenticateUntil(cr credential) (auth.Claims, time.Time, error) {
	if cr.from == "" {
		return auth.Claims{}, time.Time{}, errorf(CodeUnauthorized, "authentication required")
	}
	cl, until, err := s.verifyUntil(cr.token)
	if err != nil {
		return auth.Claims{}, time.Time{}, err
	}
	switch {
	case cl.Kind == auth.KindMetrics:
		err = errorf(CodeUnauthorized, "a metrics token may read /metrics only")
	case cr.from == fromCookie && cl.Kind != auth.KindSession:
		err = errorf(CodeUnauthorized, "the session cookie carries session tokens only")
	case cr.from == fromQuery && cl.Kind != auth.KindEmbed:
		err = errorf(CodeUnauthorized, "only embed tokens may be passed in the URL")
	case cl.Kind == auth.KindEmbed && cr.method != http.MethodGet:
		err = errorf(CodeUnauthorized, "embed tokens are read-only")
	}
	if err != nil {
		return auth.Claims{}, time.Time{}, err
	}
	return cl, until, nil
}

// verify checks a token's signature and expiry on the server's clock and
// that it is not revoked; its errors are 401s.
func (s *Server) verify(token string) (auth.Claims, error) {
	cl, _, err := s.verifyUntil(token)
	return cl, err
}

// verifyUntil is verify that also returns until when the token verifies:
// its expiry, or the retirement of its signing key if that comes first.
func (s *Server) verifyUntil(token string) (auth.Claims, time.Time, error) {
	cl, until, err := s.signer.VerifyUntil(token, s.cfg.Now())
	if err != nil {
		msg := "invalid token"
		if errors.Is(err, auth.ErrExpired) {
			msg = "token expired"
		}
		return auth.Claims{}, time.Time{}, &Error{Code: CodeUnauthorized, Message: msg}
	}
	if s.revoked(cl.ID) {
		return auth.Claims{}, time.Time{}, errorf(CodeUnauthorized, "token revoked")
	}
	return cl, until, nil
}

// ctxClaims is the echo.Context key of the authenticated claims.
const ctxClaims = "observatory.claims"

func claimsOf(c echo.Context) auth.Claims {
	cl, _ := c.Get(ctxClaims).(auth.Claims)
	return cl
}

// requireAuth refuses requests without a valid token with 401.
func (s *Server) requireAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		cl, err := s.authenticate(credentialOf(c.Request()))
		if err != nil {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="observatory"`)
			return err
		}
		c.Set(ctxClaims, cl)
		setProject(c, cl.Project)
		return next(c)
	}
}

// authorizeScope resolves the scope cl asks for on route (empty means its
// default: "*" for an admin, its own project otherwise) and checks that cl
// may see it. A project token asking for another scope is refused and
// audited as tenant.cross_access_denied.
func (s *Server) authorizeScope(ctx context.Context, cl auth.Claims, scope, route string) (string, error) {
	if scope == "" {
		scope = fleet.ScopeAll
		if cl.Role != auth.RoleAdmin {
			scope = cl.Project
		}
	}
	if scope != fleet.ScopeAll && !fleet.ValidProjectID(scope) {
		return "", errorf(CodeBadRequest, "scope must be \"*\" or a project id")
	}
	if cl.Role == auth.RoleAdmin || scope == cl.Project {
		return scope, nil
	}
	s.publishAudit(ctx, fleet.TypeCrossAccess, cl.Project, cl.Subject, map[string]string{
		"subject": cl.Subject, "scope": scope, "route": route,
	})
	return "", errorf(CodeForbidden, "a token of project %q may not read scope %q", cl.Project, scope)
}

// auditTimeout bounds publishing one audit event.
const auditTimeout = 5 * time.Second

// publishAudit publishes a server-emitted event to the AUDIT stream and
// logs it as a business event. It outlives the request's cancellation: a
// client hanging up must not erase the trace of what it tried. Failures
// are logged, never shown to the client.
func (s *Server) publishAudit(ctx context.Context, typ, project, user string, data map[string]string) {
	now := s.cfg.Now().UTC()
	raw, _ := json.Marshal(data)
	ev := fleet.Event{ID: fleet.NewID(now), Type: typ, Time: now, ProjectID: project, UserID: user, Data: raw}
	attrs := []any{"event", typ, "sagewai.project_id", project, "user_id", user, "event_id", ev.ID}
	for k, v := range data {
		attrs = append(attrs, k, v)
	}
	s.log.InfoContext(ctx, typ, attrs...)
	if err := ev.Validate(); err != nil {
		s.log.ErrorContext(ctx, "audit event invalid", append(attrs, "error", err.Error())...)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := s.audit.Audit(ctx, ev); err != nil {
		s.log.ErrorContext(ctx, "audit publish failed", append(attrs, "error", err.Error())...)
	}
}
