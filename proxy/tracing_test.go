package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTracing: an incoming traceparent is continued by the server span, and
// the upstream call is a client span named "{operation} {model}" carrying
// the GenAI semantic-convention attributes, usage included.
func TestTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	h := newHarness(t, harnessOptions{})
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest(http.MethodPost, h.front.URL+"/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"Name three colours."}]}],"inferenceConfig":{"maxTokens":40}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := h.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h.logLine(t, "Converse", families[0].model) // the request has fully finished

	var server, client sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			server = s
		case trace.SpanKindClient:
			client = s
		}
	}
	if server == nil || client == nil {
		t.Fatalf("got spans %v, want a server and a client span", rec.Ended())
	}
	if got := server.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("server span trace id = %s, want the caller's %s", got, traceID)
	}
	if got := server.Parent().SpanID().String(); got != parentID {
		t.Errorf("server span parent = %s, want %s", got, parentID)
	}
	if got, want := server.Name(), "POST /model/{modelId}/converse"; got != want {
		t.Errorf("server span name = %q, want %q", got, want)
	}
	if client.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("client span is not a child of the server span")
	}
	if got, want := client.Name(), "chat anthropic.claude-3-haiku-20240307-v1:0"; got != want {
		t.Errorf("client span name = %q, want %q", got, want)
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range client.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	for k, want := range map[attribute.Key]string{
		"gen_ai.operation.name": "chat",
		"gen_ai.provider.name":  "aws.bedrock",
		"gen_ai.request.model":  "anthropic.claude-3-haiku-20240307-v1:0",
		"server.address":        "127.0.0.1",
	} {
		if got := attrs[k].Emit(); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := attrs["gen_ai.request.max_tokens"].AsInt64(); got != 40 {
		t.Errorf("gen_ai.request.max_tokens = %d, want 40", got)
	}
	for _, k := range []attribute.Key{"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"} {
		if attrs[k].AsInt64() <= 0 {
			t.Errorf("%s = %v, want > 0", k, attrs[k].Emit())
		}
	}
	if got := attrs["gen_ai.response.finish_reasons"].AsStringSlice(); len(got) != 1 {
		t.Errorf("gen_ai.response.finish_reasons = %v, want one reason", got)
	}
}
