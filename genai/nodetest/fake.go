package nodetest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/sagewai/observatory/fleet"
)

// Usage is the usage block of one completion, as OpenAI reports it:
// PromptTokens includes CachedTokens (prompt_tokens_details.cached_tokens)
// and CompletionTokens includes ReasoningTokens
// (completion_tokens_details.reasoning_tokens).
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	CachedTokens     int64
	ReasoningTokens  int64
}

// LLMCall returns the usage counted the way fleet.LLMCall counts it (input
// without cache reads, output with reasoning): what a correct mapper makes
// of a span that reports this usage.
func (u Usage) LLMCall() fleet.LLMCall {
	return fleet.LLMCall{
		InputTokens:     u.PromptTokens - u.CachedTokens,
		OutputTokens:    u.CompletionTokens,
		CacheReadTokens: u.CachedTokens,
	}
}

// DefaultUsages are the usages a FakeOpenAI answers with, one per request
// in turn: the first, which asks for a tool call, read most of its prompt
// from the cache and reasoned; the second did neither. The counts are
// distinct and not round, so that a mapper that swaps or drops one is
// caught by the sums.
var DefaultUsages = []Usage{
	{PromptTokens: 1873, CompletionTokens: 419, CachedTokens: 1536, ReasoningTokens: 256},
	{PromptTokens: 2107, CompletionTokens: 93},
}

// Model is the model the scripts ask for (MODEL overrides it): one the
// default pricing table prices, so that ingested spend is charged.
const Model = "gpt-5-mini"

// ToolName is the one tool a FakeOpenAI asks the agent to call, with
// ToolArguments; the scripts define it.
const (
	ToolName      = "get_weather"
	ToolArguments = `{"city":"Paris"}`
	// FinalText is the answer of the completion after the tool's result.
	FinalText = "It is sunny in Paris."
)

// Call is one chat completion a FakeOpenAI answered.
type Call struct {
	// Model is the model the request asked for; ResponseModel the one the
	// answer named (a dated snapshot, as OpenAI answers).
	Model, ResponseModel string
	// Stream is whether the request asked for a server-sent event stream.
	Stream bool
	// ToolCall is whether the answer asked for a tool call (else it was
	// the final text).
	ToolCall bool
	// Usage is the usage the answer reported (a stream carries it only
	// when the request asked for it with stream_options.include_usage, as
	// every library driven here does).
	Usage Usage
}

// FakeOpenAI is an OpenAI-compatible HTTP server for tests: its chat
// completions (plain and streamed) answer a conversation that has tools
// but no tool result yet with a call of ToolName, and any other with
// FinalText, each with the next of its usages, and it records every
// answer. It never reaches the network.
type FakeOpenAI struct {
	// URL is the base URL an OpenAI client takes (OPENAI_BASE_URL): it
	// ends in /v1.
	URL string
	srv *httptest.Server

	// mu guards the usages still to hand out and the calls answered.
	mu     sync.Mutex
	usages []Usage
	calls  []Call
}

// NewFakeOpenAI starts a FakeOpenAI on loopback that answers with usages
// in turn (DefaultUsages when none are given; the last repeats); it stops
// when t ends.
func NewFakeOpenAI(t testing.TB, usages ...Usage) *FakeOpenAI {
	t.Helper()
	if len(usages) == 0 {
		usages = DefaultUsages
	}
	f := &FakeOpenAI{usages: append([]Usage(nil), usages...)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", f.chat)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A route the fake does not know is a library calling an API the
		// test did not plan for: say so loudly in the test log.
		t.Errorf("fake openai: unexpected %s %s", r.Method, r.URL.Path)
		writeError(w, http.StatusNotFound, "the fake serves only POST /v1/chat/completions")
	})
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL + "/v1"
	t.Cleanup(f.srv.Close)
	return f
}

// Calls returns the completions answered so far, in order.
func (f *FakeOpenAI) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// chatRequest is the part of a chat completion request the fake reads.
type chatRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role string `json:"role"`
	} `json:"messages"`
	Tools         []json.RawMessage `json:"tools"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (f *FakeOpenAI) chat(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var req chatRequest
	if err := json.Unmarshal(b, &req); err != nil || req.Model == "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad chat completion request: %v", err))
		return
	}
	// Ask for the tool while the conversation offers tools and has no
	// tool result yet; answer once it has one.
	toolCall := len(req.Tools) > 0
	for _, m := range req.Messages {
		if m.Role == "tool" {
			toolCall = false
		}
	}

	f.mu.Lock()
	n := len(f.calls)
	u := f.usages[min(n, len(f.usages)-1)]
	call := Call{Model: req.Model, ResponseModel: req.Model + "-2025-08-07", Stream: req.Stream, ToolCall: toolCall, Usage: u}
	f.calls = append(f.calls, call)
	f.mu.Unlock()

	id := fmt.Sprintf("chatcmpl-fake%04d", n)
	const created = 1764255845 // fixed, so that answers are deterministic
	finish := "stop"
	message := map[string]any{"role": "assistant", "content": FinalText, "refusal": nil}
	if toolCall {
		finish = "tool_calls"
		message = map[string]any{"role": "assistant", "content": nil, "refusal": nil, "tool_calls": []any{map[string]any{
			"id": fmt.Sprintf("call_fake%04d", n), "type": "function",
			"function": map[string]any{"name": ToolName, "arguments": ToolArguments},
		}}}
	}
	usage := usageJSON(u)
	if !req.Stream {
		writeJSON(w, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": call.ResponseModel,
			"choices":            []any{map[string]any{"index": 0, "message": message, "finish_reason": finish, "logprobs": nil}},
			"usage":              usage,
			"service_tier":       "default",
			"system_fingerprint": "fp_fake",
		})
		return
	}

	// A stream: the role, the content or the tool call, the finish, and
	// the usage in a chunk of its own when the request asked for it (as
	// OpenAI sends it), then [DONE].
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	chunk := func(delta map[string]any, finish any, usage any) {
		c := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": call.ResponseModel,
			"system_fingerprint": "fp_fake", "choices": []any{}}
		if delta != nil {
			c["choices"] = []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": nil}}
		}
		if usage != nil {
			c["usage"] = usage
		}
		b, _ := json.Marshal(c)
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil)
	if toolCall {
		chunk(map[string]any{"tool_calls": []any{map[string]any{
			"index": 0, "id": fmt.Sprintf("call_fake%04d", n), "type": "function",
			"function": map[string]any{"name": ToolName, "arguments": ToolArguments},
		}}}, nil, nil)
	} else {
		chunk(map[string]any{"content": FinalText}, nil, nil)
	}
	chunk(map[string]any{}, finish, nil)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		chunk(nil, nil, usage)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// usageJSON is u as OpenAI's usage object, with the detail objects a
// current OpenAI answer carries.
func usageJSON(u Usage) map[string]any {
	return map[string]any{
		"prompt_tokens":     u.PromptTokens,
		"completion_tokens": u.CompletionTokens,
		"total_tokens":      u.PromptTokens + u.CompletionTokens,
		"prompt_tokens_details": map[string]any{
			"cached_tokens": u.CachedTokens, "audio_tokens": 0,
		},
		"completion_tokens_details": map[string]any{
			"reasoning_tokens": u.ReasoningTokens, "audio_tokens": 0,
			"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
		},
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": msg, "type": "invalid_request_error", "code": nil, "param": nil,
	}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// Reported returns the call a script's library reports for a completion
// the fake answered, counted the way fleet.LLMCall counts: what a correct
// mapper makes of its span. The libraries lose some of the usage the
// server returned, and no mapper can recover what a span does not carry:
//
//   - OpenLLMetry's OpenAI instrumentation (0.27) reports no cached
//     tokens, so its spans carry the whole prompt as input and the cached
//     tokens are priced as input tokens;
//   - OpenInference's (4.2.7) reports no usage at all for a streamed
//     completion, so such a call is counted with no tokens and costs
//     nothing.
//
// (OpenLLMetry's streamed spans carry no usage for a tool call and an
// estimate of its own for text, which Reported does not model.)
func Reported(script string, c Call) fleet.LLMCall {
	switch {
	case script == OpenInference && c.Stream:
		return fleet.LLMCall{}
	case script == OpenLLMetry:
		return fleet.LLMCall{InputTokens: c.Usage.PromptTokens, OutputTokens: c.Usage.CompletionTokens}
	}
	return c.Usage.LLMCall()
}

// Expected returns what the calls a script made cost priced by p, in
// micro-dollars, as its library reports them (Reported), and whether
// every call's model is priced: what the fold must charge for them. It
// prices the response model, as the mapper does.
func Expected(p *fleet.Pricing, script string, calls []Call) (fleet.Micros, bool) {
	var sum fleet.Micros
	all := true
	for _, c := range calls {
		pr, ok := p.Lookup(c.ResponseModel)
		if !ok {
			all = false
			continue
		}
		sum += pr.Cost(Reported(script, c))
	}
	return sum, all
}
