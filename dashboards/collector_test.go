package dashboards_test

import (
	"encoding/json"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/vmstack"
)

// Paths from this package's directory.
const (
	collectorManifest = "otel-collector/builder.yaml"
	cfoBoard          = "grafana/dashboards/cfo.json"
)

// collectorRelease is the one OpenTelemetry Collector release the
// manifest pins (core and contrib), and collectorStable the version of
// core's stable modules (the config providers) of that release.
const (
	collectorRelease = "v0.161.0"
	collectorStable  = "v1.67.0"
)

// jaegerImageTag is the Jaeger v2 release of the Go module version the
// pipeline test builds (vmstack.JaegerVersion): the module keeps v1 tags
// for the v2 binary, v1.75.0 being Jaeger 2.12.0.
var jaegerImageTag = map[string]string{"v1.75.0": "2.12.0"}

// componentTypes maps each component module the manifest may list to the
// component type config.yaml names it by.
var componentTypes = map[string]string{
	"go.opentelemetry.io/collector/receiver/otlpreceiver":                                      "otlp",
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor":                           "memory_limiter",
	"go.opentelemetry.io/collector/processor/batchprocessor":                                   "batch",
	"go.opentelemetry.io/collector/exporter/otlpexporter":                                      "otlp_grpc",
	"go.opentelemetry.io/collector/exporter/otlphttpexporter":                                  "otlp_http",
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/filterprocessor":      "filter",
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension": "health_check",
}

type builderModule struct {
	GoMod string `yaml:"gomod"`
}

// TestCollectorManifest checks the builder manifest against config.yaml:
// it lists exactly the components the config uses, of each kind, every one
// at the one release; the providers are the two the config needs (file,
// env); and the compose file runs the contrib image of that release.
func TestCollectorManifest(t *testing.T) {
	var m struct {
		Dist struct {
			Module     string `yaml:"module"`
			Name       string `yaml:"name"`
			OutputPath string `yaml:"output_path"`
		} `yaml:"dist"`
		Receivers  []builderModule `yaml:"receivers"`
		Processors []builderModule `yaml:"processors"`
		Exporters  []builderModule `yaml:"exporters"`
		Extensions []builderModule `yaml:"extensions"`
		Connectors []builderModule `yaml:"connectors"`
		Providers  []builderModule `yaml:"providers"`
	}
	readYAML(t, collectorManifest, &m)
	var cfg struct {
		Receivers  map[string]any `yaml:"receivers"`
		Processors map[string]any `yaml:"processors"`
		Exporters  map[string]any `yaml:"exporters"`
		Extensions map[string]any `yaml:"extensions"`
		Connectors map[string]any `yaml:"connectors"`
	}
	readYAML(t, collectorConfig, &cfg)
	if m.Dist.Name != "otelcol-observatory" || m.Dist.Module == "" || strings.HasPrefix(m.Dist.OutputPath, "/") {
		t.Errorf("dist %+v: want name otelcol-observatory (the binary vmstack runs), a module, a relative output path", m.Dist)
	}

	// The component types of each kind, in the manifest and in the config.
	for _, kind := range []struct {
		name   string
		mods   []builderModule
		config map[string]any
	}{
		{"receivers", m.Receivers, cfg.Receivers},
		{"processors", m.Processors, cfg.Processors},
		{"exporters", m.Exporters, cfg.Exporters},
		{"extensions", m.Extensions, cfg.Extensions},
		{"connectors", m.Connectors, cfg.Connectors},
	} {
		var built []string
		for _, mod := range kind.mods {
			path, version := splitGoMod(t, mod.GoMod)
			if version != collectorRelease {
				t.Errorf("%s: %s at %s, want every component at %s", kind.name, path, version, collectorRelease)
			}
			typ, ok := componentTypes[path]
			if !ok {
				t.Errorf("%s: %s is not in this test's table of component types: add it", kind.name, path)
				continue
			}
			built = append(built, typ)
		}
		var used []string
		for id := range kind.config {
			typ, _, _ := strings.Cut(id, "/")
			if !slices.Contains(used, typ) {
				used = append(used, typ)
			}
		}
		sort.Strings(built)
		sort.Strings(used)
		if diff := cmp.Diff(used, built); diff != "" {
			t.Errorf("%s: the manifest builds other component types than config.yaml uses (-config +manifest):\n%s", kind.name, diff)
		}
	}
	var providers []string
	for _, p := range m.Providers {
		path, version := splitGoMod(t, p.GoMod)
		if version != collectorStable {
			t.Errorf("provider %s at %s, want %s (the stable modules of %s)", path, version, collectorStable, collectorRelease)
		}
		providers = append(providers, path)
	}
	wantProviders := []string{"go.opentelemetry.io/collector/confmap/provider/envprovider", "go.opentelemetry.io/collector/confmap/provider/fileprovider"}
	if !slices.Equal(providers, wantProviders) {
		t.Errorf("providers %v, want %v: the config file, and its ${env:...} endpoints", providers, wantProviders)
	}

	// The compose stack runs the same release, as the contrib image (which
	// has every component above).
	image := composeProject(t).Services["otel-collector"].Image
	if want := "otel/opentelemetry-collector-contrib:" + strings.TrimPrefix(collectorRelease, "v"); image != want {
		t.Errorf("otel-collector runs %s, want %s: the release the manifest builds", image, want)
	}
}

func splitGoMod(t *testing.T, gomod string) (path, version string) {
	t.Helper()
	f := strings.Fields(gomod)
	if len(f) != 2 {
		t.Fatalf("gomod %q: want a module path and a version", gomod)
	}
	return f[0], f[1]
}

// TestTraceStore checks that the trace path points at one store, of the
// release the pipeline test runs: the compose file's Jaeger image is the
// release of the module vmstack builds, the Collector's traces exporter
// sends there, Grafana's provisioned Jaeger datasource reads its query API,
// and the CFO board's trace link opens that datasource on observatory's
// mission spans.
func TestTraceStore(t *testing.T) {
	p := composeProject(t)
	jaeger, ok := p.Services["jaeger"]
	if !ok {
		t.Fatal("no jaeger service")
	}
	tag, ok := jaegerImageTag[vmstack.JaegerVersion]
	if !ok {
		t.Fatalf("vmstack builds Jaeger from %s %s: add its release to jaegerImageTag", vmstack.JaegerModule, vmstack.JaegerVersion)
	}
	if want := "jaegertracing/jaeger:" + tag; jaeger.Image != want {
		t.Errorf("jaeger runs %s, want %s: the release of %s %s, which the pipeline test runs", jaeger.Image, want, vmstack.JaegerModule, vmstack.JaegerVersion)
	}

	var ds *provisionedDatasource
	for _, d := range provisionedDatasources(t) {
		if d.Type == "jaeger" {
			if ds != nil {
				t.Errorf("two Jaeger datasources: %s and %s", ds.UID, d.UID)
			}
			ds = &d
		}
	}
	if ds == nil {
		t.Fatal("no provisioned Jaeger datasource")
	}
	// Jaeger's query service listens on 16686 in its container (the port
	// the compose file publishes), the OTLP/gRPC receiver on 4317.
	if !publishes(jaeger, 16686) || ds.URL != "http://jaeger:16686" {
		t.Errorf("the Jaeger datasource reads %s; the jaeger service publishes %+v: want http://jaeger:16686, its query port", ds.URL, jaeger.Ports)
	}
	if got := env(p.Services["otel-collector"], "TRACES_OTLP_ENDPOINT"); got != "jaeger:4317" {
		t.Errorf("the Collector sends traces to %q, want the same Jaeger's OTLP/gRPC receiver jaeger:4317", got)
	}

	// The CFO board's trace link: Explore on that datasource, searching
	// observatory's mission spans.
	var board struct {
		Links []struct {
			Title string `json:"title"`
			Type  string `json:"type"`
			URL   string `json:"url"`
		} `json:"links"`
	}
	readJSON(t, cfoBoard, &board)
	service := env(p.Services["observatory"], "OTEL_SERVICE_NAME")
	found := 0
	for _, l := range board.Links {
		if l.Type != "link" || !strings.Contains(strings.ToLower(l.Title), "trace") {
			continue
		}
		found++
		u, err := url.Parse(l.URL)
		if err != nil || u.Path != "/explore" {
			t.Errorf("trace link %q: %q is not a Grafana Explore URL (%v)", l.Title, l.URL, err)
			continue
		}
		var panes map[string]struct {
			Datasource string `json:"datasource"`
			Queries    []struct {
				Datasource dsJSON `json:"datasource"`
				QueryType  string `json:"queryType"`
				Service    string `json:"service"`
				Operation  string `json:"operation"`
			} `json:"queries"`
		}
		if err := json.Unmarshal([]byte(u.Query().Get("panes")), &panes); err != nil || len(panes) != 1 {
			t.Errorf("trace link %q: panes %q: %v", l.Title, u.Query().Get("panes"), err)
			continue
		}
		for _, pane := range panes {
			if pane.Datasource != ds.UID || len(pane.Queries) != 1 {
				t.Errorf("trace link %q opens datasource %q with %d queries, want the provisioned Jaeger datasource %q with one", l.Title, pane.Datasource, len(pane.Queries), ds.UID)
				continue
			}
			q := pane.Queries[0]
			if q.Datasource != (dsJSON{Type: "jaeger", UID: ds.UID}) || q.QueryType != "search" || q.Service != service || q.Operation != "mission" {
				t.Errorf("trace link %q: query %+v, want a search of service %q (observatory's OTEL_SERVICE_NAME), operation mission, on datasource %s", l.Title, q, service, ds.UID)
			}
		}
	}
	if found != 1 {
		t.Errorf("the CFO board has %d trace links, want one", found)
	}
}

// publishes says whether s publishes its container port target.
func publishes(s types.ServiceConfig, target uint32) bool {
	for _, p := range s.Ports {
		if p.Target == target {
			return true
		}
	}
	return false
}

// envRef matches ${env:NAME} and ${env:NAME:-default} in a Collector
// configuration.
var envRef = regexp.MustCompile(`\$\{env:(\w+)(?::-([^}]*))?\}`)

// expandEnv expands the Collector configuration value v as the Collector
// does with the environment the compose file gives service s.
func expandEnv(t *testing.T, v string, s types.ServiceConfig) string {
	t.Helper()
	return envRef.ReplaceAllStringFunc(v, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if got := env(s, m[1]); got != "" {
			return got
		}
		return m[2]
	})
}

// readJSON decodes a file of this directory into v.
func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
