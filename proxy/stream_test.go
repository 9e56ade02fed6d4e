package proxy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/quotagate/quotagate/bedrock"
)

// TestStreamFirstEventBeforeUpstreamFinishes proves events are relayed as
// they arrive: the simulator holds every stream after its first event, so
// the client can only see that event if nothing buffers the stream.
func TestStreamFirstEventBeforeUpstreamFinishes(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := testContext(t)
	release := h.sim.HoldStreams()
	defer release()

	for _, f := range []func() (<-chan any, func() error){
		func() (<-chan any, func() error) {
			out, err := h.client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(families[0].model), Messages: converseInput("").Messages})
			if err != nil {
				t.Fatalf("ConverseStream: %v", err)
			}
			return relay(out.GetStream().Events()), out.GetStream().Err
		},
		func() (<-chan any, func() error) {
			out, err := h.client.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String(families[1].model), Body: []byte(families[1].body)})
			if err != nil {
				t.Fatalf("InvokeModelWithResponseStream: %v", err)
			}
			return relay(out.GetStream().Events()), out.GetStream().Err
		},
	} {
		events, errf := f()
		if _, ok := <-events; !ok {
			t.Fatalf("stream closed before its first event: %v", errf())
		}
		if got := h.sim.Stats().InFlight; got != 1 {
			t.Fatalf("simulator in-flight = %d after first event, want 1 (stream still held upstream)", got)
		}
		release()
		n := 1
		for range events {
			n++
		}
		if err := errf(); err != nil {
			t.Fatalf("stream error: %v", err)
		}
		if n < 3 {
			t.Fatalf("got %d events, want the whole stream", n)
		}
		release = h.sim.HoldStreams()
	}
}

// relay turns a typed SDK event channel into one the test can range over.
func relay[T any](in <-chan T) <-chan any {
	out := make(chan any)
	go func() {
		defer close(out)
		for v := range in {
			out <- v
		}
	}()
	return out
}

// TestClientCancelCancelsUpstream: a caller that goes away mid-stream must
// stop generation upstream, not leave Bedrock generating for nobody.
func TestClientCancelCancelsUpstream(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	release := h.sim.HoldStreams()
	defer release()
	ctx, cancel := context.WithCancel(testContext(t))
	out, err := h.client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(families[0].model), Messages: converseInput("").Messages})
	if err != nil {
		t.Fatalf("ConverseStream: %v", err)
	}
	if _, ok := <-out.GetStream().Events(); !ok {
		t.Fatalf("no first event: %v", out.GetStream().Err())
	}
	cancel()
	out.GetStream().Close()
	waitFor(t, "the simulator to see the cancellation", func() bool { return h.sim.Stats().Cancelled == 1 })
	waitFor(t, "no request in flight upstream", func() bool { return h.sim.Stats().InFlight == 0 })
	line := h.logLine(t, bedrock.ConverseStream, families[0].model)
	if got := intField(line, "status"); got != 499 {
		t.Errorf("access log status %d, want 499 for a client that went away", got)
	}
}

// TestBrokenUpstreamStreamEndsInException: when Bedrock's connection dies
// mid-stream the caller gets a typed exception event, never a silent cut
// that its SDK would take for a short but complete answer.
func TestBrokenUpstreamStreamEndsInException(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", bedrock.EventStreamContentType)
		w.WriteHeader(http.StatusOK)
		_ = bedrock.WriteEvent(w, "messageStart", []byte(`{"role":"assistant"}`))
		_ = bedrock.WriteEvent(w, "contentBlockDelta", []byte(`{"contentBlockIndex":0,"delta":{"text":"Hel"}}`))
		_, _ = w.Write([]byte{0, 0, 1, 0, 0, 0}) // half a prelude
		w.(http.Flusher).Flush()
		// Drop the connection under the half-written frame.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer broken.Close()
	h := newHarness(t, harnessOptions{upstreamURL: broken.URL})
	out, err := h.client.ConverseStream(testContext(t), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(families[0].model), Messages: converseInput("").Messages})
	if err != nil {
		t.Fatalf("ConverseStream: %v", err)
	}
	var text string
	for ev := range out.GetStream().Events() {
		if d, ok := ev.(*types.ConverseStreamOutputMemberContentBlockDelta); ok {
			text += d.Value.Delta.(*types.ContentBlockDeltaMemberText).Value
		}
	}
	if text != "Hel" {
		t.Errorf("got text %q before the break, want %q", text, "Hel")
	}
	var ise *types.InternalServerException
	if err := out.GetStream().Err(); !errors.As(err, &ise) {
		t.Fatalf("got %T (%v), want *types.InternalServerException", err, err)
	}
}
