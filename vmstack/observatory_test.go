package vmstack_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/live"
)

// observatory is the observatory process under test and its API.
type observatory struct{ *observatorytest.Process }

// api is the API client of the observatory under test.
func (o *observatory) api() *live.Client { return &live.Client{Base: o.Base, HTTP: http.DefaultClient} }

// status sends GET path without a token and returns the status.
func (o *observatory) status(ctx context.Context, path string) (int, error) {
	code, err := o.api().Do(ctx, "", http.MethodGet, path, nil, 0, nil)
	var ae *live.APIError
	if errors.As(err, &ae) {
		err = nil
	}
	return code, err
}

// mustJSON sends a request that must answer want. A 2xx answer is decoded
// into out (when not nil); an error answer's code is returned.
func (o *observatory) mustJSON(t *testing.T, method, path, token string, body any, want int, out any) string {
	t.Helper()
	code, err := o.api().Do(context.Background(), token, method, path, body, want, out)
	var ae *live.APIError
	switch {
	case code == want && want >= 300 && errors.As(err, &ae):
		return ae.Code
	case err != nil:
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return ""
}

// login returns an admin token.
func (o *observatory) login(t *testing.T, user, password string) string {
	t.Helper()
	tok, err := o.api().Login(context.Background(), user, password)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// metricsToken mints a metrics token for VictoriaMetrics' scrapes: the
// main listener's /metrics wants one (or an admin token).
func (o *observatory) metricsToken(t *testing.T) string {
	t.Helper()
	var out struct{ Token string }
	o.mustJSON(t, http.MethodPost, "/api/v1/metrics-tokens", o.login(t, "admin", "admin"), map[string]string{"name": "victoriametrics"}, http.StatusCreated, &out)
	if out.Token == "" {
		t.Fatal("POST /api/v1/metrics-tokens answered no token")
	}
	return out.Token
}

// fleetRead is one GET /api/v1/fleet?scope=* and when it was sent and
// answered: the state it shows is the fold's at some moment in between.
type fleetRead struct {
	start, end time.Time
	seq        uint64
	spend      map[string]fleet.Micros // spend_total_usd by project
}

func (o *observatory) readFleet(ctx context.Context, token string) (fleetRead, error) {
	r := fleetRead{start: time.Now()}
	var snap struct {
		Seq   uint64 `json:"seq"`
		State struct {
			Projects map[string]struct {
				SpendTotal fleet.Micros `json:"spend_total_usd"`
			} `json:"projects"`
		} `json:"state"`
	}
	_, err := o.api().Do(ctx, token, http.MethodGet, "/api/v1/fleet?scope=*", nil, http.StatusOK, &snap)
	r.end = time.Now()
	if err != nil {
		return r, fmt.Errorf("GET /api/v1/fleet: %w", err)
	}
	r.seq = snap.Seq
	r.spend = map[string]fleet.Micros{}
	for id, p := range snap.State.Projects {
		r.spend[id] = p.SpendTotal
	}
	return r, nil
}
