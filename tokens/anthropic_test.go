package tokens

import "testing"

const (
	haiku3   = "anthropic.claude-3-haiku-20240307-v1:0"
	sonnet35 = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
	sonnet4  = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0"
	opus41   = "global.anthropic.claude-opus-4-1-20250805-v1:0"
	opus46   = "anthropic.claude-opus-4-6-v1"
)

func TestParseInvokeAnthropic(t *testing.T) {
	weatherTool := `{"name":"get_weather","description":"Get the current weather in a given location","input_schema":{"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}},"required":["location"]}}`
	runParseCases(t, Anthropic, []parseCase{{
		name:    "text with max_tokens",
		model:   haiku3,
		body:    `{"anthropic_version":"bedrock-2023-05-31","max_tokens":1024,"messages":[{"role":"user","content":"Hello, world"}]}`,
		wantMax: 1024, wantSet: true,
		minIn: est("Hello, world"),
	}, {
		name:    "max_tokens absent, Claude 3 default",
		model:   haiku3,
		body:    `{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"Hello"}]}`,
		wantMax: 4096,
		minIn:   est("Hello"),
	}, {
		name:    "max_tokens absent, Claude 3.5 profile",
		model:   sonnet35,
		body:    `{"messages":[{"role":"user","content":"Hello"}]}`,
		wantMax: 8192,
		minIn:   est("Hello"),
	}, {
		name:    "max_tokens absent, Sonnet 4 ARN",
		model:   sonnet4,
		body:    `{"messages":[{"role":"user","content":"Hello"}]}`,
		wantMax: 64000,
		minIn:   est("Hello"),
	}, {
		name:    "max_tokens absent, Opus 4.1 global profile",
		model:   opus41,
		body:    `{"messages":[{"role":"user","content":"Hello"}]}`,
		wantMax: 32000,
		minIn:   est("Hello"),
	}, {
		name:    "max_tokens absent, Opus 4.6",
		model:   opus46,
		body:    `{"messages":[{"role":"user","content":"Hello"}]}`,
		wantMax: 128000,
		minIn:   est("Hello"),
	}, {
		name:    "max_tokens null is absent",
		model:   "anthropic.claude-future-9",
		body:    `{"max_tokens":null,"messages":[{"role":"user","content":"Hello"}]}`,
		wantMax: 64000,
		minIn:   est("Hello"),
	}, {
		name:    "system string and multi-turn",
		model:   haiku3,
		body:    `{"anthropic_version":"bedrock-2023-05-31","max_tokens":300,"system":"You are a concise assistant who answers in one sentence.","messages":[{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"The capital of France is Paris."},{"role":"user","content":"And of Germany?"}]}`,
		wantMax: 300, wantSet: true,
		minIn: est("You are a concise assistant who answers in one sentence.", "What is the capital of France?", "The capital of France is Paris.", "And of Germany?") + 3*messageOverhead,
	}, {
		name:    "system blocks with cache_control",
		model:   haiku3,
		body:    `{"max_tokens":10,"system":[{"type":"text","text":"You are an expert on the works of Shakespeare.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Quote sources."}],"messages":[{"role":"user","content":[{"type":"text","text":"Who is Puck?"}]}]}`,
		wantMax: 10, wantSet: true,
		minIn: est("You are an expert on the works of Shakespeare.", "Quote sources.", "Who is Puck?"),
	}, {
		name:    "images",
		model:   sonnet35,
		body:    `{"max_tokens":500,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"` + b64(4000) + `"}},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + b64(400) + `"}},{"type":"text","text":"Compare these two images."}]}]}`,
		wantMax: 500, wantSet: true,
		minIn: 2*imageTokens + est("Compare these two images."),
	}, {
		name:    "tools, tool_use and tool_result",
		model:   sonnet4,
		body:    `{"max_tokens":2048,"tools":[` + weatherTool + `],"tool_choice":{"type":"auto"},"messages":[{"role":"user","content":"What's the weather like in San Francisco?"},{"role":"assistant","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location":"San Francisco, CA"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01A09q90qw90lq917835lq9","content":"15 degrees"},{"type":"tool_result","tool_use_id":"toolu_02","content":[{"type":"text","text":"Foggy"}]}]}]}`,
		wantMax: 2048, wantSet: true,
		minIn: est(weatherTool) + toolUseOverhead + est("What's the weather like in San Francisco?", "Let me check.", "get_weather", `{"location":"San Francisco, CA"}`, "15 degrees", "Foggy"),
		slack: 60,
	}, {
		name:    "pdf document and thinking",
		model:   "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
		body:    `{"max_tokens":20000,"thinking":{"type":"enabled","budget_tokens":16000},"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"` + b64(400000) + `"}},{"type":"text","text":"Summarize."}]},{"role":"assistant","content":[{"type":"thinking","thinking":"The user wants a summary.","signature":"EqQBCgIYAhIM"},{"type":"text","text":"Here it is."}]}]}`,
		wantMax: 20000, wantSet: true,
		minIn: base64Len(400000)/documentBytesPerToken + est("Summarize.", "The user wants a summary.", "Here it is."),
	}, {
		name:    "text document",
		model:   haiku3,
		body:    `{"max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"The grass is green. The sky is blue."},"title":"Facts"}]}]}`,
		wantMax: 5, wantSet: true,
		minIn: est("The grass is green. The sky is blue.", "Facts"),
	}, {
		// Inside blocks, fields whose type differs from the one read here
		// are skipped: server tools and new block types reuse field names.
		name:    "server tool results and search results",
		model:   sonnet4,
		body:    `{"max_tokens":100,"messages":[{"role":"assistant","content":[{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"weather"}},{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":{"type":"web_search_tool_result_error","error_code":"max_uses_exceeded"}}]},{"role":"user","content":[{"type":"search_result","source":"https://example.com/a","title":"Page A","content":[{"type":"text","text":"Some findings."}]},{"type":"text","text":42}]}]}`,
		wantMax: 100, wantSet: true,
		minIn: est("web_search", `{"query":"weather"}`, "Page A", "Some findings."),
		slack: 60,
	}, {
		name:    "legacy text completions",
		model:   "anthropic.claude-v2:1",
		body:    `{"prompt":"\n\nHuman: Tell me a joke about llamas.\n\nAssistant:","max_tokens_to_sample":300,"temperature":0.5,"stop_sequences":["\n\nHuman:"]}`,
		wantMax: 300, wantSet: true,
		minIn: est(`\n\nHuman: Tell me a joke about llamas.\n\nAssistant:`),
	}, {
		name:    "legacy without max_tokens_to_sample",
		model:   "anthropic.claude-instant-v1",
		body:    `{"prompt":"\n\nHuman: Hi\n\nAssistant:"}`,
		wantMax: 4096,
		minIn:   est(`\n\nHuman: Hi\n\nAssistant:`),
	}})
}

func TestParseInvokeAnthropicMalformed(t *testing.T) {
	runMalformedCases(t, Anthropic, []malformedCase{
		{"invalid JSON", `{"max_tokens":10,`, "invalid JSON"},
		{"array", `[{"max_tokens":10}]`, "must be a JSON object"},
		{"null", `null`, "must be a JSON object"},
		{"empty", ``, "must be a JSON object"},
		{"max_tokens string", `{"max_tokens":"1024","messages":[]}`, "max_tokens: must be an integer, not a JSON string"},
		{"max_tokens fraction", `{"max_tokens":10.5}`, "max_tokens: must be an integer"},
		{"max_tokens negative", `{"max_tokens":-1}`, "max_tokens: must not be negative"},
		{"max_tokens_to_sample negative", `{"prompt":"x","max_tokens_to_sample":-5}`, "max_tokens_to_sample: must not be negative"},
		{"messages object", `{"messages":{"role":"user"}}`, "messages: must be an array"},
		{"content number", `{"messages":[{"role":"user","content":42}]}`, "messages.content: must be a string or an array"},
		{"message not an object", `{"messages":["Hello"]}`, "messages: must be an object"},
		{"system number", `{"system":1}`, "system: must be a string or an array"},
		{"tools object", `{"tools":{"name":"x"}}`, "tools: must be an array"},
	})
}

func TestUsageFromInvokeAnthropic(t *testing.T) {
	runUsageCases(t, Anthropic, []usageCase{{
		name: "messages response",
		body: `{"id":"msg_bdrk_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-3-haiku-20240307","content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":6}}`,
		want: Usage{InputTokens: 12, OutputTokens: 6, StopReason: "end_turn", Known: true},
	}, {
		name: "prompt caching",
		body: `{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"tool_use","id":"t","name":"x","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"cache_creation_input_tokens":2051,"cache_read_input_tokens":0,"output_tokens":41}}`,
		want: Usage{InputTokens: 3, OutputTokens: 41, CacheWriteInputTokens: 2051, StopReason: "tool_use", Known: true},
	}, {
		name: "text completions has no usage",
		body: `{"completion":" Why did the llama cross the road?","stop_reason":"stop_sequence","stop":"\n\nHuman:"}`,
		want: Usage{StopReason: "stop_sequence"},
	}, {
		name: "not JSON",
		body: `<html>`,
		want: Usage{},
	}})
}

func TestStreamUsageAnthropic(t *testing.T) {
	start := `{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-3-haiku-20240307","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}`
	body := []string{
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! The \"usage\" of words"}}`,
		`{"type":"content_block_stop","index":0}`,
	}
	delta := `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}`

	t.Run("with invocation metrics", func(t *testing.T) {
		stop := `{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":25,"outputTokenCount":13,"invocationLatency":512,"firstByteLatency":301}}`
		got := streamUsage(t, Anthropic, append(append([]string{start}, body...), delta, stop)...)
		// The metrics win over message_delta's 12.
		checkUsage(t, got, Usage{InputTokens: 25, OutputTokens: 13, StopReason: "end_turn", Known: true})
	})
	t.Run("cut short before message_stop", func(t *testing.T) {
		got := streamUsage(t, Anthropic, append(append([]string{start}, body...), delta)...)
		checkUsage(t, got, Usage{InputTokens: 25, OutputTokens: 12, StopReason: "end_turn", Known: true})
	})
	t.Run("prompt caching", func(t *testing.T) {
		got := streamUsage(t, Anthropic,
			`{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"usage":{"input_tokens":3,"cache_creation_input_tokens":25037,"cache_read_input_tokens":0,"output_tokens":2}}}`,
			`{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":13}}`,
			`{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":3,"outputTokenCount":13,"invocationLatency":3037,"firstByteLatency":2635,"cacheReadInputTokenCount":0,"cacheWriteInputTokenCount":25037}}`)
		checkUsage(t, got, Usage{InputTokens: 3, OutputTokens: 13, CacheWriteInputTokens: 25037, StopReason: "max_tokens", Known: true})
	})
	t.Run("text completions", func(t *testing.T) {
		got := streamUsage(t, Anthropic,
			`{"completion":" Hello","stop_reason":null,"stop":null}`,
			`{"completion":".","stop_reason":"stop_sequence","stop":"\n\nHuman:","amazon-bedrock-invocationMetrics":{"inputTokenCount":14,"outputTokenCount":3,"invocationLatency":250,"firstByteLatency":200}}`)
		checkUsage(t, got, Usage{InputTokens: 14, OutputTokens: 3, StopReason: "stop_sequence", Known: true})
	})
}
