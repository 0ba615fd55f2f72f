// openinference.mjs: a tiny agent on the openai client, instrumented by
// OpenInference (@arizeai/openinference-instrumentation-openai), its spans
// exported over OTLP/HTTP protobuf. The agent and its tool are traced with
// OpenInference's own helpers (traceAgent, traceTool from
// @arizeai/openinference-core): an AGENT span holding two LLM spans and a
// TOOL span.
//
// Environment:
//   OPENAI_BASE_URL                        the OpenAI-compatible server (the test's fake)
//   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT     where the spans go (…/v1/traces)
//   OTEL_EXPORTER_OTLP_TRACES_HEADERS      e.g. Authorization=Bearer%20<token>
//   AGENT_NAME                             the agent (OpenInference agent.name)
//   OTEL_SERVICE_NAME                      service.name (default nodetest-openinference)
//   SAGEWAI_PROJECT_ID                     sagewai.project_id on the resource, when set
//   STREAM=1                               stream both completions (with usage)
//   MODEL                                  the model (default gpt-5-mini)
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { traceAgent, traceTool } from '@arizeai/openinference-core';
import { OpenAIInstrumentation } from '@arizeai/openinference-instrumentation-openai';
import OpenAI from 'openai';

const env = process.env;
const resource = { 'service.name': env.OTEL_SERVICE_NAME || 'nodetest-openinference' };
if (env.SAGEWAI_PROJECT_ID) resource['sagewai.project_id'] = env.SAGEWAI_PROJECT_ID;

// The exporter reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and _HEADERS itself.
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes(resource),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
});
provider.register();

// OpenTelemetry instrumentations patch CommonJS require; an ES module
// imports openai past that hook, so patch the imported module by hand, as
// OpenInference documents for ESM.
const instrumentation = new OpenAIInstrumentation();
instrumentation.setTracerProvider(provider);
instrumentation.manuallyInstrument(OpenAI);

const agentName = env.AGENT_NAME || 'openinference-agent';
const model = env.MODEL || 'gpt-5-mini';
const client = new OpenAI({ baseURL: env.OPENAI_BASE_URL, apiKey: 'sk-nodetest' });

// complete asks for one chat completion, streamed when STREAM=1 (the
// usage then comes in the stream's last chunk, as OpenAI sends it when
// asked to), and returns its message either way.
async function complete(params) {
  if (env.STREAM !== '1') return (await client.chat.completions.create(params)).choices[0].message;
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  const message = { role: 'assistant', content: null };
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta ?? {};
    if (delta.content) message.content = (message.content ?? '') + delta.content;
    for (const tc of delta.tool_calls ?? []) {
      message.tool_calls ??= [];
      const call = (message.tool_calls[tc.index] ??= { id: tc.id, type: 'function', function: { name: '', arguments: '' } });
      call.function.name += tc.function?.name ?? '';
      call.function.arguments += tc.function?.arguments ?? '';
    }
  }
  return message;
}

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The current weather in a city.',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];

const getWeather = traceTool(async ({ city }) => JSON.stringify({ city, sky: 'sunny' }), {
  name: 'get_weather',
  attributes: { 'tool.name': 'get_weather' },
});

const agent = traceAgent(async (question) => {
  const messages = [{ role: 'user', content: question }];
  const first = await complete({ model, messages, tools });
  const call = first.tool_calls?.[0];
  if (!call) throw new Error('the model asked for no tool');
  messages.push(first);
  messages.push({ role: 'tool', tool_call_id: call.id, content: await getWeather(JSON.parse(call.function.arguments)) });
  const second = await complete({ model, messages, tools });
  return second.content;
}, { name: agentName, attributes: { 'agent.name': agentName } });

try {
  console.log(`answer: ${await agent('What is the weather in Paris?')}`);
} finally {
  // Flush every span before the process ends: a short-lived agent that
  // exits first loses them.
  await provider.shutdown();
}
