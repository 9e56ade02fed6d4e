package tokens

import (
	"strings"
	"testing"
)

// benchAnthropicBody is a mid-sized agent turn: a system prompt, two tools,
// an image and a few turns of tool use.
var benchAnthropicBody = []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":4096,"temperature":0.2,` +
	`"system":[{"type":"text","text":"` + strings.Repeat("You are a careful assistant for an operations team. ", 40) + `","cache_control":{"type":"ephemeral"}}],` +
	`"tools":[{"name":"get_weather","description":"Get the current weather in a given location","input_schema":{"type":"object","properties":{"location":{"type":"string","description":"The city and state"}},"required":["location"]}},` +
	`{"name":"search_tickets","description":"Search the ticket system","input_schema":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"integer"}},"required":["query"]}}],` +
	`"messages":[` +
	`{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + strings.Repeat("iVBORw0KGgoAAAANSUhEUgAA", 2000) + `"}},{"type":"text","text":"What is wrong on this dashboard, and is the weather in Seattle a factor?"}]},` +
	`{"role":"assistant","content":[{"type":"text","text":"Let me check the weather and recent tickets."},{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"location":"Seattle, WA"}}]},` +
	`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":"Heavy rain, 8C, wind 40 km/h"}]},` +
	`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_02","name":"search_tickets","input":{"query":"latency dashboard seattle","limit":5}}]},` +
	`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_02","content":[{"type":"text","text":"` + strings.Repeat("TICKET-123: elevated p99 latency in us-west-2 after deploy. ", 20) + `"}]}]}]}`)

func BenchmarkParseInvokeAnthropic(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchAnthropicBody)))
	for b.Loop() {
		if _, err := ParseInvoke(Anthropic, "anthropic.claude-3-5-sonnet-20241022-v2:0", benchAnthropicBody); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamUsageObserve measures one event of a typical Anthropic
// stream, most of which are text deltas.
func BenchmarkStreamUsageObserve(b *testing.B) {
	inner := []string{
		`{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-3-haiku-20240307","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
	}
	for range 40 {
		inner = append(inner, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello there, this is a streamed sentence"}}`)
	}
	inner = append(inner,
		`{"type":"content_block_stop","index":0}`,
		`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":312}}`,
		`{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":25,"outputTokenCount":312,"invocationLatency":5120,"firstByteLatency":301}}`)
	payloads := make([][]byte, len(inner))
	for i, c := range inner {
		payloads[i] = chunkPayload(b, c)
	}
	b.ReportAllocs()
	s := NewStreamUsage(Anthropic)
	i := 0
	for b.Loop() {
		s.Observe("chunk", payloads[i%len(payloads)])
		i++
	}
	if u := s.Usage(); u.OutputTokens != 312 {
		b.Fatalf("usage = %+v", u)
	}
}

func BenchmarkEstimateText(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 1000)
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		EstimateText(text)
	}
}
