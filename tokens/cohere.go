package tokens

import "encoding/json"

// Cohere Command takes {"prompt", "max_tokens", ...} and answers
// {"generations": [{"text", "finish_reason"}], "id", "prompt"}; Command R and
// R+ take {"message", "chat_history": [{"role", "message"}], "preamble",
// "documents", "tools", "tool_results", "max_tokens", ...} and answer
// {"text", "finish_reason", "chat_history", ...}. Cohere's own API adds
// "meta": {"billed_units": {"input_tokens", "output_tokens"}}; it is read when
// Bedrock passes it on, otherwise usage comes from the headers and the stream's
// invocation metrics. Command R streams events with "event_type"
// (text-generation, ..., stream-end with "finish_reason" and "response").
// See the Bedrock user guide, "Cohere Command models" and "Cohere Command R
// and Command R+ models".

var cohereOps = familyOps{
	parse:      parseCohere,
	usage:      cohereUsage,
	streamKeys: keys(`"finish_reason"`, `"meta"`, metricsKey),
	// max_tokens: Command and Command Light default to 20 and go to 4,096
	// (user guide); Command R and R+ generate at most 4,000 tokens.
	limits: []modelLimit{
		{match: "command-r", def: 4000, max: 4000},
		{match: "command-light", def: 20, max: 4096},
		{match: "command-text", def: 20, max: 4096},
	},
	fallback: modelLimit{def: 4000, max: 4096},
}

type cohereRequest struct {
	Prompt      textTokens `json:"prompt"`
	Message     textTokens `json:"message"`
	Preamble    textTokens `json:"preamble"`
	ChatHistory []struct {
		Message     textTokens `json:"message"`
		ToolCalls   rawTokens  `json:"tool_calls"`
		ToolResults rawTokens  `json:"tool_results"`
	} `json:"chat_history"`
	Documents   rawTokens   `json:"documents"`
	Tools       []rawTokens `json:"tools"`
	ToolResults rawTokens   `json:"tool_results"`
	MaxTokens   *int        `json:"max_tokens"`
}

func parseCohere(_ string, body []byte) (Request, error) {
	var c cohereRequest
	if err := decodeBody(body, &c); err != nil {
		return Request{}, err
	}
	r := Request{InputTokens: requestOverhead + int(c.Prompt) + int(c.Preamble) + int(c.Documents) +
		int(c.ToolResults) + toolTokens(len(c.Tools), sumTokens(c.Tools))}
	if c.Message > 0 {
		r.InputTokens += messageOverhead + int(c.Message)
	}
	for _, m := range c.ChatHistory {
		r.InputTokens += messageOverhead + int(m.Message) + int(m.ToolCalls) + int(m.ToolResults)
	}
	return r, checkMax(&r, maxField{"max_tokens", c.MaxTokens})
}

type cohereMeta struct {
	BilledUnits cohereUnits `json:"billed_units"`
	Tokens      cohereUnits `json:"tokens"`
}

type cohereUnits struct {
	InputTokens  count `json:"input_tokens"`
	OutputTokens count `json:"output_tokens"`
}

// cohereResponse is a response or a stream chunk of either API.
type cohereResponse struct {
	Generations []struct {
		FinishReason string `json:"finish_reason"`
	} `json:"generations"`
	FinishReason string     `json:"finish_reason"`
	Meta         cohereMeta `json:"meta"`
	Response     struct {   // Command R stream-end
		FinishReason string     `json:"finish_reason"`
		Meta         cohereMeta `json:"meta"`
	} `json:"response"`
	withMetrics
}

func cohereUsage(body []byte) (Usage, *invocationMetrics, error) {
	var r cohereResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Usage{}, nil, err
	}
	var u Usage
	// tokens counts the whole prompt; billed_units leaves out the parts
	// Cohere does not bill, so it comes second.
	u.take(&u.InputTokens, r.Meta.Tokens.InputTokens, r.Response.Meta.Tokens.InputTokens,
		r.Meta.BilledUnits.InputTokens, r.Response.Meta.BilledUnits.InputTokens)
	u.take(&u.OutputTokens, r.Meta.Tokens.OutputTokens, r.Response.Meta.Tokens.OutputTokens,
		r.Meta.BilledUnits.OutputTokens, r.Response.Meta.BilledUnits.OutputTokens)
	u.StopReason = firstOf(r.FinishReason, r.Response.FinishReason)
	for _, g := range r.Generations {
		u.StopReason = firstOf(u.StopReason, g.FinishReason)
	}
	return u, r.Metrics, nil
}
