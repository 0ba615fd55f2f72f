package vmstack_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/vmstack"
)

// TestScrapeWithBearerToken: a job with a BearerToken makes the real
// VictoriaMetrics send it with every scrape, so a target whose /metrics
// wants a token (observatory's main listener) is up and its samples
// stored; the job without the token gets 401s and is down.
func TestScrapeWithBearerToken(t *testing.T) {
	const token = "k3v7q2xa.test-token.sig"
	var good, refused atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			refused.Add(1)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		good.Add(1)
		w.Write([]byte("scrape_auth_test_value 42\n"))
	}))
	defer target.Close()
	host := strings.TrimPrefix(target.URL, "http://")
	vm := vmstack.StartMetrics(t, vmstack.MetricsConfig{Targets: []string{host}, BearerToken: token, ScrapeInterval: 500 * time.Millisecond,
		Jobs: []vmstack.ScrapeJob{{Name: "no-token", Targets: []string{host}}}})
	ctx := context.Background()
	streamtest.Eventually(t, time.Minute, func() bool {
		s, err := vm.Query(ctx, `up{job="observatory"} == 1 and on() scrape_auth_test_value == 42`)
		return err == nil && len(s) == 1
	}, "the job with the token never scraped the target")
	streamtest.Eventually(t, time.Minute, func() bool {
		s, err := vm.Query(ctx, `up{job="no-token"} == 0`)
		return err == nil && len(s) == 1
	}, "the job without the token is not down")
	if good.Load() == 0 || refused.Load() == 0 {
		t.Errorf("scrapes with the token %d, without %d", good.Load(), refused.Load())
	}
}
