package bedrocksim

import "github.com/quotagate/quotagate/bedrock"

// llama is Meta Llama ("Meta Llama models" in the Bedrock user guide):
// {"prompt", "max_gen_len", "temperature", "top_p"} in,
// {"generation", "prompt_token_count", "generation_token_count",
// "stop_reason"} out, with stop_reason "stop" or "length".
type llama struct{}

// llamaMaxGenLen is max_gen_len's documented default.
const llamaMaxGenLen = 512

func (llama) converseMaxTokens() int { return llamaMaxGenLen }

func (llama) parse(_ string, body []byte) (*nativeRequest, *bedrock.Error) {
	return parsePrompt(body, "max_gen_len", llamaMaxGenLen)
}

func llamaStop(g *generation) string {
	if g.truncated {
		return "length"
	}
	return "stop"
}

func (llama) response(_ *nativeRequest, g *generation) map[string]any {
	return map[string]any{
		"generation":             g.text(),
		"prompt_token_count":     g.inputTokens,
		"generation_token_count": g.outputTokens(),
		"stop_reason":            llamaStop(g),
	}
}

// chunks sends the generation in pieces with the running token count; the
// prompt count comes only with the first, and a last, empty chunk carries
// the stop reason.
func (llama) chunks(_ *nativeRequest, g *generation) []streamEvent {
	var out []streamEvent
	sent := 0
	for i, d := range g.deltas() {
		sent += d.tokens
		var promptCount any
		if i == 0 {
			promptCount = g.inputTokens
		}
		out = append(out, streamEvent{body: map[string]any{
			"generation":             d.text,
			"prompt_token_count":     promptCount,
			"generation_token_count": sent,
			"stop_reason":            nil,
		}, tokens: d.tokens})
	}
	var promptCount any
	if len(out) == 0 {
		promptCount = g.inputTokens
	}
	return append(out, streamEvent{body: map[string]any{
		"generation":             "",
		"prompt_token_count":     promptCount,
		"generation_token_count": g.outputTokens(),
		"stop_reason":            llamaStop(g),
	}})
}
