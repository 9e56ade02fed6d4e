package bedrocksim

import "github.com/quotagate/quotagate/bedrock"

// titan is Amazon Titan Text ("Amazon Titan Text models" in the Bedrock
// user guide): {"inputText", "textGenerationConfig": {"maxTokenCount", ...}}
// in, {"inputTextTokenCount", "results": [{"tokenCount", "outputText",
// "completionReason"}]} out. The service spells the reasons "FINISH" and
// "LENGTH" (the guide's "FINISHED" is not what it sends).
type titan struct{}

// titanMaxTokenCount is maxTokenCount's documented default.
const titanMaxTokenCount = 512

func (titan) converseMaxTokens() int { return titanMaxTokenCount }

func (titan) parse(_ string, body []byte) (*nativeRequest, *bedrock.Error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	text, err := o.str("inputText", true)
	if err != nil {
		return nil, err
	}
	cfg, err := o.object("textGenerationConfig")
	if err != nil {
		return nil, err
	}
	maxTokens, ok, err := cfg.integer("maxTokenCount", 0)
	if err != nil {
		return nil, err
	}
	if !ok {
		maxTokens = titanMaxTokenCount
	}
	return &nativeRequest{inputTokens: textTokens(text) + promptOverhead, maxTokens: maxTokens, api: apiText}, nil
}

func titanReason(g *generation) string {
	if g.truncated {
		return "LENGTH"
	}
	return "FINISH"
}

func (titan) response(_ *nativeRequest, g *generation) map[string]any {
	return map[string]any{
		"inputTextTokenCount": g.inputTokens,
		"results": []any{map[string]any{
			"tokenCount":       g.outputTokens(),
			"outputText":       g.text(),
			"completionReason": titanReason(g),
		}},
	}
}

// chunks carry the running total; the last text chunk carries the
// completion reason.
func (titan) chunks(_ *nativeRequest, g *generation) []streamEvent {
	ds := g.deltas()
	if len(ds) == 0 {
		ds = []delta{{}}
	}
	var out []streamEvent
	sent := 0
	for i, d := range ds {
		sent += d.tokens
		var reason any
		if i == len(ds)-1 {
			reason = titanReason(g)
		}
		out = append(out, streamEvent{body: map[string]any{
			"outputText":                d.text,
			"index":                     0,
			"totalOutputTextTokenCount": sent,
			"completionReason":          reason,
			"inputTextTokenCount":       g.inputTokens,
		}, tokens: d.tokens})
	}
	return out
}
