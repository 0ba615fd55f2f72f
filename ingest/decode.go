package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Format is the encoding of an OTLP/HTTP body.
type Format uint8

// The two encodings OTLP/HTTP defines.
const (
	Protobuf Format = iota
	JSON
)

// ContentType is the media type of f, as a response carries it.
func (f Format) ContentType() string {
	if f == JSON {
		return "application/json"
	}
	return "application/x-protobuf"
}

// RequestReason says why a whole export was refused. Reasons label a
// metric, so they are few and fixed.
type RequestReason string

// Reasons of refused exports.
const (
	// BadContentType: the body is neither application/x-protobuf nor
	// application/json.
	BadContentType RequestReason = "bad_content_type"
	// BadEncoding: a Content-Encoding other than gzip or identity, or a
	// gzip stream that does not decompress.
	BadEncoding RequestReason = "bad_encoding"
	// TooLarge: the body, decompressed, is above the bound.
	TooLarge RequestReason = "too_large"
	// Malformed: the body is not an ExportTraceServiceRequest.
	Malformed RequestReason = "malformed"
	// Unavailable: FLEET could not be written; the exporter should retry.
	Unavailable RequestReason = "unavailable"
)

// RequestReasons lists every reason, for pre-registering metric series.
var RequestReasons = []RequestReason{BadContentType, BadEncoding, TooLarge, Malformed, Unavailable}

// Error is a refused export: its reason and what to tell the client.
type Error struct {
	Reason RequestReason
	Msg    string
	Err    error // the cause, for logs; never sent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "ingest: " + e.Msg + ": " + e.Err.Error()
	}
	return "ingest: " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// ParseContentType returns the format of a Content-Type header.
func ParseContentType(ct string) (Format, error) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, &Error{Reason: BadContentType, Msg: fmt.Sprintf("Content-Type %q is not a media type; send application/x-protobuf or application/json", ct)}
	}
	switch mt {
	case "application/x-protobuf", "application/protobuf":
		return Protobuf, nil
	case "application/json":
		return JSON, nil
	}
	return 0, &Error{Reason: BadContentType, Msg: fmt.Sprintf("Content-Type %q is not OTLP/HTTP; send application/x-protobuf or application/json", mt)}
}

// ReadBody reads a request body of Content-Encoding encoding ("", identity
// or gzip), refusing one whose decompressed size passes limit bytes. A
// compressed body cannot be larger than what it decompresses to by more
// than gzip's framing, so the caller bounds the bytes on the wire by the
// same limit.
func ReadBody(r io.Reader, encoding string, limit int64) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, bodyError(err, &Error{Reason: BadEncoding, Msg: "the body is not gzip", Err: err})
		}
		defer zr.Close()
		r = zr
	default:
		return nil, &Error{Reason: BadEncoding, Msg: fmt.Sprintf("Content-Encoding %q is not supported; send gzip or none", encoding)}
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, bodyError(err, &Error{Reason: BadEncoding, Msg: "reading the body failed", Err: err})
	}
	if n > limit {
		return nil, tooLarge(limit)
	}
	return buf.Bytes(), nil
}

// bodyError turns an http.MaxBytesReader's refusal into TooLarge, and
// anything else into def.
func bodyError(err error, def *Error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Reason: TooLarge, Msg: "the body is too large", Err: err}
	}
	return def
}

func tooLarge(limit int64) error {
	return &Error{Reason: TooLarge, Msg: fmt.Sprintf("the body is above %d bytes decompressed; export smaller batches", limit)}
}

// Decode parses an ExportTraceServiceRequest in format f. JSON is OTLP's
// JSON encoding (hex trace and span ids, integer enums), read by the
// OpenTelemetry Collector's own decoder.
func Decode(body []byte, f Format) (*coltracepb.ExportTraceServiceRequest, error) {
	if f == JSON {
		er := ptraceotlp.NewExportRequest()
		if err := er.UnmarshalJSON(body); err != nil {
			return nil, &Error{Reason: Malformed, Msg: "the body is not an OTLP JSON ExportTraceServiceRequest", Err: err}
		}
		pb, err := er.MarshalProto()
		if err != nil {
			return nil, &Error{Reason: Malformed, Msg: "the body is not an OTLP JSON ExportTraceServiceRequest", Err: err}
		}
		body = pb
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		return nil, &Error{Reason: Malformed, Msg: "the body is not an OTLP protobuf ExportTraceServiceRequest", Err: err}
	}
	return req, nil
}

// EncodeResponse encodes the answer to an export: rejected spans and a
// message when some were refused, an empty response otherwise.
func EncodeResponse(rejected int64, message string, f Format) ([]byte, error) {
	if f == JSON {
		r := ptraceotlp.NewExportResponse()
		if rejected > 0 || message != "" {
			r.PartialSuccess().SetRejectedSpans(rejected)
			r.PartialSuccess().SetErrorMessage(message)
		}
		return r.MarshalJSON()
	}
	r := &coltracepb.ExportTraceServiceResponse{}
	if rejected > 0 || message != "" {
		r.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: message}
	}
	return proto.Marshal(r)
}
