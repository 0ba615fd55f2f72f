package ingesttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"

	"github.com/sagewai/observatory/fleet"
)

// PostExport sends body, an OTLP protobuf export, to base's /v1/traces
// with token; any answer but 200 is an error.
func PostExport(ctx context.Context, base, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/traces", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /v1/traces: %d %s", resp.StatusCode, b)
	}
	return nil
}

var costRE = regexp.MustCompile(`(?m)^sagewai_llm_cost_usd_total\{([^}]*)\} (\S+)$`)

// MeteredCost reads sagewai_llm_cost_usd_total of project from base's
// /metrics with token (an admin or metrics token), summed over its
// series, in micro-dollars.
func MeteredCost(ctx context.Context, base, token, project string) (fleet.Micros, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	label := `sagewai_project_id="` + project + `"`
	var sum float64
	for _, m := range costRE.FindAllSubmatch(b, -1) {
		if !bytes.Contains(m[1], []byte(label)) {
			continue
		}
		v, err := strconv.ParseFloat(string(m[2]), 64)
		if err != nil {
			return 0, fmt.Errorf("sagewai_llm_cost_usd_total: %w", err)
		}
		sum += v
	}
	return fleet.Micros(math.Round(sum * 1e6)), nil
}
