package tokens

import "testing"

const llama3Prompt = `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`

func TestParseInvokeMeta(t *testing.T) {
	runParseCases(t, Meta, []parseCase{{
		name:    "with max_gen_len",
		model:   "meta.llama3-70b-instruct-v1:0",
		body:    `{"prompt":"` + llama3Prompt + `","max_gen_len":256,"temperature":0.5,"top_p":0.9}`,
		wantMax: 256, wantSet: true,
		minIn: est(llama3Prompt),
	}, {
		name:    "default 512",
		model:   "us.meta.llama3-3-70b-instruct-v1:0",
		body:    `{"prompt":"` + llama3Prompt + `"}`,
		wantMax: 512,
		minIn:   est(llama3Prompt),
	}, {
		name:    "vision prompt with an image",
		model:   "us.meta.llama3-2-11b-instruct-v1:0",
		body:    `{"prompt":"<|image|>Describe the picture.","images":["` + b64(2000) + `"],"max_gen_len":100}`,
		wantMax: 100, wantSet: true,
		minIn: imageTokens + est("<|image|>Describe the picture."),
	}})
	runMalformedCases(t, Meta, []malformedCase{
		{"max_gen_len string", `{"prompt":"hi","max_gen_len":"512"}`, "max_gen_len: must be an integer"},
		{"max_gen_len negative", `{"prompt":"hi","max_gen_len":-512}`, "max_gen_len: must not be negative"},
		{"prompt array", `{"prompt":["hi"]}`, "prompt: must be a string, not a JSON array"},
		{"array body", `["hi"]`, "must be a JSON object"},
	})
}

func TestUsageFromInvokeMeta(t *testing.T) {
	runUsageCases(t, Meta, []usageCase{{
		name: "response",
		body: `{"generation":"The capital of France is Paris.","prompt_token_count":37,"generation_token_count":8,"stop_reason":"stop"}`,
		want: Usage{InputTokens: 37, OutputTokens: 8, StopReason: "stop", Known: true},
	}, {
		name: "no counts",
		body: `{"generation":"Paris."}`,
		want: Usage{},
	}})
}

func TestStreamUsageMeta(t *testing.T) {
	// prompt_token_count comes once, generation_token_count is cumulative and
	// the last chunk brings the stop reason and the invocation metrics.
	got := streamUsage(t, Meta,
		`{"generation":"","prompt_token_count":37,"generation_token_count":1,"stop_reason":null}`,
		`{"generation":" The","prompt_token_count":null,"generation_token_count":2,"stop_reason":null}`,
		`{"generation":" capital","prompt_token_count":null,"generation_token_count":3,"stop_reason":null}`,
		`{"generation":" is Paris.","prompt_token_count":null,"generation_token_count":7,"stop_reason":null}`,
		`{"generation":"","prompt_token_count":null,"generation_token_count":8,"stop_reason":"stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":37,"outputTokenCount":8,"invocationLatency":410,"firstByteLatency":150}}`)
	checkUsage(t, got, Usage{InputTokens: 37, OutputTokens: 8, StopReason: "stop", Known: true})
}
