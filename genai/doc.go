// Package genai maps OpenTelemetry GenAI spans onto fleet events
// (DESIGN §11.4): Map takes the resource spans of one OTLP trace export and
// the project they belong to, and returns the llm.call, tool.call,
// agent.run.* and agent.created events that describe them, the spans it
// refused with a reason each, and how many spans were not GenAI operations
// at all. It owns the per-convention tables below and nothing else: no
// transport, no pricing (the fold prices every call from its own table),
// no state across calls.
//
// genai imports fleet, the OTLP protobuf types and the standard library.
//
// # Recognising a span
//
// The first convention that recognises a span decides what it is:
//
//	convention     recognised by                         llm.call                               tool.call              agent.run.*     agent.created
//	Vercel AI SDK  ai.operationId                        ai.generateText.doGenerate,            ai.toolCall            -               -
//	                                                     ai.streamText.doStream,
//	                                                     ai.generateObject.doGenerate,
//	                                                     ai.streamObject.doStream,
//	                                                     ai.embed.doEmbed, ai.embedMany.doEmbed
//	OTel GenAI     gen_ai.operation.name                 chat, text_completion,                 execute_tool           invoke_agent    create_agent
//	                                                     generate_content, embeddings
//	OpenInference  openinference.span.kind               LLM, EMBEDDING                         TOOL                   AGENT           -
//	OpenLLMetry    llm.request.type, traceloop.span.kind chat, completion, embedding            tool                   agent           -
//	(fallback)     gen_ai.request/response.model and     such a span, unless it names an agent
//	               a gen_ai.usage input/output count     (an agent's span that sums its calls)
//
// The AI SDK's outer spans (ai.generateText, ai.streamText, …) sum their
// inner doGenerate/doStream calls and are skipped, so a call is never
// billed twice. Other spans (OpenInference CHAIN and RETRIEVER, OpenLLMetry
// workflow and task, HTTP and database spans) are skipped and counted in
// Result.Skipped, never refused. An agent invocation becomes
// agent.run.started at its start and agent.run.completed, or
// agent.run.failed when its status is ERROR, at its end, with the span's
// duration; the run id is its trace id and span id.
//
// # Attributes read
//
// The first attribute present in each row is used. The model of an LLM
// span prices it, so the response model comes before the request model.
//
//	field          attributes, in order
//	model          gen_ai.response.model, gen_ai.request.model, llm.model_name, ai.response.model, ai.model.id
//	provider       gen_ai.provider.name (semconv ≥ 1.37), gen_ai.system (≤ 1.36), llm.provider, llm.system, ai.model.provider
//	               (the AI SDK's "openai.chat" becomes "openai"); lower-cased
//	input          gen_ai.usage.input_tokens, gen_ai.usage.prompt_tokens, llm.token_count.prompt, ai.usage.inputTokens,
//	               ai.usage.promptTokens; else a total (below) less the output
//	output         gen_ai.usage.output_tokens, gen_ai.usage.completion_tokens, llm.token_count.completion,
//	               ai.usage.outputTokens, ai.usage.completionTokens
//	cache read     gen_ai.usage.cache_read.input_tokens, gen_ai.usage.cache_read_input_tokens,
//	               llm.token_count.prompt_details.cache_read, ai.usage.inputTokenDetails.cacheReadTokens,
//	               ai.usage.cachedInputTokens
//	cache write    gen_ai.usage.cache_creation.input_tokens, gen_ai.usage.cache_creation_input_tokens,
//	               llm.token_count.prompt_details.cache_write, ai.usage.inputTokenDetails.cacheWriteTokens
//	reasoning      gen_ai.usage.reasoning.output_tokens, gen_ai.usage.reasoning_tokens,
//	               llm.token_count.completion_details.reasoning, ai.usage.reasoningTokens,
//	               ai.usage.outputTokenDetails.reasoningTokens
//	total          gen_ai.usage.total_tokens, llm.usage.total_tokens, llm.token_count.total, ai.usage.totalTokens,
//	               ai.usage.tokens (embeddings)
//	tool           gen_ai.tool.name, tool.name, ai.toolCall.name, traceloop.entity.name, else the span name
//	agent          gen_ai.agent.id, else gen_ai.agent.name / agent.name (OpenInference) / traceloop.entity.name on
//	               an OpenLLMetry agent span / ai.telemetry.functionId on an AI SDK span (the SDK's current
//	               integration makes the functionId gen_ai.agent.name), else the nearest ancestor span in the
//	               same resource and export that names one, else the resource's service.name
//	run            the nearest ancestor agent invocation in the same resource and export
//	team, user     sagewai.team_id, sagewai.user_id on the span, else on the resource
//
// A count is an OTLP integer, an integral double (JavaScript exporters send
// numbers so) or a decimal string. Cost attributes (gen_ai.usage.cost,
// gen_ai.cost.*, …) are never read.
//
// # Normalising tokens
//
// fleet.LLMCall counts input without cache reads and cache writes
// (Anthropic style) and output with reasoning. The conventions count
// otherwise, so each call is normalised:
//
//	convention     input reported                          input_tokens emitted
//	OTel GenAI     all input, cached included (the spec)   input − cache read − cache write
//	OpenLLMetry    all input, cached included              input − cache read − cache write
//	               (its Anthropic instrumentation sums them)
//	OpenInference  llm.token_count.prompt includes its     prompt − cache_read − cache_write
//	               prompt_details
//	AI SDK ≥ 6     inputTokenDetails.noCacheTokens         noCacheTokens
//	AI SDK 5       inputTokens: OpenAI's prompt_tokens     input − cache read (it reports no cache write);
//	               (cached included), Anthropic's          for provider anthropic, input as reported
//	               input_tokens (cache apart)
//	any            input below its own cache counts        input as reported: the library evidently
//	                                                       reports it apart, Anthropic style
//
// cache_read_tokens and cache_write_tokens are the counts as reported.
// output_tokens is the output count, which includes reasoning in every
// convention; a reasoning count above the output count shows a library
// that reports reasoning apart, and it is added.
//
// # Refusals
//
// A span is refused, with a Reason, when its trace or span id is malformed
// (bad_ids), an id it puts in the envelope would be invalid (bad_ids), it
// has no sane start and end (bad_time), an LLM span names no model
// (missing_model) or a model longer than 256 bytes (bad_model), a token
// count is negative, not an integer, or above Options.MaxTokens (default
// DefaultMaxTokens, ten million per kind and call: no model reads or
// writes that much in one call) (bad_tokens), or its resource names
// another project in sagewai.project_id (project_mismatch, for every span
// of the resource). A refused span makes no event.
//
// # Ids and re-sent exports
//
// An event's id is "otel-<trace id>-<span id>-<kind>" (kind llm, tool,
// run.started, run.ended or agent), so an exporter's retry maps to the
// same ids and the fold, which dedupes by id within a project, folds it
// once. The first event of each agent in an export is preceded by an
// agent.created with the id AgentEventID(project, agent), the same in
// every export, so the roster announces the agent once. Agents, runs and
// ancestors are resolved within one Map call: a call span exported before
// its agent's invocation span, in another export, is attributed to the
// agent its own attributes or its resource name, and to no run.
//
// # Concurrency
//
// Map holds no state between calls and may be called from any number of
// goroutines at once.
package genai
