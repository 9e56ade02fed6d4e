package bedrocksim

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/quotagate/quotagate/bedrock"
)

// anthropic is Anthropic Claude: the Messages API ("Anthropic Claude
// Messages API" in the Bedrock user guide) for every model, and the legacy
// Text Completions API ("Anthropic Claude Text Completions API") for Claude
// Instant and Claude 2.x.
type anthropic struct{}

// anthropicConverseMaxTokens is the output limit when Converse sets none.
// Bedrock uses the model's own maximum; 4096 is Claude 3's.
const anthropicConverseMaxTokens = 4096

func (anthropic) converseMaxTokens() int { return anthropicConverseMaxTokens }

// anthropicModel is the "model" field of a response: the foundation id
// without provider, geography and Bedrock version suffix, as Bedrock reports
// it (anthropic.claude-3-haiku-20240307-v1:0 -> claude-3-haiku-20240307).
func anthropicModel(model string) string {
	_, name, ok := strings.Cut(model, "anthropic.")
	if !ok {
		return model
	}
	if m := datedVersion.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return name
}

// datedVersion matches a dated Claude id with Bedrock's "-v1:0" suffix.
var datedVersion = regexp.MustCompile(`^(.*-\d{8})-v\d+(:\w+)*$`)

// legacyClaude reports the models that still accept Text Completions.
func legacyClaude(model string) bool {
	return strings.Contains(model, "claude-v2") || strings.Contains(model, "claude-instant")
}

func (anthropic) parse(model string, body []byte) (*nativeRequest, *bedrock.Error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	if o.has("prompt") && !o.has("messages") {
		return parseClaudeText(model, o)
	}
	if _, err := o.str("anthropic_version", true); err != nil {
		return nil, err
	}
	maxTokens, ok, err := o.integer("max_tokens", 1)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, o.missing("max_tokens")
	}
	msgs, err := o.array("messages", true)
	if err != nil {
		return nil, err
	}
	n := 0
	for i, raw := range msgs {
		m, err := asObject(o.pointer("messages")+"/"+strconv.Itoa(i), raw)
		if err != nil {
			return nil, err
		}
		role, err := m.str("role", true)
		if err != nil {
			return nil, err
		}
		if role != "user" && role != "assistant" {
			return nil, malformed("%s: %s is not a valid enum value", m.pointer("role"), role)
		}
		if !m.has("content") {
			return nil, m.missing("content")
		}
		n += messageOverhead + contentTokens(m.members["content"])
	}
	if len(msgs) == 0 {
		return nil, bedrock.Errorf(bedrock.Validation, "messages: at least one message is required")
	}
	if o.has("system") {
		n += contentTokens(o.members["system"])
	}
	if o.has("tools") {
		n += textTokens(string(o.members["tools"]))
	}
	return &nativeRequest{inputTokens: n, maxTokens: maxTokens}, nil
}

// parseClaudeText reads a Text Completions body. Bedrock insists on the
// "\n\nHuman: ... \n\nAssistant:" turn structure.
func parseClaudeText(model string, o object) (*nativeRequest, *bedrock.Error) {
	if !legacyClaude(model) {
		return nil, bedrock.Errorf(bedrock.Validation, "%q is not supported on this API. Please use the Messages API instead.", anthropicModel(model))
	}
	prompt, err := o.str("prompt", true)
	if err != nil {
		return nil, err
	}
	maxTokens, ok, err := o.integer("max_tokens_to_sample", 1)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, o.missing("max_tokens_to_sample")
	}
	if !strings.Contains(prompt, "\n\nHuman:") {
		return nil, bedrock.Errorf(bedrock.Validation, "Invalid prompt: prompt must start with \"\n\nHuman:\" turn after an optional system prompt")
	}
	if !strings.HasSuffix(strings.TrimRight(prompt, " "), "\n\nAssistant:") {
		return nil, bedrock.Errorf(bedrock.Validation, "Invalid prompt: prompt must end with \"\n\nAssistant:\" turn")
	}
	return &nativeRequest{inputTokens: textTokens(prompt) + promptOverhead, maxTokens: maxTokens, api: apiText}, nil
}

// claudeStop is the stop_reason of the Messages API.
func claudeStop(g *generation) string {
	if g.truncated {
		return "max_tokens"
	}
	return "end_turn"
}

func claudeUsage(input, output int) map[string]any {
	return map[string]any{
		"input_tokens":                input,
		"cache_creation_input_tokens": 0,
		"cache_read_input_tokens":     0,
		"output_tokens":               output,
	}
}

func (anthropic) response(req *nativeRequest, g *generation) map[string]any {
	if req.api == apiText {
		return map[string]any{
			"type":        "completion",
			"completion":  g.text(),
			"stop_reason": claudeTextStop(g),
			"stop":        claudeTextStopSequence(g),
		}
	}
	return map[string]any{
		"id":            "msg_bdrk_" + randomID(24),
		"type":          "message",
		"role":          "assistant",
		"model":         anthropicModel(g.model),
		"content":       []any{map[string]any{"type": "text", "text": g.text()}},
		"stop_reason":   claudeStop(g),
		"stop_sequence": nil,
		"usage":         claudeUsage(g.inputTokens, g.outputTokens()),
	}
}

// Text Completions stop with the "\n\nHuman:" stop sequence, or at the
// limit.
func claudeTextStop(g *generation) string {
	if g.truncated {
		return "max_tokens"
	}
	return "stop_sequence"
}

func claudeTextStopSequence(g *generation) any {
	if g.truncated {
		return nil
	}
	return "\n\nHuman:"
}

// chunks follows the Messages streaming events (message_start,
// content_block_start, content_block_delta..., content_block_stop,
// message_delta, message_stop), or for Text Completions one completion
// chunk per delta and a final one with the stop reason.
func (anthropic) chunks(req *nativeRequest, g *generation) []streamEvent {
	if req.api == apiText {
		var out []streamEvent
		for _, d := range g.deltas() {
			out = append(out, streamEvent{body: map[string]any{"completion": d.text, "stop_reason": nil, "stop": nil}, tokens: d.tokens})
		}
		return append(out, streamEvent{body: map[string]any{
			"completion": "", "stop_reason": claudeTextStop(g), "stop": claudeTextStopSequence(g),
		}})
	}
	start := map[string]any{
		"id":            "msg_bdrk_" + randomID(24),
		"type":          "message",
		"role":          "assistant",
		"model":         anthropicModel(g.model),
		"content":       []any{},
		"stop_reason":   nil,
		"stop_sequence": nil,
		"usage":         claudeUsage(g.inputTokens, 1),
	}
	out := []streamEvent{
		{body: map[string]any{"type": "message_start", "message": start}},
		{body: map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}}},
	}
	for _, d := range g.deltas() {
		out = append(out, streamEvent{body: map[string]any{
			"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "text_delta", "text": d.text},
		}, tokens: d.tokens})
	}
	return append(out,
		streamEvent{body: map[string]any{"type": "content_block_stop", "index": 0}},
		streamEvent{body: map[string]any{
			"type":  "message_delta",
			"delta": map[string]any{"stop_reason": claudeStop(g), "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": g.outputTokens()},
		}},
		streamEvent{body: map[string]any{"type": "message_stop"}},
	)
}
