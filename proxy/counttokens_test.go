package proxy_test

import (
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/proxy"
)

// TestCountTokensBeforeAdmission: with CountTokens on, the reservation uses
// Bedrock's exact input count (one CountTokens call per request) instead of
// the estimate.
func TestCountTokensBeforeAdmission(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    tpm: 100000\n"})
	h.gateway.CountTokens = proxy.NewCountTokens(h.gateway.Upstream, h.gateway.Transport)
	for _, c := range []struct{ path, body string }{
		{haikuPath + "/converse", converseBody(50)},
		{haikuPath + "/invoke", families[0].body},
	} {
		if resp := h.post(t, c.path, "application/json", []byte(c.body)); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", c.path, resp.StatusCode)
		}
	}
	h.waitLogs(t, 2)
	if got := h.sim.Stats().Requests[bedrock.CountTokens]; got != 2 {
		t.Errorf("simulator saw %d CountTokens calls, want 2", got)
	}
	for _, l := range h.logLines(t) {
		if est, in := intField(l, "est_input_tokens"), intField(l, "input_tokens"); est != in {
			t.Errorf("%s: reserved on %d input tokens, Bedrock counted %d; want the exact count", l["operation"], est, in)
		}
	}
}

// TestQuotaSpan: each admission is a quota.admit span in the request's
// trace, with the pool, the reservation and the decision.
func TestQuotaSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    tpm: 100000\n"})
	h.gateway.Tracer = tp.Tracer("test")
	h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(50)))
	h.waitLogs(t, 1)
	var found bool
	for _, s := range rec.Ended() {
		if s.Name() != "quota.admit" {
			continue
		}
		found = true
		attrs := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value
		}
		if attrs["quota.pool"].AsString() != haiku || attrs["quota.decision"].AsString() != "admitted" || attrs["quota.reserved_tokens"].AsInt64() <= 50 {
			t.Errorf("quota.admit attributes = %v", s.Attributes())
		}
	}
	if !found {
		t.Fatal("no quota.admit span")
	}
}
