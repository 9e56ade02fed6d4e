package proxy_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/bedrocksim"
)

// family is one native body format and a model that speaks it.
type family struct {
	name  string
	model string
	body  string // an InvokeModel body asking for at most 40 output tokens
}

var families = []family{
	{"anthropic", "anthropic.claude-3-haiku-20240307-v1:0",
		`{"anthropic_version":"bedrock-2023-05-31","max_tokens":40,"system":"Be brief.","messages":[{"role":"user","content":"Name three colours."}]}`},
	{"meta", "meta.llama3-8b-instruct-v1:0",
		`{"prompt":"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\nName three colours.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n","max_gen_len":40,"temperature":0.5}`},
	{"titan", "amazon.titan-text-express-v1",
		`{"inputText":"Name three colours.","textGenerationConfig":{"maxTokenCount":40,"temperature":0.5}}`},
	{"nova", "amazon.nova-lite-v1:0",
		`{"schemaVersion":"messages-v1","system":[{"text":"Be brief."}],"messages":[{"role":"user","content":[{"text":"Name three colours."}]}],"inferenceConfig":{"max_new_tokens":40}}`},
	{"mistral", "mistral.mistral-7b-instruct-v0:2",
		`{"prompt":"<s>[INST] Name three colours. [/INST]","max_tokens":40}`},
	{"cohere", "cohere.command-r-v1:0",
		`{"message":"Name three colours.","preamble":"Be brief.","max_tokens":40}`},
}

func converseInput(model string) *bedrockruntime.ConverseInput {
	return &bedrockruntime.ConverseInput{
		ModelId: aws.String(model),
		System:  []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "Be brief."}},
		Messages: []types.Message{{
			Role:    types.ConversationRoleUser,
			Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "Name three colours."}},
		}},
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(40)},
	}
}

// TestSDKEveryOperationEveryFamily drives all five operations for every body
// family through the real SDK, and checks that the usage the gateway read
// from bodies, headers and stream events is what the simulator served.
func TestSDKEveryOperationEveryFamily(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			ctx := testContext(t)

			inv, err := h.client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
				ModelId: aws.String(f.model), Body: []byte(f.body), ContentType: aws.String("application/json"), Accept: aws.String("application/json"),
			})
			if err != nil {
				t.Fatalf("InvokeModel: %v", err)
			}
			if !json.Valid(inv.Body) || len(inv.Body) < 10 {
				t.Fatalf("InvokeModel body = %q, want a JSON document", inv.Body)
			}
			h.checkUsage(t, bedrock.InvokeModel, f.model)

			st, err := h.client.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
				ModelId: aws.String(f.model), Body: []byte(f.body), ContentType: aws.String("application/json"),
			})
			if err != nil {
				t.Fatalf("InvokeModelWithResponseStream: %v", err)
			}
			chunks := 0
			for ev := range st.GetStream().Events() {
				c, ok := ev.(*types.ResponseStreamMemberChunk)
				if !ok {
					t.Fatalf("stream event %T, want chunk", ev)
				}
				if !json.Valid(c.Value.Bytes) {
					t.Fatalf("chunk bytes %q are not JSON", c.Value.Bytes)
				}
				chunks++
			}
			if err := st.GetStream().Err(); err != nil {
				t.Fatalf("stream error: %v", err)
			}
			st.GetStream().Close()
			if chunks < 2 {
				t.Fatalf("got %d chunks, want several", chunks)
			}
			h.checkUsage(t, bedrock.InvokeModelWithResponseStream, f.model)

			conv, err := h.client.Converse(ctx, converseInput(f.model))
			if err != nil {
				t.Fatalf("Converse: %v", err)
			}
			msg, ok := conv.Output.(*types.ConverseOutputMemberMessage)
			if !ok || len(msg.Value.Content) == 0 {
				t.Fatalf("Converse output = %#v, want a message", conv.Output)
			}
			if conv.Usage == nil || aws.ToInt32(conv.Usage.OutputTokens) == 0 {
				t.Fatalf("Converse usage = %+v, want output tokens", conv.Usage)
			}
			h.checkUsage(t, bedrock.Converse, f.model)

			cs, err := h.client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
				ModelId: aws.String(f.model), Messages: converseInput(f.model).Messages, InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(40)},
			})
			if err != nil {
				t.Fatalf("ConverseStream: %v", err)
			}
			var text strings.Builder
			var meta *types.ConverseStreamMetadataEvent
			for ev := range cs.GetStream().Events() {
				switch v := ev.(type) {
				case *types.ConverseStreamOutputMemberContentBlockDelta:
					if d, ok := v.Value.Delta.(*types.ContentBlockDeltaMemberText); ok {
						text.WriteString(d.Value)
					}
				case *types.ConverseStreamOutputMemberMetadata:
					meta = &v.Value
				}
			}
			if err := cs.GetStream().Err(); err != nil {
				t.Fatalf("ConverseStream error: %v", err)
			}
			cs.GetStream().Close()
			if text.Len() == 0 || meta == nil || meta.Usage == nil {
				t.Fatalf("ConverseStream text %q metadata %+v, want both", text.String(), meta)
			}
			h.checkUsage(t, bedrock.ConverseStream, f.model)

			ct, err := h.client.CountTokens(ctx, &bedrockruntime.CountTokensInput{
				ModelId: aws.String(f.model),
				Input:   &types.CountTokensInputMemberInvokeModel{Value: types.InvokeModelTokensRequest{Body: []byte(f.body)}},
			})
			if err != nil {
				t.Fatalf("CountTokens: %v", err)
			}
			if aws.ToInt32(ct.InputTokens) <= 0 {
				t.Fatalf("CountTokens = %d, want > 0", aws.ToInt32(ct.InputTokens))
			}
			line := h.logLine(t, bedrock.CountTokens, f.model)
			if got, want := intField(line, "input_tokens"), int(aws.ToInt32(ct.InputTokens)); got != want {
				t.Errorf("CountTokens logged input_tokens %d, want %d", got, want)
			}

			if got, want := h.sim.Stats().Total, 5; got != want {
				t.Errorf("simulator saw %d requests, want %d", got, want)
			}
		})
	}
}

// checkUsage compares the usage in the gateway's access log with what the
// simulator served for the model so far, then resets nothing: the simulator's
// totals grow, so the log lines are summed the same way.
func (h *harness) checkUsage(t *testing.T, op bedrock.Operation, model string) {
	t.Helper()
	line := h.logLine(t, op, model) // waits: the line is written after the response
	var in, out int
	for _, l := range h.logLines(t) {
		if l["model"] == model && l["operation"] != string(bedrock.CountTokens) {
			in += intField(l, "input_tokens")
			out += intField(l, "output_tokens")
		}
	}
	if intField(line, "output_tokens") <= 0 || intField(line, "input_tokens") <= 0 {
		t.Fatalf("%s access log %v: want input and output tokens", op, line)
	}
	ms := h.sim.Stats().Models[model]
	if in != ms.InputTokens || out != ms.OutputTokens {
		t.Errorf("after %s: gateway read %d in / %d out, simulator served %d / %d", op, in, out, ms.InputTokens, ms.OutputTokens)
	}
}

func (h *harness) logLines(t testing.TB) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(h.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	return lines
}

// logLine returns the last access-log line for an operation on a model.
func (h *harness) logLine(t testing.TB, op bedrock.Operation, model string) map[string]any {
	t.Helper()
	var found map[string]any
	waitFor(t, "access log line for "+string(op), func() bool {
		for _, l := range h.logLines(t) {
			if l["operation"] == string(op) && l["model"] == model {
				found = l
			}
		}
		return found != nil
	})
	return found
}

// waitLogs waits until n access-log lines were written: each is written
// after its request settled.
func (h *harness) waitLogs(t testing.TB, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d access log lines", n), func() bool { return len(h.logLines(t)) >= n })
}

func intField(m map[string]any, k string) int {
	f, _ := m[k].(float64)
	return int(f)
}

// TestModelARN sends a foundation-model ARN, which the SDK escapes with %3A
// and %2F. The gateway must route on the raw path and re-sign it unchanged.
func TestModelARN(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := testContext(t)
	for _, arn := range []string{
		"arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
		"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
	} {
		if _, err := h.client.Converse(ctx, converseInput(arn)); err != nil {
			t.Fatalf("Converse %s: %v", arn, err)
		}
		if _, err := h.client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(arn), Body: []byte(families[0].body)}); err != nil {
			t.Fatalf("InvokeModel %s: %v", arn, err)
		}
	}
	for _, r := range h.sim.Requests() {
		if !r.Authenticated {
			t.Errorf("simulator refused the gateway's signature for %s %s", r.Operation, r.ModelID)
		}
	}
}

// TestUpstreamErrorsAreTyped checks that Bedrock's errors pass through so
// the SDK raises the same typed exception it would against Bedrock.
func TestUpstreamErrorsAreTyped(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := testContext(t)
	model := families[0].model
	cases := []struct {
		kind  bedrocksim.FaultKind
		check func(error) bool
		want  string
	}{
		{bedrocksim.FaultThrottle, isType[*types.ThrottlingException], "ThrottlingException"},
		{bedrocksim.FaultModelNotReady, isType[*types.ModelNotReadyException], "ModelNotReadyException"},
		{bedrocksim.FaultServiceUnavailable, isType[*types.ServiceUnavailableException], "ServiceUnavailableException"},
		{bedrocksim.FaultInternal, isType[*types.InternalServerException], "InternalServerException"},
		{bedrocksim.FaultModelTimeout, isType[*types.ModelTimeoutException], "ModelTimeoutException"},
	}
	for _, c := range cases {
		h.sim.InjectFault(bedrocksim.Fault{Model: model, Kind: c.kind})
		_, err := h.client.Converse(ctx, converseInput(model))
		if !c.check(err) {
			t.Errorf("fault %v: got %T (%v), want %s", c.kind, err, err, c.want)
		}
	}
	// Bedrock's throttle on a stream that already started arrives as an
	// exception event and must reach the SDK as the same typed error.
	h.sim.InjectFault(bedrocksim.Fault{Model: model, Kind: bedrocksim.FaultThrottleMidStream, AfterEvents: 2})
	cs, err := h.client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(model), Messages: converseInput(model).Messages})
	if err != nil {
		t.Fatalf("ConverseStream: %v", err)
	}
	for range cs.GetStream().Events() {
	}
	if err := cs.GetStream().Err(); !isType[*types.ThrottlingException](err) {
		t.Errorf("mid-stream throttle: got %T (%v), want *types.ThrottlingException", err, err)
	}
}

func isType[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}
