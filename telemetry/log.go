package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/trace"
)

// Keys the handler adds to a record that lacks them.
const (
	logKeyTraceID = "trace_id"
	logKeySpanID  = "span_id"
	logKeyEvent   = "event"
)

// logHandler writes each record as a JSON line and, when OTLP logs are on,
// as an OpenTelemetry log record. It adds trace_id and span_id from the
// context's span and sagewai.project_id from the context (ProjectGlobal
// when none) to records that do not carry them.
type logHandler struct {
	json  slog.Handler
	otel  otellog.Logger // nil while OTLP logs are off
	level slog.Leveler
	now   func() time.Time // the observed time of OTel records
	// lineIf, when set, says whether to write the line (the OTel record
	// is made either way): fleet business lines come from the exporter.
	lineIf func() bool

	// What WithAttrs and WithGroup added, for the OTel record; prefix is
	// the group path ("a.b.") new attributes go under.
	attrs  []attribute.KeyValue
	prefix string
	// Whether WithAttrs already gave these keys at the top level.
	hasTrace, hasProject bool
}

func newLogHandler(w io.Writer, level slog.Leveler, otel otellog.Logger, now func() time.Time) *logHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &logHandler{json: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}), otel: otel, level: level, now: now}
}

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	needTrace := sc.IsValid() && !h.hasTrace
	needProject := !h.hasProject
	if h.prefix == "" && (needTrace || needProject) {
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case logKeyTraceID:
				needTrace = false
			case ProjectKey:
				needProject = false
			}
			return needTrace || needProject
		})
	}
	if needTrace {
		r.AddAttrs(slog.String(logKeyTraceID, sc.TraceID().String()), slog.String(logKeySpanID, sc.SpanID().String()))
	}
	if needProject {
		r.AddAttrs(slog.String(ProjectKey, ProjectFromContext(ctx)))
	}
	var err error
	if h.lineIf == nil || h.lineIf() {
		err = h.json.Handle(ctx, r)
	}
	if h.otel != nil {
		h.emit(ctx, r, sc.IsValid())
	}
	return err
}

// emit converts r to an OpenTelemetry log record. The SDK takes the trace
// and span ids from ctx, so the string copies are left out when ctx has a
// span.
func (h *logHandler) emit(ctx context.Context, r slog.Record, traced bool) {
	var rec otellog.Record
	rec.SetTimestamp(r.Time)
	rec.SetObservedTimestamp(h.now())
	rec.SetSeverity(severity(r.Level))
	rec.SetSeverityText(r.Level.String())
	rec.SetBody(attribute.StringValue(r.Message))
	kvs := make([]attribute.KeyValue, 0, len(h.attrs)+r.NumAttrs())
	kvs = append(kvs, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		if traced && h.prefix == "" && (a.Key == logKeyTraceID || a.Key == logKeySpanID) {
			return true
		}
		if a.Key == logKeyEvent && h.prefix == "" {
			rec.SetEventName(a.Value.String())
		}
		kvs = appendAttr(kvs, h.prefix, a)
		return true
	})
	rec.AddAttributes(kvs...)
	h.otel.Emit(ctx, rec)
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	c := *h
	c.json = h.json.WithAttrs(as)
	c.attrs = append([]attribute.KeyValue(nil), h.attrs...)
	for _, a := range as {
		if h.prefix == "" {
			switch a.Key {
			case logKeyTraceID:
				c.hasTrace = true
			case ProjectKey:
				c.hasProject = true
			}
		}
		c.attrs = appendAttr(c.attrs, h.prefix, a)
	}
	return &c
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.json = h.json.WithGroup(name)
	c.prefix = h.prefix + name + "."
	return &c
}

// severity maps slog levels onto OpenTelemetry severities (INFO is 9, and
// slog's levels are four apart like OpenTelemetry's ranges).
func severity(l slog.Level) otellog.Severity {
	s := int(l) + int(otellog.SeverityInfo)
	return otellog.Severity(min(max(s, int(otellog.SeverityTrace1)), int(otellog.SeverityFatal4)))
}

// appendAttr converts a, flattening groups into dotted keys.
func appendAttr(kvs []attribute.KeyValue, prefix string, a slog.Attr) []attribute.KeyValue {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup {
		return kvs
	}
	k := prefix + a.Key
	switch v.Kind() {
	case slog.KindString:
		return append(kvs, attribute.String(k, v.String()))
	case slog.KindInt64:
		return append(kvs, attribute.Int64(k, v.Int64()))
	case slog.KindUint64:
		return append(kvs, attribute.Int64(k, int64(v.Uint64())))
	case slog.KindFloat64:
		return append(kvs, attribute.Float64(k, v.Float64()))
	case slog.KindBool:
		return append(kvs, attribute.Bool(k, v.Bool()))
	case slog.KindDuration:
		return append(kvs, attribute.Float64(k, v.Duration().Seconds()))
	case slog.KindTime:
		return append(kvs, attribute.String(k, v.Time().UTC().Format(time.RFC3339Nano)))
	case slog.KindGroup:
		p := prefix
		if a.Key != "" {
			p = k + "."
		}
		for _, g := range v.Group() {
			kvs = appendAttr(kvs, p, g)
		}
		return kvs
	default:
		if err, ok := v.Any().(error); ok {
			return append(kvs, attribute.String(k, err.Error()))
		}
		return append(kvs, attribute.String(k, fmt.Sprint(v.Any())))
	}
}
