package tokens

import "encoding/json"

// Amazon Nova understanding models take {"schemaVersion": "messages-v1",
// "system", "messages", "inferenceConfig", "toolConfig"}: the Converse shape
// with blobs as base64 strings ("Complete request schema", Amazon Nova user
// guide). The inference parameters were first documented snake_case
// (max_new_tokens, top_p, top_k) and are now documented camelCase (maxTokens,
// topP, topK); both are read. The response is {"output", "stopReason",
// "usage": {"inputTokens", "outputTokens", "totalTokens",
// "cacheReadInputTokenCount", "cacheWriteInputTokenCount"}}, and the stream
// sends {"messageStart"}, {"contentBlockDelta"}, {"contentBlockStop"},
// {"messageStop": {"stopReason"}} and {"metadata": {"usage"}} chunks.

var novaOps = familyOps{
	parse:      parseNova,
	usage:      novaUsage,
	streamKeys: keys(`"messageStop"`, `"metadata"`, `"usage"`, `"stopReason"`, metricsKey),
	// The default is "dynamic", up to the model's maximum: 5,000 for Micro,
	// Lite and Pro (request schema), 25K for Premier (model card); Nova 2
	// Lite's reasoning output goes to 65,535.
	limits: []modelLimit{
		{match: "nova-premier", def: 25000, max: 25000},
		{match: "nova-2", def: 65535, max: 65535},
	},
	fallback: modelLimit{def: 5000, max: 5000},
}

type novaRequest struct {
	System          []converseBlock   `json:"system"`
	Messages        []converseMessage `json:"messages"`
	InferenceConfig struct {
		MaxNewTokens *int `json:"max_new_tokens"`
		MaxTokens    *int `json:"maxTokens"`
	} `json:"inferenceConfig"`
	ToolConfig toolConfig `json:"toolConfig"`
}

func parseNova(_ string, body []byte) (Request, error) {
	var n novaRequest
	if err := decodeBody(body, &n); err != nil {
		return Request{}, err
	}
	r := Request{InputTokens: messagesTokens(n.System, n.Messages, n.ToolConfig.Tools)}
	return r, checkMax(&r,
		maxField{"inferenceConfig.max_new_tokens", n.InferenceConfig.MaxNewTokens},
		maxField{"inferenceConfig.maxTokens", n.InferenceConfig.MaxTokens})
}

// novaResponse is a response or a stream chunk.
type novaResponse struct {
	StopReason  string     `json:"stopReason"`
	Usage       tokenUsage `json:"usage"`
	MessageStop struct {
		StopReason string `json:"stopReason"`
	} `json:"messageStop"`
	Metadata struct {
		Usage tokenUsage `json:"usage"`
	} `json:"metadata"`
	withMetrics
}

func novaUsage(body []byte) (Usage, *invocationMetrics, error) {
	var r novaResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Usage{}, nil, err
	}
	u := Usage{StopReason: firstOf(r.StopReason, r.MessageStop.StopReason)}
	r.Usage.into(&u)
	r.Metadata.Usage.into(&u)
	return u, r.Metrics, nil
}
