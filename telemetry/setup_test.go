package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
)

// TestSetupExportsNothingByDefault: without OTEL_* variables spans are still
// created (so trace ids reach the logs) but nothing is exported, and the
// Prometheus handler serves what the meter records.
func TestSetupExportsNothingByDefault(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	var logs bytes.Buffer
	tel, err := Setup(context.Background(), Options{LogOutput: &logs, LogLevel: "debug", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if tel.Exporting {
		t.Error("Exporting = true with no OTEL_* variables set")
	}
	ctx, span := Tracer().Start(context.Background(), "op")
	if !span.SpanContext().IsValid() {
		t.Error("span has no valid trace id: logs could not be joined with traces")
	}
	tel.Logger.LogAttrs(ctx, 0, "hello", TraceAttrs(ctx)...)
	span.End()
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log line %q is not JSON: %v", logs.String(), err)
	}
	if line["trace_id"] != span.SpanContext().TraceID().String() {
		t.Errorf("log trace_id = %v, want %s", line["trace_id"], span.SpanContext().TraceID())
	}

	c, err := otel.GetMeterProvider().Meter("test").Int64Counter("quotagate.test.count")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)
	rec := httptest.NewRecorder()
	tel.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "quotagate_test_count_total") {
		t.Errorf("/metrics lacks the recorded counter:\n%s", body)
	}
}

func TestExportRequested(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
	}
	for _, c := range cases {
		for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
			t.Setenv(k, c.env[k])
		}
		if got := exportRequested(); got != c.want {
			t.Errorf("exportRequested(%v) = %v, want %v", c.env, got, c.want)
		}
	}
}

func TestNewLoggerRejectsBadLevel(t *testing.T) {
	if _, err := NewLogger(io.Discard, "loud"); err == nil {
		t.Error("level \"loud\" accepted, want an error")
	}
	for _, lv := range []string{"", "debug", "INFO", "warn", "error"} {
		if _, err := NewLogger(io.Discard, lv); err != nil {
			t.Errorf("level %q: %v", lv, err)
		}
	}
}
