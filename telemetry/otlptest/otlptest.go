package otlptest

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Receiver is an in-process OTLP/HTTP receiver: it decodes the protobuf
// export requests of traces and logs and keeps what they carry.
type Receiver struct {
	// URL is its base URL: OTLP/HTTP exporters append /v1/traces and /v1/logs.
	URL string
	srv *httptest.Server

	// mu guards what was received and the failure switch.
	mu       sync.Mutex
	spans    []Span
	logs     []LogRecord
	failWith int // answer every export with this status when not 0
	requests int
}

// Span is one received span, flattened.
type Span struct {
	Name, TraceID, SpanID, ParentID string
	Kind                            string
	Start, End                      time.Time
	Attrs                           map[string]any
	Resource                        map[string]any
	StatusError                     bool
	// Scope is the instrumentation scope's name.
	Scope string
}

// LogRecord is one received log record, flattened.
type LogRecord struct {
	Body, EventName, Severity string
	TraceID, SpanID           string
	Attrs                     map[string]any
	// Scope is the instrumentation scope's name.
	Scope string
}

// NewReceiver starts a Receiver on loopback; it stops when t ends.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL
	t.Cleanup(r.srv.Close)
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf", http.StatusUnsupportedMediaType)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if r.failWith != 0 {
		http.Error(w, "failing on purpose", r.failWith)
		return
	}
	var out proto.Message
	switch req.URL.Path {
	case "/v1/traces":
		var m coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range m.ResourceSpans {
			res := attrMap(rs.GetResource().GetAttributes())
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, Span{
						Name: s.Name, TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId),
						ParentID: hex.EncodeToString(s.ParentSpanId), Kind: s.Kind.String(),
						Start: time.Unix(0, int64(s.StartTimeUnixNano)).UTC(), End: time.Unix(0, int64(s.EndTimeUnixNano)).UTC(),
						Attrs: attrMap(s.Attributes), Resource: res, StatusError: s.GetStatus().GetCode() == 2,
						Scope: ss.GetScope().GetName(),
					})
				}
			}
		}
		out = &coltrace.ExportTraceServiceResponse{}
	case "/v1/logs":
		var m collogs.ExportLogsServiceRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rl := range m.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, l := range sl.LogRecords {
					r.logs = append(r.logs, LogRecord{
						Body: l.GetBody().GetStringValue(), EventName: l.EventName, Severity: l.SeverityText,
						TraceID: hex.EncodeToString(l.TraceId), SpanID: hex.EncodeToString(l.SpanId),
						Attrs: attrMap(l.Attributes), Scope: sl.GetScope().GetName(),
					})
				}
			}
		}
		out = &collogs.ExportLogsServiceResponse{}
	default:
		http.NotFound(w, req)
		return
	}
	rb, _ := proto.Marshal(out)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(rb)
}

func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		switch v := kv.Value.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = v.IntValue
		case *commonpb.AnyValue_DoubleValue:
			m[kv.Key] = v.DoubleValue
		case *commonpb.AnyValue_BoolValue:
			m[kv.Key] = v.BoolValue
		default:
			m[kv.Key] = kv.Value.String()
		}
	}
	return m
}

// Spans returns the spans received so far, in order of arrival.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Logs returns the log records received so far, in order of arrival.
func (r *Receiver) Logs() []LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]LogRecord(nil), r.logs...)
}

// Fail makes every export answer status (0: answer normally again).
func (r *Receiver) Fail(status int) {
	r.mu.Lock()
	r.failWith = status
	r.mu.Unlock()
}
