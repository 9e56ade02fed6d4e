package bedrocksim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/bedrocksim"
)

const llama = "meta.llama3-8b-instruct-v1:0"

func TestFaultsBeforeResponse(t *testing.T) {
	cases := []struct {
		kind   bedrocksim.FaultKind
		target any
	}{
		{bedrocksim.FaultThrottle, new(*types.ThrottlingException)},
		{bedrocksim.FaultServiceUnavailable, new(*types.ServiceUnavailableException)},
		{bedrocksim.FaultModelNotReady, new(*types.ModelNotReadyException)},
		{bedrocksim.FaultInternal, new(*types.InternalServerException)},
		{bedrocksim.FaultModelTimeout, new(*types.ModelTimeoutException)},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			sim, ts := start(t, bedrocksim.Config{})
			c := client(ts.URL)
			sim.InjectFault(bedrocksim.Fault{Kind: tc.kind, Times: 2})

			err := invokeClaude(t.Context(), c)
			if !errors.As(err, tc.target) {
				t.Errorf("InvokeModel: got %v, want %T", err, tc.target)
			}
			// Before the response, a stream fails the call itself.
			_, err = c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: userText("hi")})
			if !errors.As(err, tc.target) {
				t.Errorf("ConverseStream: got %v, want %T", err, tc.target)
			}
			if err := invokeClaude(t.Context(), c); err != nil {
				t.Errorf("after Times: got %v, want success", err)
			}
			st := sim.Stats()
			if st.Faults != 2 || st.Throttled != 0 {
				t.Errorf("Stats: got %d faults %d throttled, want 2 and 0", st.Faults, st.Throttled)
			}
		})
	}
}

func TestFaultReset(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultReset})
	err := invokeClaude(t.Context(), client(ts.URL))
	var ae smithy.APIError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("got %v, want a transport error", err)
	}
	// The client sees the reset before the handler has returned.
	waitFor(t, func() bool { return sim.Stats().InFlight == 0 })
	recs := sim.Requests()
	if len(recs) != 1 || recs[0].Status != 0 || !recs[0].Authenticated {
		t.Errorf("record: got %+v, want an authenticated request with no status", recs)
	}
	if st := sim.Stats(); st.Faults != 1 || st.InFlight != 0 {
		t.Errorf("Stats: got %d faults %d in flight, want 1 and 0", st.Faults, st.InFlight)
	}
}

func TestFaultMatchingAndOrder(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	c := client(ts.URL)
	sim.InjectFault(bedrocksim.Fault{Model: llama, Kind: bedrocksim.FaultInternal})
	sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultThrottleMidStream})
	sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultModelTimeout, Operation: bedrock.Converse})
	sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultThrottle, RetryAfter: 1500 * time.Millisecond})

	// Another model skips the llama fault; InvokeModel skips the
	// mid-stream and Converse-only ones and takes the throttle, with its
	// Retry-After.
	resp, err := http.DefaultClient.Do(signedRequest(t, http.MethodPost, ts.URL+"/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", []byte(claudeBody)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Amzn-ErrorType") != "ThrottlingException" {
		t.Errorf("first: got %d %s, want 429 ThrottlingException", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
	if got := resp.Header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After: got %q, want 2 (seconds, rounded up)", got)
	}
	// Converse takes its own fault.
	_, err = c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String(haiku), Messages: userText("hi")})
	var mt *types.ModelTimeoutException
	if !errors.As(err, &mt) {
		t.Errorf("Converse: got %v, want *types.ModelTimeoutException", err)
	}
	// The llama request takes the llama fault.
	_, err = c.InvokeModel(t.Context(), &bedrockruntime.InvokeModelInput{ModelId: aws.String(llama), Body: []byte(`{"prompt":"hi"}`)})
	var ie *types.InternalServerException
	if !errors.As(err, &ie) {
		t.Errorf("llama: got %v, want *types.InternalServerException", err)
	}
	// Only the mid-stream fault is left, for the first stream.
	st, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: userText("hi")})
	if err != nil {
		t.Fatal(err)
	}
	for range st.GetStream().Events() {
	}
	var te *types.ThrottlingException
	if err := st.GetStream().Err(); !errors.As(err, &te) {
		t.Errorf("stream: got %v, want *types.ThrottlingException", err)
	}
	if err := invokeClaude(t.Context(), c); err != nil {
		t.Errorf("no faults left: got %v", err)
	}
}

func TestFaultsMidStream(t *testing.T) {
	t.Run("invoke throttle", func(t *testing.T) {
		sim, ts := start(t, bedrocksim.Config{})
		sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultThrottleMidStream, AfterEvents: 2})
		out, err := client(ts.URL).InvokeModelWithResponseStream(t.Context(), &bedrockruntime.InvokeModelWithResponseStreamInput{
			ModelId: aws.String(llama), Body: []byte(`{"prompt":"hi"}`),
		})
		if err != nil {
			t.Fatalf("the stream starts: got %v", err)
		}
		var chunks int
		for ev := range out.GetStream().Events() {
			if _, ok := ev.(*types.ResponseStreamMemberChunk); ok {
				chunks++
			}
		}
		var te *types.ThrottlingException
		if err := out.GetStream().Err(); !errors.As(err, &te) {
			t.Fatalf("Err: got %v, want *types.ThrottlingException", err)
		}
		if chunks != 2 {
			t.Errorf("chunks before the exception: got %d, want 2", chunks)
		}
		// Two llama chunks carry 3 tokens each; the quota is settled to
		// the prompt (3 tokens for "hi") and what was sent. The client may
		// read the exception before the handler has settled: wait for it.
		waitFor(t, func() bool { return sim.Stats().InFlight == 0 })
		ms := sim.Stats().Models[llama]
		if ms.OutputTokens != 6 || ms.MaxWindowTokens != ms.InputTokens+6 {
			t.Errorf("usage: got %+v, want 6 output tokens settled", ms)
		}
		if got := sim.Stats().Faults; got != 1 {
			t.Errorf("Faults: got %d, want 1", got)
		}
	})
	t.Run("converse model stream error", func(t *testing.T) {
		sim, ts := start(t, bedrocksim.Config{})
		sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultStreamError, AfterEvents: 1, Model: haiku})
		out, err := client(ts.URL).ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: userText("hi")})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for ev := range out.GetStream().Events() {
			kinds = append(kinds, fmt.Sprintf("%T", ev))
		}
		var mse *types.ModelStreamErrorException
		if err := out.GetStream().Err(); !errors.As(err, &mse) {
			t.Fatalf("Err: got %v, want *types.ModelStreamErrorException", err)
		}
		if len(kinds) != 1 || kinds[0] != "*types.ConverseStreamOutputMemberMessageStart" {
			t.Errorf("events: got %v, want only messageStart", kinds)
		}
	})
	t.Run("kept for a stream that starts", func(t *testing.T) {
		sim, ts := start(t, bedrocksim.Config{})
		c := client(ts.URL)
		sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultThrottleMidStream})
		_, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{
			ModelId:  aws.String(haiku),
			Messages: []types.Message{{Role: types.ConversationRoleAssistant, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "hi"}}}},
		})
		var ve *types.ValidationException
		if !errors.As(err, &ve) {
			t.Fatalf("invalid stream: got %v, want *types.ValidationException", err)
		}
		out, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: userText("hi")})
		if err != nil {
			t.Fatal(err)
		}
		for range out.GetStream().Events() {
		}
		var te *types.ThrottlingException
		if err := out.GetStream().Err(); !errors.As(err, &te) {
			t.Errorf("valid stream: got %v, want the queued *types.ThrottlingException", err)
		}
	})
	t.Run("after the last event", func(t *testing.T) {
		sim, ts := start(t, bedrocksim.Config{OutputTokens: 3})
		sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultThrottleMidStream, AfterEvents: 100})
		out, err := client(ts.URL).ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: userText("hi")})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range out.GetStream().Events() {
			n++
		}
		var te *types.ThrottlingException
		if err := out.GetStream().Err(); !errors.As(err, &te) || n != 5 {
			t.Errorf("got %d events then %v, want all 5 then *types.ThrottlingException", n, err)
		}
	})
}

// TestHoldStreams shows the first event reaching the client while the
// simulator is still generating, with no timing involved.
func TestHoldStreams(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	c := client(ts.URL)
	release := sim.HoldStreams()

	out, err := c.InvokeModelWithResponseStream(t.Context(), &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(llama), Body: []byte(`{"prompt":"hi"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	events := out.GetStream().Events()
	first, ok := <-events
	if !ok {
		t.Fatalf("no first event: %v", out.GetStream().Err())
	}
	var chunk map[string]any
	_ = json.Unmarshal(first.(*types.ResponseStreamMemberChunk).Value.Bytes, &chunk)
	if str(get(chunk, "generation")) == "" {
		t.Errorf("first chunk: got %v, want text", chunk)
	}
	if st := sim.Stats(); st.InFlight != 1 {
		t.Errorf("while held: got %d in flight, want the stream still running", st.InFlight)
	}

	release()
	release() // idempotent
	n := 1
	for range events {
		n++
	}
	if err := out.GetStream().Err(); err != nil {
		t.Fatal(err)
	}
	if n != 9 { // 24 tokens in 8 chunks of 3, then the stop chunk
		t.Errorf("chunks: got %d, want 9", n)
	}
	if st := sim.Stats(); st.InFlight != 0 || st.Models[llama].OutputTokens != 24 {
		t.Errorf("after release: got %+v, want the stream finished with 24 tokens", st)
	}
}

// TestCancelMidStream cancels the client while the stream is held after
// its first event.
func TestCancelMidStream(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	release := sim.HoldStreams()
	defer release()
	ctx, cancel := context.WithCancel(t.Context())
	out, err := client(ts.URL).InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(llama), Body: []byte(`{"prompt":"hi"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	<-out.GetStream().Events()
	cancel()
	waitFor(t, func() bool { return sim.Stats().Cancelled == 1 && sim.Stats().InFlight == 0 })

	ms := sim.Stats().Models[llama]
	if ms.OutputTokens != 3 || ms.MaxWindowTokens != ms.InputTokens+3 {
		t.Errorf("usage: got %+v, want the 3 tokens sent before the client left", ms)
	}
}

// TestCancelWhileGenerating cancels a non-streaming request during the
// simulated model's latency.
func TestCancelWhileGenerating(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{Latency: bedrocksim.Latency{TimeToFirstToken: time.Hour}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- invokeClaude(ctx, client(ts.URL)) }()
	waitFor(t, func() bool { return sim.Stats().InFlight == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("client: got %v, want context.Canceled", err)
	}
	waitFor(t, func() bool { return sim.Stats().Cancelled == 1 && sim.Stats().InFlight == 0 })
	if ms := sim.Stats().Models[haiku]; ms.OutputTokens != 0 {
		t.Errorf("usage: got %+v, want no output tokens", ms)
	}
}

// TestLatency checks that the simulated model takes at least its
// configured time, as the invocation metrics report it.
func TestLatency(t *testing.T) {
	_, ts := start(t, bedrocksim.Config{
		OutputTokens: 6,
		Latency:      bedrocksim.Latency{TimeToFirstToken: 30 * time.Millisecond, PerOutputToken: 2 * time.Millisecond},
	})
	out, err := client(ts.URL).InvokeModelWithResponseStream(t.Context(), &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(llama), Body: []byte(`{"prompt":"hi"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	var last map[string]any
	for ev := range out.GetStream().Events() {
		last = map[string]any{}
		_ = json.Unmarshal(ev.(*types.ResponseStreamMemberChunk).Value.Bytes, &last)
	}
	m := get(last, "amazon-bedrock-invocationMetrics")
	if fb := num(get(m, "firstByteLatency")); fb < 36 { // 30ms + 3 tokens x 2ms
		t.Errorf("firstByteLatency: got %dms, want at least 36", fb)
	}
	if il := num(get(m, "invocationLatency")); il < 42 { // 30ms + 6 x 2ms
		t.Errorf("invocationLatency: got %dms, want at least 42", il)
	}
}

// waitFor polls a condition that the simulator reaches asynchronously
// (it learns of a client leaving from its connection). The deadline only
// stops a broken test from hanging.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
