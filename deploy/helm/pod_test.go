package helmchart_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sagewai/observatory/natscluster"
)

// TestProductionPodServes runs the production values' container as a
// kubelet would, short of the container runtime: the rendered args and
// environment, each Secret and ConfigMap volume written as files with the
// modes the pod spec gives, emptyDirs for what the spec makes writable,
// against a real three-node NATS cluster in operator mode. The pod must
// become ready on its readiness probe, answer its liveness probe and the
// metrics port, let the admin log in with the password from the Secret,
// create its streams with --nats-replicas, and stop within the grace
// period on SIGTERM. Only the addresses move: the ports to free ones, the
// mount paths under a temporary root.
func TestProductionPodServes(t *testing.T) {
	bin, err := observatory()
	if err != nil {
		t.Fatal(err)
	}
	cluster := natscluster.Start(t, 3)
	creds := cluster.Creds("observatory-serve")

	urls, err := json.Marshal(strings.Split(cluster.URLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	out, err := runHelm(t, "template", "obs", chartDir, "--namespace", "observatory",
		"-f", filepath.Join(chartDir, "values-production.yaml"),
		"--set-json", "nats.url="+string(urls), "--set-file", "pricing="+pricingFile())
	if err != nil {
		t.Fatal(err)
	}
	r, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.deployments) != 1 {
		t.Fatalf("rendered %d Deployments, want 1", len(r.deployments))
	}
	d := r.deployments[0]
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]

	// The Secrets an operator makes before installing with the production
	// values (README.md, "Secrets"), as the kubelet would read them.
	adminPW := "a-production-password-for-the-pod-test"
	secrets := map[string]map[string][]byte{
		"observatory-admin":        {"admin-password": []byte(adminPW)},
		"observatory-signing-keys": {"keys.json": []byte(signingRing)},
		"observatory-nats":         {"serve.creds": creds, "account-signing.nk": cluster.SigningSeed()},
	}
	configMaps := map[string]map[string]string{}
	for _, cm := range r.configMaps {
		configMaps[cm.Name] = cm.Data
	}

	root := t.TempDir()
	mounts := c.VolumeMounts
	slices.SortFunc(mounts, func(a, b corev1.VolumeMount) int { return len(b.MountPath) - len(a.MountPath) })
	remap := func(p string) string {
		for _, m := range mounts {
			if p == m.MountPath || strings.HasPrefix(p, m.MountPath+"/") {
				return filepath.Join(root, p)
			}
		}
		return p
	}
	for _, m := range c.VolumeMounts {
		materialize(t, pod, m, filepath.Join(root, m.MountPath), secrets, configMaps)
	}

	// Ports: each container port to a free one, in the flags that listen.
	free := natscluster.FreePorts(t, len(c.Ports))
	ports := map[int32]int{}
	for i, p := range c.Ports {
		ports[p.ContainerPort] = free[i]
	}
	var args []string
	for _, a := range c.Args {
		name, val, ok := strings.Cut(a, "=")
		switch {
		case ok && (name == "--addr" || name == "--metrics-addr"):
			port, err := strconv.Atoi(strings.TrimPrefix(val, ":"))
			if err != nil || ports[int32(port)] == 0 {
				t.Fatalf("%s: not a container port (%v)", a, err)
			}
			a = fmt.Sprintf("%s=:%d", name, ports[int32(port)])
		case ok && strings.HasPrefix(val, "/"):
			a = name + "=" + remap(val)
		}
		args = append(args, a)
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secrets[ref.Name][ref.Key]
			if !ok {
				t.Fatalf("env %s: Secret %s has no key %s: the pod would not start", e.Name, ref.Name, ref.Key)
			}
			env = append(env, e.Name+"="+string(v))
		case e.ValueFrom != nil:
			t.Fatalf("env %s: a valueFrom this test does not resolve", e.Name)
		default:
			env = append(env, e.Name+"="+e.Value)
		}
	}

	logs, err := os.Create(filepath.Join(root, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logs, logs
	cmd.Dir = remap("/var/lib/observatory") // the image's WORKDIR
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	fail := func(format string, a ...any) {
		t.Helper()
		b, _ := os.ReadFile(logs.Name())
		t.Fatalf(format+"\nserve %s\nits output:\n%s", append(a, strings.Join(args, " "), b)...)
	}

	base := func(p intstr.IntOrString) string {
		return fmt.Sprintf("http://127.0.0.1:%d", ports[containerPort(c, p)])
	}
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(url, token string) (int, []byte, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return 0, nil, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	// Ready: the readiness probe answers 200 (generous hang bound: serve
	// creates its replicated streams on a cluster sharing two cores).
	ready := c.ReadinessProbe.HTTPGet
	deadline := time.Now().Add(2 * time.Minute)
	for {
		status, _, err := get(base(ready.Port)+ready.Path, "")
		if err == nil && status == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			fail("serve exited before it was ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			fail("readiness probe %s never answered 200 (last: %d, %v)", ready.Path, status, err)
		}
	}
	live := c.LivenessProbe.HTTPGet
	if status, body, err := get(base(live.Port)+live.Path, ""); err != nil || status != http.StatusOK {
		fail("liveness probe %s: %d %v %s", live.Path, status, err, body)
	}
	ann := d.Spec.Template.Annotations
	metricsPort, _ := strconv.Atoi(ann["prometheus.io/port"])
	if status, body, err := get(fmt.Sprintf("http://127.0.0.1:%d%s", ports[int32(metricsPort)], ann["prometheus.io/path"]), ""); err != nil ||
		status != http.StatusOK || !bytes.Contains(body, []byte("# TYPE")) {
		fail("the scrape annotations' target: %d %v %.200s", status, err, body)
	}

	// The admin logs in with the password from the Secret, and the token,
	// signed with the mounted keys, reads the fleet.
	httpBase := base(intstr.FromString("http"))
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": adminPW})
	resp, err := client.Post(httpBase+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		fail("login: %v", err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || tok.Token == "" {
		fail("login with the Secret's password: %d %v", resp.StatusCode, err)
	}
	if status, body, err := get(httpBase+"/api/v1/fleet", tok.Token); err != nil || status != http.StatusOK {
		fail("GET /api/v1/fleet with the admin's token: %d %v %.200s", status, err, body)
	}

	// The streams have the replicas the production values ask for.
	js, err := jetstream.New(cluster.Connect("pod-test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := js.Stream(ctx, "FLEET")
	if err != nil {
		fail("FLEET stream: %v", err)
	}
	if got, want := strconv.Itoa(info.CachedInfo().Config.Replicas), "3"; got != want || !slices.Contains(args, "--nats-replicas="+want) {
		t.Errorf("FLEET has %s replicas, want %s (--nats-replicas in %q)", got, want, args)
	}

	// SIGTERM, as the kubelet stops a pod: serve exits 0 within the grace
	// period the pod spec gives it.
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			fail("serve exited with %v on SIGTERM, want 0", err)
		}
	case <-time.After(grace):
		fail("serve still running %v after SIGTERM: the kubelet would SIGKILL it", grace)
	}
}

// materialize makes the volume mounted by m at dir as the kubelet would:
// an emptyDir as an empty directory, a Secret or ConfigMap as its items'
// files with the modes the spec gives.
func materialize(t *testing.T, pod corev1.PodSpec, m corev1.VolumeMount, dir string, secrets map[string]map[string][]byte, configMaps map[string]map[string]string) {
	t.Helper()
	var v *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == m.Name {
			v = &pod.Volumes[i]
		}
	}
	if v == nil {
		t.Fatalf("mount %s names volume %s, which the pod does not have", m.MountPath, m.Name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var data map[string][]byte
	var items []corev1.KeyToPath
	mode := int32(0o644)
	switch {
	case v.EmptyDir != nil:
		return
	case v.Secret != nil:
		var ok bool
		if data, ok = secrets[v.Secret.SecretName]; !ok {
			t.Fatalf("volume %s: no Secret %s: the pod would not start", v.Name, v.Secret.SecretName)
		}
		items = v.Secret.Items
		if v.Secret.DefaultMode != nil {
			mode = *v.Secret.DefaultMode
		}
	case v.ConfigMap != nil:
		cm, ok := configMaps[v.ConfigMap.Name]
		if !ok {
			t.Fatalf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
		}
		data = map[string][]byte{}
		for k, s := range cm {
			data[k] = []byte(s)
		}
		items = v.ConfigMap.Items
		if v.ConfigMap.DefaultMode != nil {
			mode = *v.ConfigMap.DefaultMode
		}
	default:
		t.Fatalf("volume %s: a kind this test does not make", v.Name)
	}
	if len(items) == 0 {
		for k := range data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			t.Fatalf("volume %s: no key %s: the pod would not start", v.Name, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		f := filepath.Join(dir, it.Path)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		// WriteFile's mode passes through the umask; the kubelet's does not.
		if err := os.Chmod(f, os.FileMode(m)); err != nil {
			t.Fatal(err)
		}
	}
}
