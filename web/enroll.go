package web

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web/auth"
)

// Audit types of enrollment.
const (
	// TypeEnrollmentKeyIssued records on AUDIT that an admin minted an
	// enrollment key (one event per project it covers; never the key).
	TypeEnrollmentKeyIssued = "auth.enrollment_key.issued"
	// TypeWorkerEnrolled records that a worker enrolled with a key (one
	// event per project granted).
	TypeWorkerEnrolled = "auth.worker.enrolled"
	// TypeWorkerEnrollDenied records a valid key asked for a scope it does
	// not cover (in each of the key's projects).
	TypeWorkerEnrollDenied = "auth.worker.enroll_denied"
)

// Bounds of what a worker declares when it enrolls.
const (
	maxEnrollModels   = 64
	maxWorkerCapacity = 1024
)

var workerIDRE = agentIDRE

type enrollmentKeyRequest struct {
	Projects []string `json:"projects"`
	Pools    []string `json:"pools"`
	TTL      string   `json:"ttl"`
}

type issuedEnrollmentKey struct {
	Key       string    `json:"key"`
	KeyID     string    `json:"key_id"`
	Projects  []string  `json:"projects"`
	Pools     []string  `json:"pools"`
	ExpiresAt time.Time `json:"expires_at"`
}

// createEnrollmentKey is POST /api/v1/enrollment-keys (admins):
// {projects, pools?, ttl?} → 201 {key, key_id, projects, pools,
// expires_at}. The projects must exist; no pools means the default pool,
// which a list names "default" (an empty pool id is refused). The body is
// checked whole before the projects are looked up.
// Each project gets an auth.enrollment_key.issued audit event naming the
// key's id; the key itself is never logged.
func (s *Server) createEnrollmentKey(c echo.Context) error {
	var req enrollmentKeyRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if len(req.Projects) == 0 || len(req.Projects) > auth.MaxEnrollScope {
		return errorf(CodeBadRequest, "projects must list 1 to %d projects", auth.MaxEnrollScope)
	}
	projects := slices.Clone(req.Projects)
	slices.Sort(projects)
	projects = slices.Compact(projects)
	for _, p := range projects {
		if !fleet.ValidProjectID(p) {
			return errorf(CodeBadRequest, "%q is not a project id (%s)", p, "^[a-z0-9][a-z0-9_-]{0,62}$")
		}
	}
	pools, err := checkPools("pools", req.Pools)
	if err != nil {
		return err
	}
	if len(pools) == 0 {
		pools = []string{defaultPool}
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		return err
	}
	// The body is well formed: now the projects must exist.
	ctx := c.Request().Context()
	if s.cfg.Records == nil {
		return unavailable("the project registry")
	}
	for _, p := range projects {
		found, _, err := getRecord(ctx, s.cfg.Records, projectKey(p), &projectRecord{})
		if err != nil {
			return err
		}
		if !found {
			return errorf(CodeNotFound, "project %q not found", p)
		}
	}
	cl := claimsOf(c)
	key, k, err := s.enrollmentKey(cl.Subject, projects, pools, ttl)
	if err != nil {
		return &Error{Code: CodeInternal, Message: "signing the enrollment key failed", Err: err}
	}
	for _, p := range projects {
		s.publishAudit(ctx, TypeEnrollmentKeyIssued, p, cl.Subject, map[string]string{
			"key_id": k.ID, "projects": strings.Join(projects, ","), "pools": strings.Join(pools, ","),
			"expires_at": k.ExpiresAt.Format(time.RFC3339), "route": routeOf(c),
		})
	}
	return c.JSON(http.StatusCreated, issuedEnrollmentKey{Key: key, KeyID: k.ID, Projects: projects, Pools: pools, ExpiresAt: k.ExpiresAt})
}

// IssueEnrollmentKey mints an enrollment key for projects and pools
// ("default" for the default pool; none means it alone) valid for ttl, as
// POST /api/v1/enrollment-keys does but without checking that the projects
// exist and without an audit event: for programs that hold the signing key
// (the examples, tests).
func (s *Server) IssueEnrollmentKey(projects, pools []string, ttl time.Duration) (key string, expires time.Time, err error) {
	if len(pools) == 0 {
		pools = []string{defaultPool}
	}
	key, k, err := s.enrollmentKey("api:enroll", projects, pools, ttl)
	return key, k.ExpiresAt, err
}

func (s *Server) enrollmentKey(subject string, projects, pools []string, ttl time.Duration) (string, auth.EnrollmentKey, error) {
	now := s.cfg.Now().UTC().Truncate(time.Second) // keys carry whole seconds
	k := auth.EnrollmentKey{ID: newWorkID("ek", now), Subject: subject, Projects: projects, Pools: pools,
		IssuedAt: now, ExpiresAt: now.Add(ttl)}
	key, err := s.signer.SignEnrollment(k)
	return key, k, err
}

// enrollRequest is the body of POST /api/v1/workers/enroll.
type enrollRequest struct {
	Key      string   `json:"key"`
	WorkerID string   `json:"worker_id"`
	Projects []string `json:"projects"`
	Pools    []string `json:"pools"`
	Models   []string `json:"models"`
	// Labels are an object or a list, as a mission's (parseLabels).
	Labels   rawLabels `json:"labels"`
	Host     string    `json:"host"`
	Version  string    `json:"version"`
	Capacity int       `json:"capacity"`
	// Lease is the lease the worker wants on its claims (a duration,
	// default DefaultWorkerLease): the AckWait of its consumers.
	Lease string `json:"lease"`
}

// grant is the answer of a successful enrollment.
type grant struct {
	WorkerID  string            `json:"worker_id"`
	Projects  []string          `json:"projects"`
	Pools     []string          `json:"pools"`
	Models    []string          `json:"models,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	ExpiresAt time.Time         `json:"key_expires_at"`
	// Lease is the lease of the consumers made for the grant.
	Lease string `json:"lease"`
	// NATS is where and as whom the worker connects; absent when the
	// server mints no credentials (WorkersConfig.Authority nil).
	NATS *natsGrant `json:"nats,omitempty"`
}

// check validates the parts of the request that do not depend on the key.
func (r *enrollRequest) check() (pools []string, labels map[string]string, err error) {
	if err := checkMatch("worker_id", r.WorkerID, workerIDRE, true); err != nil {
		return nil, nil, err
	}
	if len(r.Projects) > auth.MaxEnrollScope {
		return nil, nil, errorf(CodeBadRequest, "projects lists more than %d projects", auth.MaxEnrollScope)
	}
	for _, p := range r.Projects {
		if !fleet.ValidProjectID(p) {
			return nil, nil, errorf(CodeBadRequest, "%q is not a project id (%s)", p, "^[a-z0-9][a-z0-9_-]{0,62}$")
		}
	}
	if pools, err = checkPools("pools", r.Pools); err != nil {
		return nil, nil, err
	}
	if len(r.Models) > maxEnrollModels {
		return nil, nil, errorf(CodeBadRequest, "models lists more than %d models", maxEnrollModels)
	}
	for _, m := range r.Models {
		if err := checkMatch("models", m, modelRE, true); err != nil {
			return nil, nil, err
		}
	}
	if labels, err = parseLabels("labels", r.Labels.raw); err != nil {
		return nil, nil, err
	}
	if err := checkText("host", r.Host, 253, false, false); err != nil {
		return nil, nil, err
	}
	if err := checkText("version", r.Version, 64, false, false); err != nil {
		return nil, nil, err
	}
	if r.Capacity < 0 || r.Capacity > maxWorkerCapacity {
		return nil, nil, errorf(CodeBadRequest, "capacity must be from 0 to %d", maxWorkerCapacity)
	}
	return pools, labels, nil
}

// rawLabels keeps the labels' JSON for parseLabels.
type rawLabels struct{ raw []byte }

func (l *rawLabels) UnmarshalJSON(b []byte) error {
	l.raw = slices.Clone(b)
	return nil
}

// enrollWorker is POST /api/v1/workers/enroll, authenticated by the
// enrollment key in the body (not a bearer token): {key, worker_id,
// projects?, pools?, models?, labels?, host?, version?, capacity?, lease?}
// → 200 with the grant: the projects and pools asked for that the key
// covers (all of the key's when none are asked for), the lease, and the
// NATS credentials of the worker (web/workers.go). A bad or expired key is
// 401; a request the key covers none of is 403 (audited); a worker id
// that belongs to a project the key does not cover is 409 (audited in the
// key's projects and the owners'). The server makes the mission consumers
// of the grant. The granted worker is announced with worker.joined on
// FLEET in each granted project, so the HUD shows it before its runtime
// starts.
func (s *Server) enrollWorker(c echo.Context) error {
	var req enrollRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	pools, labels, err := req.check()
	if err != nil {
		return err
	}
	lease, err := parseLease(req.Lease)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	now := s.cfg.Now().UTC()
	k, err := s.signer.VerifyEnrollment(req.Key, now)
	if err != nil {
		msg := "the enrollment key is not valid"
		if errors.Is(err, auth.ErrExpired) {
			msg = "the enrollment key has expired"
		}
		s.log.WarnContext(ctx, "worker enrollment refused", "event", "auth.worker.enroll_refused",
			"worker_id", req.WorkerID, "reason", err.Error())
		return errorf(CodeUnauthorized, "%s", msg)
	}
	projects := within(req.Projects, k.Projects)
	if len(pools) == 0 {
		pools = k.Pools
	} else {
		pools = within(pools, k.Pools)
	}
	if len(projects) == 0 || len(pools) == 0 {
		for _, p := range k.Projects {
			s.publishAudit(ctx, TypeWorkerEnrollDenied, p, "worker:"+req.WorkerID, map[string]string{
				"key_id": k.ID, "worker_id": req.WorkerID, "requested_projects": strings.Join(req.Projects, ","),
				"requested_pools": strings.Join(req.Pools, ","), "route": routeOf(c),
			})
		}
		return errorf(CodeForbidden, "the enrollment key covers none of the projects or pools asked for")
	}
	// The worker id belongs to the projects that enrolled it first.
	if s.cfg.Records == nil {
		return unavailable("the worker registry")
	}
	owners, ok, err := s.claimWorkerID(ctx, req.WorkerID, k.Projects, projects)
	if err != nil {
		return err
	}
	if !ok {
		// Audited on both sides; an owner's record does not name the
		// other tenant's projects, nor the key's record the owners.
		for _, p := range k.Projects {
			s.publishAudit(ctx, TypeWorkerEnrollConflict, p, "worker:"+req.WorkerID, map[string]string{
				"key_id": k.ID, "worker_id": req.WorkerID, "requested_projects": strings.Join(projects, ","), "route": routeOf(c),
			})
		}
		for _, p := range owners {
			if !slices.Contains(k.Projects, p) {
				s.publishAudit(ctx, TypeWorkerEnrollConflict, p, "worker:"+req.WorkerID, map[string]string{
					"key_id": k.ID, "worker_id": req.WorkerID, "route": routeOf(c),
				})
			}
		}
		return errorf(CodeConflict, "worker id %q belongs to another project; choose another id", req.WorkerID)
	}
	natsG, err := s.workerCreds(ctx, req.WorkerID, projects, pools, lease, k.ExpiresAt)
	if err != nil {
		return err
	}
	g := grant{WorkerID: req.WorkerID, Projects: projects, Pools: pools, Models: req.Models, Labels: labels, ExpiresAt: k.ExpiresAt,
		Lease: lease.String(), NATS: natsG}
	joined := fleet.WorkerJoined{Host: req.Host, Version: req.Version, Capacity: req.Capacity, Pools: pools,
		Models: req.Models, Labels: labels}
	for _, p := range projects {
		s.publishAudit(ctx, TypeWorkerEnrolled, p, "worker:"+req.WorkerID, map[string]string{
			"key_id": k.ID, "worker_id": req.WorkerID, "pools": strings.Join(pools, ","),
			"models": strings.Join(req.Models, ","), "capacity": strconv.Itoa(req.Capacity), "route": routeOf(c),
		})
		if err := s.announceWorker(ctx, p, req.WorkerID, joined); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, g)
}

// announceWorker publishes worker.joined for worker in project.
func (s *Server) announceWorker(ctx context.Context, project, worker string, joined fleet.WorkerJoined) error {
	if s.cfg.Events == nil {
		return nil
	}
	ev, err := s.newEvent(fleet.TypeWorkerJoined, project, joined)
	if err != nil {
		return &Error{Code: CodeInternal, Message: "encoding worker.joined failed", Err: err}
	}
	ev.WorkerID = worker
	if err := checkEvent(ev); err != nil {
		return err
	}
	if _, err := s.cfg.Events.Publish(ctx, ev); err != nil {
		return publishError("publish worker.joined", err)
	}
	return nil
}

// within returns the ids of asked that allowed holds, sorted, without
// repeats; all of allowed when asked is empty.
func within(asked, allowed []string) []string {
	if len(asked) == 0 {
		return slices.Clone(allowed)
	}
	var out []string
	for _, id := range asked {
		if slices.Contains(allowed, id) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
