package translate

import (
	"encoding/json"
	"strings"
)

// Amazon Titan Text ("Amazon Titan Text models" in the Bedrock user guide):
// inputText and textGenerationConfig (maxTokenCount, temperature, topP,
// stopSequences; no top_k) in; inputTextTokenCount and results out. Stream
// chunks carry outputText, the running totalOutputTextTokenCount, the
// inputTextTokenCount and, last, the completionReason.
type titanCodec struct{}

// The guide spells the normal end "FINISHED", but the service sends
// "FINISH"; both are read.
var titanStops = stopNames{
	stopEnd:      "FINISH",
	stopMax:      "LENGTH",
	stopSequence: "STOP_CRITERIA_MET",
	stopFiltered: "CONTENT_FILTERED",
}

type titanRequest struct {
	InputText            string       `json:"inputText"`
	TextGenerationConfig *titanConfig `json:"textGenerationConfig,omitempty"`
}

type titanConfig struct {
	MaxTokenCount *int     `json:"maxTokenCount,omitempty"`
	Temperature   *float64 `json:"temperature,omitempty"`
	TopP          *float64 `json:"topP,omitempty"`
	StopSequences []string `json:"stopSequences,omitempty"`
}

func (titanCodec) readRequest(_ string, body []byte) (*chat, error) {
	var r titanRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, malformed("%v", err)
	}
	c := &chat{}
	if cfg := r.TextGenerationConfig; cfg != nil {
		c.maxTokens, c.temperature, c.topP, c.stop = cfg.MaxTokenCount, cfg.Temperature, cfg.TopP, cfg.StopSequences
	}
	parseTitan(c, r.InputText)
	return c, nil
}

func (titanCodec) writeRequest(_ string, c *chat) ([]byte, error) {
	r := titanRequest{InputText: renderTitan(c)}
	if c.maxTokens != nil || c.temperature != nil || c.topP != nil || len(c.stop) > 0 {
		r.TextGenerationConfig = &titanConfig{MaxTokenCount: c.maxTokens, Temperature: c.temperature, TopP: c.topP, StopSequences: c.stop}
	}
	return encode(r)
}

type titanResult struct {
	TokenCount       int    `json:"tokenCount"`
	OutputText       string `json:"outputText"`
	CompletionReason string `json:"completionReason"`
}

type titanResponse struct {
	InputTextTokenCount int           `json:"inputTextTokenCount"`
	Results             []titanResult `json:"results"`
}

func readTitanStop(s string) stopReason {
	if s == "FINISHED" {
		return stopEnd
	}
	return titanStops.read(s)
}

func (titanCodec) readResponse(body []byte) (result, error) {
	var r titanResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return result{}, err
	}
	var res result
	var b strings.Builder
	for i, x := range r.Results {
		b.WriteString(x.OutputText)
		if i == 0 {
			res.stop = readTitanStop(x.CompletionReason)
		}
	}
	res.text = b.String()
	return res, nil
}

func (titanCodec) writeResponse(_ string, _ *chat, r result, _ string) ([]byte, error) {
	return encode(titanResponse{
		InputTextTokenCount: r.input,
		Results:             []titanResult{{TokenCount: r.output, OutputText: r.text, CompletionReason: titanStops.write(r.stop)}},
	})
}

// titanChunk is one stream chunk.
type titanChunk struct {
	OutputText                string          `json:"outputText"`
	Index                     int             `json:"index"`
	TotalOutputTextTokenCount int             `json:"totalOutputTextTokenCount"`
	CompletionReason          *string         `json:"completionReason"`
	InputTextTokenCount       *int            `json:"inputTextTokenCount"`
	Metrics                   json.RawMessage `json:"amazon-bedrock-invocationMetrics,omitempty"`
}

func (titanCodec) readChunk(chunk []byte) (event, error) {
	var c titanChunk
	if err := json.Unmarshal(chunk, &c); err != nil {
		return event{}, err
	}
	ev := event{text: c.OutputText, output: c.TotalOutputTextTokenCount, hasOut: true, metrics: c.Metrics}
	if c.InputTextTokenCount != nil {
		ev.input, ev.hasInput = *c.InputTextTokenCount, true
	}
	if c.CompletionReason != nil {
		ev.stop, ev.hasStop, ev.end = readTitanStop(*c.CompletionReason), true, true
	}
	return ev, nil
}

func (titanCodec) streamWriter(string, *chat, string) chunkWriter { return titanWriter{} }

// titanWriter writes Titan's chunks. Titan puts the completion reason on
// the chunk with the last text; a translator cannot know which text is the
// last, so it ends with an empty chunk that carries the reason.
type titanWriter struct{}

func (titanWriter) chunk(st *streamState, text string, reason *string) titanChunk {
	return titanChunk{OutputText: text, TotalOutputTextTokenCount: st.output, CompletionReason: reason, InputTextTokenCount: &st.input}
}

func (titanWriter) open(*streamState) []any { return nil }

func (w titanWriter) text(st *streamState, s string) []any {
	return []any{w.chunk(st, s, nil)}
}

func (w titanWriter) close(st *streamState) []any {
	return []any{w.chunk(st, "", ptr(titanStops.write(st.stop)))}
}
