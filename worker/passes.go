package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sagewai/observatory/natsauth"
)

// Passes counts, per mission waiting on MISSIONS (its project and stream
// sequence), the deliveries that workers passed on because they do not
// match it, so that those are not taken for lost leases (see the package
// doc). Add counts one more with compare-and-swap against other workers.
type Passes interface {
	Add(ctx context.Context, project string, seq uint64) (uint64, error)
	Count(ctx context.Context, project string, seq uint64) (uint64, error)
	Clear(ctx context.Context, project string, seq uint64) error
}

// KVPasses keeps the counts in the KV bucket stream.MissionSkipsBucket,
// one key per mission (PassKey). It needs a NATS connection allowed to
// use that bucket: the server's, or a trusted worker's (New). Enrolled
// workers count through the server instead (POST /api/v1/workers/{id}/
// passes), which keeps them with KVPasses. It is safe for concurrent use.
type KVPasses struct {
	kv jetstream.KeyValue
}

var _ Passes = (*KVPasses)(nil)

// NewKVPasses counts passes in kv (stream.MissionSkips opens it).
func NewKVPasses(kv jetstream.KeyValue) *KVPasses { return &KVPasses{kv: kv} }

// PassKey is the key of a mission's count: its project and its MISSIONS
// sequence, so that counts of one project are apart from another's.
func PassKey(project string, seq uint64) string {
	return project + "." + strconv.FormatUint(seq, 10)
}

// Count returns the passes of the mission at seq (0 if none).
func (p *KVPasses) Count(ctx context.Context, project string, seq uint64) (uint64, error) {
	e, err := p.kv.Get(ctx, PassKey(project, seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("passes of %s: %w", PassKey(project, seq), err)
	}
	n, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("passes of %s: %w", PassKey(project, seq), err)
	}
	return n, nil
}

// Add adds one pass to the mission at seq, with compare-and-swap against
// other workers, and returns the new count.
func (p *KVPasses) Add(ctx context.Context, project string, seq uint64) (uint64, error) {
	key := PassKey(project, seq)
	for range 16 {
		e, err := p.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := p.kv.Create(ctx, key, []byte("1")); err == nil {
				return 1, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("passes of %s: %w", key, err)
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("passes of %s: %w", key, err)
		}
		n, err := strconv.ParseUint(string(e.Value()), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("passes of %s: %w", key, err)
		}
		if _, err := p.kv.Update(ctx, key, []byte(strconv.FormatUint(n+1, 10)), e.Revision()); err == nil {
			return n + 1, nil
		} else if !isConflict(err) {
			return 0, fmt.Errorf("passes of %s: %w", key, err)
		}
	}
	return 0, fmt.Errorf("passes of %s: too much contention", key)
}

// Clear forgets the mission's count, once it has ended.
func (p *KVPasses) Clear(ctx context.Context, project string, seq uint64) error {
	if err := p.kv.Delete(ctx, PassKey(project, seq)); err != nil {
		return fmt.Errorf("passes of %s: %w", PassKey(project, seq), err)
	}
	return nil
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// PassCount is the body of the answers of the passes routes.
type PassCount struct {
	Passes uint64 `json:"passes"`
}

// HTTPPasses counts an enrolled worker's passes through the server
// (POST, GET and DELETE /api/v1/workers/{id}/passes), authenticated by the
// worker's NATS credentials: its user JWT as the bearer token and a proof,
// signed with its seed, of each request (natsauth.Proof in the header
// ProofHeader). EnrollHTTP makes one for a grant that carries credentials.
type HTTPPasses struct {
	url    string // .../api/v1/workers/<id>/passes
	client *http.Client
	signer *natsauth.Signer
	// Now is the clock the proofs are signed by (default time.Now); Run
	// sets it to the worker's Config.Now, the server checks it against
	// its own.
	Now func() time.Time
}

var _ Passes = (*HTTPPasses)(nil)

// ProofHeader carries the proof that goes with a worker's user JWT.
const ProofHeader = "Observatory-Proof"

// NewHTTPPasses counts the passes of worker through the server at baseURL
// with the worker's credentials. client nil means one with a 10 s timeout.
func NewHTTPPasses(baseURL, worker string, creds []byte, client *http.Client) (*HTTPPasses, error) {
	s, err := natsauth.NewSigner(creds)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	u, err := url.JoinPath(baseURL, "/api/v1/workers", url.PathEscape(worker), "passes")
	if err != nil {
		return nil, fmt.Errorf("passes: %w", err)
	}
	return &HTTPPasses{url: u, client: client, signer: s, Now: time.Now}, nil
}

// Add adds one pass to the mission at seq of project.
func (p *HTTPPasses) Add(ctx context.Context, project string, seq uint64) (uint64, error) {
	body, err := json.Marshal(struct {
		Project   string `json:"project"`
		StreamSeq uint64 `json:"stream_seq"`
	}{project, seq})
	if err != nil {
		return 0, err
	}
	var out PassCount
	return out.Passes, p.do(ctx, http.MethodPost, p.url, body, http.StatusOK, &out)
}

// Count returns the passes of the mission at seq of project.
func (p *HTTPPasses) Count(ctx context.Context, project string, seq uint64) (uint64, error) {
	var out PassCount
	return out.Passes, p.do(ctx, http.MethodGet, p.query(project, seq), nil, http.StatusOK, &out)
}

// Clear forgets the count of the mission at seq of project.
func (p *HTTPPasses) Clear(ctx context.Context, project string, seq uint64) error {
	return p.do(ctx, http.MethodDelete, p.query(project, seq), nil, http.StatusNoContent, nil)
}

func (p *HTTPPasses) query(project string, seq uint64) string {
	return p.url + "?" + url.Values{"project": {project}, "stream_seq": {strconv.FormatUint(seq, 10)}}.Encode()
}

func (p *HTTPPasses) do(ctx context.Context, method, u string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("passes: %w", err)
	}
	proof, err := p.signer.Sign(method, req.URL.RequestURI(), p.Now(), body)
	if err != nil {
		return fmt.Errorf("passes: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+p.signer.Token())
	req.Header.Set(ProofHeader, proof.String())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("passes: %w", err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("passes: %w", err)
	}
	if res.StatusCode != want {
		return fmt.Errorf("passes: %s %s: %w", method, req.URL.Path, apiError(res.StatusCode, raw))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("passes: the answer: %w", err)
	}
	return nil
}

// apiError reads the admin API's error body.
func apiError(status int, raw []byte) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	return fmt.Errorf("status %d %s: %s", status, e.Error.Code, e.Error.Message)
}
