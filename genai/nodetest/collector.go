package nodetest

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Export is one OTLP trace export a Collector received, decoded, with the
// Authorization header it came with.
type Export struct {
	Authorization string
	// ContentType is the request's content type: application/x-protobuf
	// or application/json.
	ContentType   string
	ResourceSpans []*tracepb.ResourceSpans
}

// Collector is an in-process OTLP/HTTP trace receiver that keeps every
// export whole, as the exporter sent it, so that a test can hand it to
// genai.Map as the server would. It accepts protobuf and JSON, gzipped or
// not, at /v1/traces, and answers with an empty ExportTraceServiceResponse.
type Collector struct {
	// URL is the traces endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): it
	// ends in /v1/traces.
	URL string
	srv *httptest.Server

	// mu guards the exports received.
	mu      sync.Mutex
	exports []Export
}

// NewCollector starts a Collector on loopback; it stops when t ends.
func NewCollector(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", c.serve)
	c.srv = httptest.NewServer(mux)
	c.URL = c.srv.URL + "/v1/traces"
	t.Cleanup(c.srv.Close)
	return c
}

// Exports returns the exports received so far, in order.
func (c *Collector) Exports() []Export {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Export(nil), c.exports...)
}

// ResourceSpans returns the resource spans of every export received, in
// order: what one Map call over all of them sees.
func (c *Collector) ResourceSpans() []*tracepb.ResourceSpans {
	var out []*tracepb.ResourceSpans
	for _, e := range c.Exports() {
		out = append(out, e.ResourceSpans...)
	}
	return out
}

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	ct := r.Header.Get("Content-Type")
	switch ct {
	case "application/x-protobuf":
		err = proto.Unmarshal(b, &req)
	case "application/json":
		err = protojson.Unmarshal(b, &req)
	default:
		http.Error(w, "want application/x-protobuf or application/json", http.StatusUnsupportedMediaType)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.exports = append(c.exports, Export{Authorization: r.Header.Get("Authorization"), ContentType: ct, ResourceSpans: req.ResourceSpans})
	c.mu.Unlock()

	var out []byte
	if ct == "application/json" {
		out, _ = protojson.Marshal(&coltracepb.ExportTraceServiceResponse{})
	} else {
		out, _ = proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	}
	w.Header().Set("Content-Type", ct)
	w.Write(out)
}
