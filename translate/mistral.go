package translate

import (
	"encoding/json"
	"strings"
)

// Mistral AI has two native shapes on Bedrock: text completion ("Mistral AI
// text completion": prompt in the [INST] template, max_tokens, stop,
// temperature, top_p, top_k; {"outputs": [{"text", "stop_reason"}]} out)
// for every Mistral model, and chat completion ("Mistral AI chat
// completion": messages, tools, max_tokens, temperature, top_p;
// {"choices": [{"index", "message", "stop_reason"}]} out) for Mistral Large.
// Neither response carries usage: Bedrock reports it in headers, and in the
// invocation metrics of a stream.
type mistralCodec struct{}

var mistralStops = stopNames{
	stopEnd: "stop",
	stopMax: "length",
}

type mistralRequest struct {
	Prompt      *string          `json:"prompt,omitempty"`
	Messages    []mistralMessage `json:"messages,omitempty"`
	MaxTokens   *int             `json:"max_tokens,omitempty"`
	Stop        []string         `json:"stop,omitempty"`
	Temperature *float64         `json:"temperature,omitempty"`
	TopP        *float64         `json:"top_p,omitempty"`
	TopK        *int             `json:"top_k,omitempty"`
	// Read only.
	Tools      json.RawMessage `json:"tools,omitempty"`
	ToolChoice json.RawMessage `json:"tool_choice,omitempty"`
}

type mistralMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  json.RawMessage `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// mistralText reads content: a string or (Pixtral) text and image_url
// parts.
func mistralText(c *chat, raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range parts {
		if p.Type == "text" {
			out = append(out, p.Text)
		} else {
			c.need(featImages)
		}
	}
	return out, nil
}

// stopList reads "stop" as a list, or a single string.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = []string{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(s))
}

func (mistralCodec) readRequest(_ string, body []byte) (*chat, error) {
	var r struct {
		mistralRequest
		Stop stopList `json:"stop"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, malformed("%v", err)
	}
	c := &chat{maxTokens: r.MaxTokens, temperature: r.Temperature, topP: r.TopP, topK: r.TopK, stop: r.Stop}
	if len(r.Tools) > 0 && string(r.Tools) != "null" || len(r.ToolChoice) > 0 && string(r.ToolChoice) != `"none"` {
		c.need(featTools)
	}
	if r.Prompt == nil {
		c.shape = shapeMessages
		for i, m := range r.Messages {
			parts, err := mistralText(c, m.Content)
			if err != nil {
				return nil, malformed("messages.%d.content: %v", i, err)
			}
			if len(m.ToolCalls) > 0 && string(m.ToolCalls) != "null" {
				c.need(featTools)
			}
			switch m.Role {
			case "system":
				c.system = joinText(c.system, strings.Join(parts, "\n"))
			case "user", "assistant":
				c.add(role(m.Role), parts...)
			default: // tool
				c.need(featTools)
			}
		}
		return c, nil
	}
	if strings.Contains(*r.Prompt, instOpen) {
		parseInst(c, *r.Prompt)
	} else {
		c.add(user, strings.TrimSpace(*r.Prompt))
	}
	return c, nil
}

// mistralChat reports the models written in the chat completion shape:
// Mistral Large 2 (24.07) and later, whose Bedrock page documents only
// that shape. Everything else, Mistral Large (24.02) included, takes text
// completion, which also carries stop sequences and top_k.
func mistralChat(model string) bool {
	id, _ := foundationID(model)
	return strings.HasPrefix(id, "mistral.mistral-large-24") && !strings.HasPrefix(id, "mistral.mistral-large-2402")
}

func (mistralCodec) writeRequest(model string, c *chat) ([]byte, error) {
	r := mistralRequest{MaxTokens: c.maxTokens, Temperature: c.temperature, TopP: c.topP}
	if !mistralChat(model) {
		r.Prompt = ptr(renderInst(c, false))
		r.TopK, r.Stop = c.topK, c.stop
		return encode(r)
	}
	if len(c.stop) > 0 {
		return nil, untranslatable("mistral chat completion cannot take stop sequences")
	}
	if c.system != "" {
		r.Messages = append(r.Messages, mistralMessage{Role: "system", Content: jsonString(c.system)})
	}
	for _, m := range c.messages {
		r.Messages = append(r.Messages, mistralMessage{Role: string(m.role), Content: jsonString(m.text())})
	}
	return encode(r)
}

// jsonString encodes s as a JSON string.
func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

type mistralOutput struct {
	Text       string  `json:"text"`
	StopReason *string `json:"stop_reason"`
}

type mistralChoice struct {
	Index   int `json:"index"`
	Message struct {
		Role      string          `json:"role"`
		Content   string          `json:"content"`
		ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
	} `json:"message"`
	Delta *struct {
		Content string `json:"content"`
	} `json:"delta,omitempty"` // read only: OpenAI-style stream deltas
	StopReason *string `json:"stop_reason"`
}

// mistralUsage is the OpenAI-style usage object; see writeResponse.
type mistralUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type mistralResponse struct {
	Outputs []mistralOutput `json:"outputs,omitempty"`
	Choices []mistralChoice `json:"choices,omitempty"`
	Usage   *mistralUsage   `json:"usage,omitempty"`
	Metrics json.RawMessage `json:"amazon-bedrock-invocationMetrics,omitempty"`
}

// read returns the text and the stop reason, if any, of a response or
// chunk in either shape.
func (r *mistralResponse) read() (string, *string) {
	var b strings.Builder
	var stop *string
	for _, o := range r.Outputs {
		b.WriteString(o.Text)
		stop = firstSet(stop, o.StopReason)
	}
	for _, c := range r.Choices {
		b.WriteString(c.Message.Content)
		if c.Delta != nil {
			b.WriteString(c.Delta.Content)
		}
		stop = firstSet(stop, c.StopReason)
	}
	return b.String(), stop
}

func (mistralCodec) readResponse(body []byte) (result, error) {
	var r mistralResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return result{}, err
	}
	text, stop := r.read()
	res := result{text: text}
	if stop != nil {
		res.stop = mistralStops.read(*stop)
	}
	return res, nil
}

// piece is a response or chunk in the caller's shape.
func mistralPiece(c *chat, text string, stop *string) mistralResponse {
	if c.shape == shapeMessages {
		ch := mistralChoice{StopReason: stop}
		ch.Message.Role, ch.Message.Content = "assistant", text
		return mistralResponse{Choices: []mistralChoice{ch}}
	}
	return mistralResponse{Outputs: []mistralOutput{{Text: text, StopReason: stop}}}
}

// writeResponse adds the OpenAI-style usage object that newer Mistral
// models send and that usage readers (tokens.UsageFromInvoke) look for:
// the Mistral body has no other place for usage, and the caller's
// X-Amzn-Bedrock-*-Token-Count headers describe the target's call.
func (mistralCodec) writeResponse(_ string, c *chat, r result, _ string) ([]byte, error) {
	out := mistralPiece(c, r.text, ptr(mistralStops.write(r.stop)))
	out.Usage = &mistralUsage{PromptTokens: r.input, CompletionTokens: r.output, TotalTokens: r.input + r.output}
	return encode(out)
}

func (mistralCodec) readChunk(chunk []byte) (event, error) {
	var r mistralResponse
	if err := json.Unmarshal(chunk, &r); err != nil {
		return event{}, err
	}
	text, stop := r.read()
	ev := event{text: text, metrics: r.Metrics}
	if stop != nil {
		ev.stop, ev.hasStop, ev.end = mistralStops.read(*stop), true, true
	}
	if r.Usage != nil {
		ev.input, ev.output, ev.hasInput, ev.hasOut = r.Usage.PromptTokens, r.Usage.CompletionTokens, true, true
	}
	return ev, nil
}

func (mistralCodec) streamWriter(_ string, c *chat, _ string) chunkWriter {
	return mistralWriter{chat: c}
}

// mistralWriter writes the text with a null stop_reason, then an empty
// piece with the stop reason, in the shape the caller used.
type mistralWriter struct{ chat *chat }

func (mistralWriter) open(*streamState) []any { return nil }

func (w mistralWriter) text(_ *streamState, s string) []any {
	return []any{mistralPiece(w.chat, s, nil)}
}

func (w mistralWriter) close(st *streamState) []any {
	return []any{mistralPiece(w.chat, "", ptr(mistralStops.write(st.stop)))}
}
