package tokens

import "testing"

func TestParseInvokeTitan(t *testing.T) {
	prompt := `User: Write a haiku about the sea.\nBot:`
	runParseCases(t, Titan, []parseCase{{
		name:    "with maxTokenCount",
		model:   "amazon.titan-text-express-v1",
		body:    `{"inputText":"` + prompt + `","textGenerationConfig":{"maxTokenCount":200,"stopSequences":["User:"],"temperature":0,"topP":0.9}}`,
		wantMax: 200, wantSet: true,
		minIn: est(prompt),
	}, {
		name:    "no textGenerationConfig",
		model:   "amazon.titan-text-premier-v1:0",
		body:    `{"inputText":"` + prompt + `"}`,
		wantMax: 512,
		minIn:   est(prompt),
	}, {
		name:    "config without maxTokenCount",
		model:   "amazon.titan-text-lite-v1",
		body:    `{"inputText":"` + prompt + `","textGenerationConfig":{"temperature":0.7}}`,
		wantMax: 512,
		minIn:   est(prompt),
	}})
	runMalformedCases(t, Titan, []malformedCase{
		{"maxTokenCount string", `{"inputText":"x","textGenerationConfig":{"maxTokenCount":"512"}}`, "textGenerationConfig.maxTokenCount: must be an integer"},
		{"maxTokenCount negative", `{"inputText":"x","textGenerationConfig":{"maxTokenCount":-1}}`, "textGenerationConfig.maxTokenCount: must not be negative"},
		{"config string", `{"inputText":"x","textGenerationConfig":"big"}`, "textGenerationConfig: must be an object"},
	})
}

func TestUsageFromInvokeTitan(t *testing.T) {
	runUsageCases(t, Titan, []usageCase{{
		name: "response",
		body: `{"inputTextTokenCount":12,"results":[{"tokenCount":20,"outputText":"\nWaves kiss the shore","completionReason":"FINISH"}]}`,
		want: Usage{InputTokens: 12, OutputTokens: 20, StopReason: "FINISH", Known: true},
	}, {
		name: "truncated by length",
		body: `{"inputTextTokenCount":5,"results":[{"tokenCount":512,"outputText":"...","completionReason":"LENGTH"}]}`,
		want: Usage{InputTokens: 5, OutputTokens: 512, StopReason: "LENGTH", Known: true},
	}})
}

func TestStreamUsageTitan(t *testing.T) {
	got := streamUsage(t, Titan,
		`{"outputText":"\nWaves","index":0,"totalOutputTextTokenCount":3,"completionReason":null,"inputTextTokenCount":12}`,
		`{"outputText":" kiss the shore","index":0,"totalOutputTextTokenCount":8,"completionReason":null,"inputTextTokenCount":null}`,
		`{"outputText":"","index":0,"totalOutputTextTokenCount":20,"completionReason":"FINISH","inputTextTokenCount":null,"amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":20,"invocationLatency":900,"firstByteLatency":400}}`)
	checkUsage(t, got, Usage{InputTokens: 12, OutputTokens: 20, StopReason: "FINISH", Known: true})
}
