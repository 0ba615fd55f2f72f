package natscluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/sagewai/observatory/natsauth"
)

// Binary returns the path of the nats-server binary the tests use, or an
// error that says how to get it.
func Binary() (string, error) {
	path := os.Getenv("OBSERVATORY_NATS_SERVER")
	if path == "" {
		dir := os.Getenv("OBSERVATORY_VM_BIN")
		if dir == "" {
			return "", errors.New("no nats-server: run the tests with `make test` (it installs the pinned binary into .cache/bin), " +
				"or set OBSERVATORY_NATS_SERVER to a nats-server binary")
		}
		path = filepath.Join(dir, "nats-server")
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no nats-server at %s (`make deps` installs it): %w", path, err)
	}
	return path, nil
}

// Cluster is a running cluster of nats-server processes.
type Cluster struct {
	t     testing.TB
	bin   string
	Nodes []*Node
	// Account is the application account's public key; Signing mints its
	// users (Creds).
	Account string
	signing *natsauth.Authority
	seed    []byte
}

// Node is one nats-server process of a cluster.
type Node struct {
	Name       string
	ClientPort int
	// MonitorPort serves the node's monitoring endpoints (/healthz).
	MonitorPort int
	conf        string
	log         string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// URL is the node's client URL.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// Start runs a cluster of n nodes until the test ends and waits until it
// is ready (WaitReady). It fails the test if the binary is missing.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := Prepare(t, n)
	for _, node := range c.Nodes {
		c.Restart(node)
	}
	c.WaitReady()
	return c
}

// Prepare makes a cluster of n nodes and starts none: the test starts
// them (Restart), for a cluster that forms while it watches. Nodes
// started are stopped when the test ends.
func Prepare(t testing.TB, n int) *Cluster {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &Cluster{t: t, bin: bin}
	preload, sysPub := c.trust(dir)
	clientPorts, routePorts, monitorPorts := FreePorts(t, n), FreePorts(t, n), FreePorts(t, n)
	for i := range n {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		node := &Node{Name: fmt.Sprintf("n%d", i+1), ClientPort: clientPorts[i], MonitorPort: monitorPorts[i],
			conf: filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1)), log: filepath.Join(dir, fmt.Sprintf("n%d.log", i+1))}
		// One node is a single server: a cluster block without routes
		// is refused by JetStream.
		cluster := ""
		if n > 1 {
			cluster = fmt.Sprintf("cluster {\n  name: observatory\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
				routePorts[i], strings.Join(routes, ", "))
		}
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q }
%soperator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
%s}
`, node.Name, node.ClientPort, node.MonitorPort, filepath.Join(dir, node.Name), cluster,
			filepath.Join(dir, "operator.jwt"), sysPub, preload)
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, node)
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.kill(syscall.SIGTERM)
		}
	})
	return c
}

// Trust is a trust chain the way docs/deploy.md has an operator make one
// with nsc: an operator, its system account, and an application account
// (OBSERVATORY, with JetStream) whose users are signed by a signing key
// apart from the account's own.
type Trust struct {
	Operator      *jwt.OperatorClaims // decoded, as a server's options take it
	OperatorJWT   string
	SystemAccount string // public key
	SystemJWT     string
	Account       string // public key of the application account
	AccountJWT    string
	SigningSeed   []byte // the account signing key's seed (SA...)
}

// NewTrust makes a fresh trust chain.
func NewTrust(t testing.TB) *Trust {
	t.Helper()
	op, _ := nkeys.CreateOperator()
	sys, _ := nkeys.CreateAccount()
	acc, _ := nkeys.CreateAccount()
	sk, _ := nkeys.CreateAccount()
	opPub, _ := op.PublicKey()
	tr := &Trust{}
	tr.SystemAccount, _ = sys.PublicKey()
	tr.Account, _ = acc.PublicKey()
	skPub, _ := sk.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.SystemAccount = tr.SystemAccount
	var err error
	if tr.OperatorJWT, err = oc.Encode(op); err != nil {
		t.Fatal(err)
	}
	if tr.Operator, err = jwt.DecodeOperatorClaims(tr.OperatorJWT); err != nil {
		t.Fatal(err)
	}
	if tr.SystemJWT, err = jwt.NewAccountClaims(tr.SystemAccount).Encode(op); err != nil {
		t.Fatal(err)
	}
	ac := jwt.NewAccountClaims(tr.Account)
	ac.Name = "OBSERVATORY"
	ac.SigningKeys.Add(skPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit}
	if tr.AccountJWT, err = ac.Encode(op); err != nil {
		t.Fatal(err)
	}
	tr.SigningSeed, _ = sk.Seed()
	return tr
}

// trust makes the cluster's trust chain, writes the operator's JWT and
// returns the accounts' resolver preload and the system account.
func (c *Cluster) trust(dir string) (preload, sysPub string) {
	t := c.t
	tr := NewTrust(t)
	if err := os.WriteFile(filepath.Join(dir, "operator.jwt"), []byte(tr.OperatorJWT), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	c.seed = tr.SigningSeed
	if c.signing, err = natsauth.External(c.seed, tr.Account); err != nil {
		t.Fatal(err)
	}
	c.Account = tr.Account
	return fmt.Sprintf("  %s: %q\n  %s: %q\n", tr.SystemAccount, tr.SystemJWT, tr.Account, tr.AccountJWT), tr.SystemAccount
}

// SigningSeed is the account signing key's seed (SA...), as
// --nats-account-signing-key reads it.
func (c *Cluster) SigningSeed() []byte { return c.seed }

// Creds mints a user of the application account that may publish and
// subscribe to everything, as nsc would for serve (--nats-creds).
func (c *Cluster) Creds(name string) []byte {
	b, err := c.signing.Creds(natsauth.User{Name: name, Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// URLs is every node's client URL, comma-separated, as --nats-url takes a
// cluster.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// Connect connects to the cluster as a fresh user of the account.
func (c *Cluster) Connect(name string, opts ...nats.Option) *nats.Conn {
	c.t.Helper()
	tok, seed, err := natsauth.Parse(c.Creds(name))
	if err != nil {
		c.t.Fatal(err)
	}
	// A node just started may not listen yet: the client keeps trying.
	nc, err := nats.Connect(c.URLs(), append([]nats.Option{nats.UserJWTAndSeed(tok, seed), nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond), nats.RetryOnFailedConnect(true)}, opts...)...)
	if err != nil {
		c.t.Fatalf("connect to the cluster: %v", err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// WaitReady waits until the cluster can take a stream of as many
// replicas as it has nodes: every node is up and reports itself healthy
// (JetStream current with the meta leader), and the meta leader has heard
// from every node so that it places replicas on all of them. A meta
// leader alone is not enough: elected by two nodes of three, it refuses
// an R3 stream ("no suitable peers for placement") until the third has
// joined.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	nc := c.Connect("ready-probe")
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute) // a hang bound on a loaded machine
	for {
		err := c.ready(js)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the NATS cluster never got ready: %v\n%s", err, c.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readyProbe is the stream WaitReady places and deletes to learn that
// the meta leader places replicas on every node.
const readyProbe = "READY_PROBE"

// ready returns why the cluster is not ready yet, or nil.
func (c *Cluster) ready(js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if err := n.healthy(ctx); err != nil {
			return err
		}
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream does not answer: %w", err)
	}
	if len(c.Nodes) == 1 {
		return nil
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: readyProbe, Subjects: []string{"_ready_probe"},
		Replicas: len(c.Nodes), Storage: jetstream.MemoryStorage}); err != nil {
		return fmt.Errorf("an R%d stream cannot be placed: %w", len(c.Nodes), err)
	}
	if err := js.DeleteStream(ctx, readyProbe); err != nil {
		return fmt.Errorf("delete the probe stream: %w", err)
	}
	return nil
}

// healthy asks the node's /healthz, which answers 200 once the node's
// JetStream is current with the meta leader and its streams are current.
func (n *Node) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", n.MonitorPort), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s is not healthy: %s %s", n.Name, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// WaitStreamsCurrent waits until every stream of the account (key-value
// buckets included) has a leader and every replica has caught up with it:
// after a node came back, what a user would call "recovered". Before
// that a write may wait for an election and time out.
func (c *Cluster) WaitStreamsCurrent() {
	c.t.Helper()
	nc := c.Connect("streams-probe")
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	var lagging string
	deadline := time.Now().Add(2 * time.Minute) // a hang bound on a loaded machine
	for {
		lagging = c.laggingStream(js)
		if lagging == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster never recovered: %s\n%s", lagging, c.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// laggingStream names a stream without a leader or with a replica behind
// it, or returns "" when there is none.
func (c *Cluster) laggingStream(js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		cl := info.Cluster
		if info.Config.Replicas <= 1 {
			continue
		}
		if cl == nil || cl.Leader == "" {
			return info.Config.Name + " has no leader"
		}
		if len(cl.Replicas) < info.Config.Replicas-1 {
			return fmt.Sprintf("%s has %d of %d followers", info.Config.Name, len(cl.Replicas), info.Config.Replicas-1)
		}
		for _, r := range cl.Replicas {
			if !r.Current || r.Offline {
				return info.Config.Name + "'s replica on " + r.Name + " is behind"
			}
		}
	}
	if err := l.Err(); err != nil {
		return "streams not listed: " + err.Error()
	}
	return ""
}

// WantReplicas fails the test unless each named stream is configured with
// want replicas.
func WantReplicas(t testing.TB, js jetstream.JetStream, want int, names ...string) {
	t.Helper()
	for _, name := range names {
		st, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != want {
			t.Errorf("stream %s has %d replicas; want %d", name, r, want)
		}
	}
}

// Kill kills node with SIGKILL, as a machine dies, and waits until it has
// exited.
func (c *Cluster) Kill(n *Node) { n.kill(syscall.SIGKILL) }

// Restart starts node again (or the first time) on its ports and store.
func (c *Cluster) Restart(n *Node) {
	c.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", n.Name, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}(n.done)
}

func (n *Node) kill(sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Logs returns every node's log, for a failure message.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		data, _ := os.ReadFile(n.log)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", n.Name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// FreePorts returns n distinct loopback ports free at the time of the
// call, for processes (nodes, replicas, a balancer) that must know each
// other's addresses before they start. It fails t when it finds none
// (PickPorts).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := PickPorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// PickPorts returns n distinct loopback ports free at the time of the
// call. They are picked at random outside the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), from which every listener on port 0 and
// every outgoing connection of the machine takes its port: a port picked
// there was seen taken, between the pick and the bind, by another test's
// server (a cluster node then failed with "address already in use").
func PickPorts(n int) ([]int, error) {
	lo, hi := pickRange()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100*n {
			return nil, fmt.Errorf("no %d free loopback ports in %d-%d after %d tries", n, lo, hi-1, tries)
		}
		// Held until all are picked, so they are distinct.
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo))))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// pickRange returns the ports [lo, hi) PickPorts picks from: below the
// ephemeral range, or above it when it starts too low.
func pickRange() (lo, hi int) {
	elo, ehi := 32768, 60999 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var a, z int
		if _, err := fmt.Sscan(string(b), &a, &z); err == nil && a > 0 && z >= a {
			elo, ehi = a, z
		}
	}
	const floor, span = 10000, 2000
	if elo-floor >= span {
		return floor, elo
	}
	if 65536-(ehi+1) >= span {
		return ehi + 1, 65536
	}
	return floor, 65536 // no room outside it: any port
}
