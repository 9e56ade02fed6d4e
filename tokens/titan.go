package tokens

import "encoding/json"

// Amazon Titan Text takes {"inputText", "textGenerationConfig": {"maxTokenCount",
// "temperature", "topP", "stopSequences"}} and answers {"inputTextTokenCount",
// "results": [{"tokenCount", "outputText", "completionReason"}]}; a stream
// chunk is {"outputText", "index", "totalOutputTextTokenCount",
// "completionReason", "inputTextTokenCount"}. See the Bedrock user guide,
// "Amazon Titan Text models".

var titanOps = familyOps{
	parse:      parseTitan,
	usage:      titanUsage,
	streamKeys: nil, // every chunk carries counts
	// maxTokenCount: default 512 for every model; maximum 4,096 for Lite,
	// 8,192 for Express, 3,072 for Premier (user guide).
	limits: []modelLimit{
		{match: "titan-text-lite", def: 512, max: 4096},
		{match: "titan-text-express", def: 512, max: 8192},
		{match: "titan-text-premier", def: 512, max: 3072},
	},
	fallback: modelLimit{def: 512, max: 8192},
}

type titanRequest struct {
	InputText            textTokens `json:"inputText"`
	TextGenerationConfig struct {
		MaxTokenCount *int `json:"maxTokenCount"`
	} `json:"textGenerationConfig"`
}

func parseTitan(_ string, body []byte) (Request, error) {
	var t titanRequest
	if err := decodeBody(body, &t); err != nil {
		return Request{}, err
	}
	r := Request{InputTokens: requestOverhead + int(t.InputText)}
	return r, checkMax(&r, maxField{"textGenerationConfig.maxTokenCount", t.TextGenerationConfig.MaxTokenCount})
}

// titanResponse is a response or a stream chunk.
type titanResponse struct {
	InputTextTokenCount count `json:"inputTextTokenCount"`
	Results             []struct {
		TokenCount       count  `json:"tokenCount"`
		CompletionReason string `json:"completionReason"`
	} `json:"results"`
	TotalOutputTextTokenCount count  `json:"totalOutputTextTokenCount"` // chunk, cumulative
	CompletionReason          string `json:"completionReason"`          // chunk
	withMetrics
}

func titanUsage(body []byte) (Usage, *invocationMetrics, error) {
	var r titanResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Usage{}, nil, err
	}
	var u Usage
	u.take(&u.InputTokens, r.InputTextTokenCount)
	u.take(&u.OutputTokens, r.TotalOutputTextTokenCount)
	u.StopReason = r.CompletionReason
	for _, res := range r.Results {
		if res.TokenCount.ok {
			u.OutputTokens += res.TokenCount.n
			u.Known = true
		}
		u.StopReason = firstOf(u.StopReason, res.CompletionReason)
	}
	return u, r.Metrics, nil
}
