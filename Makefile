# Observatory's one test command is `make test`; .ci/run calls exactly that.
# It needs Go (the version in go.mod), gcc (for -race) and, once later steps
# add browser and metrics tests, apt for Chromium. Everything else it needs
# it builds or installs itself (see deps).

GO           ?= go
GOFMT        ?= $(shell $(GO) env GOROOT)/bin/gofmt
CACHE        ?= $(CURDIR)/.cache
TEST_TIMEOUT ?= 15m

# -race needs cgo.
export CGO_ENABLED := 1

# Where the tests find VictoriaMetrics, VictoriaLogs and vmalert (see deps).
export OBSERVATORY_VM_BIN := $(CACHE)/bin
# Where tests leave what CI keeps (the chaos test's report).
export OBSERVATORY_ARTIFACT_DIR := $(CACHE)/artifacts
# Where the tests find the installed node project of genai/nodetest (deps).
export OBSERVATORY_NODE_DIR := $(CACHE)/node

.PHONY: test deps heavy-tools heavy-start fmt-check templ-check vet unit clock-check build demo clean pricing

## test: what CI checks, in order: prerequisites, formatting, generated
## code, vet, the tests, and the tests that hold a clock once more with
## that clock years ahead and years back.
test: heavy-start deps fmt-check templ-check vet unit clock-check

## deps: prerequisites of the tests beyond Go itself: gcc (checked), and
##   - Chromium for the browser tests (hud/browser, adminapp, chromiumtest), from apt (about
##     2 min, 480 MB); the tests fail, never skip, without it:
##       command -v chromium || (apt-get update && apt-get install -y chromium)
##   - VictoriaMetrics, VictoriaLogs and vmalert for the end-to-end pipeline
##     test (vmstack), built from the Go module proxy into $(CACHE)/bin
##     (about 4 min cold on 2 cores, then cached). scripts/go-tool.sh
##     reinstalls a binary whose build information names another version
##     than the pin below, so a stale cache never passes for the pin; the
##     test finds them through OBSERVATORY_VM_BIN and fails, never skips,
##     without them.
##   - Debian's nginx for the load-balancer tests (lbtest: nginx in front
##     of serve replicas, run in the foreground with its own configuration
##     in a temporary directory, never as the system's service), from apt;
##     the tests fail, never skip, without it:
##       command -v nginx || (apt-get update && apt-get install -y nginx)
##   - nats-server for the cluster tests (natscluster: three real
##     processes), at the version of the module the server embeds, the
##     same way; found through OBSERVATORY_VM_BIN.
##   - the node project of genai/nodetest: real GenAI instrumentation
##     libraries (the Vercel AI SDK with @ai-sdk/otel, OpenInference's and
##     OpenLLMetry's OpenAI instrumentations, the OpenTelemetry JS SDK),
##     pinned exactly in genai/nodetest/node/package.json and its committed
##     package-lock.json, installed by genai/nodetest/node/install.sh with
##     npm ci --ignore-scripts into $(CACHE)/node, npm's cache in
##     $(CACHE)/npm: about 40 s and 300 MB cold, nothing when the lock it
##     installed equals the committed one. Needs node and npm (Node 20 or
##     later). The ingest tests (genai/nodetest, hud/browser) find it
##     through OBSERVATORY_NODE_DIR and fail, never skip, without it.
##   - the heavy tools, built from their Go modules into $(CACHE)/bin by
##     the heavy-tools target in the background from the start of make
##     test, while everything that does not need them runs (see unit): helm for the Helm chart tests (deploy/helm: helm
##     template and helm lint, the rendered objects decoded into k8s.io/api
##     types), about 4 min cold on 2 idle cores, 120 MB; the OpenTelemetry
##     Collector, built by the collector builder from
##     dashboards/otel-collector/builder.yaml with scripts/build-otelcol.sh
##     (a stamp beside the binary rebuilds it whenever the manifest or the
##     builder changed, so a stale Collector never passes), about 3.5 min;
##     and Jaeger v2 (the cmd/jaeger package of module v1.75.0, Jaeger
##     2.12.0), built by scripts/build-jaeger.sh because go install refuses
##     it (its go.mod has a replace directive), about 7 min. Used by the
##     pipeline test's trace and log path (vmstack TestPipelineCollector);
##     the tests fail, never skip, without them.
VM_VERSION     := v1.151.0
NATS_SERVER_VERSION := v2.15.2
VLOGS_VERSION  := v1.52.1
HELM_VERSION   := v4.3.2
OTELCOL_BUILDER_VERSION := v0.161.0
JAEGER_VERSION := v1.75.0
deps: | $(CACHE)/bin
	@command -v $${CC:-gcc} >/dev/null || { echo "go test -race needs a C compiler: apt-get install -y gcc" >&2; exit 1; }
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || (apt-get update && apt-get install -y nginx)
	@GO=$(GO) scripts/go-tool.sh $(CACHE)/bin victoria-metrics github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@$(VM_VERSION)
	@GO=$(GO) scripts/go-tool.sh $(CACHE)/bin victoria-logs github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$(VLOGS_VERSION)
	@GO=$(GO) scripts/go-tool.sh $(CACHE)/bin vmalert github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert@$(VM_VERSION)
	@GO=$(GO) scripts/go-tool.sh $(CACHE)/bin nats-server github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)
	@command -v npm >/dev/null || { echo "genai/nodetest needs node and npm (Node 20 or later)" >&2; exit 1; }
	@genai/nodetest/node/install.sh $(CACHE)/node $(CACHE)/npm

## heavy-tools: the tools that take minutes to build (see deps); make
## test builds them in the background from its start (heavy-start).
heavy-tools: | $(CACHE)/bin
	@GO=$(GO) scripts/go-tool.sh $(CACHE)/bin helm helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	@GO=$(GO) scripts/go-tool.sh $(CACHE)/bin builder go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_BUILDER_VERSION)
	@GO=$(GO) scripts/build-otelcol.sh $(CACHE)/bin
	@GO=$(GO) scripts/build-jaeger.sh $(CACHE)/bin $(JAEGER_VERSION)

$(CACHE)/bin:
	mkdir -p $@

## fmt-check: fail if any Go file is not gofmt'ed, or cannot be parsed
## (gofmt then prints the error and exits non-zero; hidden directories
## skipped).
fmt-check:
	@out=$$(find . -path './.*' -prune -o -name node_modules -prune -o -name '*.go' -print0 | xargs -0 $(GOFMT) -l) || { echo "gofmt failed (a file it cannot parse?): see above" >&2; exit 1; }; \
	if [ -n "$$out" ]; then echo "gofmt -l lists files to format:" >&2; echo "$$out" >&2; exit 1; fi

## templ-check: fail if `go tool templ generate` changes any generated
## *_templ.go (they are committed; a .templ edited without regenerating is
## caught here). It regenerates in place, as a developer would.
templ-check:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	list() { find . -path './.*' -prune -o -name '*_templ.go' -print | sort; }; \
	list > "$$tmp/before"; \
	for f in $$(cat "$$tmp/before"); do mkdir -p "$$tmp/$$(dirname $$f)"; cp "$$f" "$$tmp/$$f"; done; \
	$(GO) tool templ generate >/dev/null 2>"$$tmp/err" || { cat "$$tmp/err" >&2; exit 1; }; \
	list > "$$tmp/after"; stale=0; \
	for f in $$(cat "$$tmp/after"); do cmp -s "$$f" "$$tmp/$$f" 2>/dev/null || { echo "stale generated file: $$f" >&2; stale=1; }; done; \
	cmp -s "$$tmp/before" "$$tmp/after" || { echo "templ generate created or removed files:" >&2; diff "$$tmp/before" "$$tmp/after" >&2; stale=1; }; \
	if [ $$stale = 1 ]; then echo "run go tool templ generate and commit the result" >&2; exit 1; fi

vet:
	$(GO) vet ./...

## heavy-start: start building the heavy tools in the background (see
## deps and scripts/heavy-tools.sh); make test does it first, so that the
## build overlaps everything up to the second round of unit.
heavy-start: | $(CACHE)/bin
	@MAKE=$(MAKE) scripts/heavy-tools.sh start $(CACHE)

## unit: every test, in two rounds. The first runs every package but
## deploy/helm, and every test but the TestPipelineCollector* ones (they
## run the Collector), while the heavy
## tools build; the second runs those two once the tools are there
## (scripts/heavy-tools.sh wait builds them then if nothing started the
## build). Nothing is left out: what the first round does not run, the
## second does.
HEAVY_PKGS := ./deploy/helm/...
HEAVY_TESTS := ^TestPipelineCollector
unit: | $(CACHE)/bin
	@pkgs=$$($(GO) list ./... | grep -v '/deploy/helm$$'); \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -skip '$(HEAVY_TESTS)' $$pkgs; rc=$$?; \
	MAKE=$(MAKE) scripts/heavy-tools.sh wait $(CACHE) || exit 1; \
	[ $$rc = 0 ] || exit $$rc; \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(HEAVY_PKGS) && \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run '$(HEAVY_TESTS)' ./vmstack/

## clock-check: run the packages whose tests drive an injected clock again
## with every test clock moved (fleettest.ClockEnv): 400 days ahead of
## today and 1,100 days back. A component that reads the wall clock where
## it should read the injected one (the November cookie time bomb) fails
## here on any day, not on the day the fixed test date falls behind.
CLOCK_PKGS := ./fleet/... ./protocol/... ./web/... ./stream/... ./budget/... ./worker/... ./synth/... ./live/...
clock-check:
	OBSERVATORY_TEST_CLOCK=+400d $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(CLOCK_PKGS)
	OBSERVATORY_TEST_CLOCK=-1100d $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(CLOCK_PKGS)

## pricing: refresh fleet/pricing.json, the embedded pricing table, from
## the price list of the npm package @pydantic/genai-prices (MIT), pinned in
## scripts/pricing.sh (0.1.8, tarball SHA-1 checked). It needs npm and Node
## (npm pack is its only network use) and runs tools/pricegen, which
## converts the list to integer micro-dollars per million tokens with
## fleet/pricing_overlay.json (the providers converted, the local models, the
## models that must stay priced) and fails on any data shape, rule or price
## it does not know, leaving the table as it was. The same package gives
## byte-identical output: the snapshot date is the version's publish date
## (PRICING_AS_OF=YYYY-MM-DD takes the prices in effect on another day).
## Not part of test: the table is committed; run it to move the pin, then
## review the diff.
pricing:
	GO=$(GO) scripts/pricing.sh

build:
	$(GO) build -o observatory ./cmd/observatory

demo:
	$(GO) run ./cmd/observatory demo

clean:
	rm -rf $(CACHE) observatory
