package rig

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"time"

	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/live"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/worker"
)

// Server is the real HTTP server on a loopback port, wired to a Pipeline
// as `observatory serve` wires it, with an admin password made for this
// one run. The budget and fleet examples drive the admin API through it.
type Server struct {
	// Base is the server's base URL (http://127.0.0.1:port).
	Base string
	// Password is the admin's password for this run.
	Password string
	// Registry is the server's registry of projects, agents and missions.
	Registry *stream.Registry

	p      *Pipeline
	srv    *web.Server
	http   *http.Server
	client *http.Client
	token  string
}

// StartServer starts the server on a loopback port; Stop ends it.
func StartServer(ctx context.Context, p *Pipeline) (*Server, error) {
	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	reg, err := stream.OpenRegistry(setup, p.JS, stream.RegistryConfig{})
	if err != nil {
		return nil, err
	}
	// Enrollment makes the grant's consumers and keeps the pass counts;
	// on the embedded NATS it also mints the workers' credentials.
	workers, err := workersConfig(setup, p)
	if err != nil {
		return nil, err
	}
	// The signing key lives in this process only, for this one run: never
	// in NATS.
	keys, err := keyring.New(p.cfg.Now())
	if err != nil {
		return nil, err
	}
	password := randomHex(16)
	srv, err := web.New(web.Config{
		AdminPassword: password,
		BcryptCost:    4, // bcrypt.MinCost: the password lives for one run
		Keys:          keys, Logger: p.cfg.Logger, Records: reg.Records, Work: reg.Work, Events: p.Pub, Missions: reg.Missions,
		AuditLog: stream.NewAuditLog(p.JS), Budgets: p.Ledger, BudgetStore: p.Ledger, Costs: p.Costs, Now: p.cfg.Now,
		Workers: workers,
	}, p.Hub, p.Pub)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		p: p, srv: srv, Password: password, Base: "http://" + ln.Addr().String(), Registry: reg,
		http:   &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second},
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}},
	}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// Stop ends the server.
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = s.http.Shutdown(ctx)
	s.client.CloseIdleConnections()
}

// Do sends a JSON request as the admin; a status other than 2xx is a
// *live.APIError.
func (s *Server) Do(ctx context.Context, method, path string, body, out any) (int, error) {
	return s.DoWant(ctx, method, path, body, 0, out)
}

// DoWant is Do with the one status wanted (any 2xx for 0).
func (s *Server) DoWant(ctx context.Context, method, path string, body any, want int, out any) (int, error) {
	c := live.Client{Base: s.Base, HTTP: s.client}
	return c.Do(ctx, s.token, method, path, body, want, out)
}

// Login logs in as the admin; Do and DoWant then send the admin's token.
func (s *Server) Login(ctx context.Context) error {
	c := live.Client{Base: s.Base, HTTP: s.client}
	tok, err := c.Login(ctx, "admin", s.Password)
	if err != nil {
		return err
	}
	s.token = tok
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// workersConfig is what the server's enrollment does for workers on the
// pipeline's NATS: as serve's does (see cmd/observatory).
func workersConfig(ctx context.Context, p *Pipeline) (web.WorkersConfig, error) {
	skips, err := stream.MissionSkips(ctx, p.JS)
	if err != nil {
		return web.WorkersConfig{}, err
	}
	w := web.WorkersConfig{Consumers: worker.NewConsumers(p.JS), Passes: worker.NewKVPasses(skips)}
	if p.Authority != nil && p.NS != nil {
		w.Authority, w.NATSURL = p.Authority, p.NS.ClientURL()
	}
	return w, nil
}
