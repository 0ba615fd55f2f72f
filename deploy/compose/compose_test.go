package compose_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/sagewai/observatory/cmd/observatory/observatorytest"
	"github.com/sagewai/observatory/lbtest"
	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/natscluster"
	"github.com/sagewai/observatory/stream"
)

const (
	composeFile = "cluster.yml"
	natsConf    = "nats/nats.conf"
	trustScript = "nats/trust.sh"
	nginxConf   = "nginx.conf"
	scrapeFile  = "scrape.yml"
	repoRoot    = "../.."
	deployDoc   = "../../docs/deploy.md"
	docSection  = "## Compose: the cluster topology"
	// hangBound turns a process that never answers into a failure.
	hangBound = 2 * time.Minute
)

// project loads the compose file with the compose-spec library, which
// validates it against the compose schema, with the workers profile on
// (the file's every service) and environ (K=V) as the shell's
// environment; without it every ${VAR:-default} takes its default.
func project(t *testing.T, environ ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory("."), cli.WithResolvedPaths(true), cli.WithEnv(environ), cli.WithProfiles([]string{"workers"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return p
}

// topology is the compose file's services sorted by role.
type topology struct {
	p        *types.Project
	nats     []types.ServiceConfig // the NATS nodes, by name
	replicas []types.ServiceConfig // `observatory serve`, by name
	worker   types.ServiceConfig
	init     types.ServiceConfig
	nginx    types.ServiceConfig
	vm       types.ServiceConfig
}

func roles(t *testing.T, p *types.Project) topology {
	t.Helper()
	top := topology{p: p}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range p.Services {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		s := p.Services[name]
		switch {
		case imageName(s.Image) == "nats":
			top.nats = append(top.nats, s)
		case imageName(s.Image) == "natsio/nats-box":
			top.init = s
		case imageName(s.Image) == "nginx":
			top.nginx = s
		case imageName(s.Image) == "victoriametrics/victoria-metrics":
			top.vm = s
		case len(s.Command) > 0 && s.Command[0] == "serve":
			top.replicas = append(top.replicas, s)
		case len(s.Command) > 0 && s.Command[0] == "worker":
			top.worker = s
		default:
			t.Errorf("service %s (%s %v) has no role in the topology", name, s.Image, s.Command)
		}
	}
	for role, ok := range map[string]bool{"a NATS init": top.init.Name != "", "nginx": top.nginx.Name != "",
		"VictoriaMetrics": top.vm.Name != "", "a worker": top.worker.Name != ""} {
		if !ok {
			t.Fatalf("no %s service", role)
		}
	}
	return top
}

func imageName(image string) string {
	name, _, _ := strings.Cut(image, ":")
	return name
}

func imageTag(image string) string {
	_, tag, _ := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	return tag
}

// flagValues returns the values a command line gives flag (--name v or
// --name=v), in order.
func flagValues(cmd []string, name string) []string {
	var out []string
	for i, arg := range cmd {
		switch {
		case arg == "--"+name && i+1 < len(cmd):
			out = append(out, cmd[i+1])
		case strings.HasPrefix(arg, "--"+name+"="):
			out = append(out, strings.TrimPrefix(arg, "--"+name+"="))
		}
	}
	return out
}

// flagValue is the one value of flag on a command line; it fails the
// test when there is not exactly one.
func flagValue(t *testing.T, s types.ServiceConfig, name string) string {
	t.Helper()
	v := flagValues(s.Command, name)
	if len(v) != 1 {
		t.Fatalf("%s: --%s given %d times in %v, want once", s.Name, name, len(v), s.Command)
	}
	return v[0]
}

// mountAt returns what service s mounts at target: the host path of a
// bind mount or the name of a volume ("" when nothing).
func mountAt(s types.ServiceConfig, target string) (source string, kind string) {
	for _, v := range s.Volumes {
		if v.Target == target {
			return v.Source, v.Type
		}
	}
	return "", ""
}

// volumeHolding returns the named volume of s whose target holds path,
// and path relative to that target.
func volumeHolding(s types.ServiceConfig, path string) (volume, rel string) {
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeVolume {
			continue
		}
		if r, err := filepath.Rel(v.Target, path); err == nil && !strings.HasPrefix(r, "..") {
			return v.Source, r
		}
	}
	return "", ""
}

func abs(t *testing.T, rel string) string {
	t.Helper()
	a, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func env(s types.ServiceConfig, k string) string {
	if v := s.Environment[k]; v != nil {
		return *v
	}
	return ""
}

// parsedNATSConf is nats.conf parsed by nats-server's own parser, with the
// trust file it includes stubbed (nats-init writes the real one).
func parsedNATSConf(t *testing.T) map[string]any {
	t.Helper()
	dir := t.TempDir()
	writeTrust(t, dir, natscluster.NewTrust(t))
	raw, err := os.ReadFile(natsConf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := conf.ParseFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("%s: %v", natsConf, err)
	}
	return m
}

// includedTrust is the path nats.conf includes its trust chain from,
// relative to nats.conf's directory.
func includedTrust(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(natsConf)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^include\s+(\S+)\s*$`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("%s includes no trust file", natsConf)
	}
	return filepath.Clean(string(m[1]))
}

// writeTrust writes tr in dir/<included path> the way `nsc generate
// config --mem-resolver` writes it: the operator's JWT, the system
// account, a memory resolver with the accounts' JWTs preloaded.
func writeTrust(t *testing.T, dir string, tr *natscluster.Trust) {
	t.Helper()
	path := filepath.Join(dir, includedTrust(t))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		tr.OperatorJWT, tr.SystemAccount, tr.SystemAccount, tr.SystemJWT, tr.Account, tr.AccountJWT)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func hostPort(t *testing.T, hp string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatalf("%q: %v", hp, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("%q: %v", hp, err)
	}
	return host, n
}

// natsLayout is what nats.conf says about ports, routes and the store.
type natsLayout struct {
	clientPort, routePort int
	routes                []string // host:port
	storeDir              string
	clusterName           string
}

func layout(t *testing.T) natsLayout {
	t.Helper()
	m := parsedNATSConf(t)
	var l natsLayout
	_, l.clientPort = hostPort(t, fmt.Sprint(m["listen"]))
	js, _ := m["jetstream"].(map[string]any)
	l.storeDir, _ = js["store_dir"].(string)
	cl, _ := m["cluster"].(map[string]any)
	if cl == nil || js == nil {
		t.Fatalf("%s: no cluster or no jetstream block: %v", natsConf, m)
	}
	l.clusterName, _ = cl["name"].(string)
	_, l.routePort = hostPort(t, fmt.Sprint(cl["listen"]))
	routes, _ := cl["routes"].([]any)
	for _, r := range routes {
		u, err := url.Parse(fmt.Sprint(r))
		if err != nil || u.Scheme != "nats-route" {
			t.Fatalf("%s: route %v: want nats-route://host:port", natsConf, r)
		}
		l.routes = append(l.routes, u.Host)
	}
	return l
}

// TestComposeFile checks the cluster topology as docs/deploy.md
// describes it, service by service, from the compose file and the files
// it mounts.
func TestComposeFile(t *testing.T) {
	p := project(t)
	top := roles(t, p)

	t.Run("images are pinned", func(t *testing.T) {
		for name, s := range p.Services {
			if s.Build != nil {
				continue
			}
			if tag := imageTag(s.Image); tag == "" || tag == "latest" {
				t.Errorf("%s: image %q has no pinned tag", name, s.Image)
			}
		}
		// Every service that runs observatory builds the image from the
		// repository's Dockerfile: none pulls an observatory image that
		// may not exist.
		for _, s := range append(slices.Clone(top.replicas), top.worker) {
			if s.Build == nil || filepath.Base(s.Build.Dockerfile) != "Dockerfile" || s.Build.Context != abs(t, repoRoot) {
				t.Errorf("%s is not built from the repository's Dockerfile: %+v", s.Name, s.Build)
			}
		}
		// The NATS nodes run the nats-server release the cluster tests
		// run (the Makefile's pin).
		mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
		if err != nil {
			t.Fatal(err)
		}
		pin := regexp.MustCompile(`(?m)^NATS_SERVER_VERSION\s*:?=\s*v(\S+)`).FindSubmatch(mk)
		if pin == nil {
			t.Fatal("the Makefile pins no NATS_SERVER_VERSION")
		}
		for _, s := range top.nats {
			if imageTag(s.Image) != string(pin[1]) {
				t.Errorf("%s runs %s; the tests run nats-server v%s", s.Name, s.Image, pin[1])
			}
		}
	})

	t.Run("every mounted file exists and every file here is mounted", func(t *testing.T) {
		mounted := map[string]bool{}
		for name, s := range p.Services {
			for _, v := range s.Volumes {
				if v.Type != types.VolumeTypeBind {
					if _, ok := p.Volumes[v.Source]; !ok {
						t.Errorf("%s mounts volume %q, which is not declared", name, v.Source)
					}
					continue
				}
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s mounts %s: %v", name, v.Source, err)
				}
				if !v.ReadOnly {
					t.Errorf("%s mounts %s writable: configuration is mounted read-only", name, v.Source)
				}
				rel, _ := filepath.Rel(abs(t, "."), v.Source)
				mounted[filepath.ToSlash(rel)] = true
			}
		}
		for _, f := range []string{natsConf, trustScript, nginxConf, scrapeFile} {
			if !mounted[f] {
				t.Errorf("no service mounts %s", f)
			}
		}
	})

	t.Run("three NATS nodes in one cluster with JetStream", func(t *testing.T) {
		l := layout(t)
		if len(top.nats) != 3 {
			t.Fatalf("%d NATS nodes, want 3", len(top.nats))
		}
		var names, want []string
		dataVolumes := map[string]string{}
		for _, s := range top.nats {
			confPath := flagValue(t, s, "config")
			if src, _ := mountAt(s, confPath); src != abs(t, natsConf) {
				t.Errorf("%s reads --config %s, where %s is not mounted (%q is)", s.Name, confPath, natsConf, src)
			}
			// The name routes use: each node's own service name.
			if n := flagValue(t, s, "server_name"); n != s.Name {
				t.Errorf("%s runs as server %q: name it after its service", s.Name, n)
			}
			names = append(names, s.Name+":"+strconv.Itoa(l.routePort))
			// The trust chain where nats.conf includes it, from the
			// volume nats-init writes it to.
			trustDir := filepath.Dir(filepath.Join(filepath.Dir(confPath), includedTrust(t)))
			if src, kind := mountAt(s, trustDir); kind != types.VolumeTypeVolume || src != volumeOf(t, top.init, env(top.init, "TRUST_DIR")) {
				t.Errorf("%s: %s (what nats.conf includes) is %s %q, not the volume nats-init writes the trust chain to", s.Name, trustDir, kind, src)
			}
			// JetStream's store on the node's own volume.
			src, kind := mountAt(s, l.storeDir)
			if kind != types.VolumeTypeVolume {
				t.Errorf("%s: JetStream's store_dir %s is no volume: its streams would die with the container", s.Name, l.storeDir)
			} else if other, dup := dataVolumes[src]; dup {
				t.Errorf("%s and %s share the store volume %s", s.Name, other, src)
			}
			dataVolumes[src] = s.Name
			if len(s.Ports) > 0 {
				t.Errorf("%s publishes %v: NATS stays on the compose network", s.Name, s.Ports)
			}
			if d, ok := s.DependsOn[top.init.Name]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("%s does not wait for %s to have made the trust chain", s.Name, top.init.Name)
			}
		}
		want = slices.Clone(l.routes)
		sort.Strings(names)
		sort.Strings(want)
		if diff := cmp.Diff(names, want); diff != "" {
			t.Errorf("nats.conf's routes (+) are not the NATS services at the route port (-):\n%s", diff)
		}
		if l.clusterName == "" {
			t.Error("nats.conf's cluster has no name")
		}
	})

	t.Run("replicas on the cluster", func(t *testing.T) {
		l := layout(t)
		if len(top.replicas) < 2 {
			t.Fatalf("%d observatory replicas, want two or more", len(top.replicas))
		}
		var nodes []string
		for _, s := range top.nats {
			nodes = append(nodes, fmt.Sprintf("nats://%s:%d", s.Name, l.clientPort))
		}
		dataDir := dockerfileEnv(t)["OBSERVATORY_DATA_DIR"]
		first := top.replicas[0]
		keyFile := flagValue(t, first, "signing-key-file")
		keyVolume, _ := volumeHolding(first, keyFile)
		secrets := volumeOf(t, top.init, env(top.init, "SECRETS_DIR"))
		dataVolumes := map[string]string{}
		for i, s := range top.replicas {
			urls := strings.Split(flagValue(t, s, "nats-url"), ",")
			if diff := cmp.Diff(nodes, urls); diff != "" {
				t.Errorf("%s: --nats-url is not every node's client URL (-nodes +flag):\n%s", s.Name, diff)
			}
			if r := flagValue(t, s, "nats-replicas"); r != "3" {
				t.Errorf("%s: --nats-replicas %s, want 3", s.Name, r)
			}
			// serve's user and the account signing key, from what
			// nats-init wrote.
			for _, f := range []string{"nats-creds", "nats-account-signing-key"} {
				if v, _ := volumeHolding(s, flagValue(t, s, f)); v != secrets {
					t.Errorf("%s: --%s %s is not on the volume nats-init writes (%s)", s.Name, f, flagValue(t, s, f), secrets)
				}
			}
			// One key ring for every replica: a token one issued is
			// valid on the others.
			if k := flagValue(t, s, "signing-key-file"); k != keyFile {
				t.Errorf("%s: --signing-key-file %s, %s's is %s: tokens would not verify across replicas", s.Name, k, first.Name, keyFile)
			}
			if v, _ := volumeHolding(s, keyFile); keyVolume == "" || v != keyVolume {
				t.Errorf("%s: the key ring %s is not on the volume %s shares (%q)", s.Name, keyFile, first.Name, keyVolume)
			}
			// Each replica's own data dir (checkpoints).
			src, kind := mountAt(s, dataDir)
			if kind != types.VolumeTypeVolume {
				t.Errorf("%s mounts no volume at the image's data dir %q", s.Name, dataDir)
			} else if other, dup := dataVolumes[src]; dup {
				t.Errorf("%s and %s share the data volume %s", s.Name, other, src)
			}
			dataVolumes[src] = s.Name
			if d, ok := s.DependsOn[top.init.Name]; i == 0 && (!ok || d.Condition != types.ServiceConditionCompletedSuccessfully) {
				t.Errorf("%s does not wait for the trust chain", s.Name)
			}
			// The first replica writes the key ring on its first start;
			// the others start once it is healthy, so no two race to
			// write it.
			if d, ok := s.DependsOn[first.Name]; i > 0 && (!ok || d.Condition != types.ServiceConditionHealthy) {
				t.Errorf("%s starts before %s is healthy: both could write the key ring", s.Name, first.Name)
			}
			if len(s.Ports) > 0 {
				t.Errorf("%s publishes %v: users reach the replicas through nginx", s.Name, s.Ports)
			}
			if pw := env(s, "OBSERVATORY_ADMIN_PASSWORD"); pw == "" || pw == "admin" {
				t.Errorf("%s: admin password %q", s.Name, pw)
			}
		}
		if keyVolume != secrets {
			t.Errorf("the key ring is on volume %q, not on %s, where nats-init makes its directory for the nonroot user", keyVolume, secrets)
		}
		// The admin password comes from the shell when it has one.
		set := project(t, "OBSERVATORY_ADMIN_PASSWORD=obs-secret-1")
		for _, s := range top.replicas {
			if got := env(set.Services[s.Name], "OBSERVATORY_ADMIN_PASSWORD"); got != "obs-secret-1" {
				t.Errorf("%s: OBSERVATORY_ADMIN_PASSWORD = %q with it set in the shell", s.Name, got)
			}
		}
	})

	t.Run("nginx in front, as the load-balancer tests run it", func(t *testing.T) {
		src, _ := mountAt(top.nginx, "/etc/nginx/conf.d/default.conf")
		if src != abs(t, nginxConf) {
			t.Fatalf("nginx does not mount %s as its default server (%q)", nginxConf, src)
		}
		raw, err := os.ReadFile(nginxConf)
		if err != nil {
			t.Fatal(err)
		}
		var upstreams []string
		for _, s := range top.replicas {
			_, port := hostPort(t, flagValue(t, s, "addr"))
			upstreams = append(upstreams, s.Name+":"+strconv.Itoa(port))
		}
		want := lbtest.Snippet(lbtest.Config{Upstreams: upstreams, Listen: "80"})
		if diff := cmp.Diff(want, stripHeader(string(raw))); diff != "" {
			t.Errorf("%s is not lbtest's configuration for the replicas (-lbtest +file):\n%s", nginxConf, diff)
		}
		// What lbtest's configuration is for, said here too: the /ws
		// upgrade is passed on, and the idle timeout lets serve's pings
		// (every 25 s, pong within 30 s) keep a quiet HUD open.
		for _, line := range []string{"proxy_set_header Upgrade $http_upgrade;", `proxy_set_header Connection "upgrade";`, "proxy_set_header Host $http_host;"} {
			if !strings.Contains(string(raw), line) {
				t.Errorf("%s lacks %q", nginxConf, line)
			}
		}
		m := regexp.MustCompile(`proxy_read_timeout (\d+)s;`).FindSubmatch(raw)
		if m == nil {
			t.Fatalf("%s sets no proxy_read_timeout", nginxConf)
		}
		if n, _ := strconv.Atoi(string(m[1])); n <= 30 {
			t.Errorf("proxy_read_timeout %ds: a quiet /ws would be cut between serve's pings", n)
		}

		// The balancer's address is the one the replicas trust, and the
		// URLs users and workers reach it at are the replicas' public URLs.
		lbNet := top.nginx.Networks["default"]
		if lbNet == nil || lbNet.Ipv4Address == "" {
			t.Fatal("nginx has no fixed address for --trusted-proxies to name")
		}
		if len(top.nginx.Ports) != 1 || top.nginx.Ports[0].Target != 80 {
			t.Fatalf("nginx publishes %+v, want its port 80 once", top.nginx.Ports)
		}
		published := "http://localhost:" + top.nginx.Ports[0].Published
		workerURL := flagValue(t, top.worker, "url")
		for _, s := range top.replicas {
			if !slices.Contains(strings.Split(flagValue(t, s, "trusted-proxies"), ","), lbNet.Ipv4Address) {
				t.Errorf("%s does not trust nginx's %s: the audit log would name nginx for every client", s.Name, lbNet.Ipv4Address)
			}
			public := flagValues(s.Command, "public-url")
			for _, u := range []string{published, workerURL} {
				if !slices.Contains(public, u) {
					t.Errorf("%s answers %v, not %s (421 through nginx)", s.Name, public, u)
				}
			}
			if d, ok := top.nginx.DependsOn[s.Name]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("nginx starts before %s is healthy (it resolves its upstreams once, at start)", s.Name)
			}
		}
	})

	t.Run("workers scaled on their own", func(t *testing.T) {
		w := top.worker
		if !slices.Contains(w.Profiles, "workers") {
			t.Errorf("the worker service is in profiles %v: it needs an enrollment key first, so it starts with --profile workers", w.Profiles)
		}
		if w.Deploy == nil || w.Deploy.Replicas == nil || *w.Deploy.Replicas < 2 {
			t.Errorf("the worker service runs %v containers, want a scaled service of two or more", w.Deploy)
		}
		// Enrolls through nginx.
		u, err := url.Parse(flagValue(t, w, "url"))
		if err != nil || u.Hostname() != top.nginx.Name || (u.Port() != "" && u.Port() != "80") {
			t.Errorf("the worker enrolls at %q, not through nginx", flagValue(t, w, "url"))
		}
		if d, ok := w.DependsOn[top.nginx.Name]; !ok {
			t.Errorf("the worker does not depend on nginx: %v", d)
		}
		// N containers, N identities: no fixed --worker-id.
		if ids := flagValues(w.Command, "worker-id"); len(ids) > 0 {
			t.Errorf("every worker container would be %q", ids[0])
		}
		// The key from the shell's environment, never the command line.
		if len(flagValues(w.Command, "enroll-key")) > 0 {
			t.Error("the enrollment key is on the command line")
		}
		set := project(t, "OBSERVATORY_ENROLL_KEY=ek-test-1")
		if got := env(set.Services[w.Name], "OBSERVATORY_ENROLL_KEY"); got != "ek-test-1" {
			t.Errorf("OBSERVATORY_ENROLL_KEY = %q with the key set in the shell", got)
		}
		// SIGTERM: running missions get --grace, and Docker waits a
		// little longer before SIGKILL.
		grace, err := time.ParseDuration(flagValue(t, w, "grace"))
		if err != nil {
			t.Fatal(err)
		}
		if w.StopGracePeriod == nil || time.Duration(*w.StopGracePeriod) <= grace {
			t.Errorf("stop_grace_period %v is not above --grace %s: Docker would kill missions being finished", w.StopGracePeriod, grace)
		}
		// The image's HEALTHCHECK asks serve's /readyz, which a worker
		// does not serve.
		if w.HealthCheck == nil || !w.HealthCheck.Disable {
			t.Error("the worker keeps the image's healthcheck of serve: it would be unhealthy for ever")
		}
	})

	t.Run("VictoriaMetrics scrapes every replica", func(t *testing.T) {
		var target string
		for _, arg := range top.vm.Command {
			if v, ok := strings.CutPrefix(arg, "-promscrape.config="); ok {
				target = v
			}
		}
		if src, _ := mountAt(top.vm, target); target == "" || src != abs(t, scrapeFile) {
			t.Fatalf("VictoriaMetrics reads -promscrape.config %q, where %s is not mounted", target, scrapeFile)
		}
		var want []string
		for _, s := range top.replicas {
			_, port := hostPort(t, flagValue(t, s, "metrics-addr"))
			want = append(want, s.Name+":"+strconv.Itoa(port))
			for _, pp := range s.Ports {
				if pp.Target == uint32(port) {
					t.Errorf("%s publishes its unauthenticated metrics port %d", s.Name, port)
				}
			}
		}
		if diff := cmp.Diff(want, scrapeTargets(t)); diff != "" {
			t.Errorf("%s's targets are not every replica's --metrics-addr (-replicas +scrape):\n%s", scrapeFile, diff)
		}
	})

	t.Run("the trust chain", func(t *testing.T) {
		s := top.init
		if slices.Index(s.Command, "/init/trust.sh") < 0 {
			t.Fatalf("nats-init runs %v, not trust.sh", s.Command)
		}
		if src, _ := mountAt(s, "/init/trust.sh"); src != abs(t, trustScript) {
			t.Errorf("nats-init mounts %q at /init/trust.sh", src)
		}
		if s.Restart != "no" {
			t.Errorf("nats-init restarts (%q): it runs once and exits", s.Restart)
		}
		// nsc's keystore (the operator's key) is mounted nowhere else.
		nsc, _ := mountAt(s, "/nsc")
		for name, other := range p.Services {
			if name == s.Name {
				continue
			}
			for _, v := range other.Volumes {
				if v.Source == nsc {
					t.Errorf("%s mounts nsc's keystore %s", name, nsc)
				}
			}
		}
		script, err := os.ReadFile(trustScript)
		if err != nil {
			t.Fatal(err)
		}
		// The files the nodes and the replicas read are the ones it writes.
		_, creds := volumeHolding(top.replicas[0], flagValue(t, top.replicas[0], "nats-creds"))
		_, seed := volumeHolding(top.replicas[0], flagValue(t, top.replicas[0], "nats-account-signing-key"))
		_, ring := volumeHolding(top.replicas[0], flagValue(t, top.replicas[0], "signing-key-file"))
		for _, want := range []string{`"$SECRETS_DIR/` + creds + `"`, `"$SECRETS_DIR/` + seed + `"`,
			`"$SECRETS_DIR/` + filepath.Dir(ring) + `"`, `"$TRUST_DIR/` + filepath.Base(includedTrust(t)) + `"`} {
			if !strings.Contains(string(script), want) {
				t.Errorf("%s never writes %s", trustScript, want)
			}
		}
		if out, err := exec.Command("sh", "-n", trustScript).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", trustScript, err, out)
		}
	})

	t.Run("ports are published on loopback only", func(t *testing.T) {
		n := 0
		for name, s := range p.Services {
			for _, port := range s.Ports {
				n++
				if port.HostIP != "127.0.0.1" {
					t.Errorf("%s publishes port %s on %q: want 127.0.0.1", name, port.Published, port.HostIP)
				}
			}
		}
		if n != 2 {
			t.Errorf("%d published ports: want nginx's and VictoriaMetrics'", n)
		}
	})
}

// volumeOf is the named volume service s mounts at target.
func volumeOf(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	src, kind := mountAt(s, target)
	if kind != types.VolumeTypeVolume {
		t.Fatalf("%s mounts no volume at %q", s.Name, target)
	}
	return src
}

// stripHeader drops the comment lines at the top of a file.
func stripHeader(s string) string {
	for strings.HasPrefix(s, "#") {
		_, s, _ = strings.Cut(s, "\n")
	}
	return s
}

func scrapeTargets(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(scrapeFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", scrapeFile, err)
	}
	var out []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			out = append(out, st.Targets...)
		}
	}
	return out
}

// dockerfileEnv is the ENV of the repository's Dockerfile.
func dockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`\b(OBSERVATORY_[A-Z_]+)=(\S+)`).FindAllSubmatch(raw, -1) {
		out[string(m[1])] = strings.TrimSuffix(string(m[2]), `\`)
	}
	return out
}

// TestEveryFlagExists runs the real observatory binary's `serve -h` and
// `worker -h` and checks that every flag the compose file gives them is
// one they know: a renamed flag fails here, not at `docker compose up`.
func TestEveryFlagExists(t *testing.T) {
	bin := observatorytest.Build(t)
	top := roles(t, project(t))
	known := func(cmd string) map[string]bool {
		out, _ := exec.Command(bin, cmd, "-h").CombinedOutput() // -h exits 2 after the usage
		flags := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllSubmatch(out, -1) {
			flags[string(m[1])] = true
		}
		if len(flags) < 5 {
			t.Fatalf("observatory %s -h lists %d flags:\n%s", cmd, len(flags), out)
		}
		return flags
	}
	serve, worker := known("serve"), known("worker")
	check := func(s types.ServiceConfig, flags map[string]bool) {
		n := 0
		for _, arg := range s.Command[1:] {
			name, ok := strings.CutPrefix(arg, "--")
			if !ok {
				continue
			}
			name, _, _ = strings.Cut(name, "=")
			n++
			if !flags[name] {
				t.Errorf("%s: observatory %s has no flag --%s", s.Name, s.Command[0], name)
			}
		}
		if n == 0 {
			t.Errorf("%s gives no flags: %v", s.Name, s.Command)
		}
	}
	for _, s := range top.replicas {
		check(s, serve)
	}
	check(top.worker, worker)
}

// TestScrapeConfigLoads runs scrape.yml through the real VictoriaMetrics
// (-promscrape.config.dryRun), which refuses unknown fields.
func TestScrapeConfigLoads(t *testing.T) {
	bin := filepath.Join(os.Getenv("OBSERVATORY_VM_BIN"), "victoria-metrics")
	if _, err := os.Stat(bin); os.Getenv("OBSERVATORY_VM_BIN") == "" || err != nil {
		t.Fatalf("no victoria-metrics at %q: run the tests with `make test` (its deps install it into .cache/bin) or set OBSERVATORY_VM_BIN", bin)
	}
	out, err := exec.Command(bin, "-promscrape.config="+scrapeFile, "-promscrape.config.dryRun").CombinedOutput()
	if err != nil {
		t.Fatalf("victoria-metrics -promscrape.config.dryRun: %v\n%s", err, out)
	}
}

// TestNATSConfigRunsACluster runs three real nats-server processes (the
// pinned binary the cluster tests use) from nats.conf as the compose file
// starts them, with a trust chain in nsc's format where nats-init writes
// it. Only the addresses change: the compose network's names and
// ports become loopback ports, and /data a directory per node. The nodes
// must form one JetStream cluster that refuses an anonymous client, and a
// user of the account (as serve mints workers) must get an R3 FLEET.
func TestNATSConfigRunsACluster(t *testing.T) {
	bin, err := natscluster.Binary()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(natsConf)
	if err != nil {
		t.Fatal(err)
	}
	top := roles(t, project(t))
	l := layout(t)
	dir := t.TempDir()
	tr := natscluster.NewTrust(t)
	writeTrust(t, dir, tr)

	// nats-server -t: the file as it is, for each node's command line.
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range top.nats {
		args := append([]string{"-t"}, s.Command...)
		args[slices.Index(args, "--config")+1] = filepath.Join(dir, "nats.conf")
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("nats-server %v: %v\n%s", args, err, out)
		}
	}

	// The three nodes, on loopback.
	clientPorts, routePorts := natscluster.FreePorts(t, 3), natscluster.FreePorts(t, 3)
	var urls []string
	for i, s := range top.nats {
		text := string(raw)
		replace := func(old, repl string) {
			t.Helper()
			if !strings.Contains(text, old) {
				t.Fatalf("%s has no %q", natsConf, old)
			}
			text = strings.ReplaceAll(text, old, repl)
		}
		replace(fmt.Sprintf("0.0.0.0:%d", l.clientPort), fmt.Sprintf("127.0.0.1:%d", clientPorts[i]))
		replace(fmt.Sprintf("0.0.0.0:%d", l.routePort), fmt.Sprintf("127.0.0.1:%d", routePorts[i]))
		for j, node := range top.nats {
			replace(fmt.Sprintf("%s:%d", node.Name, l.routePort), fmt.Sprintf("127.0.0.1:%d", routePorts[j]))
		}
		replace("store_dir: "+l.storeDir, fmt.Sprintf("store_dir: %q", filepath.Join(dir, s.Name)))
		confPath := filepath.Join(dir, s.Name+".conf")
		if err := os.WriteFile(confPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		args := slices.Clone(s.Command)
		args[slices.Index(args, "--config")+1] = confPath
		startNode(t, bin, filepath.Join(dir, s.Name+".log"), args)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}

	// No anonymous client.
	if nc, err := nats.Connect(urls[0], nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Error("a node accepted an anonymous client")
	}

	// A user of the account, as serve mints them with the signing key.
	auth, err := natsauth.External(tr.SigningSeed, tr.Account)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := auth.Creds(natsauth.User{Name: "compose-test", Publish: []string{">"}, Subscribe: []string{">"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, seed, err := natsauth.Parse(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserJWTAndSeed(tok, seed), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := stream.WithReplicas(js, 3)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangBound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = stream.EnsureStreams(ctx, r3, stream.StreamsConfig{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no JetStream cluster formed from %s: %v\n%s", natsConf, err, logs(dir, top.nats))
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := js.Stream(context.Background(), stream.FleetStream)
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	deadline = time.Now().Add(hangBound)
	for {
		info, err := st.Info(context.Background())
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			peers = []string{info.Cluster.Leader}
			for _, r := range info.Cluster.Replicas {
				peers = append(peers, r.Name)
			}
			if info.Cluster.Name != l.clusterName {
				t.Errorf("FLEET is on cluster %q, want nats.conf's %q", info.Cluster.Name, l.clusterName)
			}
			if len(peers) == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("FLEET never had three peers: %v, %v\n%s", peers, err, logs(dir, top.nats))
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Strings(peers)
	var names []string
	for _, s := range top.nats {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff(names, peers); diff != "" {
		t.Errorf("FLEET's peers are not the three nodes (-nodes +peers):\n%s", diff)
	}
}

// startNode runs nats-server with args until the test ends.
func startNode(t *testing.T, bin, logPath string, args []string) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

func logs(dir string, nodes []types.ServiceConfig) string {
	var b strings.Builder
	for _, s := range nodes {
		data, _ := os.ReadFile(filepath.Join(dir, s.Name+".log"))
		fmt.Fprintf(&b, "--- %s\n%s\n", s.Name, observatorytest.Tail(string(data), 15))
	}
	return b.String()
}

// TestDeployDocs checks the section of docs/deploy.md on this compose
// file: it says how to start the stack and its workers, that the file is
// validated rather than run here, and lists the ports the file publishes.
func TestDeployDocs(t *testing.T) {
	raw, err := os.ReadFile(deployDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "\n"+docSection+"\n")
	if !ok {
		t.Fatalf("docs/deploy.md has no %q section", docSection)
	}
	if strings.Contains(sec, "\n## ") {
		t.Errorf("%q is not the last section of docs/deploy.md", docSection)
	}
	for _, want := range []string{"docker compose -f deploy/compose/cluster.yml", "--profile workers", "deploy/compose/compose_test.go", "no Docker engine"} {
		if !strings.Contains(sec, want) {
			t.Errorf("the section does not say %q", want)
		}
	}
	p := project(t)
	for _, s := range p.Services {
		for _, port := range s.Ports {
			if !strings.Contains(sec, "http://localhost:"+port.Published) {
				t.Errorf("the section does not list %s's http://localhost:%s", s.Name, port.Published)
			}
		}
	}
}
