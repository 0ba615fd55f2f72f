package genai

import (
	"strconv"

	"github.com/sagewai/observatory/fleet"
)

// normalise reads a span's token counts and returns them the way
// fleet.LLMCall counts them: input excludes cache reads and cache writes,
// output includes reasoning. detail is why the counts were refused, or "";
// reported is false when the span carries no input, output or total count
// at all. The rules per convention are the table in the package
// documentation.
func normalise(a *attrs, src source, provider string, max int64) (call fleet.LLMCall, detail string, reported bool) {
	in := a.count(aInput, aPrompt, aOIPrompt, aAIInput, aAIPrompt)
	out := a.count(aOutput, aCompletion, aOICompletion, aAIOutput, aAICompletion)
	read := a.count(aCacheRead, aCacheReadU, aOICacheRead, aAICacheRead, aAICached)
	write := a.count(aCacheWrite, aCacheWriteU, aOICacheWrite, aAICacheWrite)
	reasoning := a.count(aReasoning, aReasoningU, aOIReasoning, aAIReasoning, aAIReasoningD)
	total := a.count(aTotal, aLLMTotal, aOITotal, aAITotal, aAITokens)
	uncached := a.count(aAINoCache)
	for _, c := range [...]struct {
		what string
		c    count
	}{{"input", in}, {"output", out}, {"cache read", read}, {"cache write", write}, {"reasoning", reasoning}, {"total", total}, {"uncached input", uncached}} {
		if c.c.bad {
			return fleet.LLMCall{}, c.what + " token count is not a non-negative integer", true
		}
		if c.c.n > max {
			return fleet.LLMCall{}, c.what + " token count is above " + strconv.FormatInt(max, 10), true
		}
	}
	input := in.n
	if !in.present && total.present {
		// Only a total (and perhaps the output) was reported: the rest of
		// the total is the input.
		if total.n < out.n {
			return fleet.LLMCall{}, "total token count is below the output count", true
		}
		input = total.n - out.n
	}
	cached := read.n + write.n
	switch {
	case uncached.present:
		// The AI SDK ≥ 6 reports the uncached input itself.
		input = uncached.n
	case src == srcVercel && provider == "anthropic":
		// The AI SDK 5 passes Anthropic's input_tokens through, which
		// already leaves the cache out.
	case input >= cached:
		// Every convention's input (prompt) count includes cache reads and
		// writes: take them out.
		input -= cached
	default:
		// A count below its own cache part can only come from a library
		// that reports input the Anthropic way, already without the cache.
	}
	output := out.n
	if reasoning.n > output {
		// Reasoning is inside the output count by every convention; a
		// reasoning count above the output shows a library that reports it
		// apart (as Gemini's thoughts are), so add it.
		output += reasoning.n
	}
	if output > max {
		return fleet.LLMCall{}, "output token count with reasoning is above " + strconv.FormatInt(max, 10), true
	}
	return fleet.LLMCall{InputTokens: input, OutputTokens: output, CacheReadTokens: read.n, CacheWriteTokens: write.n}, "",
		in.present || out.present || total.present || uncached.present
}
