// openllmetry.mjs: a tiny agent on the openai client, instrumented by
// OpenLLMetry's Node SDK (@traceloop/node-server-sdk), which exports its
// spans itself over OTLP/HTTP protobuf. The agent and its tool are traced
// with the SDK's withAgent and withTool: an agent span holding two chat
// spans and a tool span.
//
// Environment (the SDK's own variables):
//   OPENAI_BASE_URL         the OpenAI-compatible server (the test's fake)
//   TRACELOOP_BASE_URL      the OTLP base URL: the SDK appends /v1/traces
//   TRACELOOP_HEADERS       e.g. Authorization=Bearer <token> (comma-separated
//                           key=value pairs, not URL-decoded)
//   AGENT_NAME              the agent (withAgent's name)
//   OTEL_SERVICE_NAME       service.name (the SDK's appName; default nodetest-openllmetry)
//   SAGEWAI_PROJECT_ID      sagewai.project_id on the resource, when set
//   STREAM=1                stream both completions (with usage)
//   MODEL                   the model (default gpt-5-mini)
import * as traceloop from '@traceloop/node-server-sdk';
import OpenAI from 'openai';

const env = process.env;
// The SDK builds its resource from appName alone, and its NodeSDK merges
// in OTEL_RESOURCE_ATTRIBUTES: put the project there.
if (env.SAGEWAI_PROJECT_ID) {
  const more = env.OTEL_RESOURCE_ATTRIBUTES ? `,${env.OTEL_RESOURCE_ATTRIBUTES}` : '';
  process.env.OTEL_RESOURCE_ATTRIBUTES = `sagewai.project_id=${env.SAGEWAI_PROJECT_ID}${more}`;
}

// OpenTelemetry instrumentations patch CommonJS require; an ES module
// imports openai past that hook, so hand the SDK the imported module, as
// OpenLLMetry documents for ESM.
traceloop.initialize({
  appName: env.OTEL_SERVICE_NAME || 'nodetest-openllmetry',
  instrumentModules: { openAI: OpenAI },
  silenceInitializationMessage: true,
});

const agentName = env.AGENT_NAME || 'openllmetry-agent';
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

try {
  const answer = await traceloop.withAgent({ name: agentName }, async () => {
    const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const first = await complete({ model, messages, tools });
    const call = first.tool_calls?.[0];
    if (!call) throw new Error('the model asked for no tool');
    const { city } = JSON.parse(call.function.arguments);
    const result = await traceloop.withTool({ name: call.function.name }, async () => JSON.stringify({ city, sky: 'sunny' }));
    messages.push(first);
    messages.push({ role: 'tool', tool_call_id: call.id, content: result });
    const second = await complete({ model, messages, tools });
    return second.content;
  });
  console.log(`answer: ${answer}`);
} finally {
  // Flush every span before the process ends: a short-lived agent that
  // exits first loses them. The SDK exports no shutdown; its flush
  // waits for the export.
  await traceloop.forceFlush();
}
