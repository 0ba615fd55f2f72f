package web

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/web/auth"
)

// Event types the admin API emits besides those of DESIGN §4.
const (
	// TypeProjectCreated announces a project on FLEET and AUDIT. The fold
	// keeps it in the ticker (as an unknown type, today).
	TypeProjectCreated = "project.created"
	// TypeTokenIssued records on AUDIT that a project token was minted.
	TypeTokenIssued = "auth.token.issued"
)

// projectRecord is a project as the registry keeps it.
type projectRecord struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
}

type projectRequest struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

// projectCreated is the data of project.created.
type projectCreated struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	CreatedBy   string `json:"created_by"`
}

// createProject is POST /api/v1/projects (admins): {id, name, description}
// → 201 and the project; 409 if the id is taken.
func (s *Server) createProject(c echo.Context) error {
	if s.cfg.Records == nil || s.cfg.Events == nil {
		return unavailable("the project registry")
	}
	var req projectRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return errorf(CodeBadRequest, "id is required")
	}
	if !fleet.ValidProjectID(req.ID) {
		return errorf(CodeBadRequest, "id %q does not match ^[a-z0-9][a-z0-9_-]{0,62}$", req.ID)
	}
	if req.ID == projectGlobal {
		// "global" names what belongs to no project (fleet-wide budgets,
		// the admin's logins on AUDIT, the metrics' project label): a
		// project of that name would read them.
		return errorf(CodeBadRequest, "the project id %q is reserved", req.ID)
	}
	if err := checkText("name", req.Name, 200, false, false); err != nil {
		return err
	}
	if err := checkText("description", req.Description, 2000, false, true); err != nil {
		return err
	}
	ctx := c.Request().Context()
	cl := claimsOf(c)
	rec := projectRecord{
		ID: req.ID, Name: cmp.Or(req.Name, req.ID), Description: req.Description,
		CreatedAt: s.cfg.Now().UTC(), CreatedBy: cl.Subject,
	}
	ev, err := s.newEvent(TypeProjectCreated, rec.ID, projectCreated{Name: rec.Name, Description: rec.Description, CreatedBy: cl.Subject})
	if err != nil {
		return err
	}
	if err := checkEvent(ev); err != nil {
		return err
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	rev, created, err := s.cfg.Records.Create(ctx, projectKey(rec.ID), value)
	if err != nil {
		return storeError("create project", err)
	}
	if !created {
		return errorf(CodeConflict, "project %q already exists", rec.ID)
	}
	u := undo{s: s}
	u.push("delete project "+rec.ID, func(ctx context.Context) error { return s.cfg.Records.Delete(ctx, projectKey(rec.ID), rev) })
	seq, err := s.cfg.Events.Publish(ctx, ev)
	if err != nil {
		u.run(ctx, err)
		return publishError("publish project.created", err)
	}
	setProject(c, rec.ID)
	s.publishAudit(ctx, TypeProjectCreated, rec.ID, cl.Subject, map[string]string{"name": rec.Name})
	return c.JSON(http.StatusCreated, struct {
		projectRecord
		Seq uint64 `json:"seq"`
	}{rec, seq})
}

// listProjects is GET /api/v1/projects: every project for an admin, its
// own for a project token.
func (s *Server) listProjects(c echo.Context) error {
	if s.cfg.Records == nil {
		return unavailable("the project registry")
	}
	limit, err := listLimit(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	cl := claimsOf(c)
	out := []projectRecord{}
	more := false
	if cl.Role == auth.RoleAdmin {
		out, more, err = listRecords[projectRecord](ctx, s.cfg.Records, "projects", time.Time{}, limit)
		if err != nil {
			return err
		}
	} else {
		var p projectRecord
		found, _, err := getRecord(ctx, s.cfg.Records, projectKey(cl.Project), &p)
		if err != nil {
			return err
		}
		if found {
			out = append(out, p)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"projects": out, "more": more})
}

type tokenRequest struct {
	Name string `json:"name"`
	TTL  string `json:"ttl"`
}

type issuedToken struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	Project   string    `json:"project"`
	Name      string    `json:"name"`
	Subject   string    `json:"subject"`
}

// createToken is POST /api/v1/projects/{project}/tokens (admins):
// {name, ttl} → 201 {token, id, expires_at, ...}: an API token of that
// one project, named in its subject (api:<project>:<name>), whose id
// DELETE /api/v1/tokens/{id} revokes, and an auth.token.issued audit
// event. The token itself is never logged.
func (s *Server) createToken(c echo.Context) error {
	var req tokenRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := checkMatch("name", req.Name, tokenNameRE, true); err != nil {
		return err
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		return err
	}
	p := tenantOf(c)
	subject := "api:" + p.ID + ":" + req.Name
	tok, id, exp, err := s.issueWithID(subject, auth.RoleProject, p.ID, auth.KindAPI, ttl)
	if err != nil {
		return err
	}
	cl := claimsOf(c)
	s.publishAudit(c.Request().Context(), TypeTokenIssued, p.ID, cl.Subject, map[string]string{
		"kind": auth.KindAPI, "name": req.Name, "subject": subject, "token_id": id, "expires_at": exp.Format(time.RFC3339), "route": routeOf(c),
	})
	return c.JSON(http.StatusCreated, issuedToken{Token: tok, ID: id, ExpiresAt: exp, Project: p.ID, Name: req.Name, Subject: subject})
}

// parseTTL reads a token lifetime: a Go duration ("720h", "90m") or whole
// days ("30d"); empty means DefaultAPITokenTTL.
func parseTTL(v string) (time.Duration, error) {
	if v == "" {
		return DefaultAPITokenTTL, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(v, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
		if n > int(MaxAPITokenTTL/(24*time.Hour)) {
			d = MaxAPITokenTTL + 1
		}
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil {
		return 0, errorf(CodeBadRequest, "ttl %q is neither a duration like \"720h\" nor days like \"30d\"", v)
	}
	if d < minAPITokenTTL || d > MaxAPITokenTTL {
		return 0, errorf(CodeBadRequest, "ttl must be from %s to %s", minAPITokenTTL, MaxAPITokenTTL)
	}
	return d, nil
}
