package tokens

import "testing"

func TestParseInvokeCohere(t *testing.T) {
	tool := `{"name":"weather","description":"Current weather of a city.","parameter_definitions":{"city":{"description":"City name","type":"str","required":true}}}`
	docs := `[{"title":"Forecast","snippet":"Sunny, 20C in Lisbon."}]`
	runParseCases(t, Cohere, []parseCase{{
		name:    "command with max_tokens",
		model:   "cohere.command-text-v14",
		body:    `{"prompt":"Write a LinkedIn post about starting a career in tech:","max_tokens":400,"temperature":0.75,"p":0.01,"k":0,"stop_sequences":[],"return_likelihoods":"NONE"}`,
		wantMax: 400, wantSet: true,
		minIn: est("Write a LinkedIn post about starting a career in tech:"),
	}, {
		name:    "command default 20",
		model:   "cohere.command-light-text-v14",
		body:    `{"prompt":"Hello"}`,
		wantMax: 20,
		minIn:   est("Hello"),
	}, {
		name:    "command r chat",
		model:   "cohere.command-r-plus-v1:0",
		body:    `{"message":"What is the weather in Lisbon?","chat_history":[{"role":"USER","message":"Hi"},{"role":"CHATBOT","message":"Hello! How can I help?"}],"preamble":"You are a weather bot.","documents":` + docs + `,"tools":[` + tool + `],"max_tokens":100,"temperature":0.3}`,
		wantMax: 100, wantSet: true,
		minIn: toolUseOverhead + est(tool, docs, "What is the weather in Lisbon?", "Hi", "Hello! How can I help?", "You are a weather bot."),
		slack: 50,
	}, {
		name:    "command r default",
		model:   "cohere.command-r-v1:0",
		body:    `{"message":"Hi"}`,
		wantMax: 4000,
		minIn:   est("Hi"),
	}})
	runMalformedCases(t, Cohere, []malformedCase{
		{"max_tokens string", `{"message":"x","max_tokens":"1"}`, "max_tokens: must be an integer"},
		{"max_tokens negative", `{"message":"x","max_tokens":-1}`, "max_tokens: must not be negative"},
		{"chat_history object", `{"message":"x","chat_history":{}}`, "chat_history: must be an array"},
	})
}

func TestUsageFromInvokeCohere(t *testing.T) {
	runUsageCases(t, Cohere, []usageCase{{
		name: "command has no usage",
		body: `{"generations":[{"finish_reason":"COMPLETE","id":"0c72c609","text":" Hi! How can I help you today?"}],"id":"5a1","prompt":"Hello"}`,
		want: Usage{StopReason: "COMPLETE"},
	}, {
		name: "command r with meta",
		body: `{"response_id":"r1","text":"Sunny.","generation_id":"g1","chat_history":[{"role":"USER","message":"Weather?"},{"role":"CHATBOT","message":"Sunny."}],"finish_reason":"COMPLETE","meta":{"api_version":{"version":"1"},"billed_units":{"input_tokens":20,"output_tokens":3},"tokens":{"input_tokens":85,"output_tokens":3}}}`,
		want: Usage{InputTokens: 85, OutputTokens: 3, StopReason: "COMPLETE", Known: true},
	}, {
		name: "command r without meta",
		body: `{"response_id":"r1","text":"Sunny.","finish_reason":"MAX_TOKENS"}`,
		want: Usage{StopReason: "MAX_TOKENS"},
	}})
}

func TestStreamUsageCohere(t *testing.T) {
	t.Run("command r", func(t *testing.T) {
		got := streamUsage(t, Cohere,
			`{"is_finished":false,"event_type":"stream-start","generation_id":"g1"}`,
			`{"is_finished":false,"event_type":"text-generation","text":"Sunny"}`,
			`{"is_finished":false,"event_type":"text-generation","text":"."}`,
			`{"is_finished":true,"event_type":"stream-end","response":{"response_id":"r1","text":"Sunny.","generation_id":"g1","finish_reason":"COMPLETE","chat_history":[]},"finish_reason":"COMPLETE","amazon-bedrock-invocationMetrics":{"inputTokenCount":85,"outputTokenCount":3,"invocationLatency":700,"firstByteLatency":300}}`)
		checkUsage(t, got, Usage{InputTokens: 85, OutputTokens: 3, StopReason: "COMPLETE", Known: true})
	})
	t.Run("command", func(t *testing.T) {
		got := streamUsage(t, Cohere,
			`{"generations":[{"finish_reason":"COMPLETE","id":"0c72c609","text":" Hi! How can I help you today?"}],"amazon-bedrock-invocationMetrics":{"inputTokenCount":3,"outputTokenCount":9,"invocationLatency":300,"firstByteLatency":300}}`)
		checkUsage(t, got, Usage{InputTokens: 3, OutputTokens: 9, StopReason: "COMPLETE", Known: true})
	})
}
