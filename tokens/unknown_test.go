package tokens

import "testing"

func TestParseInvokeUnknown(t *testing.T) {
	runParseCases(t, Unknown, []parseCase{{
		name:    "Jamba chat",
		model:   "ai21.jamba-1-5-large-v1:0",
		body:    `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Name three rivers."}],"max_tokens":250,"temperature":0.7}`,
		wantMax: 250, wantSet: true,
		// Role strings are values too.
		minIn: est("system", "Be brief.", "user", "Name three rivers."),
	}, {
		name:    "nested max field",
		model:   "deepseek.r1-v1:0",
		body:    `{"prompt":"Why is the sky blue?","inferenceConfig":{"max_new_tokens":1024}}`,
		wantMax: 1024, wantSet: true,
		minIn: est("Why is the sky blue?"),
	}, {
		name:    "no max field: conservative default",
		model:   "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
		body:    `{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"Hi"}]}`,
		wantMax: 4096,
		minIn:   est("bedrock-2023-05-31", "user", "Hi"),
	}, {
		name:    "max name with a non-integer value is something else",
		model:   "x",
		body:    `{"text":"Hi","max_tokens":"auto","schema":{"properties":{"max_tokens":{"type":"integer"}}},"maxTokens":1e3}`,
		wantMax: 4096,
		minIn:   est("Hi", "auto", "integer"),
	}, {
		name:    "largest of several max fields",
		model:   "x",
		body:    `{"max_tokens":100,"generation":{"maxOutputTokens":300}}`,
		wantMax: 300, wantSet: true,
		minIn: 0,
	}, {
		name:    "escaped quotes and keys",
		model:   "x",
		body:    `{"say \"max_tokens\"":"a \"quoted\" word: yes","n":[1,2,{"k":"v"}]}`,
		wantMax: 4096,
		minIn:   est(`a \"quoted\" word: yes`, "v"),
	}, {
		name:    "base64 media is not text",
		model:   "x",
		body:    `{"image":"` + b64(100000) + `","url":"data:image/png;base64,` + b64(4000) + `"}`,
		wantMax: 4096,
		minIn:   2 * imageTokens,
	}})
	runMalformedCases(t, Unknown, []malformedCase{
		{"invalid JSON", `{"prompt":"x"`, "invalid JSON"},
		{"array", `["x"]`, "must be a JSON object"},
		{"string", `"x"`, "must be a JSON object"},
		{"negative max", `{"config":{"max_gen_len":-1}}`, "max_gen_len: must not be negative"},
		{"trailing garbage", `{"a":1} x`, "invalid JSON"},
	})
}

func TestUsageFromInvokeUnknown(t *testing.T) {
	runUsageCases(t, Unknown, []usageCase{{
		name: "OpenAI style",
		body: `{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`,
		want: Usage{InputTokens: 9, OutputTokens: 1, StopReason: "stop", Known: true},
	}, {
		name: "Anthropic style",
		body: `{"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":7,"cache_read_input_tokens":100}}`,
		want: Usage{InputTokens: 5, OutputTokens: 7, CacheReadInputTokens: 100, StopReason: "end_turn", Known: true},
	}, {
		name: "Converse style",
		body: `{"stopReason":"end_turn","usage":{"inputTokens":5,"outputTokens":7,"cacheWriteInputTokens":64}}`,
		want: Usage{InputTokens: 5, OutputTokens: 7, CacheWriteInputTokens: 64, StopReason: "end_turn", Known: true},
	}, {
		name: "Llama style",
		body: `{"generation":"x","prompt_token_count":3,"generation_token_count":4,"stop_reason":"length"}`,
		want: Usage{InputTokens: 3, OutputTokens: 4, StopReason: "length", Known: true},
	}, {
		name: "nothing",
		body: `{"outputs":["x"]}`,
		want: Usage{},
	}, {
		name: "array",
		body: `[1,2]`,
		want: Usage{},
	}})
}
