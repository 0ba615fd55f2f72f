package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/genai"
)

// DefaultMaxBodyBytes bounds an export, decompressed: 16 MiB, below the
// OpenTelemetry Collector's own default (20 MiB) and far above what SDK
// exporters send (a batch of 512 spans).
const DefaultMaxBodyBytes = 16 << 20

// Refusal reasons of ingest's own, beside genai's.
const (
	// ReasonMissingProject: an admin token sent a resource that names no
	// project (or not a valid project id) in sagewai.project_id.
	ReasonMissingProject genai.Reason = "missing_project"
	// ReasonUnknownProject: the resource's project does not exist.
	ReasonUnknownProject genai.Reason = "unknown_project"
)

// SpanReasons lists every reason a span may be refused for.
var SpanReasons = append([]genai.Reason{ReasonMissingProject, ReasonUnknownProject}, genai.Reasons...)

// Publisher writes events to FLEET (stream.Publisher).
type Publisher interface {
	// PublishAll writes evs in order, each with its dedupe key, and
	// returns once all are stored.
	PublishAll(ctx context.Context, evs []fleet.Event) (uint64, error)
}

// Config is what an Ingester needs.
type Config struct {
	Publisher Publisher
	// Map tunes the mapper (genai.Options).
	Map genai.Options
	// MaxBodyBytes bounds an export decompressed (DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MeterProvider counts spans and refused exports; nil counts nothing.
	MeterProvider metric.MeterProvider
	Logger        *slog.Logger
}

// Caller is who sends an export, as the edge authenticated it.
type Caller struct {
	// Project is a project token's project; empty for an admin token.
	Project string
	// Admin is true for an admin token: each resource names its project.
	Admin bool
	// Exists says whether a project exists; nil takes every valid id.
	Exists func(ctx context.Context, project string) (bool, error)
	// Subject names the caller in logs.
	Subject string
}

// Result is what became of an export.
type Result struct {
	Spans, Accepted, Refused, Skipped int
	// Events is how many events were published; Seq the highest FLEET
	// sequence acknowledged (0 when none were published).
	Events int
	Seq    uint64
	// Denied are the projects named by resources the caller may not write
	// (project_mismatch), sorted, for the edge to audit.
	Denied []string
	// NoUsage is how many of the LLM calls folded report no token count
	// at all (genai.Result.NoUsage): counted, charged nothing.
	NoUsage int
	// Reasons counts the refused spans by reason.
	Reasons map[genai.Reason]int
	// Message is partial_success's error_message: the refusals in brief.
	Message string
}

// Ingester turns OTLP exports into FLEET events.
type Ingester struct {
	cfg      Config
	log      *slog.Logger
	spans    metric.Int64Counter
	requests metric.Int64Counter
	noUsage  metric.Int64Counter
}

// New returns an Ingester.
func New(cfg Config) (*Ingester, error) {
	if cfg.Publisher == nil {
		return nil, fmt.Errorf("ingest: new: a publisher is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("github.com/sagewai/observatory/ingest")
	in := &Ingester{cfg: cfg, log: cfg.Logger}
	var err error
	if in.spans, err = m.Int64Counter("sagewai.otlp.spans", metric.WithUnit("{span}"),
		metric.WithDescription("Spans received on POST /v1/traces, by result (accepted, refused, skipped) and the reason of a refusal.")); err != nil {
		return nil, fmt.Errorf("ingest: new: %w", err)
	}
	if in.requests, err = m.Int64Counter("sagewai.otlp.rejected_requests", metric.WithUnit("{request}"),
		metric.WithDescription("OTLP exports refused whole, by reason.")); err != nil {
		return nil, fmt.Errorf("ingest: new: %w", err)
	}
	if in.noUsage, err = m.Int64Counter("sagewai.otlp.calls_without_usage", metric.WithUnit("{call}"),
		metric.WithDescription("LLM calls ingested whose span reports no token count: counted, charged nothing.")); err != nil {
		return nil, fmt.Errorf("ingest: new: %w", err)
	}
	// Every series from the start, so that rate() sees the first refusal.
	ctx := context.Background()
	for _, r := range RequestReasons {
		in.requests.Add(ctx, 0, metric.WithAttributes(attribute.String("reason", string(r))))
	}
	for _, r := range SpanReasons {
		in.spans.Add(ctx, 0, metric.WithAttributes(attribute.String("result", "refused"), attribute.String("reason", string(r))))
	}
	in.noUsage.Add(ctx, 0)
	in.spans.Add(ctx, 0, metric.WithAttributes(attribute.String("result", "accepted")))
	in.spans.Add(ctx, 0, metric.WithAttributes(attribute.String("result", "skipped")))
	return in, nil
}

// MaxBodyBytes is the bound of an export, for the edge to limit the bytes
// it reads from the wire.
func (in *Ingester) MaxBodyBytes() int64 { return in.cfg.MaxBodyBytes }

// Export reads one OTLP/HTTP export and folds it: the body in the
// Content-Type ct and Content-Encoding enc. It returns the response body
// and its format's media type. A refused export is an *Error (counted);
// the spans of an accepted one are counted by result.
func (in *Ingester) Export(ctx context.Context, caller Caller, ct, enc string, body io.Reader) (resp []byte, respType string, res Result, err error) {
	f, err := ParseContentType(ct)
	if err != nil {
		return nil, "", Result{}, in.refuse(ctx, caller, err)
	}
	raw, err := ReadBody(body, enc, in.cfg.MaxBodyBytes)
	if err != nil {
		return nil, "", Result{}, in.refuse(ctx, caller, err)
	}
	req, err := Decode(raw, f)
	if err != nil {
		return nil, "", Result{}, in.refuse(ctx, caller, err)
	}
	res, err = in.Fold(ctx, caller, req)
	if err != nil {
		return nil, "", res, in.refuse(ctx, caller, err)
	}
	out, err := EncodeResponse(int64(res.Refused), res.Message, f)
	if err != nil {
		return nil, "", res, fmt.Errorf("ingest: encode response: %w", err)
	}
	return out, f.ContentType(), res, nil
}

// refuse counts and logs a refused export.
func (in *Ingester) refuse(ctx context.Context, caller Caller, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Reason: Unavailable, Msg: "the export could not be stored; retry", Err: err}
	}
	in.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", string(e.Reason))))
	attrs := []any{"event", "otlp.export_refused", "reason", string(e.Reason), "sagewai.project_id", caller.Project, "subject", caller.Subject}
	if e.Err != nil {
		attrs = append(attrs, "error", e.Err.Error())
	}
	in.log.WarnContext(ctx, e.Msg, attrs...)
	return e
}

// Fold maps a decoded export onto events and publishes them. An error
// means FLEET could not be written; nothing is counted then, as the
// exporter will send the export again.
func (in *Ingester) Fold(ctx context.Context, caller Caller, req *coltracepb.ExportTraceServiceRequest) (Result, error) {
	res := Result{Reasons: map[genai.Reason]int{}}
	groups, order := map[string][]*tracepb.ResourceSpans{}, []string{}
	denied := map[string]bool{}
	exists := map[string]bool{}
	for _, rs := range req.GetResourceSpans() {
		n := countSpans(rs)
		project := genai.ResourceProject(rs)
		if !caller.Admin {
			if project != "" && project != caller.Project {
				denied[project] = true
			}
			project = caller.Project // genai refuses a resource naming another
		} else if !fleet.ValidProjectID(project) {
			res.Spans += n
			res.refuse(ReasonMissingProject, n)
			continue
		}
		ok, seen := exists[project]
		if !seen {
			ok = true
			if caller.Exists != nil {
				var err error
				if ok, err = caller.Exists(ctx, project); err != nil {
					return Result{}, fmt.Errorf("look up project %q: %w", project, err)
				}
			}
			exists[project] = ok
		}
		if !ok {
			res.Spans += n
			res.refuse(ReasonUnknownProject, n)
			continue
		}
		if _, ok := groups[project]; !ok {
			order = append(order, project)
		}
		groups[project] = append(groups[project], rs)
	}
	var events []fleet.Event
	var first []genai.Refusal
	for _, project := range order {
		r := genai.Map(project, groups[project], in.cfg.Map)
		res.Spans += r.Spans
		res.Skipped += r.Skipped
		res.NoUsage += r.NoUsage
		for _, rf := range r.Refused {
			res.refuse(rf.Reason, 1)
			if len(first) < 3 {
				first = append(first, rf)
			}
		}
		events = append(events, r.Events...)
	}
	if len(events) > 0 {
		seq, err := in.cfg.Publisher.PublishAll(ctx, events)
		if err != nil {
			return Result{}, err
		}
		res.Seq = seq
	}
	res.Events = len(events)
	res.Accepted = res.Spans - res.Refused - res.Skipped
	for p := range denied {
		res.Denied = append(res.Denied, p)
	}
	sort.Strings(res.Denied)
	res.Message = message(res.Reasons, first)
	in.count(ctx, caller, res, first)
	return res, nil
}

func countSpans(rs *tracepb.ResourceSpans) int {
	n := 0
	for _, ss := range rs.GetScopeSpans() {
		n += len(ss.GetSpans())
	}
	return n
}

func (r *Result) refuse(reason genai.Reason, n int) {
	if n == 0 {
		return
	}
	r.Refused += n
	r.Reasons[reason] += n
}

// message summarises the refusals for partial_success: the count by
// reason, then the first few spans with their detail.
func message(reasons map[genai.Reason]int, first []genai.Refusal) string {
	if len(reasons) == 0 {
		return ""
	}
	keys := make([]string, 0, len(reasons))
	for r := range reasons {
		keys = append(keys, string(r))
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("refused spans:")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %d %s", reasons[genai.Reason(k)], k)
	}
	for _, rf := range first {
		fmt.Fprintf(&b, "; span %s %q: %s", rf.SpanID, rf.Name, rf.Reason)
		if rf.Detail != "" {
			b.WriteString(" (" + rf.Detail + ")")
		}
	}
	return b.String()
}

// count adds the export's spans to the counters and logs its refusals.
func (in *Ingester) count(ctx context.Context, caller Caller, res Result, first []genai.Refusal) {
	if res.Accepted > 0 {
		in.spans.Add(ctx, int64(res.Accepted), metric.WithAttributes(attribute.String("result", "accepted")))
	}
	if res.Skipped > 0 {
		in.spans.Add(ctx, int64(res.Skipped), metric.WithAttributes(attribute.String("result", "skipped")))
	}
	for r, n := range res.Reasons {
		in.spans.Add(ctx, int64(n), metric.WithAttributes(attribute.String("result", "refused"), attribute.String("reason", string(r))))
	}
	if res.NoUsage > 0 {
		in.noUsage.Add(ctx, int64(res.NoUsage))
		in.log.WarnContext(ctx, "OTLP LLM calls without token counts", "event", "otlp.calls_without_usage",
			"sagewai.project_id", caller.Project, "subject", caller.Subject, "calls", res.NoUsage)
	}
	if res.Refused > 0 {
		in.log.WarnContext(ctx, "OTLP spans refused", "event", "otlp.spans_refused",
			"sagewai.project_id", caller.Project, "subject", caller.Subject,
			"refused", res.Refused, "accepted", res.Accepted, "detail", res.Message)
	}
}
