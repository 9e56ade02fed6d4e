package bedrocksim

import (
	"strconv"

	"github.com/quotagate/quotagate/bedrock"
)

// nova is Amazon Nova's InvokeModel schema ("messages-v1"): Converse-like
// messages, system and inferenceConfig in; {"output": {"message"},
// "stopReason", "usage"} out, and a stream whose chunks are the Converse
// stream events wrapped in an object named after the event.
type nova struct{}

// novaMaxTokens is the output limit when none is set: Nova's documented
// default is the model's maximum, 5K tokens for the first generation.
const novaMaxTokens = 5000

func (nova) converseMaxTokens() int { return novaMaxTokens }

func (nova) parse(_ string, body []byte) (*nativeRequest, *bedrock.Error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	msgs, err := o.array("messages", true)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, malformed("%s: expected minimum item count: 1, found: 0", o.pointer("messages"))
	}
	n := 0
	for i, raw := range msgs {
		m, err := asObject(o.pointer("messages")+"/"+strconv.Itoa(i), raw)
		if err != nil {
			return nil, err
		}
		if _, err := m.str("role", true); err != nil {
			return nil, err
		}
		content, err := m.array("content", true)
		if err != nil {
			return nil, err
		}
		n += messageOverhead
		for _, b := range content {
			n += blockTokens(b)
		}
	}
	system, err := o.array("system", false)
	if err != nil {
		return nil, err
	}
	for _, b := range system {
		n += blockTokens(b)
	}
	cfg, err := o.object("inferenceConfig")
	if err != nil {
		return nil, err
	}
	// The first Nova documentation called the limit max_new_tokens; both
	// are accepted.
	maxTokens, ok, err := cfg.integer("maxTokens", 1)
	if err != nil {
		return nil, err
	}
	if !ok {
		if maxTokens, ok, err = cfg.integer("max_new_tokens", 1); err != nil {
			return nil, err
		}
	}
	if !ok {
		maxTokens = novaMaxTokens
	}
	return &nativeRequest{inputTokens: n, maxTokens: maxTokens}, nil
}

func (nova) response(_ *nativeRequest, g *generation) map[string]any {
	return map[string]any{
		"output": map[string]any{"message": map[string]any{
			"role":    "assistant",
			"content": []any{map[string]any{"text": g.text()}},
		}},
		"stopReason": g.converseStop(),
		"usage": map[string]any{
			"inputTokens":               g.inputTokens,
			"outputTokens":              g.outputTokens(),
			"totalTokens":               g.inputTokens + g.outputTokens(),
			"cacheReadInputTokenCount":  0,
			"cacheWriteInputTokenCount": 0,
		},
	}
}

func (nova) chunks(_ *nativeRequest, g *generation) []streamEvent {
	out := []streamEvent{{body: map[string]any{"messageStart": map[string]any{"role": "assistant"}}}}
	for _, d := range g.deltas() {
		out = append(out, streamEvent{body: map[string]any{"contentBlockDelta": map[string]any{
			"delta": map[string]any{"text": d.text}, "contentBlockIndex": 0,
		}}, tokens: d.tokens})
	}
	return append(out,
		streamEvent{body: map[string]any{"contentBlockStop": map[string]any{"contentBlockIndex": 0}}},
		streamEvent{body: map[string]any{"messageStop": map[string]any{"stopReason": g.converseStop()}}},
		streamEvent{body: map[string]any{"metadata": map[string]any{
			"usage": map[string]any{
				"inputTokens":               g.inputTokens,
				"outputTokens":              g.outputTokens(),
				"cacheReadInputTokenCount":  0,
				"cacheWriteInputTokenCount": 0,
			},
			"metrics": map[string]any{},
			"trace":   map[string]any{},
		}}},
	)
}
