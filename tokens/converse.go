package tokens

import "encoding/json"

// Converse and ConverseStream take one body shape for every model: messages
// of content blocks (text, image, document, video, audio, toolUse,
// toolResult, reasoningContent, guardContent, cachePoint, ...), system
// blocks, inferenceConfig, toolConfig and additionalModelRequestFields.
// Blobs (image and document bytes) travel as base64 strings. Member names
// follow the Bedrock Runtime API reference (ConverseRequest, ContentBlock,
// TokenUsage), as the AWS SDKs serialize them. Amazon Nova's native body
// reuses the same blocks, so nova.go shares these types.

var converseOps = familyOps{
	parse:      parseConverse,
	usage:      converseUsage,
	streamKeys: nil, // ConverseStream events are told apart by event type
	// There is no Converse model: defaults come from the model's own family.
}

// converseRequest is the part of a Converse request (or of CountTokens'
// converse input) that admission reads.
type converseRequest struct {
	Messages        []converseMessage `json:"messages"`
	System          []converseBlock   `json:"system"`
	InferenceConfig struct {
		MaxTokens *int `json:"maxTokens"`
	} `json:"inferenceConfig"`
	ToolConfig                   toolConfig       `json:"toolConfig"`
	AdditionalModelRequestFields additionalFields `json:"additionalModelRequestFields"`
	// PromptVariables fill a Prompt management template (the model id is
	// then a prompt ARN); their text reaches the model.
	PromptVariables rawTokens `json:"promptVariables"`
}

type converseMessage struct {
	Content []converseBlock `json:"content"`
}

type toolConfig struct {
	Tools []rawTokens `json:"tools"`
}

// converseBlock is a ContentBlock, SystemContentBlock or
// ToolResultContentBlock: all are unions keyed by member name, and the
// members that matter here do not collide.
type converseBlock struct {
	Text     textTokens        `json:"text"`
	Image    present           `json:"image"`
	Video    present           `json:"video"`
	Audio    present           `json:"audio"`
	Document *converseDocument `json:"document"`
	ToolUse  struct {
		Name  textTokens `json:"name"`
		Input rawTokens  `json:"input"`
	} `json:"toolUse"`
	ToolResult struct {
		Content []converseBlock `json:"content"`
	} `json:"toolResult"`
	JSON             rawTokens `json:"json"` // in a toolResult
	ReasoningContent struct {
		ReasoningText struct {
			Text textTokens `json:"text"`
		} `json:"reasoningText"`
		RedactedContent size `json:"redactedContent"`
	} `json:"reasoningContent"`
	GuardContent struct {
		Text struct {
			Text textTokens `json:"text"`
		} `json:"text"`
		Image present `json:"image"`
	} `json:"guardContent"`
	CitationsContent rawTokens `json:"citationsContent"`
	SearchResult     rawTokens `json:"searchResult"`
}

type converseDocument struct {
	Format  string     `json:"format"`
	Name    textTokens `json:"name"`
	Context textTokens `json:"context"`
	Source  struct {
		Bytes   size            `json:"bytes"`
		Text    textTokens      `json:"text"`
		Content []converseBlock `json:"content"`
		S3      present         `json:"s3Location"`
	} `json:"source"`
}

func (b *converseBlock) tokens() int {
	n := int(b.Text) + int(b.ToolUse.Name) + int(b.ToolUse.Input) + int(b.JSON) +
		int(b.ReasoningContent.ReasoningText.Text) + int(b.ReasoningContent.RedactedContent)/4 +
		int(b.GuardContent.Text.Text) + int(b.CitationsContent) + int(b.SearchResult) +
		blockTokens(b.ToolResult.Content)
	if b.Image || b.GuardContent.Image {
		n += imageTokens
	}
	if b.Video {
		n += videoTokens
	}
	if b.Audio {
		n += audioTokens
	}
	if d := b.Document; d != nil {
		n += int(d.Name) + int(d.Context) + int(d.Source.Text) + blockTokens(d.Source.Content)
		switch {
		case d.Source.Bytes > 0:
			n += documentTokens(base64Len(int(d.Source.Bytes)), textFormat(d.Format))
		case bool(d.Source.S3):
			n += documentMinTokens
		}
	}
	return n
}

// textFormat reports whether a DocumentFormat is text rather than a binary
// container.
func textFormat(f string) bool {
	switch f {
	case "txt", "md", "csv", "html":
		return true
	}
	return false
}

func blockTokens(bs []converseBlock) int {
	n := 0
	for i := range bs {
		n += bs[i].tokens()
	}
	return n
}

// messagesTokens estimates the conversation shared by Converse and Nova.
func messagesTokens(system []converseBlock, messages []converseMessage, tools []rawTokens) int {
	n := requestOverhead + blockTokens(system) + toolTokens(len(tools), sumTokens(tools))
	for i := range messages {
		n += messageOverhead + blockTokens(messages[i].Content)
	}
	return n
}

func (c *converseRequest) inputTokens() int {
	return messagesTokens(c.System, c.Messages, c.ToolConfig.Tools) + int(c.PromptVariables)
}

// additionalFields are the max-token names a caller may pass straight to the
// model in additionalModelRequestFields. They are read leniently: the field
// is the model's business, so a value that is not an object, or a max that
// is not an integer, is ignored rather than refused.
type additionalFields struct {
	MaxTokens    lenientInt `json:"max_tokens"`
	MaxGenLen    lenientInt `json:"max_gen_len"`
	MaxNewTokens lenientInt `json:"max_new_tokens"`
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *additionalFields) UnmarshalJSON(b []byte) error {
	if b[0] != '{' {
		return nil
	}
	type plain additionalFields
	_ = json.Unmarshal(b, (*plain)(a)) // lenientInt never fails; other types are skipped
	return nil
}

// lenientInt is a non-negative integer, or nothing when the value is
// anything else.
type lenientInt struct{ v *int }

// UnmarshalJSON implements json.Unmarshaler.
func (l *lenientInt) UnmarshalJSON(b []byte) error {
	if n, ok := parseInt(b); ok && n >= 0 {
		l.v = &n
	}
	return nil
}

var (
	_ json.Unmarshaler = (*additionalFields)(nil)
	_ json.Unmarshaler = (*lenientInt)(nil)
)

func parseConverse(_ string, body []byte) (Request, error) {
	var c converseRequest
	if err := decodeBody(body, &c); err != nil {
		return Request{}, err
	}
	r := Request{InputTokens: c.inputTokens()}
	if err := checkMax(&r, maxField{"inferenceConfig.maxTokens", c.InferenceConfig.MaxTokens}); err != nil || r.MaxTokensSet {
		return r, err
	}
	a := c.AdditionalModelRequestFields
	return r, checkMax(&r,
		maxField{"additionalModelRequestFields.max_tokens", a.MaxTokens.v},
		maxField{"additionalModelRequestFields.max_gen_len", a.MaxGenLen.v},
		maxField{"additionalModelRequestFields.max_new_tokens", a.MaxNewTokens.v})
}

// ParseConverse parses a Converse/ConverseStream body (messages, system, inferenceConfig.maxTokens, toolConfig,
// additionalModelRequestFields). Family in the result is Converse.
//
// Without inferenceConfig.maxTokens (or a max-token field of the model's
// passed in additionalModelRequestFields), MaxTokens is the model's largest
// output, which is Converse's documented default.
func ParseConverse(modelID string, body []byte) (Request, error) {
	return ParseInvoke(Converse, modelID, body)
}

// tokenUsage is Converse's TokenUsage. Nova's native responses spell the
// cache counts cacheReadInputTokenCount and cacheWriteInputTokenCount; both
// spellings are read.
type tokenUsage struct {
	InputTokens               count `json:"inputTokens"`
	OutputTokens              count `json:"outputTokens"`
	CacheReadInputTokens      count `json:"cacheReadInputTokens"`
	CacheWriteInputTokens     count `json:"cacheWriteInputTokens"`
	CacheReadInputTokenCount  count `json:"cacheReadInputTokenCount"`
	CacheWriteInputTokenCount count `json:"cacheWriteInputTokenCount"`
}

func (t *tokenUsage) into(u *Usage) {
	u.take(&u.InputTokens, t.InputTokens)
	u.take(&u.OutputTokens, t.OutputTokens)
	u.take(&u.CacheReadInputTokens, t.CacheReadInputTokens, t.CacheReadInputTokenCount)
	u.take(&u.CacheWriteInputTokens, t.CacheWriteInputTokens, t.CacheWriteInputTokenCount)
}

type converseResponse struct {
	StopReason string     `json:"stopReason"`
	Usage      tokenUsage `json:"usage"`
}

func converseUsage(body []byte) (Usage, *invocationMetrics, error) {
	var r converseResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Usage{}, nil, err
	}
	u := Usage{StopReason: r.StopReason}
	r.Usage.into(&u)
	return u, nil, nil
}

// UsageFromConverse reads usage from a Converse response body (usage.inputTokens, outputTokens, cacheReadInputTokens, cacheWriteInputTokens; stopReason).
func UsageFromConverse(body []byte) Usage {
	return UsageFromInvoke(Converse, body)
}
