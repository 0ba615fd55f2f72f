package worker

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sagewai/observatory/stream"
)

// ErrEnrollRefused wraps the answer of an enrollment the server refused
// (a bad or expired key, a scope the key does not cover).
var ErrEnrollRefused = errors.New("enrollment refused")

// EnrollRequest is what a worker asks for when it enrolls: the body of
// POST /api/v1/workers/enroll, less the key. Empty Projects or Pools ask
// for everything the key allows.
type EnrollRequest struct {
	WorkerID string            `json:"worker_id"`
	Projects []string          `json:"projects,omitempty"`
	Pools    []string          `json:"pools,omitempty"`
	Models   []string          `json:"models,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Host     string            `json:"host,omitempty"`
	Version  string            `json:"version,omitempty"`
	Capacity int               `json:"capacity,omitempty"`
	// Lease is the lease the worker wants on its claims (a Go duration,
	// Config.Lease): the AckWait of the consumers the server makes.
	Lease string `json:"lease,omitempty"`
}

// Grant is what an enrollment allows: the projects and pools the worker
// may claim from (what it asked for, within the key's scope), and the
// models and labels it declared.
type Grant struct {
	WorkerID  string            `json:"worker_id"`
	Projects  []string          `json:"projects"`
	Pools     []string          `json:"pools"`
	Models    []string          `json:"models,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	ExpiresAt time.Time         `json:"key_expires_at"`
	// Lease is the lease of the consumers the server made for the grant
	// (a Go duration); empty from a server that made none.
	Lease string `json:"lease,omitempty"`
	// NATS is where the worker connects and with what credentials; nil
	// when the server issues none (an external NATS without an account
	// signing key: docs/deploy.md).
	NATS *NATSGrant `json:"nats,omitempty"`
	// Passes counts the worker's passes through the server, with the
	// credentials of NATS (EnrollHTTP sets it when NATS is set).
	Passes Passes `json:"-"`
}

// NATSGrant is the NATS part of an enrollment's answer: the URL (or
// comma-separated URLs) to dial, and the text of a standard credentials
// file whose user may publish the granted projects' events, consume their
// mission consumers and read its own inbox, until ExpiresAt.
type NATSGrant struct {
	URL       string    `json:"url"`
	Creds     string    `json:"creds"`
	ExpiresAt time.Time `json:"expires_at"`
}

// EnrollHTTP returns a Config.Enroll that enrolls through the admin API at
// baseURL (http://host:port) with key, an enrollment key from POST
// /api/v1/enrollment-keys. client nil means a client with a 10 s timeout.
// A refusal (401, 403, 400) wraps ErrEnrollRefused and names the API's
// error code.
func EnrollHTTP(baseURL, key string, client *http.Client) func(context.Context, EnrollRequest) (Grant, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	url := strings.TrimRight(baseURL, "/") + "/api/v1/workers/enroll"
	return func(ctx context.Context, req EnrollRequest) (Grant, error) {
		body, err := json.Marshal(struct {
			Key string `json:"key"`
			EnrollRequest
		}{key, req})
		if err != nil {
			return Grant{}, err
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return Grant{}, err
		}
		hr.Header.Set("Content-Type", "application/json")
		res, err := client.Do(hr)
		if err != nil {
			return Grant{}, err
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if err != nil {
			return Grant{}, err
		}
		if res.StatusCode != http.StatusOK {
			err := apiError(res.StatusCode, raw)
			if res.StatusCode < 500 {
				err = fmt.Errorf("%w: %w", ErrEnrollRefused, err)
			}
			return Grant{}, err
		}
		var g Grant
		if err := json.Unmarshal(raw, &g); err != nil {
			return Grant{}, fmt.Errorf("enrollment answer: %w", err)
		}
		if g.NATS != nil {
			if g.Passes, err = NewHTTPPasses(baseURL, g.WorkerID, []byte(g.NATS.Creds), client); err != nil {
				return Grant{}, fmt.Errorf("enrollment answer: %w", err)
			}
		}
		return g, nil
	}
}

// enroll asks Config.Enroll for the worker's scope, narrows the
// configuration to the grant and returns it.
func (w *Worker) enroll(ctx context.Context) (Grant, error) {
	// Config.Pools names the default pool ""; the API names it "default".
	pools := make([]string, len(w.cfg.Pools))
	for i, p := range w.cfg.Pools {
		pools[i] = cmp.Or(p, stream.DefaultPool)
	}
	g, err := w.cfg.Enroll(ctx, EnrollRequest{
		WorkerID: w.cfg.ID, Projects: w.cfg.Projects, Pools: pools, Models: w.cfg.Models,
		Labels: w.cfg.Labels, Host: w.cfg.Host, Version: w.cfg.Version, Capacity: w.cfg.Capacity,
		Lease: w.cfg.Lease.String(),
	})
	if err != nil {
		return g, fmt.Errorf("worker %s: enroll: %w", w.cfg.ID, err)
	}
	if g.WorkerID != w.cfg.ID || len(g.Projects) == 0 {
		return g, fmt.Errorf("worker %s: enroll: a grant for %q of %d projects: %w", w.cfg.ID, g.WorkerID, len(g.Projects), ErrEnrollRefused)
	}
	if g.Lease != "" {
		lease, err := time.ParseDuration(g.Lease)
		if err != nil || lease <= 0 {
			return g, fmt.Errorf("worker %s: enroll: the grant's lease %q", w.cfg.ID, g.Lease)
		}
		w.cfg.Lease = lease
	}
	w.cfg.Projects, w.cfg.Pools = g.Projects, g.Pools
	attrs := []any{"event", "worker.enrolled", "projects", g.Projects, "pools", g.Pools, "key_expires_at", g.ExpiresAt, "lease", w.cfg.Lease}
	if g.NATS != nil {
		attrs = append(attrs, "nats_url", stream.RedactURL(g.NATS.URL), "credentials_expire_at", g.NATS.ExpiresAt)
	}
	w.log.Info("worker enrolled", attrs...)
	return g, nil
}
