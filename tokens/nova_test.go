package tokens

import "testing"

func TestParseInvokeNova(t *testing.T) {
	tool := `{"toolSpec":{"name":"top_song","description":"Get the most popular song played on a radio station.","inputSchema":{"json":{"type":"object","properties":{"sign":{"type":"string"}},"required":["sign"]}}}}`
	runParseCases(t, Nova, []parseCase{{
		name:    "max_new_tokens",
		model:   "amazon.nova-lite-v1:0",
		body:    `{"schemaVersion":"messages-v1","system":[{"text":"You are a travel agent."}],"messages":[{"role":"user","content":[{"text":"Plan a weekend in Lisbon."}]}],"inferenceConfig":{"max_new_tokens":300,"top_p":0.9,"top_k":20,"temperature":0.7}}`,
		wantMax: 300, wantSet: true,
		minIn: est("You are a travel agent.", "Plan a weekend in Lisbon."),
	}, {
		name:    "camelCase maxTokens",
		model:   "us.amazon.nova-pro-v1:0",
		body:    `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":128,"topP":0.9}}`,
		wantMax: 128, wantSet: true,
		minIn: est("Hi"),
	}, {
		name:    "default for Micro",
		model:   "amazon.nova-micro-v1:0",
		body:    `{"schemaVersion":"messages-v1","messages":[{"role":"user","content":[{"text":"Hi"}]}]}`,
		wantMax: 5000,
		minIn:   est("Hi"),
	}, {
		name:    "default for Premier",
		model:   "us.amazon.nova-premier-v1:0",
		body:    `{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`,
		wantMax: 25000,
		minIn:   est("Hi"),
	}, {
		name:    "default for Nova 2 Lite",
		model:   "global.amazon.nova-2-lite-v1:0",
		body:    `{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`,
		wantMax: 65535,
		minIn:   est("Hi"),
	}, {
		name:    "image, video, tools, multi-turn",
		model:   "amazon.nova-pro-v1:0",
		body:    `{"schemaVersion":"messages-v1","messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"` + b64(8000) + `"}}},{"video":{"format":"mp4","source":{"s3Location":{"uri":"s3://bucket/clip.mp4"}}}},{"text":"What is in these?"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"top_song","input":{"sign":"WZPZ"}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"t1","content":[{"json":{"song":"Elemental Hotel"}}],"status":"success"}}]}],"toolConfig":{"tools":[` + tool + `]},"inferenceConfig":{"max_new_tokens":1000}}`,
		wantMax: 1000, wantSet: true,
		minIn: imageTokens + videoTokens + toolUseOverhead + est(tool, "What is in these?", "top_song", `{"sign":"WZPZ"}`, `{"song":"Elemental Hotel"}`),
		slack: 60,
	}})
	runMalformedCases(t, Nova, []malformedCase{
		{"max_new_tokens string", `{"messages":[],"inferenceConfig":{"max_new_tokens":"5"}}`, "inferenceConfig.max_new_tokens: must be an integer"},
		{"max_new_tokens negative", `{"messages":[],"inferenceConfig":{"max_new_tokens":-5}}`, "inferenceConfig.max_new_tokens: must not be negative"},
		{"content string", `{"messages":[{"role":"user","content":"Hi"}]}`, "messages.content: must be an array"},
		{"text number", `{"messages":[{"role":"user","content":[{"text":1}]}]}`, "messages.content.text: must be a string"},
	})
}

func TestUsageFromInvokeNova(t *testing.T) {
	runUsageCases(t, Nova, []usageCase{{
		name: "response",
		body: `{"output":{"message":{"role":"assistant","content":[{"text":"Lisbon it is."}]}},"stopReason":"end_turn","usage":{"inputTokens":125,"outputTokens":40,"totalTokens":165,"cacheReadInputTokenCount":100,"cacheWriteInputTokenCount":0}}`,
		want: Usage{InputTokens: 125, OutputTokens: 40, CacheReadInputTokens: 100, StopReason: "end_turn", Known: true},
	}, {
		name: "no usage",
		body: `{"output":{"message":{"role":"assistant","content":[]}},"stopReason":"max_tokens"}`,
		want: Usage{StopReason: "max_tokens"},
	}})
}

func TestStreamUsageNova(t *testing.T) {
	got := streamUsage(t, Nova,
		`{"messageStart":{"role":"assistant"}}`,
		`{"contentBlockDelta":{"delta":{"text":"Lisbon"},"contentBlockIndex":0}}`,
		`{"contentBlockDelta":{"delta":{"text":" it is."},"contentBlockIndex":0}}`,
		`{"contentBlockStop":{"contentBlockIndex":0}}`,
		`{"messageStop":{"stopReason":"end_turn"}}`,
		`{"metadata":{"usage":{"inputTokens":8,"outputTokens":20,"cacheReadInputTokenCount":0,"cacheWriteInputTokenCount":0},"metrics":{},"trace":{}},"amazon-bedrock-invocationMetrics":{"inputTokenCount":8,"outputTokenCount":20,"invocationLatency":500,"firstByteLatency":200}}`)
	checkUsage(t, got, Usage{InputTokens: 8, OutputTokens: 20, StopReason: "end_turn", Known: true})
}
