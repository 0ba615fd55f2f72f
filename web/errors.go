package web

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
)

// Error codes of the JSON error body. statusTable maps each to its HTTP
// status; it is the only place where a code meets a status.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeBudgetExceeded   = "budget_exceeded"
	CodeForbidden        = "forbidden"
	CodeCSRF             = "csrf"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeMisdirected      = "misdirected"
	CodeTooLarge         = "too_large"
	// CodeUnsupportedMediaType: a body in a media type the route does not
	// read (POST /v1/traces).
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeThrottled            = "throttled"
	CodeTooManyAttempts      = "too_many_attempts"
	CodeTooManyConns         = "too_many_connections"
	CodeInternal             = "internal"
	CodeUnavailable          = "unavailable"
)

// statusTable maps error codes to statuses. Where several codes share a
// status, the first is the one given to a bare status (echo's own errors).
var statusTable = []struct {
	code   string
	status int
}{
	{CodeBadRequest, http.StatusBadRequest},
	{CodeUnauthorized, http.StatusUnauthorized},
	{CodeBudgetExceeded, http.StatusPaymentRequired},
	{CodeForbidden, http.StatusForbidden},
	{CodeCSRF, http.StatusForbidden},
	{CodeNotFound, http.StatusNotFound},
	{CodeConflict, http.StatusConflict},
	{CodeMethodNotAllowed, http.StatusMethodNotAllowed},
	{CodeMisdirected, http.StatusMisdirectedRequest},
	{CodeTooLarge, http.StatusRequestEntityTooLarge},
	{CodeUnsupportedMediaType, http.StatusUnsupportedMediaType},
	{CodeThrottled, http.StatusTooManyRequests},
	{CodeTooManyAttempts, http.StatusTooManyRequests},
	{CodeTooManyConns, http.StatusTooManyRequests},
	{CodeInternal, http.StatusInternalServerError},
	{CodeUnavailable, http.StatusServiceUnavailable},
}

// StatusOf returns the HTTP status of an error code (500 for an unknown one).
func StatusOf(code string) int {
	for _, e := range statusTable {
		if e.code == code {
			return e.status
		}
	}
	return http.StatusInternalServerError
}

// codeOf returns the code for a bare HTTP status.
func codeOf(status int) string {
	for _, e := range statusTable {
		if e.status == status {
			return e.code
		}
	}
	if status >= 400 && status < 500 {
		return CodeBadRequest
	}
	return CodeInternal
}

// Error is an error with a code for the client. Handlers return it; the
// error handler turns it into a status and the JSON body
// {"error":{"code":..,"message":..,"details":{..}}}. Err, when set, is the
// cause; it is logged, never sent.
type Error struct {
	Code    string
	Message string
	Details map[string]any
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// errorf returns an *Error of code with a formatted message.
func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

// asError turns any error a handler or echo returns into an *Error.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg, ok := he.Message.(string)
		if !ok || msg == "" {
			msg = http.StatusText(he.Code)
		}
		return &Error{Code: codeOf(he.Code), Message: msg, Err: he.Internal}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}

// handleError is echo's HTTPErrorHandler: every error, echo's own 404 and
// 405 and recovered panics included, leaves in the one JSON shape.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := asError(err)
	status := StatusOf(e.Code)
	if status >= 500 {
		attrs := []any{"event", "http.error", "route", routeOf(c), "code", e.Code, "error", err.Error()}
		var pe *panicError
		if errors.As(err, &pe) {
			attrs = append(attrs, "stack", string(pe.stack))
		}
		s.log.ErrorContext(c.Request().Context(), "request failed", attrs...)
	}
	if c.Request().Method == http.MethodHead {
		err = c.NoContent(status)
	} else {
		err = c.JSON(status, errorBody{Error: errorPayload{Code: e.Code, Message: e.Message, Details: e.Details}})
	}
	if err != nil {
		s.log.DebugContext(c.Request().Context(), "writing an error response", "error", err)
	}
}
