package translate

import (
	"encoding/json"
	"strings"
)

// Meta Llama ("Meta Llama models" in the Bedrock user guide): a prompt with
// the chat template applied, max_gen_len, temperature and top_p; no top_k
// and no stop sequences. Responses and stream chunks carry generation,
// prompt_token_count, generation_token_count and stop_reason.
type metaCodec struct{}

var metaStops = stopNames{
	stopEnd: "stop",
	stopMax: "length",
}

type metaRequest struct {
	Prompt      string          `json:"prompt"`
	MaxGenLen   *int            `json:"max_gen_len,omitempty"`
	Temperature *float64        `json:"temperature,omitempty"`
	TopP        *float64        `json:"top_p,omitempty"`
	Images      json.RawMessage `json:"images,omitempty"` // read only
}

func (metaCodec) readRequest(_ string, body []byte) (*chat, error) {
	var r metaRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, malformed("%v", err)
	}
	c := &chat{maxTokens: r.MaxGenLen, temperature: r.Temperature, topP: r.TopP}
	if len(r.Images) > 0 && string(r.Images) != "null" && string(r.Images) != "[]" {
		c.need(featImages)
	}
	switch {
	case strings.Contains(r.Prompt, llama3Header):
		parseLlama3(c, r.Prompt)
	case strings.Contains(r.Prompt, instOpen):
		parseInst(c, r.Prompt)
	default:
		c.add(user, strings.TrimSpace(r.Prompt))
	}
	return c, nil
}

// llama2 reports the models that take the Llama 2 template; every later
// Llama takes Llama 3's header tokens.
func llama2(model string) bool {
	id, _ := foundationID(model)
	return strings.HasPrefix(id, "meta.llama2")
}

func (metaCodec) writeRequest(model string, c *chat) ([]byte, error) {
	if len(c.stop) > 0 {
		return nil, untranslatable("meta cannot take stop sequences")
	}
	r := metaRequest{MaxGenLen: c.maxTokens, Temperature: c.temperature, TopP: c.topP}
	if llama2(model) {
		r.Prompt = renderInst(c, true)
	} else {
		r.Prompt = renderLlama3(c)
	}
	return encode(r)
}

// metaResponse is a response or a stream chunk.
type metaResponse struct {
	Generation           string          `json:"generation"`
	PromptTokenCount     *int            `json:"prompt_token_count"`
	GenerationTokenCount int             `json:"generation_token_count"`
	StopReason           *string         `json:"stop_reason"`
	Metrics              json.RawMessage `json:"amazon-bedrock-invocationMetrics,omitempty"`
}

func (metaCodec) readResponse(body []byte) (result, error) {
	var r metaResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return result{}, err
	}
	res := result{text: r.Generation}
	if r.StopReason != nil {
		res.stop = metaStops.read(*r.StopReason)
	}
	return res, nil
}

func (metaCodec) writeResponse(_ string, _ *chat, r result, _ string) ([]byte, error) {
	return encode(metaResponse{
		Generation:           r.text,
		PromptTokenCount:     &r.input,
		GenerationTokenCount: r.output,
		StopReason:           ptr(metaStops.write(r.stop)),
	})
}

func (metaCodec) readChunk(chunk []byte) (event, error) {
	var r metaResponse
	if err := json.Unmarshal(chunk, &r); err != nil {
		return event{}, err
	}
	ev := event{text: r.Generation, output: r.GenerationTokenCount, hasOut: true, metrics: r.Metrics}
	if r.PromptTokenCount != nil {
		ev.input, ev.hasInput = *r.PromptTokenCount, true
	}
	if r.StopReason != nil {
		ev.stop, ev.hasStop, ev.end = metaStops.read(*r.StopReason), true, true
	}
	return ev, nil
}

func (metaCodec) streamWriter(string, *chat, string) chunkWriter { return &metaWriter{} }

// metaWriter writes Llama's chunks: the text with the running output
// count, the prompt count once (on the first chunk when the target has
// told it by then), and a last empty chunk with the stop reason.
type metaWriter struct{}

func (w *metaWriter) chunk(st *streamState, text string, stop *string) metaResponse {
	c := metaResponse{Generation: text, GenerationTokenCount: st.output, StopReason: stop}
	if st.hasInput && !st.inputSent {
		c.PromptTokenCount, st.inputSent = ptr(st.input), true
	}
	return c
}

func (w *metaWriter) open(*streamState) []any { return nil }

func (w *metaWriter) text(st *streamState, s string) []any {
	return []any{w.chunk(st, s, nil)}
}

func (w *metaWriter) close(st *streamState) []any {
	return []any{w.chunk(st, "", ptr(metaStops.write(st.stop)))}
}
