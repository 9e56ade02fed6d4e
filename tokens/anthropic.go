package tokens

import "encoding/json"

// Anthropic Claude on Bedrock takes the Messages API body with
// "anthropic_version": "bedrock-2023-05-31" and the model in the URL, and the
// Claude 2 era Text Completions body ({"prompt", "max_tokens_to_sample"}).
// See the Bedrock user guide, "Anthropic Claude Messages API" and
// "Anthropic Claude Text Completions API".

var anthropicOps = familyOps{
	parse: parseAnthropic,
	usage: anthropicUsage,
	// message_start carries the input usage, message_delta the stop reason
	// and output usage, message_stop the invocation metrics; the
	// content_block_* events in between carry none.
	streamKeys: keys(`"usage"`, `"stop_reason"`, metricsKey),
	// max_tokens is required by the Messages API, so a body without it is
	// refused by Bedrock; reserve the model's largest output until then.
	// Sources: Anthropic's models overview (Claude 3: 4,096; 3.5: 8,192;
	// 3.7 Sonnet and Sonnet 4: 64,000; Opus 4 and 4.1: 32,000; Sonnet 4.5,
	// Haiku 4.5, Opus 4.5: 64,000; Opus 4.6: 128,000).
	limits: []modelLimit{
		{match: "claude-opus-4-6", def: 128000, max: 128000},
		{match: "claude-opus-4-5", def: 64000, max: 64000},
		{match: "claude-opus-4", def: 32000, max: 32000},
		{match: "claude-sonnet-4", def: 64000, max: 64000},
		{match: "claude-haiku-4", def: 64000, max: 64000},
		{match: "claude-3-7", def: 64000, max: 64000},
		{match: "claude-3-5", def: 8192, max: 8192},
		{match: "claude-3", def: 4096, max: 4096},
		{match: "claude-v2", def: 4096, max: 4096},
		{match: "claude-instant", def: 4096, max: 4096},
	},
	// Newer Claude models all have at least 64,000.
	fallback: modelLimit{def: 64000, max: 64000},
}

// anthropicRequest is the part of an Anthropic body that admission reads.
type anthropicRequest struct {
	MaxTokens         *int               `json:"max_tokens"`
	MaxTokensToSample *int               `json:"max_tokens_to_sample"` // Text Completions
	Prompt            textTokens         `json:"prompt"`               // Text Completions
	System            anthropicContent   `json:"system"`
	Messages          []anthropicMessage `json:"messages"`
	Tools             []rawTokens        `json:"tools"`
}

type anthropicMessage struct {
	Content anthropicContent `json:"content"`
}

// anthropicContent is a message's content or the system prompt: a string or
// an array of content blocks, decoded to its estimated tokens. Any other JSON
// type is refused, as the Messages API refuses it.
type anthropicContent int

// UnmarshalJSON implements json.Unmarshaler.
func (c *anthropicContent) UnmarshalJSON(b []byte) error {
	if b[0] != '"' && b[0] != '[' && b[0] != 'n' {
		return typeError(b, stringOrArrayType)
	}
	*c = anthropicContent(anthropicContentTokens(b))
	return nil
}

// blockContent is content inside a block (tool_result, search_result,
// document source): usually a string or blocks, but server tools put other
// shapes there, so anything else is measured as JSON text.
type blockContent int

// UnmarshalJSON implements json.Unmarshaler.
func (c *blockContent) UnmarshalJSON(b []byte) error {
	*c = blockContent(anthropicContentTokens(b))
	return nil
}

var (
	_ json.Unmarshaler = (*anthropicContent)(nil)
	_ json.Unmarshaler = (*blockContent)(nil)
)

// anthropicContentTokens estimates a content value.
//
// Blocks are a union whose members share field names with different types
// from one block type to the next (a search_result's "source" is a string, an
// image's an object) and new block types keep coming, so inside blocks a
// field of another type than the one read here is skipped rather than
// refused: encoding/json does exactly that for type mismatches, and Bedrock
// validates the blocks itself.
func anthropicContentTokens(b []byte) int {
	switch b[0] {
	case '"':
		return estimate(b[1 : len(b)-1])
	case 'n':
		return 0
	case '[':
		var blocks []anthropicBlock
		_ = json.Unmarshal(b, &blocks) // only type mismatches can fail here: tolerated
		n := 0
		for i := range blocks {
			n += blocks[i].tokens()
		}
		return n
	}
	return estimate(b)
}

// anthropicBlock is one content block: text, image, document, tool_use,
// tool_result, thinking, redacted_thinking, search_result or a server
// tool's.
type anthropicBlock struct {
	Type      string          `json:"type"`
	Text      looseText       `json:"text"`
	Thinking  looseText       `json:"thinking"`
	Name      looseText       `json:"name"`
	Input     rawTokens       `json:"input"`
	Content   blockContent    `json:"content"`
	Source    anthropicSource `json:"source"`
	Title     looseText       `json:"title"`
	Context   looseText       `json:"context"`
	Data      size            `json:"data"` // redacted_thinking
	Citations rawTokens       `json:"citations"`
}

// anthropicSource is an image or document source.
type anthropicSource struct {
	Type    string       `json:"type"` // base64, text, content, url, file
	Data    size         `json:"data"`
	Content blockContent `json:"content"`
}

func (b *anthropicBlock) tokens() int {
	n := int(b.Text) + int(b.Thinking) + int(b.Name) + int(b.Input) + int(b.Content) +
		int(b.Title) + int(b.Context) + int(b.Citations)
	switch b.Type {
	case "image":
		n += imageTokens
	case "document":
		switch b.Source.Type {
		case "text":
			n += documentTokens(int(b.Source.Data), true)
		case "content":
			n += int(b.Source.Content)
		case "base64":
			n += documentTokens(base64Len(int(b.Source.Data)), false)
		default: // url, file: size unknown
			n += documentMinTokens
		}
	case "redacted_thinking":
		// Encrypted thinking goes back to the model as it came.
		n += int(b.Data) / 4
	}
	return n
}

func parseAnthropic(_ string, body []byte) (Request, error) {
	var a anthropicRequest
	if err := decodeBody(body, &a); err != nil {
		return Request{}, err
	}
	r := Request{InputTokens: requestOverhead + int(a.Prompt) + int(a.System) +
		toolTokens(len(a.Tools), sumTokens(a.Tools))}
	for _, m := range a.Messages {
		r.InputTokens += messageOverhead + int(m.Content)
	}
	err := checkMax(&r, maxField{"max_tokens", a.MaxTokens}, maxField{"max_tokens_to_sample", a.MaxTokensToSample})
	return r, err
}

// anthropicCounts is the usage object of a Messages API response, and of the
// message_start and message_delta stream events. The counts in message_delta
// are cumulative.
type anthropicCounts struct {
	InputTokens              count `json:"input_tokens"`
	OutputTokens             count `json:"output_tokens"`
	CacheCreationInputTokens count `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     count `json:"cache_read_input_tokens"`
}

// anthropicResponse is a Messages or Text Completions response, or one
// stream event.
type anthropicResponse struct {
	StopReason string          `json:"stop_reason"` // response, Text Completions chunk
	Usage      anthropicCounts `json:"usage"`       // response, message_delta
	Message    struct {        // message_start
		Usage anthropicCounts `json:"usage"`
	} `json:"message"`
	Delta struct { // message_delta
		StopReason string `json:"stop_reason"`
	} `json:"delta"`
	withMetrics
}

func anthropicUsage(body []byte) (Usage, *invocationMetrics, error) {
	var r anthropicResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Usage{}, nil, err
	}
	var u Usage
	u.take(&u.InputTokens, r.Usage.InputTokens, r.Message.Usage.InputTokens)
	u.take(&u.OutputTokens, r.Usage.OutputTokens, r.Message.Usage.OutputTokens)
	u.take(&u.CacheReadInputTokens, r.Usage.CacheReadInputTokens, r.Message.Usage.CacheReadInputTokens)
	u.take(&u.CacheWriteInputTokens, r.Usage.CacheCreationInputTokens, r.Message.Usage.CacheCreationInputTokens)
	u.StopReason = firstOf(r.StopReason, r.Delta.StopReason)
	return u, r.Metrics, nil
}
