package bedrocksim

import (
	"strconv"

	"github.com/quotagate/quotagate/bedrock"
)

// cohere is Cohere Command (text generation; "Cohere Command models" in the
// Bedrock user guide): {"prompt", "max_tokens", ...} in, {"generations":
// [{"id", "text", "finish_reason"}], "id", "prompt"} out, finish_reason
// "COMPLETE" or "MAX_TOKENS". Streams use Cohere's own format: {"text",
// "is_finished": false} chunks, then {"is_finished": true, "finish_reason",
// "response"}.
type cohere struct{}

// cohereMaxTokens is max_tokens' documented default for Command.
const cohereMaxTokens = 20

func (cohere) converseMaxTokens() int { return cohereMaxTokens }

func (cohere) parse(_ string, body []byte) (*nativeRequest, *bedrock.Error) {
	return parsePrompt(body, "max_tokens", cohereMaxTokens)
}

func cohereFinish(g *generation) string {
	if g.truncated {
		return "MAX_TOKENS"
	}
	return "COMPLETE"
}

func (cohere) response(req *nativeRequest, g *generation) map[string]any {
	return map[string]any{
		"id":     newUUID(),
		"prompt": req.prompt,
		"generations": []any{map[string]any{
			"id":            newUUID(),
			"text":          g.text(),
			"finish_reason": cohereFinish(g),
		}},
	}
}

func (c cohere) chunks(req *nativeRequest, g *generation) []streamEvent {
	var out []streamEvent
	for _, d := range g.deltas() {
		out = append(out, streamEvent{body: map[string]any{"text": d.text, "is_finished": false}, tokens: d.tokens})
	}
	return append(out, streamEvent{body: map[string]any{
		"is_finished":   true,
		"finish_reason": cohereFinish(g),
		"response":      c.response(req, g),
	}})
}

// commandR is Cohere Command R and R+ ("Cohere Command R and Command R+
// models"): a chat API with {"message", "chat_history", "preamble",
// "documents", "max_tokens"} in and {"response_id", "text", "generation_id",
// "chat_history", "finish_reason"} out. Streams send stream-start,
// text-generation and stream-end events.
type commandR struct{}

// commandRMaxTokens is max_tokens' documented default for Command R.
const commandRMaxTokens = 4000

func (commandR) converseMaxTokens() int { return commandRMaxTokens }

func (commandR) parse(_ string, body []byte) (*nativeRequest, *bedrock.Error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	message, err := o.str("message", true)
	if err != nil {
		return nil, err
	}
	req := &nativeRequest{inputTokens: messageOverhead + textTokens(message), maxTokens: commandRMaxTokens, prompt: message}
	history, err := o.array("chat_history", false)
	if err != nil {
		return nil, err
	}
	for i, raw := range history {
		m, err := asObject(o.pointer("chat_history")+"/"+strconv.Itoa(i), raw)
		if err != nil {
			return nil, err
		}
		role, err := m.str("role", true)
		if err != nil {
			return nil, err
		}
		text, err := m.str("message", true)
		if err != nil {
			return nil, err
		}
		req.inputTokens += messageOverhead + textTokens(text)
		req.history = append(req.history, map[string]any{"role": role, "message": text})
	}
	preamble, err := o.str("preamble", false)
	if err != nil {
		return nil, err
	}
	req.inputTokens += textTokens(preamble)
	if o.has("documents") {
		req.inputTokens += textTokens(string(o.members["documents"]))
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

func (commandR) response(req *nativeRequest, g *generation) map[string]any {
	history := append([]map[string]any(nil), req.history...)
	history = append(history,
		map[string]any{"role": "USER", "message": req.prompt},
		map[string]any{"role": "CHATBOT", "message": g.text()},
	)
	return map[string]any{
		"response_id":   newUUID(),
		"text":          g.text(),
		"generation_id": newUUID(),
		"chat_history":  history,
		"finish_reason": cohereFinish(g),
	}
}

func (c commandR) chunks(req *nativeRequest, g *generation) []streamEvent {
	resp := c.response(req, g)
	out := []streamEvent{{body: map[string]any{
		"is_finished": false, "event_type": "stream-start", "generation_id": resp["generation_id"],
	}}}
	for _, d := range g.deltas() {
		out = append(out, streamEvent{body: map[string]any{
			"is_finished": false, "event_type": "text-generation", "text": d.text,
		}, tokens: d.tokens})
	}
	return append(out, streamEvent{body: map[string]any{
		"is_finished": true, "event_type": "stream-end", "finish_reason": cohereFinish(g), "response": resp,
	}})
}
