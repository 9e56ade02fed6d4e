package tokens

import "encoding/json"

// Meta Llama takes {"prompt", "max_gen_len", "temperature", "top_p"}, the
// chat template already applied to the prompt, and Llama 3.2 vision models
// also "images" (base64 strings). The response, and every stream chunk,
// carries "generation", "prompt_token_count", "generation_token_count" and
// "stop_reason". See the Bedrock user guide, "Meta Llama models".

var metaOps = familyOps{
	parse: parseMeta,
	usage: metaUsage,
	// Every chunk carries the counts (prompt_token_count only the first,
	// generation_token_count cumulative), so every chunk is decoded.
	streamKeys: nil,
	// max_gen_len: default 512, maximum 2,048 (user guide); the model cards
	// of Llama 3.1 and later give 4K as the max output.
	limits: []modelLimit{
		{match: "llama2", def: 512, max: 2048},
		{match: "llama3-8b", def: 512, max: 2048},
		{match: "llama3-70b", def: 512, max: 2048},
	},
	fallback: modelLimit{def: 512, max: 4096},
}

type metaRequest struct {
	Prompt    textTokens `json:"prompt"`
	Images    []present  `json:"images"`
	MaxGenLen *int       `json:"max_gen_len"`
}

func parseMeta(_ string, body []byte) (Request, error) {
	var m metaRequest
	if err := decodeBody(body, &m); err != nil {
		return Request{}, err
	}
	r := Request{InputTokens: requestOverhead + int(m.Prompt) + len(m.Images)*imageTokens}
	return r, checkMax(&r, maxField{"max_gen_len", m.MaxGenLen})
}

type metaResponse struct {
	PromptTokenCount     count  `json:"prompt_token_count"`
	GenerationTokenCount count  `json:"generation_token_count"`
	StopReason           string `json:"stop_reason"`
	withMetrics
}

func metaUsage(body []byte) (Usage, *invocationMetrics, error) {
	var r metaResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Usage{}, nil, err
	}
	var u Usage
	u.take(&u.InputTokens, r.PromptTokenCount)
	u.take(&u.OutputTokens, r.GenerationTokenCount)
	u.StopReason = r.StopReason
	return u, r.Metrics, nil
}
