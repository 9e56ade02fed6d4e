package tokens

import "testing"

func TestParseInvokeMistral(t *testing.T) {
	prompt := `<s>[INST] What is your favourite condiment? [/INST]`
	tool := `{"type":"function","function":{"name":"top_song","description":"Get the most popular song played on a radio station.","parameters":{"type":"object","properties":{"sign":{"type":"string"}},"required":["sign"]}}}`
	runParseCases(t, Mistral, []parseCase{{
		name:    "text completion",
		model:   "mistral.mistral-7b-instruct-v0:2",
		body:    `{"prompt":"` + prompt + `","max_tokens":200,"temperature":0.5,"top_p":0.9,"top_k":50,"stop":["[INST]"]}`,
		wantMax: 200, wantSet: true,
		minIn: est(prompt),
	}, {
		name:    "7B default",
		model:   "mistral.mistral-7b-instruct-v0:2",
		body:    `{"prompt":"` + prompt + `"}`,
		wantMax: 512,
		minIn:   est(prompt),
	}, {
		name:    "Mixtral default",
		model:   "mistral.mixtral-8x7b-instruct-v0:1",
		body:    `{"prompt":"` + prompt + `"}`,
		wantMax: 512,
		minIn:   est(prompt),
	}, {
		name:    "Large default",
		model:   "mistral.mistral-large-2402-v1:0",
		body:    `{"prompt":"` + prompt + `"}`,
		wantMax: 8192,
		minIn:   est(prompt),
	}, {
		name:    "chat with tools",
		model:   "mistral.mistral-large-2407-v1:0",
		body:    `{"messages":[{"role":"system","content":"You are a radio assistant."},{"role":"user","content":"What is the most popular song on WZPZ?"},{"role":"assistant","content":"","tool_calls":[{"id":"bbc5b7ede","function":{"name":"top_song","arguments":"{\"sign\": \"WZPZ\"}"}}]},{"role":"tool","tool_call_id":"bbc5b7ede","content":"{\"song\": \"Elemental Hotel\", \"artist\": \"8 Storey Hike\"}"}],"tools":[` + tool + `],"tool_choice":"auto","max_tokens":1000}`,
		wantMax: 1000, wantSet: true,
		minIn: toolUseOverhead + est(tool, "You are a radio assistant.", "What is the most popular song on WZPZ?",
			`[{"id":"bbc5b7ede","function":{"name":"top_song","arguments":"{\"sign\": \"WZPZ\"}"}}]`,
			`{\"song\": \"Elemental Hotel\", \"artist\": \"8 Storey Hike\"}`),
		slack: 60,
	}, {
		name:    "Pixtral content parts",
		model:   "us.mistral.pixtral-large-2502-v1:0",
		body:    `{"messages":[{"role":"user","content":[{"type":"text","text":"Describe this image."},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + b64(3000) + `"}}]}],"max_tokens":300}`,
		wantMax: 300, wantSet: true,
		minIn: imageTokens + est("Describe this image."),
	}})
	runMalformedCases(t, Mistral, []malformedCase{
		{"max_tokens string", `{"prompt":"x","max_tokens":"200"}`, "max_tokens: must be an integer"},
		{"max_tokens negative", `{"prompt":"x","max_tokens":-200}`, "max_tokens: must not be negative"},
		{"content object", `{"messages":[{"role":"user","content":{"text":"x"}}]}`, "messages.content: must be a string or an array"},
	})
}

func TestUsageFromInvokeMistral(t *testing.T) {
	runUsageCases(t, Mistral, []usageCase{{
		// Usage is in the X-Amzn-Bedrock-*-Token-Count headers only.
		name: "text completion",
		body: `{"outputs":[{"text":" I'm quite partial to lemon juice.","stop_reason":"stop"}]}`,
		want: Usage{StopReason: "stop"},
	}, {
		name: "chat completion",
		body: `{"choices":[{"index":0,"message":{"role":"assistant","content":"","tool_calls":[{"id":"x","function":{"name":"top_song","arguments":"{}"}}]},"stop_reason":"tool_calls"}]}`,
		want: Usage{StopReason: "tool_calls"},
	}, {
		name: "chat completion with usage",
		body: `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}`,
		want: Usage{InputTokens: 10, OutputTokens: 2, StopReason: "stop", Known: true},
	}})
}

func TestStreamUsageMistral(t *testing.T) {
	got := streamUsage(t, Mistral,
		`{"outputs":[{"text":" I","stop_reason":null}]}`,
		`{"outputs":[{"text":" like lemon","stop_reason":null}]}`,
		`{"outputs":[{"text":".","stop_reason":"length"}],"amazon-bedrock-invocationMetrics":{"inputTokenCount":16,"outputTokenCount":200,"invocationLatency":2800,"firstByteLatency":180}}`)
	checkUsage(t, got, Usage{InputTokens: 16, OutputTokens: 200, StopReason: "length", Known: true})
}
