package translate

import "encoding/json"

// Amazon Nova's InvokeModel schema ("messages-v1", "Complete request
// schema" in the Nova user guide): Converse-like system, messages and
// inferenceConfig; responses {"output": {"message"}, "stopReason",
// "usage"}; stream chunks named after the Converse stream events
// (messageStart, contentBlockDelta, contentBlockStop, messageStop,
// metadata).
type novaCodec struct{}

const novaSchema = "messages-v1"

var novaStops = stopNames{
	stopEnd:      "end_turn",
	stopMax:      "max_tokens",
	stopSequence: "stop_sequence",
	stopFiltered: "content_filtered",
}

type novaRequest struct {
	SchemaVersion   string          `json:"schemaVersion"`
	System          []novaBlock     `json:"system,omitempty"`
	Messages        []novaMessage   `json:"messages"`
	InferenceConfig *novaConfig     `json:"inferenceConfig,omitempty"`
	ToolConfig      json.RawMessage `json:"toolConfig,omitempty"` // read only
}

// novaConfig is written with max_new_tokens, the name of Nova's first
// documentation that every Nova model takes, and the camelCase names of
// the others; reading takes both spellings of each.
type novaConfig struct {
	MaxNewTokens  *int     `json:"max_new_tokens,omitempty"`
	Temperature   *float64 `json:"temperature,omitempty"`
	TopP          *float64 `json:"topP,omitempty"`
	TopK          *int     `json:"topK,omitempty"`
	StopSequences []string `json:"stopSequences,omitempty"`
}

type novaConfigIn struct {
	novaConfig
	MaxTokens *int     `json:"maxTokens"`
	TopPSnake *float64 `json:"top_p"`
	TopKSnake *int     `json:"top_k"`
}

type novaMessage struct {
	Role    string      `json:"role"`
	Content []novaBlock `json:"content"`
}

// novaBlock is a content block; only text is written, the rest is read to
// be refused.
type novaBlock struct {
	Text             *string         `json:"text,omitempty"`
	Image            json.RawMessage `json:"image,omitempty"`
	Video            json.RawMessage `json:"video,omitempty"`
	Document         json.RawMessage `json:"document,omitempty"`
	ToolUse          json.RawMessage `json:"toolUse,omitempty"`
	ToolResult       json.RawMessage `json:"toolResult,omitempty"`
	ReasoningContent json.RawMessage `json:"reasoningContent,omitempty"`
}

// novaText reads blocks, noting those that are not text. Cache points
// carry no content and are dropped.
func novaText(c *chat, blocks []novaBlock) []string {
	var parts []string
	for _, b := range blocks {
		switch {
		case b.Text != nil:
			parts = append(parts, *b.Text)
		case b.Image != nil:
			c.need(featImages)
		case b.Video != nil:
			c.need(featVideo)
		case b.Document != nil:
			c.need(featDocuments)
		case b.ToolUse != nil, b.ToolResult != nil:
			c.need(featTools)
		case b.ReasoningContent != nil:
			c.need("reasoning content")
		}
	}
	return parts
}

func (novaCodec) readRequest(_ string, body []byte) (*chat, error) {
	var r struct {
		novaRequest
		InferenceConfig novaConfigIn `json:"inferenceConfig"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, malformed("%v", err)
	}
	cfg := r.InferenceConfig
	c := &chat{
		maxTokens:   firstSet(cfg.MaxTokens, cfg.MaxNewTokens),
		temperature: cfg.Temperature,
		topP:        firstSet(cfg.TopP, cfg.TopPSnake),
		topK:        firstSet(cfg.TopK, cfg.TopKSnake),
		stop:        cfg.StopSequences,
		shape:       shapeMessages,
	}
	if len(r.ToolConfig) > 0 && string(r.ToolConfig) != "null" {
		c.need(featTools)
	}
	for _, s := range novaText(c, r.System) {
		c.system = joinText(c.system, s)
	}
	for _, m := range r.Messages {
		c.add(role(m.Role), novaText(c, m.Content)...)
	}
	return c, nil
}

// firstSet returns the first non-nil pointer.
func firstSet[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func (novaCodec) writeRequest(_ string, c *chat) ([]byte, error) {
	r := novaRequest{SchemaVersion: novaSchema, Messages: []novaMessage{}}
	if c.system != "" {
		r.System = []novaBlock{{Text: ptr(c.system)}}
	}
	for _, m := range c.messages {
		blocks := make([]novaBlock, len(m.parts))
		for i, p := range m.parts {
			blocks[i] = novaBlock{Text: ptr(p)}
		}
		r.Messages = append(r.Messages, novaMessage{Role: string(m.role), Content: blocks})
	}
	cfg := novaConfig{MaxNewTokens: c.maxTokens, Temperature: c.temperature, TopP: c.topP, TopK: c.topK, StopSequences: c.stop}
	if cfg.MaxNewTokens != nil || cfg.Temperature != nil || cfg.TopP != nil || cfg.TopK != nil || len(cfg.StopSequences) > 0 {
		r.InferenceConfig = &cfg
	}
	return encode(r)
}

type novaUsage struct {
	InputTokens               int  `json:"inputTokens"`
	OutputTokens              int  `json:"outputTokens"`
	TotalTokens               *int `json:"totalTokens,omitempty"`
	CacheReadInputTokenCount  int  `json:"cacheReadInputTokenCount"`
	CacheWriteInputTokenCount int  `json:"cacheWriteInputTokenCount"`
}

type novaResponse struct {
	Output struct {
		Message novaMessage `json:"message"`
	} `json:"output"`
	StopReason string    `json:"stopReason"`
	Usage      novaUsage `json:"usage"`
}

func (novaCodec) readResponse(body []byte) (result, error) {
	var r novaResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return result{}, err
	}
	res := result{stop: novaStops.read(r.StopReason)}
	for _, b := range r.Output.Message.Content {
		if b.Text != nil {
			res.text += *b.Text
		}
	}
	return res, nil
}

func (novaCodec) writeResponse(_ string, _ *chat, r result, _ string) ([]byte, error) {
	var out novaResponse
	out.Output.Message = novaMessage{Role: "assistant", Content: []novaBlock{{Text: ptr(r.text)}}}
	out.StopReason = novaStops.write(r.stop)
	out.Usage = novaUsage{InputTokens: r.input, OutputTokens: r.output, TotalTokens: ptr(r.input + r.output)}
	return encode(out)
}

// novaChunk is one stream chunk: one member set, named after the event.
type novaChunk struct {
	MessageStart      *novaRole       `json:"messageStart,omitempty"`
	ContentBlockDelta *novaDelta      `json:"contentBlockDelta,omitempty"`
	ContentBlockStop  *novaIndex      `json:"contentBlockStop,omitempty"`
	MessageStop       *novaStop       `json:"messageStop,omitempty"`
	Metadata          *novaMetadata   `json:"metadata,omitempty"`
	Metrics           json.RawMessage `json:"amazon-bedrock-invocationMetrics,omitempty"`
}

type novaRole struct {
	Role string `json:"role"`
}

type novaDelta struct {
	Delta struct {
		Text *string `json:"text,omitempty"`
	} `json:"delta"`
	ContentBlockIndex int `json:"contentBlockIndex"`
}

type novaIndex struct {
	ContentBlockIndex int `json:"contentBlockIndex"`
}

type novaStop struct {
	StopReason string `json:"stopReason"`
}

type novaMetadata struct {
	Usage   novaUsage `json:"usage"`
	Metrics struct{}  `json:"metrics"`
	Trace   struct{}  `json:"trace"`
}

func (novaCodec) readChunk(chunk []byte) (event, error) {
	var c novaChunk
	if err := json.Unmarshal(chunk, &c); err != nil {
		return event{}, err
	}
	ev := event{metrics: c.Metrics}
	switch {
	case c.MessageStart != nil:
		ev.start = true
	case c.ContentBlockDelta != nil:
		if t := c.ContentBlockDelta.Delta.Text; t != nil {
			ev.text = *t
		}
	case c.MessageStop != nil:
		ev.stop, ev.hasStop = novaStops.read(c.MessageStop.StopReason), true
	case c.Metadata != nil:
		u := c.Metadata.Usage
		ev.input, ev.output, ev.hasInput, ev.hasOut = u.InputTokens, u.OutputTokens, true, true
		ev.end = true
	}
	return ev, nil
}

func (novaCodec) streamWriter(string, *chat, string) chunkWriter { return novaWriter{} }

// novaWriter writes Nova's chunks: messageStart, contentBlockDelta...,
// contentBlockStop, messageStop and metadata with the usage.
type novaWriter struct{}

func (novaWriter) open(*streamState) []any {
	return []any{novaChunk{MessageStart: &novaRole{Role: "assistant"}}}
}

func (novaWriter) text(_ *streamState, s string) []any {
	d := &novaDelta{}
	d.Delta.Text = ptr(s)
	return []any{novaChunk{ContentBlockDelta: d}}
}

func (novaWriter) close(st *streamState) []any {
	return []any{
		novaChunk{ContentBlockStop: &novaIndex{}},
		novaChunk{MessageStop: &novaStop{StopReason: novaStops.write(st.stop)}},
		novaChunk{Metadata: &novaMetadata{Usage: novaUsage{InputTokens: st.input, OutputTokens: st.output}}},
	}
}
