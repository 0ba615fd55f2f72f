package lbtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/sagewai/observatory/natscluster"
)

// DefaultReadTimeout is the idle timeout of a proxied connection
// (proxy_read_timeout) when Config leaves it zero: 60 s, a common
// balancer default and well above serve's /ws ping interval (25 s).
const DefaultReadTimeout = 60 * time.Second

// hangBound turns a hang (nginx never answering, never exiting) into a
// failure; a loaded machine may take long to start a process.
const hangBound = 30 * time.Second

// Binary returns the path of the nginx binary the tests use, or an error
// that says how to get it: OBSERVATORY_NGINX when set, else nginx on PATH
// or in /usr/sbin (where Debian puts it, and which a non-root PATH often
// lacks).
func Binary() (string, error) {
	if path := os.Getenv("OBSERVATORY_NGINX"); path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("no nginx at OBSERVATORY_NGINX=%s: %w", path, err)
		}
		return path, nil
	}
	if path, err := exec.LookPath("nginx"); err == nil {
		return path, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", errors.New("no nginx: the load-balancer tests run Debian's nginx; `make deps` installs it " +
		"(apt-get update && apt-get install -y nginx), or set OBSERVATORY_NGINX to an nginx binary")
}

// Config is what a balancer proxies to and how.
type Config struct {
	// Upstreams are the replicas' HTTP addresses (host:port); nginx
	// spreads requests and /ws connections over them round-robin and
	// passes a request on to the next when one refuses the connection.
	Upstreams []string
	// Listen is the address nginx listens on, as its listen directive
	// takes it ("127.0.0.1:8080", "80"); Start sets it to a free loopback
	// port when empty.
	Listen string
	// ServerName is the server_name; "_" (any) when empty.
	ServerName string
	// ReadTimeout is proxy_read_timeout: how long a proxied connection,
	// a /ws one included, may carry nothing before nginx cuts it
	// (DefaultReadTimeout when zero). Whole seconds.
	ReadTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.ServerName == "" {
		c.ServerName = "_"
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	return c
}

// snippet is the part of the configuration an operator copies into the
// http block of theirs (docs/deploy.md shows it rendered). Host is passed
// as the client wrote it ($http_host, port included) because serve
// answers only the hosts of its --public-url; X-Forwarded-For gets the
// client's address appended, which serve reads from the right, skipping
// --trusted-proxies, so what a client writes there itself is ignored.
var snippet = template.Must(template.New("snippet").Parse(`upstream observatory {
{{- range .Upstreams}}
    server {{.}};
{{- end}}
    keepalive 16;
}

server {
    listen {{.Listen}};
    server_name {{.ServerName}};

    proxy_http_version 1.1;
    proxy_connect_timeout 5s;
    proxy_read_timeout {{.ReadTimeoutSeconds}}s;

    # The live stream: a WebSocket upgrade. serve pings a quiet
    # connection every 25 s, so proxy_read_timeout may be anything
    # above 30 s. (A location that sets any proxy_set_header inherits
    # none from the server block: each lists them all.)
    location = /ws {
        proxy_pass http://observatory;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }

    location / {
        proxy_pass http://observatory;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }
}
`))

// Snippet renders the upstream and server blocks for cfg: what the tests
// run, and what docs/deploy.md shows for an operator's http block.
func Snippet(cfg Config) string {
	cfg = cfg.withDefaults()
	var b strings.Builder
	err := snippet.Execute(&b, struct {
		Config
		ReadTimeoutSeconds int
	}{cfg, int((cfg.ReadTimeout + time.Second - 1) / time.Second)})
	if err != nil {
		panic(err) // the template is fixed and its data plain values
	}
	return b.String()
}

// Balancer is a running nginx.
type Balancer struct {
	// Addr is where it listens (127.0.0.1:port) and URL its http:// URL.
	Addr, URL string
	// Conf is the whole configuration file it runs.
	Conf string

	dir      string
	cmd      *exec.Cmd
	exited   chan struct{}
	err      error // set before exited is closed
	stopOnce sync.Once
}

// Start runs nginx with cfg in the foreground (daemon off) with its
// prefix, logs, pid and temporary files in a fresh directory, waits until
// it accepts connections, and stops it when t ends. It fails t, never
// skips, when nginx is missing or refuses the configuration.
func Start(t testing.TB, cfg Config) *Balancer {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) == 0 {
		t.Fatal("lbtest: a balancer needs at least one upstream")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:" + strconv.Itoa(natscluster.FreePorts(t, 1)[0])
	}
	addr := cfg.Listen
	if !strings.Contains(addr, ":") {
		addr = "127.0.0.1:" + addr
	}
	// Run as root, nginx's workers drop to nobody: they must be able to
	// reach their temporary files, so the directory is not a t.TempDir
	// (whose parents only the test's user may enter).
	dir, err := os.MkdirTemp("", "lbtest-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &Balancer{Addr: addr, URL: "http://" + addr, dir: dir, exited: make(chan struct{})}
	b.Conf = fmt.Sprintf(`# lbtest: nginx for one test, in the foreground, everything under %[1]s.
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;

events {
    worker_connections 1024;
}

http {
    # Which upstream answered each request (the last one tried).
    log_format lbtest '$remote_addr "$request" $status upstream=$upstream_addr';
    access_log %[1]s/access.log lbtest;
    client_body_temp_path %[1]s/temp/client_body;
    proxy_temp_path %[1]s/temp/proxy;
    fastcgi_temp_path %[1]s/temp/fastcgi;
    uwsgi_temp_path %[1]s/temp/uwsgi;
    scgi_temp_path %[1]s/temp/scgi;

%[2]s}
`, dir, indent(Snippet(cfg), "    "))
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(b.Conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "temp"), 0o755); err != nil {
		t.Fatal(err)
	}
	// -e: the error log before the configuration is read (Debian's
	// compiled-in one is stderr, which is fine, but keep it all here).
	b.cmd = exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	out := &strings.Builder{}
	var outMu sync.Mutex
	b.cmd.Stdout = lockedWriter{&outMu, out}
	b.cmd.Stderr = lockedWriter{&outMu, out}
	b.cmd.SysProcAttr = procAttr()
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("nginx error log (tail):\n%s", tail(b.ErrorLog(), 30))
		}
	})
	deadline := time.Now().Add(hangBound)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return b
		}
		select {
		case <-b.exited:
			outMu.Lock()
			msg := out.String()
			outMu.Unlock()
			t.Fatalf("nginx exited at start: %v\n%s\nerror log:\n%s\nconfiguration:\n%s", b.err, msg, b.ErrorLog(), b.Conf)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not accept connections on %s within %s: %v\nerror log:\n%s", addr, hangBound, err, b.ErrorLog())
		}
	}
}

// ErrorLog returns nginx's error log so far.
func (b *Balancer) ErrorLog() string {
	data, _ := os.ReadFile(filepath.Join(b.dir, "error.log"))
	return string(data)
}

// AccessLog returns nginx's access log so far: one line per request
// (for a WebSocket, when it ends) with the client's address, the request
// line, the status and the upstreams tried ("upstream=A, B").
func (b *Balancer) AccessLog() string {
	data, _ := os.ReadFile(filepath.Join(b.dir, "access.log"))
	return string(data)
}

// AnsweredBy counts, per upstream, the logged requests whose path starts
// with prefix that it answered (the last upstream tried; "" when none
// answered).
func (b *Balancer) AnsweredBy(prefix string) map[string]int {
	out := map[string]int{}
	for _, line := range strings.Split(b.AccessLog(), "\n") {
		_, rest, ok := strings.Cut(line, `"`)
		if !ok {
			continue
		}
		request, rest, _ := strings.Cut(rest, `"`)
		if f := strings.Fields(request); len(f) < 2 || !strings.HasPrefix(f[1], prefix) {
			continue
		}
		_, ups, _ := strings.Cut(rest, "upstream=")
		tried := strings.Split(strings.TrimSpace(ups), ", ")
		out[tried[len(tried)-1]]++
	}
	return out
}

// Stop ends nginx at once (SIGTERM: open connections, /ws ones included,
// are closed) and waits for it; later calls do nothing.
func (b *Balancer) Stop() {
	b.stopOnce.Do(func() {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(hangBound):
			_ = b.cmd.Process.Kill()
			<-b.exited
		}
	})
}

// lockedWriter serialises writes of nginx's stdout and stderr.
type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
