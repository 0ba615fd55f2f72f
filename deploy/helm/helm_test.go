package helmchart_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// helmModule is the pinned helm the tests run; the Makefile's deps
// installs it into OBSERVATORY_VM_BIN.
const helmModule = "helm.sh/helm/v4/cmd/helm@v4.3.2"

// repoRoot is the module's root, seen from this package's directory (the
// working directory of its tests).
var repoRoot = filepath.Join("..", "..")

const chartDir = "observatory"

// The secret values every render is given. None may appear, as text or in
// base64, in any rendered object but a Secret; they are distinctive so
// that a match is never a coincidence.
const (
	adminPassword = "adm1n-pw-9c4e7b-never-in-a-configmap"
	signingRing   = "c2lnbmluZy1rZXktZm9yLWhlbG0tdGVzdHMtb25seS03YjNmOWQxMmE0ZTY="
	userJWT       = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.helm-test-user-jwt-5d1f"
	userSeed      = "SUAHELMTESTUSERSEEDNEVERINACONFIGMAPXXXXXXXXXXXXXXXXXXXXXXXXX"
	accountSeed   = "SAAHELMTESTACCOUNTSEEDNEVERINACONFIGMAPXXXXXXXXXXXXXXXXXXXXXX"
)

// credsFile is an nsc .creds file holding userJWT and userSeed.
const credsFile = `-----BEGIN NATS USER JWT-----
` + userJWT + `
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
` + userSeed + `
------END USER NKEY SEED------
`

var secretValues = []string{adminPassword, signingRing, userJWT, userSeed, accountSeed}

// helm returns the pinned helm binary, failing the test (never skipping
// it) with the command that installs it when it is not there.
func helm(t *testing.T) string {
	t.Helper()
	install := "make deps, or: GO=go scripts/go-tool.sh \"$OBSERVATORY_VM_BIN\" helm " + helmModule
	dir := os.Getenv("OBSERVATORY_VM_BIN")
	if dir == "" {
		t.Fatalf("OBSERVATORY_VM_BIN is not set: run the tests through make test, or set it to the directory of the cached tools (%s)", install)
	}
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm is not installed in %s (%v): %s", dir, err, install)
	}
	return bin
}

// runHelm runs helm with args in this package's directory, where the
// chart is; its error carries helm's stderr.
func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// HOME and XDG dirs of its own, so that helm reads no repository or
	// plugin configuration of the machine's user.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// secretArgs are the --set flags that give the chart every secret value
// inline.
func secretArgs(t *testing.T) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "serve.creds")
	if err := os.WriteFile(f, []byte(credsFile), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{
		"--set", "admin.password=" + adminPassword,
		"--set", "signingKeys.ring=" + signingRing,
		"--set-file", "nats.credentials.creds=" + f,
		"--set", "nats.credentials.accountSigningKey=" + accountSeed,
	}
}

func pricingFile() string { return filepath.Join(repoRoot, "fleet", "pricing.json") }

// serveSurface is what `observatory serve` accepts: its flags and the
// environment variables their help names.
type serveSurface struct {
	flags map[string]bool
	env   map[string]bool
}

// binDir holds the observatory binary the tests build once (TestMain
// removes it).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "helmchart-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// observatory builds ./cmd/observatory once for all tests: the image's
// binary, run as the pod would run it.
var observatory = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "observatory")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/observatory")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/observatory: %w: %s", err, out)
	}
	return bin, nil
})

// serveHelp runs `observatory serve --help` once for all tests: the
// chart's arguments are checked against the flag set serve really has,
// not against a list kept by hand.
var serveHelp = sync.OnceValues(func() (serveSurface, error) {
	bin, err := observatory()
	if err != nil {
		return serveSurface{}, err
	}
	out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		return serveSurface{}, fmt.Errorf("observatory serve --help: %w: %s", err, out)
	}
	s := serveSurface{flags: map[string]bool{}, env: map[string]bool{}}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9.-]*)`).FindAllSubmatch(out, -1) {
		s.flags[string(m[1])] = true
	}
	for _, m := range regexp.MustCompile(`env (OBSERVATORY_[A-Z0-9_]+)`).FindAllSubmatch(out, -1) {
		s.env[string(m[1])] = true
	}
	if !s.flags["addr"] || !s.env["OBSERVATORY_ADDR"] {
		return serveSurface{}, fmt.Errorf("serve --help lists no -addr flag or OBSERVATORY_ADDR: its format changed?\n%s", out)
	}
	return s, nil
})

// otelSource is the telemetry package's source: an OTEL_* variable the
// chart sets must be one that package reads.
var otelSource = sync.OnceValues(func() (string, error) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "telemetry", "*.go"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("telemetry sources: %v (%d files)", err, len(files))
	}
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		b.Write(src)
	}
	return b.String(), nil
})

// object is one rendered document: its kind and name, its text, and its
// decoded form (a k8s.io/api type, or a map for the operators' custom
// resources).
type object struct {
	kind, name string
	text       []byte
	decoded    any
}

// rendered is a helm template output, decoded.
type rendered struct {
	objects     []object
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	secrets     []*corev1.Secret
	configMaps  []*corev1.ConfigMap
	pdbs        []*policyv1.PodDisruptionBudget
	scrapes     []object // VMServiceScrape and ServiceMonitor
}

// typed maps each built-in kind the chart may render to its apiVersion
// and a new value of its k8s.io/api type. A kind not here fails the
// decoding: a template that renders something new must be checked too.
var typed = map[string]struct {
	apiVersion string
	new        func() any
}{
	"Deployment":          {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"Service":             {"v1", func() any { return &corev1.Service{} }},
	"Secret":              {"v1", func() any { return &corev1.Secret{} }},
	"ConfigMap":           {"v1", func() any { return &corev1.ConfigMap{} }},
	"PodDisruptionBudget": {"policy/v1", func() any { return &policyv1.PodDisruptionBudget{} }},
}

// custom are the operators' resources, checked as maps.
var custom = map[string]string{
	"VMServiceScrape": "operator.victoriametrics.com/v1beta1",
	"ServiceMonitor":  "monitoring.coreos.com/v1",
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decode splits a YAML stream into its documents and decodes each
// strictly: a field its type does not have, or a key given twice, is an
// error, as an unknown kind or apiVersion is.
func decode(stream []byte) (*rendered, error) {
	r := &rendered{}
	for i, doc := range docSeparator.Split(string(stream), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		o := object{kind: tm.Kind, text: []byte(doc)}
		if t, ok := typed[tm.Kind]; ok {
			if tm.APIVersion != t.apiVersion {
				return nil, fmt.Errorf("document %d: %s of apiVersion %q, want %q", i, tm.Kind, tm.APIVersion, t.apiVersion)
			}
			v := t.new()
			if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
				return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
			}
			o.decoded = v
			switch v := v.(type) {
			case *appsv1.Deployment:
				o.name = v.Name
				r.deployments = append(r.deployments, v)
			case *corev1.Service:
				o.name = v.Name
				r.services = append(r.services, v)
			case *corev1.Secret:
				o.name = v.Name
				r.secrets = append(r.secrets, v)
			case *corev1.ConfigMap:
				o.name = v.Name
				r.configMaps = append(r.configMaps, v)
			case *policyv1.PodDisruptionBudget:
				o.name = v.Name
				r.pdbs = append(r.pdbs, v)
			}
		} else if av, ok := custom[tm.Kind]; ok {
			if tm.APIVersion != av {
				return nil, fmt.Errorf("document %d: %s of apiVersion %q, want %q", i, tm.Kind, tm.APIVersion, av)
			}
			var m map[string]any
			if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
				return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
			}
			o.decoded = m
			o.name, _ = dig(m, "metadata", "name").(string)
			r.scrapes = append(r.scrapes, o)
		} else {
			return nil, fmt.Errorf("document %d: kind %q (apiVersion %q) is not one the tests know: add its type to typed", i, tm.Kind, tm.APIVersion)
		}
		if o.name == "" {
			return nil, fmt.Errorf("document %d: %s without a name", i, tm.Kind)
		}
		r.objects = append(r.objects, o)
	}
	return r, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// dig walks nested maps; nil when a step is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// want is what one render must show besides the invariants every render
// must hold.
type want struct {
	minReplicas  int32
	natsReplicas string
	pdb          bool
	// secretNames are the Secrets the pods must read: the admin password,
	// the signing keys, the NATS credentials.
	adminSecret, signingSecret, natsSecret string
	// chartSecrets says whether the chart makes those Secrets itself.
	chartSecrets bool
	scrapeKinds  []string
	publicURL    string
	// goEnv is the Go runtime's variables the container must have, with
	// their values; the chart sets no other.
	goEnv map[string]string
}

func TestChartRenders(t *testing.T) {
	surface, err := serveHelp()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want want
	}{
		{
			name: "default values",
			args: []string{"--set-file", "pricing=" + pricingFile()},
			want: want{
				minReplicas: 1, natsReplicas: "1",
				adminSecret: "obs-observatory-admin", signingSecret: "obs-observatory-signing-keys", natsSecret: "obs-observatory-nats",
				chartSecrets: true,
			},
		},
		{
			// The inline secrets are given here too, beside the production
			// file's existingSecret names: they must then go nowhere.
			name: "values-production.yaml",
			args: []string{"-f", filepath.Join(chartDir, "values-production.yaml"), "--set-file", "pricing=" + pricingFile(),
				"--set", "metrics.serviceMonitor.enabled=true"},
			want: want{
				minReplicas: 2, natsReplicas: "3", pdb: true,
				adminSecret: "observatory-admin", signingSecret: "observatory-signing-keys", natsSecret: "observatory-nats",
				scrapeKinds: []string{"ServiceMonitor", "VMServiceScrape"},
				publicURL:   "https://observatory.example.com",
			},
		},
		{
			name: "the Go runtime's GOGC and GOMEMLIMIT",
			args: []string{"--set-file", "pricing=" + pricingFile(), "--set-string", "go.gogc=400,go.gomemlimit=460MiB"},
			want: want{
				minReplicas: 1, natsReplicas: "1",
				adminSecret: "obs-observatory-admin", signingSecret: "obs-observatory-signing-keys", natsSecret: "obs-observatory-nats",
				chartSecrets: true,
				goEnv:        map[string]string{"GOGC": "400", "GOMEMLIMIT": "460MiB"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", "obs", chartDir, "--namespace", "observatory"}, secretArgs(t)...)
			out, err := runHelm(t, append(args, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			r, err := decode(out)
			if err != nil {
				t.Fatalf("rendered chart does not decode strictly: %v", err)
			}
			checkChart(t, r, surface, tc.want)
		})
	}
}

// checkChart checks the invariants of a rendered chart.
func checkChart(t *testing.T, r *rendered, surface serveSurface, w want) {
	t.Helper()
	if len(r.deployments) != 1 || len(r.services) != 1 {
		t.Fatalf("rendered %d Deployments and %d Services, want one of each", len(r.deployments), len(r.services))
	}
	d, svc := r.deployments[0], r.services[0]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	// Replicas.
	if d.Spec.Replicas == nil || *d.Spec.Replicas < w.minReplicas {
		t.Errorf("replicas %v, want at least %d", d.Spec.Replicas, w.minReplicas)
	}

	// The image is pinned.
	if err := checkImage(c.Image); err != nil {
		t.Error(err)
	}

	// The command line: serve, and only flags serve has.
	if len(c.Command) != 0 {
		t.Errorf("container command %q overrides the image's entrypoint", c.Command)
	}
	flags := map[string][]string{}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("container args %q, want serve first", c.Args)
	}
	for _, a := range c.Args[1:] {
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Errorf("argument %q: want --flag=value", a)
			continue
		}
		if !surface.flags[name] {
			t.Errorf("argument %q: observatory serve has no flag --%s", a, name)
		}
		flags[name] = append(flags[name], val)
	}
	one := func(name string) string {
		if v := flags[name]; len(v) == 1 {
			return v[0]
		}
		t.Errorf("--%s given %d times (%q), want once", name, len(flags[name]), flags[name])
		return ""
	}
	_, addrPort, _ := strings.Cut(one("addr"), ":")
	_, metricsPort, _ := strings.Cut(one("metrics-addr"), ":")
	if got := one("nats-replicas"); got != w.natsReplicas {
		t.Errorf("--nats-replicas=%s, want %s", got, w.natsReplicas)
	}
	if one("nats-url") == "" {
		t.Error("--nats-url is empty")
	}
	if _, ok := flags["admin-password"]; ok {
		t.Error("the admin password is on the command line, visible to every user of the node")
	}
	urls := flags["public-url"]
	if !slices.Contains(urls, "http://obs-observatory.observatory.svc:"+addrPort) {
		t.Errorf("--public-url %q lacks the Service's own name", urls)
	}
	if w.publicURL != "" && !slices.Contains(urls, w.publicURL) {
		t.Errorf("--public-url %q lacks %s", urls, w.publicURL)
	}

	// The environment: only variables serve (or its telemetry) reads, the
	// password from the Secret.
	otel, err := otelSource()
	if err != nil {
		t.Fatal(err)
	}
	sawPassword := false
	goEnv := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.Name == "GOGC" || e.Name == "GOMEMLIMIT":
			goEnv[e.Name] = e.Value
		case strings.HasPrefix(e.Name, "OBSERVATORY_") && !surface.env[e.Name]:
			t.Errorf("env %s: observatory serve reads no such variable", e.Name)
		case strings.HasPrefix(e.Name, "OTEL_") && !strings.Contains(otel, `"`+e.Name+`"`):
			t.Errorf("env %s: the telemetry package reads no such variable", e.Name)
		case !strings.HasPrefix(e.Name, "OBSERVATORY_") && !strings.HasPrefix(e.Name, "OTEL_"):
			t.Errorf("env %s: neither serve's nor OpenTelemetry's", e.Name)
		}
		if e.Name == "OBSERVATORY_ADMIN_PASSWORD" {
			sawPassword = true
			ref := e.ValueFrom
			if e.Value != "" || ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != w.adminSecret {
				t.Errorf("OBSERVATORY_ADMIN_PASSWORD is %+v, want a secretKeyRef to Secret %s", e, w.adminSecret)
			} else {
				checkSecretKey(t, r, w, ref.SecretKeyRef.Name, ref.SecretKeyRef.Key, adminPassword)
			}
		}
	}
	if !maps.Equal(goEnv, w.goEnv) {
		t.Errorf("the Go runtime's environment is %v, want %v", goEnv, w.goEnv)
	}
	if !sawPassword {
		t.Error("no OBSERVATORY_ADMIN_PASSWORD: serve would refuse to start beyond loopback with the default password")
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false: a Service named observatory would put OBSERVATORY_* variables in serve's environment")
	}

	// Probes on the HTTP port.
	httpPort := containerPort(c, intstr.FromString("http"))
	if strconv.Itoa(int(httpPort)) != addrPort {
		t.Errorf("container port http is %d, serve listens on --addr port %s", httpPort, addrPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("no HTTP %s probe", p.name)
		case p.probe.HTTPGet.Path != p.path:
			t.Errorf("%s probe asks %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		case containerPort(c, p.probe.HTTPGet.Port) != httpPort || httpPort == 0:
			t.Errorf("%s probe on port %s, want the HTTP port %s", p.name, p.probe.HTTPGet.Port.String(), addrPort)
		}
	}

	// Non-root, read-only root filesystem, no privilege, no capability.
	sc, psc := c.SecurityContext, pod.SecurityContext
	switch {
	case sc == nil:
		t.Error("container has no securityContext")
	default:
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Error("runAsNonRoot is not set")
		}
		if (sc.RunAsUser != nil && *sc.RunAsUser == 0) || (psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
			t.Error("runs as uid 0")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("capabilities %+v, want ALL dropped and none added", sc.Capabilities)
		}
	}

	// What serve writes is on emptyDirs (the root filesystem is read-only),
	// and the files it reads come from the right volumes.
	for _, dir := range []string{one("data-dir"), "/tmp"} {
		if v := volumeAt(pod, c, dir); v == nil || v.EmptyDir == nil {
			t.Errorf("%s is not an emptyDir mount: serve cannot write there on a read-only root filesystem", dir)
		}
	}
	for _, f := range []struct {
		flag, secret, value string
	}{
		{"signing-key-file", w.signingSecret, signingRing},
		{"nats-creds", w.natsSecret, credsFile},
		{"nats-account-signing-key", w.natsSecret, accountSeed},
	} {
		file := one(f.flag)
		v := volumeAt(pod, c, path.Dir(file))
		if v == nil || v.Secret == nil || v.Secret.SecretName != f.secret {
			t.Errorf("--%s=%s is not in a volume of Secret %s", f.flag, file, f.secret)
			continue
		}
		key := itemKey(v.Secret.Items, path.Base(file))
		if key == "" {
			t.Errorf("--%s=%s: Secret volume %s has no item %s", f.flag, file, v.Name, path.Base(file))
			continue
		}
		if mode := v.Secret.DefaultMode; mode == nil || *mode&0o027 != 0 {
			t.Errorf("--%s: Secret volume %s mode %s lets any user read it or the group write it (serve refuses such key files)", f.flag, v.Name, fileMode(mode))
		}
		checkSecretKey(t, r, w, f.secret, key, f.value)
	}
	if file := one("pricing"); file != "" {
		v := volumeAt(pod, c, path.Dir(file))
		if v == nil || v.ConfigMap == nil {
			t.Errorf("--pricing=%s is not in a ConfigMap volume", file)
		} else if cm := configMap(r, v.ConfigMap.Name); cm == nil {
			t.Errorf("--pricing: ConfigMap %s is not rendered", v.ConfigMap.Name)
		} else {
			want, err := os.ReadFile(pricingFile())
			if err != nil {
				t.Fatal(err)
			}
			if got := cm.Data[path.Base(file)]; strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
				t.Errorf("ConfigMap %s %s is not the pricing table given (%d bytes, want %d)", cm.Name, path.Base(file), len(got), len(want))
			}
		}
	}

	// Requests and limits, from the measured figures.
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[res]
		lim, hasLim := c.Resources.Limits[res]
		if !hasReq || !hasLim {
			t.Errorf("%s: request %v, limit %v: want both", res, hasReq, hasLim)
		} else if req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s above limit %s", res, req.String(), lim.String())
		}
	}

	// The Service selects the Deployment's pods, and only them, on ports
	// the container has.
	podLabels := d.Spec.Template.Labels
	if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	if d.Spec.Selector == nil || !mapsEqual(d.Spec.Selector.MatchLabels, svc.Spec.Selector) {
		t.Errorf("Service selector %v differs from the Deployment's %v", svc.Spec.Selector, d.Spec.Selector)
	}
	if !subset(d.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment selector %v does not select its own pods %v", d.Spec.Selector.MatchLabels, podLabels)
	}
	svcPorts := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = containerPort(c, p.TargetPort)
		if svcPorts[p.Name] == 0 {
			t.Errorf("Service port %s targets %s, which the container does not have", p.Name, p.TargetPort.String())
		}
	}
	if svcPorts["http"] != httpPort {
		t.Errorf("Service port http reaches container port %d, want %d", svcPorts["http"], httpPort)
	}
	if strconv.Itoa(int(svcPorts["metrics"])) != metricsPort {
		t.Errorf("Service port metrics reaches container port %d, want --metrics-addr's %s", svcPorts["metrics"], metricsPort)
	}

	// Scrape annotations and objects reach the unauthenticated metrics
	// listener.
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != metricsPort || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod scrape annotations %v, want scrape true, port %s, path /metrics", ann, metricsPort)
	}
	var kinds []string
	for _, s := range r.scrapes {
		kinds = append(kinds, s.kind)
		sel, _ := dig(s.decoded, "spec", "selector", "matchLabels").(map[string]any)
		if len(sel) == 0 || !subset(stringMap(sel), svc.Labels) {
			t.Errorf("%s selects %v, not the Service's labels %v", s.kind, sel, svc.Labels)
		}
		eps, _ := dig(s.decoded, "spec", "endpoints").([]any)
		if len(eps) == 0 {
			t.Errorf("%s has no endpoints", s.kind)
		}
		for _, ep := range eps {
			if port, _ := dig(ep, "port").(string); port != "metrics" || dig(ep, "path") != "/metrics" {
				t.Errorf("%s endpoint %v, want port metrics, path /metrics", s.kind, ep)
			}
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, w.scrapeKinds) {
		t.Errorf("scrape objects %v, want %v", kinds, w.scrapeKinds)
	}

	// A disruption budget in production that still lets a node drain.
	switch {
	case !w.pdb && len(r.pdbs) > 0:
		t.Errorf("rendered %d PodDisruptionBudgets, want none", len(r.pdbs))
	case w.pdb && len(r.pdbs) != 1:
		t.Errorf("rendered %d PodDisruptionBudgets, want one", len(r.pdbs))
	case w.pdb:
		pdb := r.pdbs[0]
		if pdb.Spec.Selector == nil || !mapsEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget selects %v, want the Deployment's pods %v", pdb.Spec.Selector, d.Spec.Selector.MatchLabels)
		}
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || int32(pdb.Spec.MinAvailable.IntValue()) >= *d.Spec.Replicas {
			t.Errorf("PodDisruptionBudget minAvailable %v with %d replicas: want at least 1 and fewer than the replicas", pdb.Spec.MinAvailable, *d.Spec.Replicas)
		}
	}

	// Secrets: the chart's own only when it was given the values inline,
	// and no secret value in any other object.
	if !w.chartSecrets && len(r.secrets) > 0 {
		t.Errorf("rendered %d Secrets, want none: the values name existing ones", len(r.secrets))
	}
	for _, o := range r.objects {
		if o.kind == "Secret" {
			continue
		}
		for _, s := range secretValues {
			if bytes.Contains(o.text, []byte(s)) || bytes.Contains(o.text, []byte(base64.StdEncoding.EncodeToString([]byte(s)))) {
				t.Errorf("%s %s holds a secret value (%.8s...)", o.kind, o.name, s)
			}
		}
	}
	if len(r.configMaps) == 0 {
		t.Error("no ConfigMap rendered: the secret scan above proved nothing about ConfigMaps")
	}
}

// checkSecretKey checks that the Secret the pod reads holds key: in the
// chart's own Secret, with the value given; an existing Secret is the
// operator's to fill.
func checkSecretKey(t *testing.T, r *rendered, w want, name, key, value string) {
	t.Helper()
	if !w.chartSecrets {
		return
	}
	for _, s := range r.secrets {
		if s.Name != name {
			continue
		}
		if got, ok := s.Data[key]; !ok || string(got) != value {
			t.Errorf("Secret %s key %s is %q, want the value given", name, key, got)
		}
		return
	}
	t.Errorf("the pods read Secret %s, which is not rendered", name)
}

// checkImage accepts repository:tag or repository:tag@digest with a tag
// other than latest.
func checkImage(ref string) error {
	name, _, _ := strings.Cut(ref, "@")
	slash := strings.LastIndex(name, "/")
	colon := strings.LastIndex(name, ":")
	if colon <= slash || colon == len(name)-1 {
		return fmt.Errorf("image %q has no tag", ref)
	}
	if tag := name[colon+1:]; tag == "latest" {
		return fmt.Errorf("image %q is not pinned (latest)", ref)
	}
	return nil
}

// containerPort resolves a port by number or name to the container's
// port number; 0 when the container has no such port.
func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

// volumeAt is the volume mounted at dir in c, nil when none is.
func volumeAt(pod corev1.PodSpec, c corev1.Container, dir string) *corev1.Volume {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				return &pod.Volumes[i]
			}
		}
	}
	return nil
}

// itemKey is the Secret key projected to file, "" when none is.
func itemKey(items []corev1.KeyToPath, file string) string {
	for _, it := range items {
		if it.Path == file {
			return it.Key
		}
	}
	return ""
}

// fileMode shows a volume's defaultMode as Kubernetes defaults it (0644).
func fileMode(m *int32) string {
	if m == nil {
		return "unset (0644)"
	}
	return fmt.Sprintf("%#o", *m)
}

func configMap(r *rendered, name string) *corev1.ConfigMap {
	for _, cm := range r.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[string]string) bool { return len(a) == len(b) && subset(a, b) }

func stringMap(m map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// TestChartRefusesUnsafeValues: values that would deploy something
// broken or unsafe fail the render with what to set, rather than
// rendering a pod that crash-loops or runs unpinned code.
func TestChartRefusesUnsafeValues(t *testing.T) {
	cases := []struct {
		name    string
		args    func(t *testing.T) []string
		wantErr string
	}{
		{"no secrets", func(*testing.T) []string { return nil }, "admin.password"},
		{"no signing keys", func(*testing.T) []string { return []string{"--set", "admin.password=x"} }, "signingKeys.ring"},
		{"no NATS credentials", func(*testing.T) []string {
			return []string{"--set", "admin.password=x", "--set", "signingKeys.ring=y"}
		}, "nats.credentials.creds"},
		{"latest image", func(t *testing.T) []string { return append(secretArgs(t), "--set", "image.tag=latest") }, `never "latest"`},
		{"budget that blocks every drain", func(t *testing.T) []string {
			return append(secretArgs(t), "--set", "podDisruptionBudget.enabled=true", "--set", "replicaCount=2", "--set", "podDisruptionBudget.minAvailable=2")
		}, "podDisruptionBudget.minAvailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", "obs", chartDir}, tc.args(t)...)
			out, err := runHelm(t, args...)
			if err == nil {
				t.Fatalf("rendered without error (%d bytes), want a failure naming %s", len(out), tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want it to name %s", err, tc.wantErr)
			}
		})
	}
}

// TestHelmLint runs helm lint --strict on the chart with both values files.
func TestHelmLint(t *testing.T) {
	for _, extra := range [][]string{nil, {"-f", filepath.Join(chartDir, "values-production.yaml")}} {
		args := append(append([]string{"lint", "--strict", chartDir}, secretArgs(t)...), extra...)
		out, err := runHelm(t, args...)
		if err != nil {
			t.Errorf("%v\n%s", err, out)
			continue
		}
		if !bytes.Contains(out, []byte("0 chart(s) failed")) {
			t.Errorf("helm %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestDecodeIsStrict: the decoder the render tests rely on refuses a field
// Kubernetes does not know, a kind the tests do not know, and a wrong
// apiVersion, so a template typo cannot pass for a valid object.
func TestDecodeIsStrict(t *testing.T) {
	const deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  %s: 2\n"
	if _, err := decode([]byte(fmt.Sprintf(deployment, "replicas"))); err != nil {
		t.Fatalf("a valid Deployment: %v", err)
	}
	for name, doc := range map[string]string{
		"unknown field": fmt.Sprintf(deployment, "replicaCount"),
		"unknown kind":  "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: x\n",
		"wrong version": "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata:\n  name: x\n",
		"duplicate key": "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  name: y\n",
	} {
		if _, err := decode([]byte("---\n" + doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// TestServeHelpIsParsed guards the flag check: were the help's format to
// change, every --flag would look unknown or, worse, the set would be
// empty and the check vacuous.
func TestServeHelpIsParsed(t *testing.T) {
	start := time.Now()
	s, err := serveHelp()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"addr", "nats-url", "nats-creds", "signing-key-file", "metrics-addr", "public-url"} {
		if !s.flags[f] {
			t.Errorf("serve --help lists no --%s (flags: %d)", f, len(s.flags))
		}
	}
	if s.flags["fresh"] {
		t.Error("serve --help lists demo's --fresh: the help parsed is not serve's")
	}
	if !s.env["OBSERVATORY_ADMIN_PASSWORD"] {
		t.Error("serve --help names no OBSERVATORY_ADMIN_PASSWORD")
	}
	t.Logf("serve --help: %d flags, %d env variables (%v)", len(s.flags), len(s.env), time.Since(start).Round(time.Millisecond))
}
