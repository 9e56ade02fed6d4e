package proxy_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/proxy"
)

// TestOverflowTelemetry: every attempt is its own client span naming its
// target and, when the request moved on, why; the move is counted by route,
// from, to and reason; the access log names both models.
func TestOverflowTelemetry(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prevTP) })
	reader := sdkmetric.NewManualReader()
	metrics, err := proxy.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, harnessOptions{budgets: unbudgeted})
	h.gateway.Metrics = metrics
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultModelNotReady})
	if _, err := h.client.Converse(testContext(t), converseInput(haiku)); err != nil {
		t.Fatal(err)
	}
	line := h.logLine(t, "Converse", haiku)
	if line["served"] != llama || line["attempts"] != float64(2) {
		t.Errorf("access log: served=%v attempts=%v, want %s in 2", line["served"], line["attempts"], llama)
	}

	var attempts []map[attribute.Key]string
	for _, s := range rec.Ended() {
		if s.SpanKind() != trace.SpanKindClient {
			continue
		}
		a := map[attribute.Key]string{}
		for _, kv := range s.Attributes() {
			a[kv.Key] = kv.Value.Emit()
		}
		attempts = append(attempts, a)
	}
	if len(attempts) != 2 {
		t.Fatalf("got %d client spans, want one per attempt (2)", len(attempts))
	}
	if a := attempts[0]; a["quotagate.attempt"] != "1" || a["quotagate.target"] != haiku || a["quotagate.fallback.reason"] != "ModelNotReadyException" {
		t.Errorf("first attempt span: %v", a)
	}
	if a := attempts[1]; a["quotagate.attempt"] != "2" || a["quotagate.target"] != llama || a["quotagate.fallback.reason"] != "" || a["gen_ai.request.model"] != llama {
		t.Errorf("second attempt span: %v", a)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "quotagate.fallbacks" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				get := func(k string) string { v, _ := dp.Attributes.Value(attribute.Key(k)); return v.Emit() }
				if get("route") == haiku && get("from") == haiku && get("to") == llama && get("reason") == "ModelNotReadyException" && dp.Value == 1 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("no quotagate.fallbacks{route=haiku,from=haiku,to=llama,reason=ModelNotReadyException} = 1 in %+v", rm.ScopeMetrics)
	}
}
