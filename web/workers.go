package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/jwt/v2"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/natsauth"
)

// Audit type of an enrollment refused because the worker id is another
// project's.
const TypeWorkerEnrollConflict = "auth.worker.enroll_conflict"

// Bounds of an enrolled worker's credentials and lease.
const (
	// MaxWorkerCredsTTL caps how long the NATS credentials an enrollment
	// gives last; they also end with the enrollment key.
	MaxWorkerCredsTTL = 24 * time.Hour
	// DefaultWorkerLease is the lease of the consumers made for a worker
	// that asks for none (the worker runtime's default).
	DefaultWorkerLease = 60 * time.Second
	minWorkerLease     = time.Second
	maxWorkerLease     = time.Hour
)

// ProofHeader carries the proof, signed with a worker's NATS seed, that
// goes with its user JWT on the worker routes (natsauth.Proof).
const ProofHeader = "Observatory-Proof"

// WorkersConfig is what an enrollment does for a worker's data plane
// (DESIGN §11.1): the mission consumers it claims from, the NATS
// credentials it connects with, and the pass counts it keeps through the
// worker routes. Zero values leave each part out.
type WorkersConfig struct {
	// Authority mints the workers' NATS credentials and checks them on the
	// worker routes. Nil: enrollment answers without "nats" (a server on
	// an external NATS without an account signing key) and the worker
	// routes answer 503.
	Authority *natsauth.Authority
	// NATSURL is what workers dial (the embedded server's client URL or
	// the external cluster's URLs), without userinfo.
	NATSURL string
	// NATSNow is the clock NATS judges the credentials' expiry by: the
	// wall clock of the NATS servers (default time.Now), not Config.Now.
	NATSNow func() time.Time
	// CredsTTL caps the credentials' lifetime (default and at most
	// MaxWorkerCredsTTL).
	CredsTTL time.Duration
	// Consumers makes the mission consumers of a grant; nil makes none
	// (trusted workers then make their own).
	Consumers MissionConsumers
	// Passes keeps the workers' pass counts; nil: the pass routes answer
	// 503.
	Passes PassCounter
}

// MissionConsumers makes the consumer of project's missions in pool with
// lease as its AckWait, and says which it is (worker.Consumers).
type MissionConsumers interface {
	Ensure(ctx context.Context, project, pool string, lease time.Duration) (stream, consumer string, err error)
}

// PassCounter keeps, per mission on the queue, how many deliveries
// workers passed on (worker.KVPasses).
type PassCounter interface {
	Add(ctx context.Context, project string, seq uint64) (uint64, error)
	Count(ctx context.Context, project string, seq uint64) (uint64, error)
	Clear(ctx context.Context, project string, seq uint64) error
}

// natsGrant is the "nats" part of an enrollment's answer.
type natsGrant struct {
	URL       string    `json:"url"`
	Creds     string    `json:"creds"`
	ExpiresAt time.Time `json:"expires_at"`
}

// parseLease reads the lease a worker asks for ("" is the default).
func parseLease(v string) (time.Duration, error) {
	if v == "" {
		return DefaultWorkerLease, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < minWorkerLease || d > maxWorkerLease {
		return 0, errorf(CodeBadRequest, "lease must be a duration from %s to %s, like \"60s\"", minWorkerLease, maxWorkerLease)
	}
	return d, nil
}

// workerIDKey is the registry key of a worker id's owners.
func workerIDKey(id string) string { return "worker-ids." + id }

// workerOwners is the registry record of who owns a worker id: the
// projects of its first enrollment, and those added by later ones whose
// key covered every owner.
type workerOwners struct {
	WorkerID   string    `json:"worker_id"`
	Projects   []string  `json:"projects"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

// claimWorkerID records that the worker id belongs to granted, unless it
// belongs to a project keyProjects does not cover: then it returns the
// owners and ok false. A key that covers every owner may add projects.
func (s *Server) claimWorkerID(ctx context.Context, id string, keyProjects, granted []string) (owners []string, ok bool, err error) {
	key := workerIDKey(id)
	for range 8 {
		var rec workerOwners
		found, rev, err := getRecord(ctx, s.cfg.Records, key, &rec)
		if err != nil {
			return nil, false, err
		}
		if !found {
			rec = workerOwners{WorkerID: id, Projects: granted, EnrolledAt: s.cfg.Now().UTC()}
			value, err := json.Marshal(rec)
			if err != nil {
				return nil, false, storeError("encode "+key, err)
			}
			_, created, err := s.cfg.Records.Create(ctx, key, value)
			if err != nil {
				return nil, false, storeError("create "+key, err)
			}
			if created {
				return granted, true, nil
			}
			continue
		}
		for _, p := range rec.Projects {
			if !slices.Contains(keyProjects, p) {
				return rec.Projects, false, nil
			}
		}
		merged := slices.Clone(rec.Projects)
		for _, p := range granted {
			if !slices.Contains(merged, p) {
				merged = append(merged, p)
			}
		}
		if len(merged) == len(rec.Projects) {
			return merged, true, nil
		}
		slices.Sort(merged)
		rec.Projects = merged
		value, err := json.Marshal(rec)
		if err != nil {
			return nil, false, storeError("encode "+key, err)
		}
		_, updated, err := s.cfg.Records.Update(ctx, key, value, rev)
		if err != nil {
			return nil, false, storeError("update "+key, err)
		}
		if updated {
			return merged, true, nil
		}
	}
	return nil, false, &Error{Code: CodeConflict, Message: "the worker id is being enrolled by another request; try again"}
}

// workerCreds makes the consumers of the grant and mints its NATS
// credentials: publish the granted projects' events (but for the
// server's own budget.* and project.* ones), consume their mission
// consumers, read its own inbox; until the key expires, at most
// CredsTTL. It returns nil credentials when the server mints none.
func (s *Server) workerCreds(ctx context.Context, worker string, projects, pools []string, lease time.Duration, keyExpires time.Time) (*natsGrant, error) {
	w := s.cfg.Workers
	var publish, deny []string
	for _, p := range projects {
		publish = append(publish, "fleet."+p+".>")
		// What only the server emits (budget standings and notices, project
		// announcements) a worker may not forge, even in its own project.
		deny = append(deny, "fleet."+p+".budget.>", "fleet."+p+".project.>")
		for _, pool := range pools {
			if w.Consumers == nil {
				continue
			}
			st, name, err := w.Consumers.Ensure(ctx, p, pool, lease)
			if err != nil {
				return nil, &Error{Code: CodeUnavailable, Message: "the mission queue is unavailable", Err: err}
			}
			publish = append(publish, natsauth.PullConsumer(st, name)...)
		}
	}
	if w.Authority == nil {
		return nil, nil
	}
	natsNow := time.Now
	if w.NATSNow != nil {
		natsNow = w.NATSNow
	}
	ttl := MaxWorkerCredsTTL
	if w.CredsTTL > 0 && w.CredsTTL < ttl {
		ttl = w.CredsTTL
	}
	// The key's expiry is on the server's clock, the credentials' on
	// NATS's: carry the time left over.
	if left := keyExpires.Sub(s.cfg.Now()); left < ttl {
		ttl = left
	}
	now := natsNow()
	exp := now.Add(ttl).Truncate(time.Second)
	if !exp.After(now) {
		return nil, errorf(CodeUnauthorized, "the enrollment key has expired")
	}
	creds, err := w.Authority.Creds(natsauth.User{Name: worker, Publish: publish, DenyPublish: deny, Inbox: true, Expires: exp}, now)
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "minting the worker's NATS credentials failed", Err: err}
	}
	return &natsGrant{URL: w.NATSURL, Creds: string(creds), ExpiresAt: exp.UTC()}, nil
}

// workerRoutes registers the routes an enrolled worker calls with its NATS
// credentials (not a token): the pass counts of its projects' missions.
func (s *Server) workerRoutes(api *echo.Group) {
	api.POST("/workers/:worker/passes", s.addPass, noStore, s.requireWorker)
	api.GET("/workers/:worker/passes", s.countPasses, noStore, s.requireWorker)
	api.DELETE("/workers/:worker/passes", s.clearPasses, noStore, s.requireWorker)
}

// ctxWorker is the echo.Context key of the authenticated worker's projects.
const ctxWorker = "observatory.worker"

// requireWorker authenticates a worker by the credentials its enrollment
// gave it: the user JWT as the bearer token, and in ProofHeader a proof of
// this request signed with the user's seed within natsauth.MaxProofSkew.
// The user must be the worker of the path. Its projects are those whose
// events it may publish.
func (s *Server) requireWorker(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		w := s.cfg.Workers
		if w.Authority == nil || w.Passes == nil {
			return unavailable("worker credentials")
		}
		r := c.Request()
		worker := c.Param("worker")
		refuse := func(reason string) error {
			s.log.WarnContext(r.Context(), "worker request refused", "event", "auth.worker.refused",
				"worker_id", worker, "route", routeOf(c), "reason", reason)
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="observatory-worker"`)
			return errorf(CodeUnauthorized, "a worker's NATS credentials and a proof of this request are required")
		}
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return refuse("no bearer token")
		}
		proof, err := natsauth.ParseProof(r.Header.Get(ProofHeader))
		if err != nil {
			return refuse(err.Error())
		}
		var body []byte
		if r.Body != nil {
			if body, err = io.ReadAll(io.LimitReader(r.Body, adminMaxBody+1)); err != nil {
				return errorf(CodeBadRequest, "the body could not be read")
			}
			if len(body) > adminMaxBody {
				return errorf(CodeTooLarge, "request body exceeds %d bytes", adminMaxBody)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		natsNow := time.Now
		if w.NATSNow != nil {
			natsNow = w.NATSNow
		}
		uc, err := w.Authority.Check(strings.TrimSpace(token), proof, r.Method, r.URL.RequestURI(), body, s.cfg.Now(), natsNow())
		if err != nil {
			return refuse(err.Error())
		}
		if uc.Name != worker {
			return refuse("the credentials are worker " + uc.Name + "'s")
		}
		c.Set(ctxWorker, credsProjects(uc))
		return next(c)
	}
}

// credsProjects are the projects whose events the user may publish
// (fleet.<project>.>): the projects of its grant.
func credsProjects(uc *jwt.UserClaims) []string {
	var out []string
	for _, subj := range uc.Permissions.Pub.Allow {
		if p, ok := strings.CutPrefix(subj, "fleet."); ok {
			if p, ok = strings.CutSuffix(p, ".>"); ok && fleet.ValidProjectID(p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// passRef is which mission a pass route is about.
type passRef struct {
	Project   string `json:"project"`
	StreamSeq uint64 `json:"stream_seq"`
}

// checkPassRef checks ref and that the worker's grant covers its project;
// a worker asking about another project is refused and audited.
func (s *Server) checkPassRef(c echo.Context, ref passRef) error {
	if !fleet.ValidProjectID(ref.Project) {
		return errorf(CodeBadRequest, "project must be a project id (%s)", "^[a-z0-9][a-z0-9_-]{0,62}$")
	}
	if ref.StreamSeq == 0 {
		return errorf(CodeBadRequest, "stream_seq must be a MISSIONS sequence (a positive integer)")
	}
	projects, _ := c.Get(ctxWorker).([]string)
	if !slices.Contains(projects, ref.Project) {
		worker := c.Param("worker")
		for _, p := range projects {
			s.publishAudit(c.Request().Context(), fleet.TypeCrossAccess, p, "worker:"+worker, map[string]string{
				"subject": "worker:" + worker, "scope": ref.Project, "route": routeOf(c),
			})
		}
		return errorf(CodeForbidden, "worker %s is not enrolled in project %q", worker, ref.Project)
	}
	setProject(c, ref.Project)
	return nil
}

// queryPassRef reads ?project=&stream_seq=.
func queryPassRef(c echo.Context) (passRef, error) {
	ref := passRef{Project: c.QueryParam("project")}
	if v := c.QueryParam("stream_seq"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return ref, errorf(CodeBadRequest, "stream_seq must be a MISSIONS sequence (a positive integer)")
		}
		ref.StreamSeq = n
	}
	return ref, nil
}

// passCount answers the pass routes.
type passCount struct {
	Passes uint64 `json:"passes"`
}

// addPass is POST /api/v1/workers/{worker}/passes {project, stream_seq} →
// {passes}: one more pass of the mission at stream_seq, counted with
// compare-and-swap against the other workers.
func (s *Server) addPass(c echo.Context) error {
	var ref passRef
	if err := decodeBody(c, &ref); err != nil {
		return err
	}
	if err := s.checkPassRef(c, ref); err != nil {
		return err
	}
	n, err := s.cfg.Workers.Passes.Add(c.Request().Context(), ref.Project, ref.StreamSeq)
	if err != nil {
		return &Error{Code: CodeUnavailable, Message: "the pass counts are unavailable", Err: err}
	}
	return c.JSON(http.StatusOK, passCount{Passes: n})
}

// countPasses is GET /api/v1/workers/{worker}/passes?project=&stream_seq=
// → {passes}.
func (s *Server) countPasses(c echo.Context) error {
	ref, err := queryPassRef(c)
	if err != nil {
		return err
	}
	if err := s.checkPassRef(c, ref); err != nil {
		return err
	}
	n, err := s.cfg.Workers.Passes.Count(c.Request().Context(), ref.Project, ref.StreamSeq)
	if err != nil {
		return &Error{Code: CodeUnavailable, Message: "the pass counts are unavailable", Err: err}
	}
	return c.JSON(http.StatusOK, passCount{Passes: n})
}

// clearPasses is DELETE /api/v1/workers/{worker}/passes?project=&stream_seq=
// → 204: the mission ended, its count is forgotten.
func (s *Server) clearPasses(c echo.Context) error {
	ref, err := queryPassRef(c)
	if err != nil {
		return err
	}
	if err := s.checkPassRef(c, ref); err != nil {
		return err
	}
	if err := s.cfg.Workers.Passes.Clear(c.Request().Context(), ref.Project, ref.StreamSeq); err != nil {
		return &Error{Code: CodeUnavailable, Message: "the pass counts are unavailable", Err: err}
	}
	return c.NoContent(http.StatusNoContent)
}
