package bedrocksim

import (
	"strconv"

	"github.com/quotagate/quotagate/bedrock"
)

// mistral is Mistral AI, which has two native shapes on Bedrock: text
// completion ({"prompt", "max_tokens"} in, {"outputs": [{"text",
// "stop_reason"}]} out; "Mistral AI text completion") and chat completion
// ({"messages", "max_tokens"} in, {"choices": [{"index", "message",
// "stop_reason"}]} out; "Mistral AI chat completion"). Stop reasons are
// "stop" and "length".
type mistral struct{}

// Documented max_tokens defaults: 512 for text completion, 8192 for chat
// (Mistral Large).
const (
	mistralTextMaxTokens = 512
	mistralChatMaxTokens = 8192
)

func (mistral) converseMaxTokens() int { return mistralTextMaxTokens }

func (mistral) parse(_ string, body []byte) (*nativeRequest, *bedrock.Error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	req := &nativeRequest{api: apiText, maxTokens: mistralTextMaxTokens}
	if o.has("messages") {
		req.api, req.maxTokens = apiMessages, mistralChatMaxTokens
		msgs, err := o.array("messages", true)
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			return nil, malformed("%s: expected minimum item count: 1, found: 0", o.pointer("messages"))
		}
		for i, raw := range msgs {
			m, err := asObject(o.pointer("messages")+"/"+strconv.Itoa(i), raw)
			if err != nil {
				return nil, err
			}
			if _, err := m.str("role", true); err != nil {
				return nil, err
			}
			req.inputTokens += messageOverhead + contentTokens(m.members["content"])
			if m.has("tool_calls") {
				req.inputTokens += textTokens(string(m.members["tool_calls"]))
			}
		}
		if o.has("tools") {
			req.inputTokens += textTokens(string(o.members["tools"]))
		}
	} else {
		prompt, err := o.str("prompt", true)
		if err != nil {
			return nil, err
		}
		req.inputTokens = textTokens(prompt) + promptOverhead
	}
	maxTokens, ok, err := o.integer("max_tokens", 1)
	if err != nil {
		return nil, err
	}
	if ok {
		req.maxTokens = maxTokens
	}
	return req, nil
}

func mistralStop(g *generation) string {
	if g.truncated {
		return "length"
	}
	return "stop"
}

func (mistral) response(req *nativeRequest, g *generation) map[string]any {
	if req.api == apiMessages {
		return map[string]any{"choices": []any{map[string]any{
			"index":       0,
			"message":     map[string]any{"role": "assistant", "content": g.text(), "tool_calls": nil},
			"stop_reason": mistralStop(g),
		}}}
	}
	return map[string]any{"outputs": []any{map[string]any{"text": g.text(), "stop_reason": mistralStop(g)}}}
}

// chunks send the text with a null stop_reason, then an empty chunk with
// the stop reason.
func (mistral) chunks(req *nativeRequest, g *generation) []streamEvent {
	piece := func(text string, stop any) map[string]any {
		if req.api == apiMessages {
			return map[string]any{"choices": []any{map[string]any{
				"index":       0,
				"message":     map[string]any{"role": "assistant", "content": text},
				"stop_reason": stop,
			}}}
		}
		return map[string]any{"outputs": []any{map[string]any{"text": text, "stop_reason": stop}}}
	}
	var out []streamEvent
	for _, d := range g.deltas() {
		out = append(out, streamEvent{body: piece(d.text, nil), tokens: d.tokens})
	}
	return append(out, streamEvent{body: piece("", mistralStop(g))})
}
