package telemetry_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/sagewai/observatory/telemetry"
)

// FuzzSetupEnv feeds arbitrary OTEL_* values to Setup: it must either
// refuse them with an error or build a telemetry that shuts down cleanly,
// and never send anything anywhere but the endpoint it reports.
func FuzzSetupEnv(f *testing.F) {
	f.Add("http://c:4318", "a=b,c=d%20e", "service.name=x", "otlp", "1000")
	f.Add("", "", "", "", "")
	f.Add("https://c.example/otlp/", "k=%zz", "a", "none", "-5")
	f.Add("ftp://x", "=v", "k==v", "zipkin", "abc")
	f.Fuzz(func(t *testing.T, endpoint, headers, resource, exporter, queue string) {
		env := map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
			"OTEL_EXPORTER_OTLP_HEADERS":  headers,
			"OTEL_RESOURCE_ATTRIBUTES":    resource,
			"OTEL_TRACES_EXPORTER":        exporter,
			"OTEL_BSP_MAX_QUEUE_SIZE":     queue,
		}
		tel, err := telemetry.Setup(context.Background(), envOf(env), telemetry.Options{LogOutput: io.Discard})
		if err != nil {
			return
		}
		defer tel.Shutdown(context.Background())
		for _, u := range []string{tel.TracesURL(), tel.LogsURL()} {
			if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				t.Errorf("exports to %q", u)
			}
		}
	})
}

// FuzzLoadCheckpoint: the telemetry part of a hub checkpoint is read from
// disk; whatever it holds, loading it never panics, and a part that loads
// is saved back to a part that loads to the same figures.
func FuzzLoadCheckpoint(f *testing.F) {
	f.Add([]byte(`{"tallies":{"sagewai.fleet.events":[{"attrs":{"sagewai.project_id":"acme","type":"llm.call"},"n":3}]},"cost":[{"keys":["acme","gpt-5"],"usd":0.25}],"cost_by_agent":[{"keys":["acme","a1","t1"],"usd":0.25}]}`))
	f.Add([]byte(`{"cost":[{"keys":["only-one"],"usd":1}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tel, err := telemetry.Setup(context.Background(), envOf(nil), telemetry.Options{LogOutput: &syncBuffer{}})
		if err != nil {
			t.Fatal(err)
		}
		defer tel.Shutdown(context.Background())
		if tel.LoadCheckpoint(b) != nil {
			return
		}
		saved, err := tel.SaveCheckpoint()
		if err != nil {
			t.Fatal(err)
		}
		if err := tel.LoadCheckpoint(saved); err != nil {
			t.Fatalf("a saved part does not load: %v", err)
		}
		again, err := tel.SaveCheckpoint()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(saved) {
			t.Fatalf("saved, loaded and saved again differ:\n%s\n%s", saved, again)
		}
	})
}
