package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/protocol"
	"github.com/sagewai/observatory/web/auth"
)

// The admin API (DESIGN §6, docs/api.md): projects, agents, missions, runs,
// project tokens and the audit log. Its records live in two RecordStores,
// its events go to FLEET through an EventPublisher, missions are enqueued
// on MISSIONS, and a BudgetGate may refuse or throttle work. Every write
// happens after every check has passed, and the FLEET publish comes last:
// when it fails, what was written before it is undone.

// RecordStore is a key-value bucket with compare-and-swap (stream.KVStore).
// Keys are dot-separated tokens of [-/_=a-zA-Z0-9].
type RecordStore interface {
	// Create stores value under key unless key holds a value; then created
	// is false and err nil.
	Create(ctx context.Context, key string, value []byte) (rev uint64, created bool, err error)
	// Get returns the value of key and its revision; found is false when
	// key holds none.
	Get(ctx context.Context, key string) (value []byte, rev uint64, found bool, err error)
	// Update replaces the value of key if its revision is still rev; ok is
	// false (and err nil) when another write came first.
	Update(ctx context.Context, key string, value []byte, rev uint64) (newRev uint64, ok bool, err error)
	// Delete removes key if its revision is still rev.
	Delete(ctx context.Context, key string, rev uint64) error
	// List returns the values under prefix ("agents.acme" lists
	// "agents.acme.<id>"), oldest write first: the newest limit of them
	// written at or after since (zero: all).
	List(ctx context.Context, prefix string, since time.Time, limit int) ([][]byte, error)
}

// EventPublisher publishes events to FLEET (stream.Publisher).
type EventPublisher interface {
	// Publish writes ev to fleet.<project>.<type> and returns its sequence.
	Publish(ctx context.Context, ev fleet.Event) (uint64, error)
}

// MissionQueue is the MISSIONS work queue (stream.MissionQueue).
type MissionQueue interface {
	// Enqueue appends a mission.queued event to missions.<project> and
	// returns its sequence.
	Enqueue(ctx context.Context, ev fleet.Event) (uint64, error)
	// Withdraw removes the mission at seq before a worker takes it.
	Withdraw(ctx context.Context, seq uint64) error
}

// AuditReader reads the AUDIT stream back (stream.AuditLog).
type AuditReader interface {
	// Read returns the events of project ("" for all) and type typ ("" for
	// all) stored between from and to (zero: unbounded), oldest first, at
	// most limit of them.
	Read(ctx context.Context, project, typ string, from, to time.Time, limit int) ([]fleet.Event, error)
}

// BudgetGate decides whether work may start and reserves its estimated
// cost (DESIGN §10). Reserve refuses with Allowed false; a throttle names
// the model to run on instead. A reservation is settled with the real cost
// when the work ends, or released when nothing was spent.
type BudgetGate interface {
	Reserve(ctx context.Context, req fleet.BudgetRequest) (fleet.BudgetDecision, error)
	Settle(ctx context.Context, reservation string, actual fleet.Micros) error
	Release(ctx context.Context, reservation string) error
}

// Admin API limits and defaults.
const (
	// adminMaxBody bounds an admin request body, well under the 64 KiB a
	// FLEET event may carry.
	adminMaxBody = 32 << 10
	// defaultListLimit and maxListLimit bound ?limit= of the list routes.
	defaultListLimit = 100
	maxListLimit     = 1000
	// DefaultAPITokenTTL and MaxAPITokenTTL bound project tokens (and
	// enrollment keys); auth refuses longer ones at signing and at
	// verification.
	DefaultAPITokenTTL = 30 * 24 * time.Hour
	MaxAPITokenTTL     = auth.MaxAPILifetime
	minAPITokenTTL     = time.Minute
	// defaultFoldWait bounds how long completing a run with a reservation
	// waits for the fold to price it (Config.FoldWait).
	defaultFoldWait = 5 * time.Second
	// undoTimeout bounds undoing a half-done write.
	undoTimeout = 5 * time.Second
)

// Identifier rules. Project ids are fleet.ValidProjectID's; agent, mission
// and run ids are the same shape, longer; team and user ids and model names
// allow a few more characters.
var (
	agentIDRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,127}$`)
	tagIDRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)
	modelRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$`)
	tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	slugRE      = regexp.MustCompile(`[^a-z0-9]+`)
)

// Echo context keys of the admin API.
const ctxTenant = "observatory.tenant"

// adminRoutes registers the admin API under api (/api/v1).
func (s *Server) adminRoutes(api *echo.Group) {
	read := []echo.MiddlewareFunc{noStore, s.requireAuth, refuseEmbed}
	admin := append(slices.Clip(read), adminOnly)
	tenant := append(slices.Clip(read), s.tenant)
	tenantAdmin := append(slices.Clip(tenant), adminOnly)

	api.POST("/projects", s.createProject, admin...)
	api.GET("/projects", s.listProjects, read...)
	api.POST("/projects/:project/agents", s.createAgent, tenant...)
	api.GET("/projects/:project/agents", s.listAgents, tenant...)
	api.POST("/projects/:project/missions", s.createMission, tenant...)
	api.GET("/projects/:project/missions", s.listMissions, tenant...)
	api.POST("/projects/:project/runs", s.createRun, tenant...)
	api.GET("/projects/:project/runs", s.listRuns, tenant...)
	api.POST("/projects/:project/runs/:run/complete", s.completeRun, tenant...)
	api.POST("/projects/:project/tokens", s.createToken, tenantAdmin...)
	api.POST("/enrollment-keys", s.createEnrollmentKey, admin...)
	// Authenticated by the enrollment key in the body, not a token.
	api.POST("/workers/enroll", s.enrollWorker, noStore)
	api.GET("/audit", s.readAudit, read...)
}

// refuseEmbed keeps embed tokens, which travel in URLs, off the admin API.
func refuseEmbed(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if claimsOf(c).Kind == auth.KindEmbed {
			return errorf(CodeForbidden, "embed tokens are for /hud and /ws only")
		}
		return next(c)
	}
}

// adminOnly refuses tokens that are not an admin's.
func adminOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if claimsOf(c).Role != auth.RoleAdmin {
			return errorf(CodeForbidden, "this route is for admins only")
		}
		return next(c)
	}
}

// tenant resolves the {project} of a route once: a well-formed id (400),
// that the token may touch (403, audited as tenant.cross_access_denied),
// that exists (404). It records the project for the logs and metrics and
// keeps its record on the context for the handler.
func (s *Server) tenant(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("project")
		if !fleet.ValidProjectID(id) {
			return errorf(CodeBadRequest, "%q is not a project id (%s)", id, "^[a-z0-9][a-z0-9_-]{0,62}$")
		}
		ctx := c.Request().Context()
		if _, err := s.authorizeScope(ctx, claimsOf(c), id, routeOf(c)); err != nil {
			return err
		}
		p, found, err := s.projectRecord(ctx, id)
		if err != nil {
			return err
		}
		if !found {
			return errorf(CodeNotFound, "project %q not found", id)
		}
		// Only now: an id nobody created must not become a label value.
		setProject(c, id)
		c.Set(ctxTenant, p)
		return next(c)
	}
}

// projectRecord reads a project's record from the registry.
func (s *Server) projectRecord(ctx context.Context, id string) (projectRecord, bool, error) {
	if s.cfg.Records == nil {
		return projectRecord{}, false, unavailable("the project registry")
	}
	var p projectRecord
	found, _, err := getRecord(ctx, s.cfg.Records, projectKey(id), &p)
	return p, found, err
}

func tenantOf(c echo.Context) projectRecord {
	p, _ := c.Get(ctxTenant).(projectRecord)
	return p
}

// unavailable is the answer of a route whose dependency is not configured.
func unavailable(what string) *Error {
	return errorf(CodeUnavailable, "%s is not available on this server", what)
}

// Keys of the records.
func projectKey(id string) string          { return "projects." + id }
func agentClaimKey(id string) string       { return "agent-ids." + id }
func agentKey(project, id string) string   { return "agents." + project + "." + id }
func agentPrefix(project string) string    { return "agents." + project }
func missionKey(project, id string) string { return "missions." + project + "." + id }
func missionPrefix(project string) string  { return "missions." + project }
func runKey(project, id string) string     { return "runs." + project + "." + id }
func runPrefix(project string) string      { return "runs." + project }

// storeError is the answer when the registry fails.
func storeError(op string, err error) *Error {
	return &Error{Code: CodeInternal, Message: "the registry failed", Err: fmt.Errorf("%s: %w", op, err)}
}

// publishError is the answer when publishing to FLEET fails; what was
// written before has been undone.
func publishError(op string, err error) *Error {
	return &Error{Code: CodeInternal, Message: "publishing the event failed; nothing was written", Err: fmt.Errorf("%s: %w", op, err)}
}

// getRecord reads key into v.
func getRecord(ctx context.Context, st RecordStore, key string, v any) (found bool, rev uint64, err error) {
	b, rev, found, err := st.Get(ctx, key)
	if err != nil {
		return false, 0, storeError("get "+key, err)
	}
	if !found {
		return false, 0, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, 0, storeError("decode "+key, err)
	}
	return true, rev, nil
}

// listRecords reads the newest limit records under prefix, newest first,
// and reports whether older ones were left out. Records that do not decode
// are skipped.
func listRecords[T any](ctx context.Context, st RecordStore, prefix string, since time.Time, limit int) ([]T, bool, error) {
	vals, err := st.List(ctx, prefix, since, limit+1)
	if err != nil {
		return nil, false, storeError("list "+prefix, err)
	}
	more := len(vals) > limit
	if more {
		vals = vals[1:]
	}
	out := make([]T, 0, len(vals))
	for i := len(vals) - 1; i >= 0; i-- {
		var v T
		if json.Unmarshal(vals[i], &v) == nil {
			out = append(out, v)
		}
	}
	return out, more, nil
}

// undo is the list of writes to take back if a later step fails.
type undo struct {
	s     *Server
	steps []undoStep
}

type undoStep struct {
	what string
	do   func(context.Context) error
}

func (u *undo) push(what string, do func(context.Context) error) {
	u.steps = append(u.steps, undoStep{what, do})
}

// createWork stores rec under key in the work store if the key is free,
// remembers to delete it, and returns its revision. On any failure it takes
// back every earlier write and returns the error to answer with.
func (u *undo) createWork(ctx context.Context, key, noun, id string, rec any) (uint64, error) {
	value, err := json.Marshal(rec)
	if err != nil {
		u.run(ctx, err)
		return 0, err
	}
	work := u.s.cfg.Work
	rev, created, err := work.Create(ctx, key, value)
	if err != nil || !created {
		if err == nil {
			err = fmt.Errorf("%s id %s is taken", noun, id)
		}
		u.run(ctx, err)
		return 0, storeError("create "+noun, err)
	}
	u.push("delete "+noun+" "+id, func(ctx context.Context) error { return work.Delete(ctx, key, rev) })
	return rev, nil
}

// run takes back every write, newest first. It outlives the request's
// cancellation: a client hanging up must not leave half a write behind.
func (u *undo) run(ctx context.Context, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	for i := len(u.steps) - 1; i >= 0; i-- {
		st := u.steps[i]
		if err := st.do(ctx); err != nil {
			u.s.log.ErrorContext(ctx, "undo failed", "event", "admin.undo.failed", "step", st.what,
				"cause", cause.Error(), "error", err.Error())
		}
	}
	u.steps = nil
}

// newEvent returns a server-made event of typ for project, with data.
func (s *Server) newEvent(typ, project string, data any) (fleet.Event, error) {
	now := s.cfg.Now().UTC()
	raw, err := json.Marshal(data)
	if err != nil {
		return fleet.Event{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return fleet.Event{ID: fleet.NewID(now), Type: typ, Time: now, ProjectID: project, Data: raw}, nil
}

// checkEvent validates ev and its size before anything is written.
func checkEvent(ev fleet.Event) error {
	if err := ev.Validate(); err != nil {
		return errorf(CodeBadRequest, "the event would be invalid: %v", err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return &Error{Code: CodeInternal, Message: "encoding the event failed", Err: err}
	}
	if len(b) > fleet.MaxEventSize {
		return errorf(CodeTooLarge, "the event would be %d bytes, more than %d", len(b), fleet.MaxEventSize)
	}
	return nil
}

// decodeBody decodes a request body of at most adminMaxBody bytes into v,
// strictly: one JSON object of v's shape, no unknown fields, nothing after
// it. Its errors say which field was wrong.
func decodeBody(c echo.Context, v any) error {
	r := c.Request()
	if r.ContentLength > adminMaxBody {
		return errorf(CodeTooLarge, "request body exceeds %d bytes", adminMaxBody)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return errorf(CodeBadRequest, "a JSON body is required")
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), r.Body, adminMaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				return errorf(CodeTooLarge, "request body exceeds %d bytes", mbe.Limit)
			}
			return errorf(CodeBadRequest, "trailing data after the JSON object")
		}
		return nil
	}
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return errorf(CodeTooLarge, "request body exceeds %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return errorf(CodeBadRequest, "a JSON body is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(CodeBadRequest, "malformed JSON: the body ends too soon")
	case errors.As(err, &se):
		return errorf(CodeBadRequest, "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		if te.Field == "" {
			return errorf(CodeBadRequest, "the body must be a JSON object")
		}
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonKind(te.Type), jsonValue(te.Value)),
			Details: map[string]any{"field": te.Field}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errorf(CodeBadRequest, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		// A field's own decoder (an UnmarshalJSON method) failed, in Go's
		// words rather than the API's. Request types read such fields
		// after the body instead (parseAmount, parseLabels), so this is a
		// last resort that names nothing it should not.
		return &Error{Code: CodeBadRequest, Message: "the body does not fit this route's fields", Err: err}
	}
}

// jsonKind names the JSON a Go type decodes from, for error messages:
// never the Go type itself.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "a number in range"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return "another kind of JSON value"
	}
}

// jsonValue names what the body held, from an UnmarshalTypeError's Value:
// "number 1.5" (a number that did not fit) becomes 1.5, the others are a
// JSON kind ("string", "array", ...).
func jsonValue(v string) string {
	if n, ok := strings.CutPrefix(v, "number "); ok {
		return n
	}
	return v
}

// fieldError is a bad_request *Error about field.
func fieldError(field, format string, args ...any) *Error {
	return &Error{Code: CodeBadRequest, Message: fmt.Sprintf(format, args...), Details: map[string]any{"field": field}}
}

// amountRE is the shape of a decimal number, as JSON writes one or a
// person might in a string ("25", "0.25", ".5", "1e-3").
var amountRE = regexp.MustCompile(`^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$`)

// parseAmount reads a dollar amount of field from its raw JSON: a number
// or a string holding one (exact to the micro-dollar, fleet.ParseUSD);
// absent or null is 0. Request types keep such fields as raw JSON and
// read them here, after the body, so that a bad amount is told in the
// API's words and names its field (decoding fleet.Micros inside the body
// would pass fleet's and strconv's own words through, and no field).
func parseAmount(field string, raw json.RawMessage) (fleet.Micros, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, fieldError(field, "%s must be an amount of US dollars, e.g. 25 or \"25.00\"", field)
		}
		text = strings.TrimSpace(text)
	}
	if !amountRE.MatchString(text) {
		return 0, fieldError(field, "%s must be an amount of US dollars, e.g. 25 or \"25.00\"", field)
	}
	m, err := fleet.ParseUSD(text)
	if err != nil {
		// The shape is a number's: only its size can be wrong.
		return 0, fieldError(field, "%s is out of range: amounts must be under a trillion dollars", field)
	}
	return m, nil
}

// Field checks. Each returns a bad_request *Error naming the field.

// checkText checks a free-text field: at most max bytes of valid UTF-8
// without control characters (multiline allows newlines and tabs).
func checkText(field, v string, max int, required, multiline bool) error {
	switch {
	case v == "" && required:
		return errorf(CodeBadRequest, "%s is required", field)
	case len(v) > max:
		return errorf(CodeBadRequest, "%s is longer than %d bytes", field, max)
	case !utf8.ValidString(v):
		return errorf(CodeBadRequest, "%s is not valid UTF-8", field)
	case strings.ContainsFunc(v, func(r rune) bool {
		return unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t'))
	}):
		return errorf(CodeBadRequest, "%s contains control characters", field)
	}
	return nil
}

// checkMatch checks an identifier field against re.
func checkMatch(field, v string, re *regexp.Regexp, required bool) error {
	if v == "" {
		if required {
			return errorf(CodeBadRequest, "%s is required", field)
		}
		return nil
	}
	if !re.MatchString(v) {
		return errorf(CodeBadRequest, "%s %q does not match %s", field, v, re)
	}
	return nil
}

// checkList checks a list of short names.
func checkList(field string, v []string, maxItems int) error {
	if len(v) > maxItems {
		return errorf(CodeBadRequest, "%s has more than %d entries", field, maxItems)
	}
	for i, x := range v {
		if err := checkText(fmt.Sprintf("%s[%d]", field, i), x, 64, true, false); err != nil {
			return err
		}
	}
	return nil
}

// listLimit reads ?limit= (1..maxListLimit, default defaultListLimit).
func listLimit(c echo.Context) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return defaultListLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxListLimit {
		return 0, errorf(CodeBadRequest, "limit must be a whole number from 1 to %d", maxListLimit)
	}
	return n, nil
}

// slug turns a name into id material: lower-case letters and digits
// joined by '-', at most n bytes.
func slug(name string, n int) string {
	s := strings.Trim(slugRE.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(s) > n {
		s = strings.TrimRight(s[:n], "-")
	}
	return s
}

// newWorkID returns a unique id for a mission or run: prefix, '-', a
// lower-case ULID, so that ids sort by creation time.
func newWorkID(prefix string, now time.Time) string {
	return prefix + "-" + strings.ToLower(fleet.NewID(now))
}

// hubViewer is a hub that hands out fleet views directly (stream.Hub does);
// other hubs are read through their snapshot frames.
type hubViewer interface {
	View(ctx context.Context, scope string) (fleet.View, uint64, error)
}

// view returns the fold's state of scope and the stream sequence it stands at.
func (s *Server) view(ctx context.Context, scope string) (fleet.View, uint64, error) {
	if v, ok := s.hub.(hubViewer); ok {
		return v.View(ctx, scope)
	}
	frame, err := s.hub.Snapshot(ctx, scope)
	if err != nil {
		return fleet.View{}, 0, err
	}
	var snap protocol.Snapshot
	if err := json.Unmarshal(frame, &snap); err != nil {
		return fleet.View{}, 0, fmt.Errorf("decode snapshot: %w", err)
	}
	return snap.State, snap.Seq, nil
}

// errFoldBehind says the fold did not reach a sequence in time.
var errFoldBehind = errors.New("the fold did not catch up in time")

// viewAt waits until the fold has folded seq (at most FoldWait) and returns
// scope's state then.
func (s *Server) viewAt(ctx context.Context, scope string, seq uint64) (fleet.View, error) {
	wait := s.cfg.FoldWait
	if wait <= 0 {
		wait = defaultFoldWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for pause := 2 * time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		v, at, err := s.view(ctx, scope)
		if err == nil && at >= seq {
			return v, nil
		}
		if err != nil && ctx.Err() == nil {
			return fleet.View{}, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fleet.View{}, errFoldBehind
		case <-t.C:
		}
	}
}
