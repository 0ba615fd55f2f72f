// vercel.mjs: a tiny agent on the Vercel AI SDK (ai + @ai-sdk/openai), with
// the SDK's OpenTelemetry integration (@ai-sdk/otel) on and its spans
// exported over OTLP/HTTP protobuf. The agent asks the model, runs the tool
// the model asks for, and asks again with the result: an invoke_agent span
// holding two chat spans and an execute_tool span.
//
// Environment:
//   OPENAI_BASE_URL                        the OpenAI-compatible server (the test's fake)
//   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT     where the spans go (…/v1/traces)
//   OTEL_EXPORTER_OTLP_TRACES_HEADERS      e.g. Authorization=Bearer%20<token>
//   AGENT_NAME                             the agent (telemetry functionId)
//   OTEL_SERVICE_NAME                      service.name (default nodetest-vercel)
//   SAGEWAI_PROJECT_ID                     sagewai.project_id on the resource, when set
//   MODEL                                  the model (default gpt-5-mini)
//   AI_SDK_TELEMETRY=legacy                the legacy ai.* spans (LegacyOpenTelemetry) instead
//   STREAM=1                               streamText instead of generateText
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { createOpenAI } from '@ai-sdk/openai';
import { LegacyOpenTelemetry, OpenTelemetry } from '@ai-sdk/otel';
import { generateText, registerTelemetry, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';

const env = process.env;
const resource = { 'service.name': env.OTEL_SERVICE_NAME || 'nodetest-vercel' };
if (env.SAGEWAI_PROJECT_ID) resource['sagewai.project_id'] = env.SAGEWAI_PROJECT_ID;

// The exporter reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and _HEADERS itself.
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes(resource),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
});
provider.register();
registerTelemetry(env.AI_SDK_TELEMETRY === 'legacy' ? new LegacyOpenTelemetry() : new OpenTelemetry({ agentSpanName: 'functionId' }));

const openai = createOpenAI({ baseURL: env.OPENAI_BASE_URL, apiKey: 'sk-nodetest' });

const request = {
  model: openai.chat(env.MODEL || 'gpt-5-mini'),
  prompt: 'What is the weather in Paris?',
  tools: {
    get_weather: tool({
      description: 'The current weather in a city.',
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => ({ city, sky: 'sunny' }),
    }),
  },
  stopWhen: stepCountIs(3),
  telemetry: { isEnabled: true, functionId: env.AGENT_NAME || 'vercel-agent' },
};

try {
  if (env.STREAM === '1') {
    // streamText reports a failed stream to onError and carries on:
    // make it fail the process, as generateText's throw does.
    const result = streamText({ ...request, onError: ({ error }) => { console.error(error); process.exitCode = 1; } });
    console.log(`answer (streamed): ${await result.text} (${(await result.steps).length} steps, ${(await result.totalUsage).totalTokens} tokens)`);
  } else {
    const result = await generateText(request);
    console.log(`answer: ${result.text} (${result.steps.length} steps, ${result.totalUsage.totalTokens} tokens)`);
  }
} finally {
  // Flush every span before the process ends: a short-lived agent that
  // exits first loses them.
  await provider.shutdown();
}
