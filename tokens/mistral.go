package tokens

import "encoding/json"

// Mistral models take a text completion {"prompt": "<s>[INST] ... [/INST]",
// "max_tokens", "stop", "temperature", "top_p", "top_k"} answered by
// {"outputs": [{"text", "stop_reason"}]}, and Mistral Large also a chat
// completion {"messages": [{"role", "content"}], "tools", "tool_choice",
// "max_tokens"} answered by {"choices": [{"index", "message", "stop_reason"}]}.
// Neither response body carries usage: Bedrock reports it in the
// X-Amzn-Bedrock-*-Token-Count headers, and in the invocation metrics of a
// stream. A "usage" object in the OpenAI style, which newer Mistral models
// may add, is read when present. See the Bedrock user guide, "Mistral AI
// text completion" and "Mistral AI chat completion".

var mistralOps = familyOps{
	parse:      parseMistral,
	usage:      mistralUsage,
	streamKeys: nil, // every chunk has a stop_reason, usually null
	// max_tokens default: 512 for Mistral 7B Instruct and Mixtral 8x7B
	// Instruct, 8,192 for Mistral Large and Mistral Small; maximum 8,192,
	// 4,096, 8,192 and 8,192 (user guide).
	limits: []modelLimit{
		{match: "mistral-7b", def: 512, max: 8192},
		{match: "mixtral-8x7b", def: 512, max: 4096},
		{match: "mistral-large", def: 8192, max: 8192},
		{match: "mistral-small", def: 8192, max: 8192},
	},
	fallback: modelLimit{def: 8192, max: 8192},
}

type mistralRequest struct {
	Prompt    textTokens       `json:"prompt"`
	Messages  []mistralMessage `json:"messages"`
	Tools     []rawTokens      `json:"tools"`
	MaxTokens *int             `json:"max_tokens"`
}

type mistralMessage struct {
	Content   mistralContent `json:"content"`
	ToolCalls rawTokens      `json:"tool_calls"`
}

// mistralContent is a string, or (Pixtral) an array of {"type": "text",
// "text"} and {"type": "image_url", "image_url"} parts.
type mistralContent int

// UnmarshalJSON implements json.Unmarshaler.
func (c *mistralContent) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		*c = mistralContent(estimate(b[1 : len(b)-1]))
	case 'n':
		*c = 0
	case '[':
		var parts []mistralPart
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		n := 0
		for i := range parts {
			n += parts[i].tokens()
		}
		*c = mistralContent(n)
	default:
		return typeError(b, stringOrArrayType)
	}
	return nil
}

var _ json.Unmarshaler = (*mistralContent)(nil)

type mistralPart struct {
	Text     textTokens `json:"text"`
	ImageURL present    `json:"image_url"`
}

func (p *mistralPart) tokens() int {
	n := int(p.Text)
	if p.ImageURL {
		n += imageTokens
	}
	return n
}

func parseMistral(_ string, body []byte) (Request, error) {
	var m mistralRequest
	if err := decodeBody(body, &m); err != nil {
		return Request{}, err
	}
	r := Request{InputTokens: requestOverhead + int(m.Prompt) + toolTokens(len(m.Tools), sumTokens(m.Tools))}
	for _, msg := range m.Messages {
		r.InputTokens += messageOverhead + int(msg.Content) + int(msg.ToolCalls)
	}
	return r, checkMax(&r, maxField{"max_tokens", m.MaxTokens})
}

// mistralChoice is an element of "outputs" or "choices".
type mistralChoice struct {
	StopReason   string `json:"stop_reason"`
	FinishReason string `json:"finish_reason"`
}

type mistralResponse struct {
	Outputs []mistralChoice `json:"outputs"`
	Choices []mistralChoice `json:"choices"`
	Usage   struct {
		PromptTokens     count `json:"prompt_tokens"`
		CompletionTokens count `json:"completion_tokens"`
	} `json:"usage"`
	withMetrics
}

func mistralUsage(body []byte) (Usage, *invocationMetrics, error) {
	var r mistralResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Usage{}, nil, err
	}
	var u Usage
	u.take(&u.InputTokens, r.Usage.PromptTokens)
	u.take(&u.OutputTokens, r.Usage.CompletionTokens)
	for _, cs := range [][]mistralChoice{r.Outputs, r.Choices} {
		for _, c := range cs {
			u.StopReason = firstOf(u.StopReason, c.StopReason, c.FinishReason)
		}
	}
	return u, r.Metrics, nil
}
