package genai

import (
	"math"
	"strconv"
	"strings"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// attr names an attribute the mapper reads. The attributes of a span are
// scanned once into an array indexed by attr, so reading one costs no map
// lookup per name and no allocation.
type attr int

const (
	// Classification.
	aOperationName attr = iota // gen_ai.operation.name (OTel GenAI)
	aOIKind                    // openinference.span.kind
	aRequestType               // llm.request.type (OpenLLMetry)
	aTraceloopKind             // traceloop.span.kind (OpenLLMetry)
	aTraceloopName             // traceloop.entity.name (OpenLLMetry)
	aAIOperationID             // ai.operationId (Vercel AI SDK)

	// Provider and model.
	aProviderName  // gen_ai.provider.name (semconv ≥ 1.37)
	aSystem        // gen_ai.system (semconv ≤ 1.36, OpenLLMetry, Vercel)
	aOIProvider    // llm.provider (OpenInference)
	aOISystem      // llm.system (OpenInference)
	aAIProvider    // ai.model.provider (Vercel)
	aResponseModel // gen_ai.response.model
	aRequestModel  // gen_ai.request.model
	aOIModel       // llm.model_name (OpenInference)
	aAIRespModel   // ai.response.model (Vercel)
	aAIModelID     // ai.model.id (Vercel)

	// Token counts, each group in order of preference.
	aInput        // gen_ai.usage.input_tokens
	aPrompt       // gen_ai.usage.prompt_tokens
	aOIPrompt     // llm.token_count.prompt
	aAIInput      // ai.usage.inputTokens
	aAIPrompt     // ai.usage.promptTokens
	aOutput       // gen_ai.usage.output_tokens
	aCompletion   // gen_ai.usage.completion_tokens
	aOICompletion // llm.token_count.completion
	aAIOutput     // ai.usage.outputTokens
	aAICompletion // ai.usage.completionTokens
	aCacheRead    // gen_ai.usage.cache_read.input_tokens
	aCacheReadU   // gen_ai.usage.cache_read_input_tokens
	aOICacheRead  // llm.token_count.prompt_details.cache_read
	aAICacheRead  // ai.usage.inputTokenDetails.cacheReadTokens
	aAICached     // ai.usage.cachedInputTokens
	aCacheWrite   // gen_ai.usage.cache_creation.input_tokens
	aCacheWriteU  // gen_ai.usage.cache_creation_input_tokens
	aOICacheWrite // llm.token_count.prompt_details.cache_write
	aAICacheWrite // ai.usage.inputTokenDetails.cacheWriteTokens
	aReasoning    // gen_ai.usage.reasoning.output_tokens
	aReasoningU   // gen_ai.usage.reasoning_tokens
	aOIReasoning  // llm.token_count.completion_details.reasoning
	aAIReasoning  // ai.usage.reasoningTokens
	aAIReasoningD // ai.usage.outputTokenDetails.reasoningTokens
	aTotal        // gen_ai.usage.total_tokens
	aLLMTotal     // llm.usage.total_tokens (OpenLLMetry)
	aOITotal      // llm.token_count.total (OpenInference)
	aAITotal      // ai.usage.totalTokens (Vercel)
	aAITokens     // ai.usage.tokens (Vercel embeddings)
	aAINoCache    // ai.usage.inputTokenDetails.noCacheTokens (Vercel ≥ 6)
	aAgentID      // gen_ai.agent.id
	aAgentName    // gen_ai.agent.name
	aOIAgentName  // agent.name (OpenInference)
	aAIFunctionID // ai.telemetry.functionId (Vercel legacy spans)
	aAgentDesc    // gen_ai.agent.description
	aAgentVersion // gen_ai.agent.version
	aToolName     // gen_ai.tool.name
	aOIToolName   // tool.name (OpenInference)
	aAIToolName   // ai.toolCall.name (Vercel)
	aErrorType    // error.type
	aTeamID       // sagewai.team_id
	aUserID       // sagewai.user_id
	numAttrs
)

// attrNames maps each attribute name the mapper reads to its slot.
var attrNames = map[string]attr{
	"gen_ai.operation.name":   aOperationName,
	"openinference.span.kind": aOIKind,
	"llm.request.type":        aRequestType,
	"traceloop.span.kind":     aTraceloopKind,
	"traceloop.entity.name":   aTraceloopName,
	"ai.operationId":          aAIOperationID,

	"gen_ai.provider.name":  aProviderName,
	"gen_ai.system":         aSystem,
	"llm.provider":          aOIProvider,
	"llm.system":            aOISystem,
	"ai.model.provider":     aAIProvider,
	"gen_ai.response.model": aResponseModel,
	"gen_ai.request.model":  aRequestModel,
	"llm.model_name":        aOIModel,
	"ai.response.model":     aAIRespModel,
	"ai.model.id":           aAIModelID,

	"gen_ai.usage.input_tokens":                    aInput,
	"gen_ai.usage.prompt_tokens":                   aPrompt,
	"llm.token_count.prompt":                       aOIPrompt,
	"ai.usage.inputTokens":                         aAIInput,
	"ai.usage.promptTokens":                        aAIPrompt,
	"gen_ai.usage.output_tokens":                   aOutput,
	"gen_ai.usage.completion_tokens":               aCompletion,
	"llm.token_count.completion":                   aOICompletion,
	"ai.usage.outputTokens":                        aAIOutput,
	"ai.usage.completionTokens":                    aAICompletion,
	"gen_ai.usage.cache_read.input_tokens":         aCacheRead,
	"gen_ai.usage.cache_read_input_tokens":         aCacheReadU,
	"llm.token_count.prompt_details.cache_read":    aOICacheRead,
	"ai.usage.inputTokenDetails.cacheReadTokens":   aAICacheRead,
	"ai.usage.cachedInputTokens":                   aAICached,
	"gen_ai.usage.cache_creation.input_tokens":     aCacheWrite,
	"gen_ai.usage.cache_creation_input_tokens":     aCacheWriteU,
	"llm.token_count.prompt_details.cache_write":   aOICacheWrite,
	"ai.usage.inputTokenDetails.cacheWriteTokens":  aAICacheWrite,
	"gen_ai.usage.reasoning.output_tokens":         aReasoning,
	"gen_ai.usage.reasoning_tokens":                aReasoningU,
	"llm.token_count.completion_details.reasoning": aOIReasoning,
	"ai.usage.reasoningTokens":                     aAIReasoning,
	"ai.usage.outputTokenDetails.reasoningTokens":  aAIReasoningD,
	"gen_ai.usage.total_tokens":                    aTotal,
	"llm.usage.total_tokens":                       aLLMTotal,
	"llm.token_count.total":                        aOITotal,
	"ai.usage.totalTokens":                         aAITotal,
	"ai.usage.tokens":                              aAITokens,
	"ai.usage.inputTokenDetails.noCacheTokens":     aAINoCache,

	"gen_ai.agent.id":          aAgentID,
	"gen_ai.agent.name":        aAgentName,
	"agent.name":               aOIAgentName,
	"ai.telemetry.functionId":  aAIFunctionID,
	"gen_ai.agent.description": aAgentDesc,
	"gen_ai.agent.version":     aAgentVersion,
	"gen_ai.tool.name":         aToolName,
	"tool.name":                aOIToolName,
	"ai.toolCall.name":         aAIToolName,
	"error.type":               aErrorType,
	TeamAttr:                   aTeamID,
	UserAttr:                   aUserID,
}

// attrs holds the values of the attributes the mapper reads, one span's.
type attrs [numAttrs]*commonpb.AnyValue

// scan fills a from kvs. When a name repeats, the first value wins, as in
// OTel SDKs that keep the first of duplicate keys.
func (a *attrs) scan(kvs []*commonpb.KeyValue) {
	for _, kv := range kvs {
		if kv == nil || kv.Value == nil {
			continue
		}
		if i, ok := attrNames[kv.Key]; ok && a[i] == nil {
			a[i] = kv.Value
		}
	}
}

// str returns the string value of the first of names that holds a
// non-empty string. Values of other kinds are not strings to the mapper.
func (a *attrs) str(names ...attr) string {
	for _, n := range names {
		if v, ok := a[n].GetValue().(*commonpb.AnyValue_StringValue); ok {
			if s := strings.TrimSpace(v.StringValue); s != "" {
				return s
			}
		}
	}
	return ""
}

// count is one token count as read from a span.
type count struct {
	n       int64
	present bool
	bad     bool // present but not a count: negative, fractional, not a number
}

// count reads the first of names that is present as a token count. An
// integer, an integral finite double (JavaScript exporters send numbers so)
// and a decimal string are counts; anything else present is bad.
func (a *attrs) count(names ...attr) count {
	for _, n := range names {
		v := a[n]
		if v == nil {
			continue
		}
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_IntValue:
			return count{n: x.IntValue, present: true, bad: x.IntValue < 0}
		case *commonpb.AnyValue_DoubleValue:
			d := x.DoubleValue
			if math.IsNaN(d) || math.IsInf(d, 0) || d != math.Trunc(d) || d < 0 || d > math.MaxInt64/2 {
				return count{present: true, bad: true}
			}
			return count{n: int64(d), present: true}
		case *commonpb.AnyValue_StringValue:
			i, err := strconv.ParseInt(strings.TrimSpace(x.StringValue), 10, 64)
			return count{n: i, present: true, bad: err != nil || i < 0}
		default:
			return count{present: true, bad: true}
		}
	}
	return count{}
}
