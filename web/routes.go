package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/web/auth"
)

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// tokenResponse answers a login (and later, token creation).
type tokenResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// login is POST /api/v1/auth/login: {username,password} → {token,expires_at}.
// Its body is read as every API body is (decodeBody, docs/api.md
// "Bodies"): strictly, so that a misspelt field is named rather than taken
// for a missing one. Failures count against the user name and the client
// address; past the limit the answer is 429 without looking at the
// password.
func (s *Server) login(c echo.Context) error {
	var req loginRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	switch {
	case req.Username == "" || req.Password == "":
		return errorf(CodeBadRequest, "username and password are required")
	case !auth.ValidSubject(req.Username):
		return errorf(CodeBadRequest, "username must be at most %d bytes of UTF-8 text without control characters", auth.MaxNameSize)
	}
	tok, exp, err := s.passwordLogin(c.Request().Context(), req.Username, req.Password, c.RealIP(), "")
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == CodeTooManyAttempts {
			c.Response().Header().Set("Retry-After", strconv.Itoa(e.Details["retry_after_seconds"].(int)))
		}
		return err
	}
	return c.JSON(http.StatusOK, tokenResponse{Token: tok, ExpiresAt: exp})
}

// fleet is GET /api/v1/fleet?scope=X: the snapshot frame /ws would send
// first, for pollers.
func (s *Server) fleet(c echo.Context) error {
	ctx := c.Request().Context()
	scope, err := s.authorizeScope(ctx, claimsOf(c), c.QueryParam("scope"), routeOf(c))
	if err != nil {
		return err
	}
	setProject(c, scope)
	frame, err := s.hub.Snapshot(ctx, scope)
	if err != nil {
		return &Error{Code: CodeUnavailable, Message: "fleet state unavailable", Err: err}
	}
	return c.JSONBlob(http.StatusOK, frame)
}

// healthz answers 200 while the process serves.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 once the hub has caught up, 503 before that and while
// shutting down. Its 503 is written here, not returned, so that the error
// handler does not log it: probes are never logged.
func (s *Server) readyz(c echo.Context) error {
	msg := ""
	if s.shuttingDown() {
		msg = "shutting down"
	} else if err := s.hub.Ready(); err != nil {
		msg = "not ready: " + err.Error()
	}
	if msg != "" {
		return c.JSON(StatusOf(CodeUnavailable), errorBody{Error: errorPayload{Code: CodeUnavailable, Message: msg}})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
