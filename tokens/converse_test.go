package tokens

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConverse(t *testing.T) {
	tool := `{"toolSpec":{"name":"calculator","description":"Evaluate an arithmetic expression.","inputSchema":{"json":{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}}}}`
	cases := []parseCase{{
		name:    "maxTokens",
		model:   haiku3,
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"system":[{"text":"You are helpful."},{"cachePoint":{"type":"default"}}],"inferenceConfig":{"maxTokens":512,"temperature":0.5,"topP":0.9,"stopSequences":["END"]}}`,
		wantMax: 512, wantSet: true,
		minIn: est("Hello", "You are helpful."),
	}, {
		name:    "default is the Claude 3 model maximum",
		model:   haiku3,
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}`,
		wantMax: 4096,
		minIn:   est("Hello"),
	}, {
		name:    "default is the Llama 3.1 model maximum",
		model:   "us.meta.llama3-1-70b-instruct-v1:0",
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}`,
		wantMax: 4096,
		minIn:   est("Hello"),
	}, {
		name:    "default is the Titan Express maximum",
		model:   "amazon.titan-text-express-v1",
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}`,
		wantMax: 8192,
		minIn:   est("Hello"),
	}, {
		name:    "default for an unknown model",
		model:   "ai21.jamba-1-5-large-v1:0",
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}`,
		wantMax: 4096,
		minIn:   est("Hello"),
	}, {
		name:    "default for an application inference profile",
		model:   "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}`,
		wantMax: 4096,
		minIn:   est("Hello"),
	}, {
		name:    "max_tokens in additionalModelRequestFields",
		model:   haiku3,
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"additionalModelRequestFields":{"max_tokens":77,"top_k":200}}`,
		wantMax: 77, wantSet: true,
		minIn: est("Hello"),
	}, {
		name:    "additionalModelRequestFields of another type are ignored",
		model:   haiku3,
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"additionalModelRequestFields":{"max_tokens":"lots","max_gen_len":-3,"max_new_tokens":{}}}`,
		wantMax: 4096,
		minIn:   est("Hello"),
	}, {
		name:    "additionalModelRequestFields not an object",
		model:   haiku3,
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"additionalModelRequestFields":["x"]}`,
		wantMax: 4096,
		minIn:   est("Hello"),
	}, {
		name:    "inferenceConfig wins over additionalModelRequestFields",
		model:   haiku3,
		body:    `{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":10},"additionalModelRequestFields":{"max_tokens":77}}`,
		wantMax: 10, wantSet: true,
		minIn: est("Hello"),
	}, {
		name:  "images, documents, tools, tool results, reasoning",
		model: "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
		body: `{"messages":[` +
			`{"role":"user","content":[{"text":"What does the report say? Compute 2+2 too."},{"image":{"format":"png","source":{"bytes":"` + b64(5000) + `"}}},{"document":{"format":"pdf","name":"report","source":{"bytes":"` + b64(80000) + `"}}},{"document":{"format":"txt","name":"notes","source":{"bytes":"` + b64(700) + `"}}}]},` +
			`{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"I should call the calculator.","signature":"abc"}}},{"toolUse":{"toolUseId":"tooluse_1","name":"calculator","input":{"expression":"2+2"}}}]},` +
			`{"role":"user","content":[{"toolResult":{"toolUseId":"tooluse_1","content":[{"json":{"result":4}},{"text":"four"}],"status":"success"}},{"guardContent":{"text":{"text":"Is this safe?","qualifiers":["guard_content"]}}}]}],` +
			`"toolConfig":{"tools":[` + tool + `],"toolChoice":{"auto":{}}},"inferenceConfig":{"maxTokens":2000}}`,
		wantMax: 2000, wantSet: true,
		minIn: imageTokens + documentTokens(base64Len(80000), false) + documentTokens(base64Len(700), true) + toolUseOverhead +
			est(tool, "What does the report say? Compute 2+2 too.", "report", "notes", "I should call the calculator.", "calculator",
				`{"expression":"2+2"}`, `{"result":4}`, "four", "Is this safe?"),
		slack: 70,
	}, {
		name:    "video and text document source",
		model:   "amazon.nova-pro-v1:0",
		body:    `{"messages":[{"role":"user","content":[{"video":{"format":"mp4","source":{"s3Location":{"uri":"s3://b/v.mp4"}}}},{"document":{"format":"txt","name":"n","source":{"text":"Plain notes."}}},{"text":"Summarize."}]}],"inferenceConfig":{"maxTokens":100}}`,
		wantMax: 100, wantSet: true,
		minIn: videoTokens + est("n", "Plain notes.", "Summarize."),
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseConverse(c.model, []byte(c.body))
			checkParse(t, Converse, c, got, err)
		})
	}
}

func TestParseConverseMalformed(t *testing.T) {
	for _, c := range []malformedCase{
		{"not an object", `"hello"`, "must be a JSON object"},
		{"maxTokens string", `{"messages":[],"inferenceConfig":{"maxTokens":"512"}}`, "inferenceConfig.maxTokens: must be an integer, not a JSON string"},
		{"maxTokens negative", `{"messages":[],"inferenceConfig":{"maxTokens":-512}}`, "inferenceConfig.maxTokens: must not be negative"},
		{"content string", `{"messages":[{"role":"user","content":"Hello"}]}`, "messages.content: must be an array"},
		{"system object", `{"system":{"text":"x"}}`, "system: must be an array"},
		{"tools object", `{"toolConfig":{"tools":{}}}`, "toolConfig.tools: must be an array"},
		{"toolUse string", `{"messages":[{"role":"user","content":[{"toolUse":"calculator"}]}]}`, "messages.content.toolUse: must be an object"},
		{"document name number", `{"messages":[{"role":"user","content":[{"document":{"format":"pdf","name":5,"source":{"bytes":"AAAA"}}}]}]}`, "messages.content.document.name: must be a string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConverse(haiku3, []byte(c.body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want one wrapping ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestUsageFromConverse(t *testing.T) {
	for _, c := range []usageCase{{
		name: "response",
		body: `{"output":{"message":{"role":"assistant","content":[{"text":"Hello!"}]}},"stopReason":"end_turn","usage":{"inputTokens":30,"outputTokens":628,"totalTokens":658},"metrics":{"latencyMs":1275}}`,
		want: Usage{InputTokens: 30, OutputTokens: 628, StopReason: "end_turn", Known: true},
	}, {
		name: "prompt caching",
		body: `{"output":{"message":{"role":"assistant","content":[{"text":"Hi"}]}},"stopReason":"max_tokens","usage":{"inputTokens":4,"outputTokens":10,"totalTokens":2062,"cacheReadInputTokens":0,"cacheWriteInputTokens":2048},"metrics":{"latencyMs":900}}`,
		want: Usage{InputTokens: 4, OutputTokens: 10, CacheWriteInputTokens: 2048, StopReason: "max_tokens", Known: true},
	}, {
		name: "error document",
		body: `{"message":"Too many requests","__type":"ThrottlingException"}`,
		want: Usage{},
	}} {
		t.Run(c.name, func(t *testing.T) {
			checkUsage(t, UsageFromConverse([]byte(c.body)), c.want)
			checkUsage(t, UsageFromInvoke(Converse, []byte(c.body)), c.want)
		})
	}
}

func TestStreamUsageConverse(t *testing.T) {
	events := []struct{ typ, payload string }{
		{"messageStart", `{"role":"assistant"}`},
		{"contentBlockDelta", `{"delta":{"text":"Hello"},"contentBlockIndex":0}`},
		{"contentBlockDelta", `{"delta":{"text":"!"},"contentBlockIndex":0}`},
		{"contentBlockStop", `{"contentBlockIndex":0}`},
		{"messageStop", `{"stopReason":"end_turn"}`},
		{"metadata", `{"usage":{"inputTokens":12,"outputTokens":3,"totalTokens":1015,"cacheReadInputTokens":1000,"cacheWriteInputTokens":0},"metrics":{"latencyMs":321}}`},
	}
	s := NewStreamUsage(Converse)
	for i, e := range events {
		s.Observe(e.typ, []byte(e.payload))
		if i == 4 {
			checkUsage(t, s.Usage(), Usage{StopReason: "end_turn"})
		}
	}
	checkUsage(t, s.Usage(), Usage{InputTokens: 12, OutputTokens: 3, CacheReadInputTokens: 1000, StopReason: "end_turn", Known: true})
}
