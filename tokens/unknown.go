package tokens

import (
	"bytes"
	"encoding/json"
)

// A model of no family known here (AI21, DeepSeek, Qwen, OpenAI's
// open-weight models, an application inference profile...) still gets a
// reservation: every string value of its body is counted as text, except
// long base64 runs, which are counted as media, and the usual max-token
// names are looked for at any depth.

var unknownOps = familyOps{
	parse:      parseUnknown,
	usage:      genericUsage,
	streamKeys: nil,
}

// maxTokenKeys are the max-output field names of the families above and of
// the OpenAI, Gemini and Jamba styles, as raw JSON key bytes.
var maxTokenKeys = [][]byte{
	[]byte("max_tokens"), []byte("max_tokens_to_sample"), []byte("max_gen_len"),
	[]byte("maxTokenCount"), []byte("max_new_tokens"), []byte("maxTokens"),
	[]byte("max_completion_tokens"), []byte("max_output_tokens"), []byte("maxOutputTokens"),
}

func parseUnknown(_ string, body []byte) (Request, error) {
	// Validate first, so that the scan below only ever sees valid JSON.
	if err := decodeBody(body, &struct{}{}); err != nil {
		return Request{}, err
	}
	r := Request{InputTokens: requestOverhead}
	for i := 0; i < len(body); i++ {
		if body[i] != '"' {
			continue
		}
		end := stringEnd(body, i)
		if end < 0 {
			break // cannot happen: body is valid JSON
		}
		s := body[i+1 : end]
		i = end
		next := skipSpace(body, end+1)
		if next < len(body) && body[next] == ':' {
			// A key. Its value, if a max-token integer, is read here; if a
			// string, it is counted when the scan reaches it.
			if !isMaxTokenKey(s) {
				continue
			}
			v, ok := intAt(body, skipSpace(body, next+1))
			if !ok {
				continue // not an integer: some other meaning of the name
			}
			if err := checkMax(&r, maxField{string(s), &v}); err != nil {
				return Request{}, err
			}
			continue
		}
		if looksBase64(s) {
			r.InputTokens += imageTokens
		} else {
			r.InputTokens += estimate(s)
		}
	}
	return r, nil
}

// stringEnd returns the index of the quote closing the JSON string that
// opens at body[start], or -1 if the string is not closed.
func stringEnd(body []byte, start int) int {
	for i := start + 1; i < len(body); i++ {
		switch body[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

func skipSpace(body []byte, i int) int {
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	return i
}

func isMaxTokenKey(k []byte) bool {
	for _, m := range maxTokenKeys {
		if bytes.Equal(k, m) {
			return true
		}
	}
	return false
}

// intAt parses the JSON integer at body[i:], reporting false for any other
// value (including numbers with a fraction or exponent).
func intAt(body []byte, i int) (int, bool) {
	j := i
	if j < len(body) && body[j] == '-' {
		j++
	}
	for j < len(body) && '0' <= body[j] && body[j] <= '9' {
		j++
	}
	if j < len(body) && (body[j] == '.' || body[j] == 'e' || body[j] == 'E') {
		return 0, false
	}
	return parseInt(body[i:j])
}

// genericResponse gathers the usage fields of every style seen on Bedrock,
// for a response (or stream chunk) of unknown family.
type genericResponse struct {
	Usage struct {
		InputTokens           count `json:"input_tokens"`
		OutputTokens          count `json:"output_tokens"`
		CacheReadInputTokens  count `json:"cache_read_input_tokens"`
		CacheWriteInputTokens count `json:"cache_creation_input_tokens"`
		PromptTokens          count `json:"prompt_tokens"`
		CompletionTokens      count `json:"completion_tokens"`
		tokenUsage
	} `json:"usage"`
	PromptTokenCount     count  `json:"prompt_token_count"`
	GenerationTokenCount count  `json:"generation_token_count"`
	InputTextTokenCount  count  `json:"inputTextTokenCount"`
	StopReason           string `json:"stop_reason"`
	StopReasonCamel      string `json:"stopReason"`
	FinishReason         string `json:"finish_reason"`
	CompletionReason     string `json:"completionReason"`
	Choices              []struct {
		FinishReason string `json:"finish_reason"`
		StopReason   string `json:"stop_reason"`
	} `json:"choices"`
	withMetrics
}

func genericUsage(body []byte) (Usage, *invocationMetrics, error) {
	var r genericResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Usage{}, nil, err
	}
	var u Usage
	r.Usage.tokenUsage.into(&u)
	u.take(&u.InputTokens, r.Usage.InputTokens, r.Usage.PromptTokens, r.PromptTokenCount, r.InputTextTokenCount)
	u.take(&u.OutputTokens, r.Usage.OutputTokens, r.Usage.CompletionTokens, r.GenerationTokenCount)
	u.take(&u.CacheReadInputTokens, r.Usage.CacheReadInputTokens)
	u.take(&u.CacheWriteInputTokens, r.Usage.CacheWriteInputTokens)
	u.StopReason = firstOf(r.StopReason, r.StopReasonCamel, r.FinishReason, r.CompletionReason)
	for _, c := range r.Choices {
		u.StopReason = firstOf(u.StopReason, c.FinishReason, c.StopReason)
	}
	return u, r.Metrics, nil
}
