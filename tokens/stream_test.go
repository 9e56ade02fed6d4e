package tokens

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestStreamUsageIgnoresMalformed(t *testing.T) {
	final := `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}`
	s := NewStreamUsage(Anthropic)
	for _, e := range []struct{ typ, payload string }{
		{"chunk", ``},
		{"chunk", `not json`},
		{"chunk", `[]`},
		{"chunk", `{"bytes":42}`},
		{"chunk", `{"bytes":""}`},
		{"chunk", `{"bytes":"%%%not base64%%%"}`},
		{"chunk", `{"bytes":"` + base64.StdEncoding.EncodeToString([]byte(`{"usage":`)) + `"}`},
		{"chunk", `{"bytes":"` + base64.StdEncoding.EncodeToString([]byte(`{"usage":{"output_tokens":"many"}}`)) + `"}`},
		{"chunk", `{"bytes":"` + base64.StdEncoding.EncodeToString([]byte(`"usage"`)) + `"}`},
		{"internalServerException", `{"message":"boom"}`},
		{"", `{}`},
	} {
		s.Observe(e.typ, []byte(e.payload))
	}
	checkUsage(t, s.Usage(), Usage{})

	s.Observe("chunk", chunkPayload(t, final))
	checkUsage(t, s.Usage(), Usage{OutputTokens: 12, StopReason: "end_turn", Known: true})
}

func TestStreamUsagePayloadVariants(t *testing.T) {
	inner := `{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}`
	enc := base64.StdEncoding.EncodeToString([]byte(inner))
	want := Usage{InputTokens: 25, OutputTokens: 1, Known: true}
	for name, payload := range map[string]string{
		"padding field":   `{"bytes":"` + enc + `","p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"}`,
		"escaped slashes": `{"bytes":"` + strings.ReplaceAll(enc, "/", `\/`) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			s := NewStreamUsage(Anthropic)
			s.Observe("chunk", []byte(payload))
			checkUsage(t, s.Usage(), want)
		})
	}
}

func TestStreamUsageConverseIgnoresMalformed(t *testing.T) {
	s := NewStreamUsage(Converse)
	s.Observe("chunk", chunkPayload(t, `{"usage":{"inputTokens":1}}`)) // not a ConverseStream event
	s.Observe("messageStop", []byte(`{"stopReason":`))
	s.Observe("metadata", []byte(`{"usage":{"inputTokens":"x"}}`))
	s.Observe("metadata", []byte(`null`))
	checkUsage(t, s.Usage(), Usage{})
	s.Observe("metadata", []byte(`{"usage":{"inputTokens":5,"outputTokens":6,"totalTokens":11},"metrics":{"latencyMs":10}}`))
	checkUsage(t, s.Usage(), Usage{InputTokens: 5, OutputTokens: 6, Known: true})
}

func TestStreamUsageUnknownFamily(t *testing.T) {
	for _, f := range []Family{Unknown, Family("jamba")} {
		got := streamUsage(t, f,
			`{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"amazon-bedrock-invocationMetrics":{"inputTokenCount":9,"outputTokenCount":2,"invocationLatency":100,"firstByteLatency":50}}`)
		checkUsage(t, got, Usage{InputTokens: 9, OutputTokens: 2, StopReason: "stop", Known: true})
	}
}

func TestStreamUsageBeforeAnyEvent(t *testing.T) {
	checkUsage(t, NewStreamUsage(Meta).Usage(), Usage{})
}
