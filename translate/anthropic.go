package translate

import (
	"encoding/json"
	"regexp"
	"strings"
)

// Anthropic Claude's Messages API on Bedrock ("Anthropic Claude Messages
// API" in the Bedrock user guide): anthropic_version bedrock-2023-05-31,
// the model in the URL, and the stream events of Anthropic's own API.
type anthropicCodec struct{}

// anthropicVersion is the only version Bedrock's Messages API takes.
const anthropicVersion = "bedrock-2023-05-31"

var anthropicStops = stopNames{
	stopEnd:      "end_turn",
	stopMax:      "max_tokens",
	stopSequence: "stop_sequence",
	// Claude 4 and later stop with "refusal" when their classifiers
	// intervene: the nearest word to a content filter.
	stopFiltered: "refusal",
}

type anthropicRequest struct {
	AnthropicVersion string             `json:"anthropic_version"`
	MaxTokens        *int               `json:"max_tokens,omitempty"`
	System           json.RawMessage    `json:"system,omitempty"`
	Messages         []anthropicMessage `json:"messages"`
	Temperature      *float64           `json:"temperature,omitempty"`
	TopP             *float64           `json:"top_p,omitempty"`
	TopK             *int               `json:"top_k,omitempty"`
	StopSequences    []string           `json:"stop_sequences,omitempty"`
	// Read only, to refuse what is not translated.
	Prompt     *string         `json:"prompt,omitempty"`
	Tools      json.RawMessage `json:"tools,omitempty"`
	ToolChoice json.RawMessage `json:"tool_choice,omitempty"`
	Thinking   json.RawMessage `json:"thinking,omitempty"`
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anthropicBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// anthropicText reads content that is a string or an array of blocks,
// noting the blocks that are not text.
func anthropicText(c *chat, raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil
	}
	var blocks []anthropicBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, err
	}
	var parts []string
	for _, b := range blocks {
		switch b.Type {
		case "text":
			parts = append(parts, b.Text)
		case "image":
			c.need(featImages)
		case "document":
			c.need(featDocuments)
		case "tool_use", "tool_result", "server_tool_use", "web_search_tool_result":
			c.need(featTools)
		case "thinking", "redacted_thinking":
			c.need("extended thinking")
		default:
			c.need(b.Type + " blocks")
		}
	}
	return parts, nil
}

func (anthropicCodec) readRequest(_ string, body []byte) (*chat, error) {
	var r anthropicRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, malformed("%v", err)
	}
	c := &chat{maxTokens: r.MaxTokens, temperature: r.Temperature, topP: r.TopP, topK: r.TopK, stop: r.StopSequences, shape: shapeMessages}
	if r.Prompt != nil && r.Messages == nil {
		c.need("Text Completions prompts")
	}
	if len(r.Tools) > 0 || len(r.ToolChoice) > 0 {
		c.need(featTools)
	}
	if len(r.Thinking) > 0 && string(r.Thinking) != "null" {
		c.need("extended thinking")
	}
	sys, err := anthropicText(c, r.System)
	if err != nil {
		return nil, malformed("system: %v", err)
	}
	c.system = strings.Join(sys, "\n")
	for i, m := range r.Messages {
		parts, err := anthropicText(c, m.Content)
		if err != nil {
			return nil, malformed("messages.%d.content: %v", i, err)
		}
		c.add(role(m.Role), parts...)
	}
	return c, nil
}

func (anthropicCodec) writeRequest(_ string, c *chat) ([]byte, error) {
	r := anthropicRequest{
		AnthropicVersion: anthropicVersion,
		MaxTokens:        c.maxTokens,
		Temperature:      c.temperature,
		TopP:             c.topP,
		TopK:             c.topK,
		StopSequences:    c.stop,
		Messages:         []anthropicMessage{},
	}
	if c.system != "" {
		r.System, _ = json.Marshal(c.system)
	}
	for _, m := range c.messages {
		var content any = m.text()
		if len(m.parts) > 1 {
			blocks := make([]anthropicBlock, len(m.parts))
			for i, p := range m.parts {
				blocks[i] = anthropicBlock{Type: "text", Text: p}
			}
			content = blocks
		}
		raw, err := json.Marshal(content)
		if err != nil {
			return nil, err
		}
		r.Messages = append(r.Messages, anthropicMessage{Role: string(m.role), Content: raw})
	}
	return encode(r)
}

type anthropicUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

type anthropicResponse struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []anthropicBlock `json:"content"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        anthropicUsage   `json:"usage"`
}

func (anthropicCodec) readResponse(body []byte) (result, error) {
	var r anthropicResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return result{}, err
	}
	var res result
	for _, b := range r.Content {
		if b.Type == "text" {
			res.text += b.Text
		}
	}
	if r.StopReason != nil {
		res.stop = anthropicStops.read(*r.StopReason)
	}
	if r.StopSequence != nil {
		res.stopSeq = *r.StopSequence
	}
	return res, nil
}

func (anthropicCodec) writeResponse(model string, _ *chat, r result, id string) ([]byte, error) {
	return encode(anthropicResponse{
		ID:           id,
		Type:         "message",
		Role:         "assistant",
		Model:        anthropicModel(model),
		Content:      []anthropicBlock{{Type: "text", Text: r.text}},
		StopReason:   ptr(anthropicStops.write(r.stop)),
		StopSequence: optional(r.stopSeq),
		Usage:        anthropicUsage{InputTokens: r.input, OutputTokens: r.output},
	})
}

// anthropicModel is the "model" field of a response: the foundation id
// without provider, geography and Bedrock's version suffix, as Bedrock
// reports it (anthropic.claude-3-haiku-20240307-v1:0 -> claude-3-haiku-20240307).
func anthropicModel(model string) string {
	id, _ := foundationID(model)
	name, ok := strings.CutPrefix(id, "anthropic.")
	if !ok {
		return model
	}
	if m := datedVersion.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return name
}

var datedVersion = regexp.MustCompile(`^(.*-\d{8})-v\d+(:\w+)*$`)

// anthropicEvent is one stream event, read or written.
type anthropicEvent struct {
	Type         string             `json:"type"`
	Message      *anthropicResponse `json:"message,omitempty"`
	Index        *int               `json:"index,omitempty"`
	ContentBlock *anthropicBlock    `json:"content_block,omitempty"`
	Delta        *anthropicDelta    `json:"delta,omitempty"`
	Usage        *anthropicOutput   `json:"usage,omitempty"`
	Metrics      json.RawMessage    `json:"amazon-bedrock-invocationMetrics,omitempty"`
}

type anthropicDelta struct {
	Type         string  `json:"type,omitempty"`
	Text         string  `json:"text,omitempty"`
	StopReason   *string `json:"stop_reason,omitempty"`
	StopSequence *string `json:"stop_sequence,omitempty"`
}

// anthropicOutput is message_delta's usage: the output so far, and the
// input, which Anthropic's API now repeats there (cumulative counts). It
// matters when the served model tells its input only at the end (Nova,
// Mistral): message_start had to go out with 0.
type anthropicOutput struct {
	InputTokens  int `json:"input_tokens,omitempty"`
	OutputTokens int `json:"output_tokens"`
}

func (anthropicCodec) readChunk(chunk []byte) (event, error) {
	var e anthropicEvent
	if err := json.Unmarshal(chunk, &e); err != nil {
		return event{}, err
	}
	ev := event{metrics: e.Metrics}
	switch e.Type {
	case "message_start":
		ev.start = true
		if e.Message != nil {
			ev.input, ev.hasInput = e.Message.Usage.InputTokens, true
		}
	case "content_block_delta":
		if e.Delta != nil && e.Delta.Type == "text_delta" {
			ev.text = e.Delta.Text
		}
	case "message_delta":
		if e.Delta != nil && e.Delta.StopReason != nil {
			ev.stop, ev.hasStop = anthropicStops.read(*e.Delta.StopReason), true
			if e.Delta.StopSequence != nil {
				ev.stopSeq = *e.Delta.StopSequence
			}
		}
		if e.Usage != nil {
			ev.output, ev.hasOut = e.Usage.OutputTokens, true
		}
	case "message_stop":
		ev.end = true
	}
	return ev, nil
}

func (anthropicCodec) streamWriter(model string, _ *chat, id string) chunkWriter {
	return &anthropicWriter{model: anthropicModel(model), id: id}
}

// anthropicWriter writes the Messages API's stream: message_start,
// content_block_start, content_block_delta..., content_block_stop,
// message_delta, message_stop.
type anthropicWriter struct {
	model, id string
}

func (w *anthropicWriter) open(st *streamState) []any {
	return []any{
		anthropicEvent{Type: "message_start", Message: &anthropicResponse{
			ID: w.id, Type: "message", Role: "assistant", Model: w.model,
			Content: []anthropicBlock{},
			Usage:   anthropicUsage{InputTokens: st.input, OutputTokens: st.output},
		}},
		anthropicEvent{Type: "content_block_start", Index: ptr(0), ContentBlock: &anthropicBlock{Type: "text"}},
	}
}

func (w *anthropicWriter) text(_ *streamState, s string) []any {
	return []any{anthropicEvent{Type: "content_block_delta", Index: ptr(0), Delta: &anthropicDelta{Type: "text_delta", Text: s}}}
}

func (w *anthropicWriter) close(st *streamState) []any {
	return []any{
		anthropicEvent{Type: "content_block_stop", Index: ptr(0)},
		anthropicMessageDelta{Type: "message_delta",
			Delta: anthropicStop{StopReason: anthropicStops.write(st.stop), StopSequence: optional(st.stopSeq)},
			Usage: anthropicOutput{InputTokens: st.input, OutputTokens: st.output}},
		anthropicEvent{Type: "message_stop"},
	}
}

// anthropicMessageDelta is written apart from anthropicEvent because its
// stop_sequence is null rather than absent, as Anthropic sends it.
type anthropicMessageDelta struct {
	Type  string          `json:"type"`
	Delta anthropicStop   `json:"delta"`
	Usage anthropicOutput `json:"usage"`
}

type anthropicStop struct {
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

// ptr returns a pointer to v, for optional JSON fields.
func ptr[T any](v T) *T { return &v }

// optional is s, or null when empty.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
