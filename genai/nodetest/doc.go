// Package nodetest drives real GenAI instrumentation libraries from npm
// for tests: three tiny agents in node/ (the Vercel AI SDK with its
// OpenTelemetry integration, the openai client with OpenInference's
// instrumentation, and the openai client with OpenLLMetry's Node SDK),
// each asking a model, running the tool it asks for and asking again, and
// exporting its spans over OTLP/HTTP. It owns:
//
//   - FakeOpenAI, an OpenAI-compatible chat completions server (plain and
//     streamed) that asks for one tool call, then answers, with usage
//     counts chosen per request (DefaultUsages: cache reads and reasoning
//     on the first), and records what it returned so that a test can
//     price it (Expected) the way the library reports it (Reported);
//   - Collector, an OTLP/HTTP trace receiver that keeps each export whole
//     for genai.Map;
//   - Run and Env, which run a script with node against the installed
//     node project, configured for a Target.
//
// It is a test helper: nothing in the product imports it. It imports
// fleet, the OTLP protobuf types and the standard library.
//
// # The node project
//
// node/package.json pins every direct dependency exactly and
// node/package-lock.json pins the rest; both are committed, node_modules
// never is. node/install.sh (called by make deps) installs the project
// with npm ci into .cache/node (OBSERVATORY_NODE_DIR), with npm's cache in
// .cache/npm, and leaves a copy of the lock it installed as
// installed.lock: a warm run compares the two and does nothing. Run
// fails the test, never skips it, when node is missing, the project is
// not installed, or was installed from another lock, and says how to
// install it. It runs a copy of the committed script beside a link to the
// installed node_modules, with an environment of its own (PATH, HOME,
// TMPDIR and Env's variables), so that the OTEL_* variables of the test's
// own process never reach the agent.
//
// # What the libraries report
//
// Each library names the same usage its own way (genai/doc.go has the
// mapper's table), and some lose part of it: OpenLLMetry 0.27 reports no
// cached tokens for OpenAI, and OpenInference 4.2.7 no usage at all for a
// streamed completion. Reported says what each reports, so that tests
// expect what a span can carry and no more.
//
// # Concurrency
//
// FakeOpenAI and Collector serve each request on its own goroutine (they
// are httptest servers, stopped when the test ends); a mutex guards what
// each recorded, and Calls and Exports return copies.
package nodetest
