package bedrocksim_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/bedrocksim"
)

// familyCase is one model family's native format, read the way a client of
// that family reads it.
type familyCase struct {
	name, model string
	// body is a native InvokeModel body allowing 100 output tokens.
	body string
	// text and stop read an InvokeModel response body.
	text, stop func(m map[string]any) string
	wantStop   string
	// usage reads the counts the body reports itself, for families that do.
	usage func(m map[string]any) (in, out int)
	// chunkText and chunkStop read one stream chunk ("" when it has none).
	chunkText, chunkStop func(m map[string]any) string
}

var families = []familyCase{
	{
		name:     "anthropic-messages",
		model:    "anthropic.claude-3-haiku-20240307-v1:0",
		body:     `{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,"system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"Explain token buckets in one paragraph."}]}]}`,
		text:     func(m map[string]any) string { return str(get(m, "content", 0, "text")) },
		stop:     func(m map[string]any) string { return str(get(m, "stop_reason")) },
		wantStop: "end_turn",
		usage: func(m map[string]any) (int, int) {
			return num(get(m, "usage", "input_tokens")), num(get(m, "usage", "output_tokens"))
		},
		chunkText: func(m map[string]any) string { return str(get(m, "delta", "text")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "delta", "stop_reason")) },
	},
	{
		name:      "anthropic-text",
		model:     "anthropic.claude-v2:1",
		body:      `{"prompt":"\n\nHuman: Explain token buckets.\n\nAssistant:","max_tokens_to_sample":100}`,
		text:      func(m map[string]any) string { return str(get(m, "completion")) },
		stop:      func(m map[string]any) string { return str(get(m, "stop_reason")) },
		wantStop:  "stop_sequence",
		chunkText: func(m map[string]any) string { return str(get(m, "completion")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "stop_reason")) },
	},
	{
		name:     "llama",
		model:    "meta.llama3-8b-instruct-v1:0",
		body:     `{"prompt":"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\nExplain token buckets.<|eot_id|>","max_gen_len":100,"temperature":0.5}`,
		text:     func(m map[string]any) string { return str(get(m, "generation")) },
		stop:     func(m map[string]any) string { return str(get(m, "stop_reason")) },
		wantStop: "stop",
		usage: func(m map[string]any) (int, int) {
			return num(get(m, "prompt_token_count")), num(get(m, "generation_token_count"))
		},
		chunkText: func(m map[string]any) string { return str(get(m, "generation")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "stop_reason")) },
	},
	{
		name:     "titan",
		model:    "amazon.titan-text-express-v1",
		body:     `{"inputText":"User: Explain token buckets.\nBot:","textGenerationConfig":{"maxTokenCount":100,"temperature":0}}`,
		text:     func(m map[string]any) string { return str(get(m, "results", 0, "outputText")) },
		stop:     func(m map[string]any) string { return str(get(m, "results", 0, "completionReason")) },
		wantStop: "FINISH",
		usage: func(m map[string]any) (int, int) {
			return num(get(m, "inputTextTokenCount")), num(get(m, "results", 0, "tokenCount"))
		},
		chunkText: func(m map[string]any) string { return str(get(m, "outputText")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "completionReason")) },
	},
	{
		name:     "nova",
		model:    "amazon.nova-lite-v1:0",
		body:     `{"schemaVersion":"messages-v1","system":[{"text":"Be brief."}],"messages":[{"role":"user","content":[{"text":"Explain token buckets."}]}],"inferenceConfig":{"maxTokens":100}}`,
		text:     func(m map[string]any) string { return str(get(m, "output", "message", "content", 0, "text")) },
		stop:     func(m map[string]any) string { return str(get(m, "stopReason")) },
		wantStop: "end_turn",
		usage: func(m map[string]any) (int, int) {
			return num(get(m, "usage", "inputTokens")), num(get(m, "usage", "outputTokens"))
		},
		chunkText: func(m map[string]any) string { return str(get(m, "contentBlockDelta", "delta", "text")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "messageStop", "stopReason")) },
	},
	{
		name:      "mistral-text",
		model:     "mistral.mistral-7b-instruct-v0:2",
		body:      `{"prompt":"<s>[INST] Explain token buckets. [/INST]","max_tokens":100}`,
		text:      func(m map[string]any) string { return str(get(m, "outputs", 0, "text")) },
		stop:      func(m map[string]any) string { return str(get(m, "outputs", 0, "stop_reason")) },
		wantStop:  "stop",
		chunkText: func(m map[string]any) string { return str(get(m, "outputs", 0, "text")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "outputs", 0, "stop_reason")) },
	},
	{
		name:      "mistral-chat",
		model:     "mistral.mistral-large-2407-v1:0",
		body:      `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Explain token buckets."}],"max_tokens":100}`,
		text:      func(m map[string]any) string { return str(get(m, "choices", 0, "message", "content")) },
		stop:      func(m map[string]any) string { return str(get(m, "choices", 0, "stop_reason")) },
		wantStop:  "stop",
		chunkText: func(m map[string]any) string { return str(get(m, "choices", 0, "message", "content")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "choices", 0, "stop_reason")) },
	},
	{
		name:      "cohere-command",
		model:     "cohere.command-text-v14",
		body:      `{"prompt":"Explain token buckets.","max_tokens":100,"temperature":0.5}`,
		text:      func(m map[string]any) string { return str(get(m, "generations", 0, "text")) },
		stop:      func(m map[string]any) string { return str(get(m, "generations", 0, "finish_reason")) },
		wantStop:  "COMPLETE",
		chunkText: func(m map[string]any) string { return str(get(m, "text")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "finish_reason")) },
	},
	{
		name:      "cohere-command-r",
		model:     "cohere.command-r-v1:0",
		body:      `{"message":"Explain token buckets.","chat_history":[{"role":"USER","message":"Hi"},{"role":"CHATBOT","message":"Hello!"}],"max_tokens":100}`,
		text:      func(m map[string]any) string { return str(get(m, "text")) },
		stop:      func(m map[string]any) string { return str(get(m, "finish_reason")) },
		wantStop:  "COMPLETE",
		chunkText: func(m map[string]any) string { return str(get(m, "text")) },
		chunkStop: func(m map[string]any) string { return str(get(m, "finish_reason")) },
	},
}

// TestOperationsEveryFamily runs all five operations on every family
// through the SDK and checks that text, stop reasons and usage agree with
// each other and with Stats.
func TestOperationsEveryFamily(t *testing.T) {
	for _, fc := range families {
		t.Run(fc.name, func(t *testing.T) {
			sim, ts := start(t, bedrocksim.Config{})
			c := client(ts.URL)
			ctx := t.Context()
			var wantIn, wantOut int

			// InvokeModel.
			inv, err := c.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
				ModelId: aws.String(fc.model), Body: []byte(fc.body),
				ContentType: aws.String("application/json"), Accept: aws.String("application/json"),
			})
			if err != nil {
				t.Fatalf("InvokeModel: %v", err)
			}
			if got := aws.ToString(inv.ContentType); got != "application/json" {
				t.Errorf("InvokeModel content type: got %q, want application/json", got)
			}
			body := decode(t, inv.Body)
			text := fc.text(body)
			if text == "" {
				t.Errorf("InvokeModel text: got empty, want filler; body %s", inv.Body)
			}
			if got := fc.stop(body); got != fc.wantStop {
				t.Errorf("InvokeModel stop reason: got %q, want %q", got, fc.wantStop)
			}
			raw := awsmiddleware.GetRawResponse(inv.ResultMetadata).(*smithyhttp.Response)
			in, _ := strconv.Atoi(raw.Header.Get("X-Amzn-Bedrock-Input-Token-Count"))
			out, _ := strconv.Atoi(raw.Header.Get("X-Amzn-Bedrock-Output-Token-Count"))
			if in <= 0 || out != 24 {
				t.Errorf("InvokeModel token headers: got input %d output %d, want input > 0 and output 24", in, out)
			}
			if id, _ := awsmiddleware.GetRequestIDMetadata(inv.ResultMetadata); raw.Header.Get("X-Amzn-Bedrock-Invocation-Latency") == "" || len(id) != 36 {
				t.Errorf("InvokeModel headers: got %v, want invocation latency and request id", raw.Header)
			}
			if fc.usage != nil {
				if bin, bout := fc.usage(body); bin != in || bout != out {
					t.Errorf("InvokeModel body usage: got %d/%d, want the headers' %d/%d", bin, bout, in, out)
				}
			}
			wantIn, wantOut = wantIn+in, wantOut+out

			// InvokeModelWithResponseStream.
			st, err := c.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
				ModelId: aws.String(fc.model), Body: []byte(fc.body), ContentType: aws.String("application/json"),
			})
			if err != nil {
				t.Fatalf("InvokeModelWithResponseStream: %v", err)
			}
			if got := aws.ToString(st.ContentType); got != "application/json" {
				t.Errorf("stream content type: got %q, want application/json", got)
			}
			var streamed, stop string
			var last map[string]any
			for ev := range st.GetStream().Events() {
				chunk, ok := ev.(*types.ResponseStreamMemberChunk)
				if !ok {
					t.Fatalf("stream event: got %T, want a chunk", ev)
				}
				last = decode(t, chunk.Value.Bytes)
				streamed += fc.chunkText(last)
				if s := fc.chunkStop(last); s != "" {
					stop = s
				}
			}
			if err := st.GetStream().Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if streamed != text {
				t.Errorf("streamed text: got %q, want InvokeModel's %q", streamed, text)
			}
			if stop != fc.wantStop {
				t.Errorf("streamed stop reason: got %q, want %q", stop, fc.wantStop)
			}
			metrics := get(last, "amazon-bedrock-invocationMetrics")
			if got := num(get(metrics, "inputTokenCount")); got != in {
				t.Errorf("invocation metrics input: got %d, want %d", got, in)
			}
			if got := num(get(metrics, "outputTokenCount")); got != out {
				t.Errorf("invocation metrics output: got %d, want %d", got, out)
			}
			if get(metrics, "invocationLatency") == nil || get(metrics, "firstByteLatency") == nil {
				t.Errorf("invocation metrics: got %v, want latencies", metrics)
			}
			wantIn, wantOut = wantIn+in, wantOut+out

			// Converse.
			conv, err := c.Converse(ctx, &bedrockruntime.ConverseInput{
				ModelId:         aws.String(fc.model),
				Messages:        userText("Explain token buckets."),
				System:          []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "Be brief."}},
				InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(100)},
			})
			if err != nil {
				t.Fatalf("Converse: %v", err)
			}
			msg, ok := conv.Output.(*types.ConverseOutputMemberMessage)
			if !ok || len(msg.Value.Content) != 1 {
				t.Fatalf("Converse output: got %#v, want one message block", conv.Output)
			}
			ctext := msg.Value.Content[0].(*types.ContentBlockMemberText).Value
			if ctext == "" || msg.Value.Role != types.ConversationRoleAssistant {
				t.Errorf("Converse message: got role %q text %q, want assistant filler", msg.Value.Role, ctext)
			}
			if conv.StopReason != types.StopReasonEndTurn {
				t.Errorf("Converse stop reason: got %q, want end_turn", conv.StopReason)
			}
			cin, cout := int(aws.ToInt32(conv.Usage.InputTokens)), int(aws.ToInt32(conv.Usage.OutputTokens))
			if cin <= 0 || cout != 24 || int(aws.ToInt32(conv.Usage.TotalTokens)) != cin+cout {
				t.Errorf("Converse usage: got %d+%d=%d, want positive input, 24 output and their sum", cin, cout, aws.ToInt32(conv.Usage.TotalTokens))
			}
			if conv.Metrics == nil || conv.Metrics.LatencyMs == nil {
				t.Errorf("Converse metrics: got nil, want latency")
			}
			wantIn, wantOut = wantIn+cin, wantOut+cout

			// ConverseStream.
			cs, err := c.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
				ModelId:         aws.String(fc.model),
				Messages:        userText("Explain token buckets."),
				System:          []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "Be brief."}},
				InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(100)},
			})
			if err != nil {
				t.Fatalf("ConverseStream: %v", err)
			}
			var kinds []string
			var cstreamed string
			var usage *types.TokenUsage
			var cstop types.StopReason
			for ev := range cs.GetStream().Events() {
				switch e := ev.(type) {
				case *types.ConverseStreamOutputMemberMessageStart:
					kinds = append(kinds, "messageStart")
				case *types.ConverseStreamOutputMemberContentBlockDelta:
					if len(kinds) == 0 || kinds[len(kinds)-1] != "contentBlockDelta" {
						kinds = append(kinds, "contentBlockDelta")
					}
					cstreamed += e.Value.Delta.(*types.ContentBlockDeltaMemberText).Value
				case *types.ConverseStreamOutputMemberContentBlockStop:
					kinds = append(kinds, "contentBlockStop")
				case *types.ConverseStreamOutputMemberMessageStop:
					kinds = append(kinds, "messageStop")
					cstop = e.Value.StopReason
				case *types.ConverseStreamOutputMemberMetadata:
					kinds = append(kinds, "metadata")
					usage = e.Value.Usage
				default:
					t.Errorf("ConverseStream event: got %T", ev)
				}
			}
			if err := cs.GetStream().Err(); err != nil {
				t.Fatalf("ConverseStream: %v", err)
			}
			if got, want := strings.Join(kinds, ","), "messageStart,contentBlockDelta,contentBlockStop,messageStop,metadata"; got != want {
				t.Errorf("ConverseStream events: got %s, want %s", got, want)
			}
			if cstreamed != ctext || cstop != types.StopReasonEndTurn {
				t.Errorf("ConverseStream: got %q stop %q, want Converse's %q stop end_turn", cstreamed, cstop, ctext)
			}
			if usage == nil || int(aws.ToInt32(usage.InputTokens)) != cin || int(aws.ToInt32(usage.OutputTokens)) != cout {
				t.Errorf("ConverseStream usage: got %+v, want %d/%d", usage, cin, cout)
			}
			wantIn, wantOut = wantIn+cin, wantOut+cout

			// CountTokens, both ways, agrees with what the operations charged.
			ct, err := c.CountTokens(ctx, &bedrockruntime.CountTokensInput{
				ModelId: aws.String(fc.model),
				Input:   &types.CountTokensInputMemberInvokeModel{Value: types.InvokeModelTokensRequest{Body: []byte(fc.body)}},
			})
			if err != nil {
				t.Fatalf("CountTokens(invokeModel): %v", err)
			}
			if got := int(aws.ToInt32(ct.InputTokens)); got != in {
				t.Errorf("CountTokens(invokeModel): got %d, want InvokeModel's %d", got, in)
			}
			ct, err = c.CountTokens(ctx, &bedrockruntime.CountTokensInput{
				ModelId: aws.String(fc.model),
				Input: &types.CountTokensInputMemberConverse{Value: types.ConverseTokensRequest{
					Messages: userText("Explain token buckets."),
					System:   []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "Be brief."}},
				}},
			})
			if err != nil {
				t.Fatalf("CountTokens(converse): %v", err)
			}
			if got := int(aws.ToInt32(ct.InputTokens)); got != cin {
				t.Errorf("CountTokens(converse): got %d, want Converse's %d", got, cin)
			}

			st2 := sim.Stats()
			ms := st2.Models[fc.model]
			if ms.InputTokens != wantIn || ms.OutputTokens != wantOut {
				t.Errorf("Stats usage: got %d/%d, want %d/%d", ms.InputTokens, ms.OutputTokens, wantIn, wantOut)
			}
			if ms.Requests != 6 {
				t.Errorf("Stats model requests: got %d, want 6", ms.Requests)
			}
			wantOps := map[bedrock.Operation]int{
				bedrock.InvokeModel: 1, bedrock.InvokeModelWithResponseStream: 1,
				bedrock.Converse: 1, bedrock.ConverseStream: 1, bedrock.CountTokens: 2,
			}
			for op, n := range wantOps {
				if st2.Requests[op] != n {
					t.Errorf("Stats requests %s: got %d, want %d", op, st2.Requests[op], n)
				}
			}
			if st2.Total != 6 || st2.InFlight != 0 || st2.AuthFailures != 0 {
				t.Errorf("Stats: got total %d in flight %d auth failures %d, want 6, 0, 0", st2.Total, st2.InFlight, st2.AuthFailures)
			}
		})
	}
}

// TestMaxTokensTruncates checks that a limit below OutputTokens stops the
// generation there, with each family's "max tokens" reason.
func TestMaxTokensTruncates(t *testing.T) {
	bodies := map[string]struct{ model, body, want string }{
		"anthropic": {"anthropic.claude-3-haiku-20240307-v1:0", `{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		"llama":     {"meta.llama3-70b-instruct-v1:0", `{"prompt":"hi","max_gen_len":5}`, "length"},
		"titan":     {"amazon.titan-text-lite-v1", `{"inputText":"hi","textGenerationConfig":{"maxTokenCount":5}}`, "LENGTH"},
		"nova":      {"amazon.nova-micro-v1:0", `{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"max_new_tokens":5}}`, "max_tokens"},
		"mistral":   {"mistral.mixtral-8x7b-instruct-v0:1", `{"prompt":"hi","max_tokens":5}`, "length"},
		"cohere":    {"cohere.command-light-text-v14", `{"prompt":"hi","max_tokens":5}`, "MAX_TOKENS"},
		"commandR":  {"cohere.command-r-plus-v1:0", `{"message":"hi","max_tokens":5}`, "MAX_TOKENS"},
	}
	_, ts := start(t, bedrocksim.Config{})
	c := client(ts.URL)
	for name, tc := range bodies {
		t.Run(name, func(t *testing.T) {
			out, err := c.InvokeModel(t.Context(), &bedrockruntime.InvokeModelInput{ModelId: aws.String(tc.model), Body: []byte(tc.body)})
			if err != nil {
				t.Fatal(err)
			}
			raw := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response)
			if got := raw.Header.Get("X-Amzn-Bedrock-Output-Token-Count"); got != "5" {
				t.Errorf("output tokens: got %s, want 5", got)
			}
			if !strings.Contains(string(out.Body), `"`+tc.want+`"`) {
				t.Errorf("body: got %s, want stop reason %q", out.Body, tc.want)
			}
		})
	}
	conv, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{
		ModelId: aws.String("meta.llama3-8b-instruct-v1:0"), Messages: userText("hi"),
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(2)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if conv.StopReason != types.StopReasonMaxTokens || aws.ToInt32(conv.Usage.OutputTokens) != 2 {
		t.Errorf("Converse: got %s with %d tokens, want max_tokens with 2", conv.StopReason, aws.ToInt32(conv.Usage.OutputTokens))
	}
}

// TestModelIDForms checks ARNs (foundation-model and inference-profile,
// whose %2F the SDK escapes) and cross-Region profile ids, and that their
// quota and statistics key is the id after the last '/'.
func TestModelIDForms(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	c := client(ts.URL)
	ids := map[string]string{
		"arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0":                   "anthropic.claude-3-haiku-20240307-v1:0",
		"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
		"us.meta.llama3-2-3b-instruct-v1:0":              "us.meta.llama3-2-3b-instruct-v1:0",
		"global.anthropic.claude-sonnet-4-20250514-v1:0": "global.anthropic.claude-sonnet-4-20250514-v1:0",
	}
	for id, key := range ids {
		out, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String(id), Messages: userText("hi")})
		if err != nil {
			t.Errorf("Converse %s: %v", id, err)
			continue
		}
		if aws.ToInt32(out.Usage.OutputTokens) != 24 {
			t.Errorf("Converse %s: got %d output tokens, want 24", id, aws.ToInt32(out.Usage.OutputTokens))
		}
		if got := sim.Stats().Models[key].Requests; got != 1 {
			t.Errorf("Stats for %s: got %d requests under %q, want 1", id, got, key)
		}
	}
	recs := sim.Requests()
	if len(recs) != len(ids) {
		t.Fatalf("Requests: got %d, want %d", len(recs), len(ids))
	}
	for _, r := range recs {
		if _, ok := ids[r.ModelID]; !ok {
			t.Errorf("recorded model id: got %q, want one of the decoded ids", r.ModelID)
		}
	}
}

// TestValidation checks Bedrock's ValidationException for bad bodies and
// unknown models, as typed SDK errors.
func TestValidation(t *testing.T) {
	_, ts := start(t, bedrocksim.Config{})
	c := client(ts.URL)
	cases := []struct {
		name, model, body, want string
	}{
		{"not json", "anthropic.claude-3-haiku-20240307-v1:0", `{"anthropic_version":`, "Malformed input request"},
		{"missing max_tokens", "anthropic.claude-3-haiku-20240307-v1:0", `{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"hi"}]}`, "required key [max_tokens] not found"},
		{"missing messages", "anthropic.claude-3-haiku-20240307-v1:0", `{"anthropic_version":"bedrock-2023-05-31","max_tokens":10}`, "required key [messages] not found"},
		{"max_tokens string", "anthropic.claude-3-haiku-20240307-v1:0", `{"anthropic_version":"bedrock-2023-05-31","max_tokens":"10","messages":[{"role":"user","content":"hi"}]}`, "#/max_tokens: expected type: Integer, found: String"},
		{"text completions on claude 3", "anthropic.claude-3-haiku-20240307-v1:0", `{"prompt":"\n\nHuman: hi\n\nAssistant:","max_tokens_to_sample":10}`, "Please use the Messages API"},
		{"claude 2 prompt turns", "anthropic.claude-v2", `{"prompt":"hi","max_tokens_to_sample":10}`, "Invalid prompt"},
		{"llama prompt missing", "meta.llama3-8b-instruct-v1:0", `{"max_gen_len":10}`, "required key [prompt] not found"},
		{"titan max tokens type", "amazon.titan-text-express-v1", `{"inputText":"hi","textGenerationConfig":{"maxTokenCount":1.5}}`, "#/textGenerationConfig/maxTokenCount: expected type: Integer"},
		{"body is an array", "cohere.command-text-v14", `[]`, "expected type: JSONObject, found: JSONArray"},
		{"unknown model", "stability.stable-diffusion-xl-v1", `{}`, "The provided model identifier is invalid."},
		{"embeddings model", "amazon.titan-embed-text-v2:0", `{"inputText":"hi"}`, "The provided model identifier is invalid."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.InvokeModel(t.Context(), &bedrockruntime.InvokeModelInput{ModelId: aws.String(tc.model), Body: []byte(tc.body)})
			var ve *types.ValidationException
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want *types.ValidationException", err)
			}
			if !strings.Contains(ve.ErrorMessage(), tc.want) {
				t.Errorf("message: got %q, want it to contain %q", ve.ErrorMessage(), tc.want)
			}
		})
	}

	// Converse's own checks.
	_, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{
		ModelId:  aws.String("amazon.nova-pro-v1:0"),
		Messages: []types.Message{{Role: types.ConversationRoleAssistant, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "hi"}}}},
	})
	var ve *types.ValidationException
	if !errors.As(err, &ve) || !strings.Contains(ve.ErrorMessage(), "must start with a user message") {
		t.Errorf("Converse starting with assistant: got %v, want ValidationException about the first message", err)
	}
}

// TestRouting checks what a signed request to anything but the five
// operations gets.
func TestRouting(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	body := []byte(`{"prompt":"hi"}`)
	cases := []struct {
		method, path string
		status       int
		errType      string
	}{
		{http.MethodPost, "/model/meta.llama3-8b-instruct-v1%3A0/invoke", http.StatusOK, ""},
		{http.MethodGet, "/model/meta.llama3-8b-instruct-v1%3A0/invoke", http.StatusNotFound, "UnknownOperationException"},
		{http.MethodPost, "/model/meta.llama3-8b-instruct-v1%3A0/generate", http.StatusNotFound, "UnknownOperationException"},
		{http.MethodPost, "/models", http.StatusNotFound, "UnknownOperationException"},
	}
	for _, tc := range cases {
		status, errType, b := do(t, signedRequest(t, tc.method, ts.URL+tc.path, body))
		if status != tc.status || errType != tc.errType {
			t.Errorf("%s %s: got %d %q (%s), want %d %q", tc.method, tc.path, status, errType, b, tc.status, tc.errType)
		}
	}
	recs := sim.Requests()
	if len(recs) != len(cases) {
		t.Fatalf("Requests: got %d records, want %d", len(recs), len(cases))
	}
	for i, r := range recs {
		if !r.Authenticated || r.Status != cases[i].status {
			t.Errorf("record %d: got authenticated %v status %d, want true %d", i, r.Authenticated, r.Status, cases[i].status)
		}
	}
	if recs[0].Operation != bedrock.InvokeModel || string(recs[0].Body) != string(body) || recs[0].Header.Get("Authorization") == "" {
		t.Errorf("first record: got %+v, want the InvokeModel request as sent", recs[0])
	}
}

// TestRequestsKeepsLast256 checks the bound of the request log.
func TestRequestsKeepsLast256(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	for i := range 260 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/model/m/invoke", strings.NewReader(strconv.Itoa(i)))
		do(t, req)
	}
	recs := sim.Requests()
	if len(recs) != 256 || string(recs[0].Body) != "4" || string(recs[255].Body) != "259" {
		t.Errorf("Requests: got %d records from %s to %s, want 256 from 4 to 259", len(recs), recs[0].Body, recs[len(recs)-1].Body)
	}
	if recs[0].Authenticated || recs[0].Status != http.StatusForbidden {
		t.Errorf("unsigned record: got authenticated %v status %d, want false 403", recs[0].Authenticated, recs[0].Status)
	}
}
