// Package ingest is Observatory's OTLP trace endpoint (DESIGN §11.4): it
// reads an OTLP/HTTP export (protobuf or JSON, gzip or not, within a size
// bound), turns its GenAI spans into fleet events with package genai, and
// publishes them to FLEET, where they are folded like any worker's events:
// the HUD, the rollups, the domain metrics, the budgets and the alerts see
// them with no special case. It answers with an OTLP
// ExportTraceServiceResponse whose partial_success counts the spans it
// refused.
//
// The HTTP edge (package web) authenticates the caller and audits what it
// must; ingest owns everything between the request body and the
// acknowledgement of FLEET: decoding, choosing each resource's project,
// the refusals and the counters of them.
//
// # Projects
//
// A project token's spans are its project's. A resource that names
// another project in sagewai.project_id is refused whole
// (project_mismatch) and reported in Result.Denied for the edge to audit.
// An admin token writes to the project each resource names; a resource
// that names none, or a project that does not exist, is refused
// (missing_project, unknown_project).
//
// # Retries
//
// Event ids derive from the trace and span ids (genai), and every event is
// published with its dedupe key, so an exporter that sends the same export
// again, because an answer was lost or because ingest answered 503 when
// FLEET could not be written, has it stored and folded once.
//
// # Counters
//
//	sagewai.otlp.spans                 spans by result (accepted, refused, skipped) and reason (refusals only)
//	sagewai.otlp.rejected_requests     whole exports refused, by reason (bad_content_type, bad_encoding,
//	                                   too_large, malformed, unavailable)
//	sagewai.otlp.calls_without_usage   LLM calls folded whose span reports no token count at all
//	                                   (counted, charged nothing: a library that drops usage)
//
// An Ingester is safe for concurrent use.
package ingest
