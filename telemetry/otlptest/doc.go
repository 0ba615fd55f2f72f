// Package otlptest is an in-process OTLP/HTTP receiver for tests: it
// decodes the protobuf export requests of traces and logs that
// Observatory's telemetry sends and keeps what they carry, flattened, so a
// test can count and inspect every span and log record received. It can
// also refuse exports on purpose. It is a test helper: nothing in the
// product imports it.
package otlptest
