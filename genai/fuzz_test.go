package genai_test

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/genai"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// fuzzKeys are the attribute names the fuzzer puts on spans: every name
// the mapper reads, the cost attributes it must ignore, and a stranger.
var fuzzKeys = []string{
	"gen_ai.operation.name", "openinference.span.kind", "llm.request.type", "traceloop.span.kind", "traceloop.entity.name",
	"ai.operationId", "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system", "ai.model.provider",
	"gen_ai.response.model", "gen_ai.request.model", "llm.model_name", "ai.response.model", "ai.model.id",
	"gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt", "ai.usage.inputTokens",
	"ai.usage.promptTokens", "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion",
	"ai.usage.outputTokens", "ai.usage.completionTokens", "gen_ai.usage.cache_read.input_tokens",
	"gen_ai.usage.cache_read_input_tokens", "llm.token_count.prompt_details.cache_read",
	"ai.usage.inputTokenDetails.cacheReadTokens", "ai.usage.cachedInputTokens", "gen_ai.usage.cache_creation.input_tokens",
	"gen_ai.usage.cache_creation_input_tokens", "llm.token_count.prompt_details.cache_write",
	"ai.usage.inputTokenDetails.cacheWriteTokens", "gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
	"llm.token_count.completion_details.reasoning", "ai.usage.reasoningTokens", "ai.usage.outputTokenDetails.reasoningTokens",
	"gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total", "ai.usage.totalTokens", "ai.usage.tokens",
	"ai.usage.inputTokenDetails.noCacheTokens", "gen_ai.agent.id", "gen_ai.agent.name", "agent.name",
	"gen_ai.agent.description", "gen_ai.agent.version", "gen_ai.tool.name", "tool.name", "ai.toolCall.name", "error.type",
	genai.TeamAttr, genai.UserAttr, "gen_ai.usage.cost", "other",
}

// fuzzStrings are values that steer classification, plus hostile ones.
var fuzzStrings = []string{
	"chat", "text_completion", "generate_content", "embeddings", "execute_tool", "invoke_agent", "create_agent",
	"LLM", "EMBEDDING", "TOOL", "AGENT", "CHAIN", "completion", "embedding", "tool", "agent", "workflow",
	"ai.generateText.doGenerate", "ai.streamText.doStream", "ai.embed.doEmbed", "ai.toolCall", "ai.generateText",
	"gpt-5", "claude-sonnet-4-5", "anthropic.messages", "openai.chat", "", " ", "a\nb", "\x00", "\xff\xfe",
	"-1", "12", "1e3", "99999999999999999999",
}

// reader hands out the fuzzer's bytes; past the end it hands out zeros.
type reader struct{ b []byte }

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = r.byte()
	}
	return out
}

func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.bytes(8)) }

func (r *reader) value() *commonpb.AnyValue {
	switch r.byte() % 9 {
	case 0:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: fuzzStrings[int(r.byte())%len(fuzzStrings)]}}
	case 1:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string(r.bytes(int(r.byte() % 200)))}}
	case 2:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(r.u64())}}
	case 3:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(r.byte()) * 1000}}
	case 4:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.Float64frombits(r.u64())}}
	case 5:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: float64(r.byte())}}
	case 6:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: r.byte()%2 == 0}}
	case 7:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}}
	default:
		return nil
	}
}

// fuzzBatch builds an export from the fuzzer's bytes: a few resources of
// a few spans with fuzzed ids, times, parents, statuses and attributes.
func fuzzBatch(data []byte) []*tracepb.ResourceSpans {
	r := &reader{b: data}
	var batch []*tracepb.ResourceSpans
	for range 1 + int(r.byte()%3) {
		res := &resourcepb.Resource{}
		for range int(r.byte() % 4) {
			key := []string{"service.name", genai.ProjectAttr, genai.TeamAttr, genai.UserAttr}[r.byte()%4]
			v := r.value()
			if key == genai.ProjectAttr && r.byte()%4 != 0 {
				// Mostly the right project, or every span is refused.
				v = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "acme"}}
			}
			res.Attributes = append(res.Attributes, &commonpb.KeyValue{Key: key, Value: v})
		}
		ss := &tracepb.ScopeSpans{}
		for range int(r.byte() % 6) {
			s := &tracepb.Span{Name: string(r.bytes(int(r.byte() % 8)))}
			s.TraceId = traceID(r.byte() % 4)
			switch r.byte() % 16 {
			case 0:
				s.TraceId = s.TraceId[:8]
			case 1:
				s.TraceId = make([]byte, 16)
			case 2:
				s.TraceId = append(s.TraceId, 1)
			}
			s.SpanId = spanID(r.byte() % 6)
			if r.byte()%16 == 0 {
				s.SpanId = r.bytes(int(r.byte() % 10))
			}
			if c := r.byte(); c%2 == 0 {
				s.ParentSpanId = spanID(c % 6)
			}
			s.StartTimeUnixNano = uint64(t0.UnixNano()) + uint64(r.byte())*1e6
			s.EndTimeUnixNano = s.StartTimeUnixNano + uint64(r.byte())*1e6
			if r.byte()%8 == 0 {
				s.StartTimeUnixNano, s.EndTimeUnixNano = r.u64(), r.u64()
			}
			if r.byte()%3 == 0 {
				s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: string(r.bytes(int(r.byte() % 20)))}
			}
			for range int(r.byte() % 12) {
				s.Attributes = append(s.Attributes, &commonpb.KeyValue{Key: fuzzKeys[int(r.byte())%len(fuzzKeys)], Value: r.value()})
			}
			ss.Spans = append(ss.Spans, s)
		}
		batch = append(batch, &tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{ss}})
	}
	return batch
}

// FuzzMap maps fuzzed exports and checks that Map never panics, every
// event it makes passes the fold's own validation, every refusal has a
// reason of the closed set, spans are accounted for, and mapping is
// deterministic.
func FuzzMap(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 3, 1, 2, 1, 0, 0, 4, 0, 5, 0, 1, 6, 0, 0, 22, 3, 10, 9})
	f.Add([]byte("\x02\x02\x00\x00\x00\x05\x00\x01\x00\x01\x00\x00\x10\x20\x01\x01\x0b\x00\x00\x00\x0c\x00\x16\x10\x00\x03\x05"))
	for i := range 8 {
		seed := make([]byte, 64)
		for j := range seed {
			seed[j] = byte(i*31 + j*7)
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		batch := fuzzBatch(data)
		r := genai.Map("acme", batch, genai.Options{})
		check(t, "acme", r)
		spans := 0
		for _, rs := range batch {
			spans += len(rs.ScopeSpans[0].Spans)
		}
		if r.Spans != spans || r.Skipped+len(r.Refused) > spans {
			t.Fatalf("spans %d, skipped %d, refused %d of %d", r.Spans, r.Skipped, len(r.Refused), spans)
		}
		for _, f := range r.Refused {
			if !slices.Contains(genai.Reasons, f.Reason) {
				t.Fatalf("refusal reason %q is not in genai.Reasons", f.Reason)
			}
		}
		for _, ev := range r.Events {
			if ev.Type == fleet.TypeLLMCall && ev.Data == nil {
				t.Fatalf("llm.call without data")
			}
		}
		again := genai.Map("acme", fuzzBatch(data), genai.Options{})
		if diff := cmp.Diff(r, again, cmp.AllowUnexported(fleet.Event{})); diff != "" {
			t.Fatalf("Map is not deterministic (-first +again):\n%s", diff)
		}
	})
}
