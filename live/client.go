package live

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sagewai/observatory/fleet"
)

// Client is a small JSON client of the Observatory API.
type Client struct {
	// Base is the server's base URL, e.g. http://localhost:3001.
	Base string
	// HTTP sends the requests.
	HTTP *http.Client
}

// APIError is an error answer of the API (docs/api.md: a JSON body
// {"error":{"code","message","details"}}), or any answer with a status
// other than the one asked for.
type APIError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Details struct {
		Action   string               `json:"action"`
		Breaches []fleet.BudgetBreach `json:"breaches"`
	} `json:"details"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Do sends method path with body as JSON and token as a bearer token (none
// when empty), and decodes a successful answer into out (when not nil). It
// returns the status; an answer other than want (any 2xx for 0) is an
// *APIError with that status.
func (c *Client) Do(ctx context.Context, token, method, path string, body any, want int, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 || want != 0 && resp.StatusCode != want {
		var eb struct{ Error APIError }
		_ = json.Unmarshal(raw, &eb)
		eb.Error.Status = resp.StatusCode
		if eb.Error.Code == "" {
			eb.Error.Message = strings.TrimSpace(string(raw))
		}
		return resp.StatusCode, &eb.Error
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Login returns a token for user and password (POST /api/v1/auth/login).
func (c *Client) Login(ctx context.Context, user, password string) (string, error) {
	var tr struct{ Token string }
	if _, err := c.Do(ctx, "", http.MethodPost, "/api/v1/auth/login", map[string]string{"username": user, "password": password}, http.StatusOK, &tr); err != nil {
		return "", fmt.Errorf("login as %s: %w", user, err)
	}
	return tr.Token, nil
}
