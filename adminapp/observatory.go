package adminapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// errRefused marks an answer of Observatory that says the app's own
// credential is no good (401): the session expired or was revoked.
var errRefused = errors.New("observatory refused the app's credential")

// embedToken is a minted embed token. Its Token must never be logged.
type embedToken struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	Project   string    `json:"project"`
}

// observatory calls Observatory's API as its admin: it logs in with the
// password it holds and keeps the session token until it is refused.
type observatory struct {
	base, user, password string
	ttl                  time.Duration
	client               *http.Client
	log                  *slog.Logger

	// sessionMu guards session, the admin session token ("" before the
	// first login and after a refusal).
	sessionMu sync.Mutex
	session   string
}

// mint mints an embed token of project. A refused session is replaced by
// a new login, once.
func (o *observatory) mint(ctx context.Context, project string) (embedToken, error) {
	for attempt := 0; ; attempt++ {
		tok, err := o.sessionToken(ctx)
		if err != nil {
			return embedToken{}, err
		}
		var out embedToken
		body := map[string]string{"ttl": o.ttl.String()}
		err = o.call(ctx, "/api/v1/projects/"+url.PathEscape(project)+"/embed-tokens", tok, body, http.StatusCreated, &out)
		if errors.Is(err, errRefused) && attempt == 0 {
			o.forget(tok)
			continue
		}
		if err != nil {
			return embedToken{}, fmt.Errorf("mint an embed token of %s: %w", project, err)
		}
		if out.Token == "" || out.Project != project {
			return embedToken{}, fmt.Errorf("mint an embed token of %s: the answer has no token of that project", project)
		}
		return out, nil
	}
}

// sessionToken returns the admin session token, logging in first when
// there is none. Concurrent callers wait for one login.
func (o *observatory) sessionToken(ctx context.Context) (string, error) {
	o.sessionMu.Lock()
	defer o.sessionMu.Unlock()
	if o.session != "" {
		return o.session, nil
	}
	var out struct {
		Token string `json:"token"`
	}
	err := o.call(ctx, "/api/v1/auth/login", "", map[string]string{"username": o.user, "password": o.password}, http.StatusOK, &out)
	if err != nil {
		return "", fmt.Errorf("log in to observatory as %s: %w", o.user, err)
	}
	if out.Token == "" {
		return "", fmt.Errorf("log in to observatory as %s: the answer has no token", o.user)
	}
	o.session = out.Token
	o.log.InfoContext(ctx, "logged in to observatory", "event", "adminapp.observatory.login", "user", o.user)
	return o.session, nil
}

// forget drops a refused session token, unless another request has
// replaced it already.
func (o *observatory) forget(tok string) {
	o.sessionMu.Lock()
	defer o.sessionMu.Unlock()
	if o.session == tok {
		o.session = ""
	}
}

// call posts in as JSON to path with bearer (when not empty) and decodes
// an answer of status want into out. Errors name Observatory's error code
// and message, never a credential.
func (o *observatory) call(ctx context.Context, path, bearer string, in any, want int, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := o.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("POST %s: read the answer: %w", path, err)
	}
	if res.StatusCode != want {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		err := fmt.Errorf("POST %s: %s: %s %s", path, res.Status, e.Error.Code, e.Error.Message)
		if res.StatusCode == http.StatusUnauthorized && bearer != "" {
			return fmt.Errorf("%w: %w", errRefused, err)
		}
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("POST %s: decode the answer: %w", path, err)
	}
	return nil
}
