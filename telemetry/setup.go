package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the gateway's own spans.
const ScopeName = "github.com/quotagate/quotagate"

// Options configures Setup. The zero value logs JSON at info level to stderr.
type Options struct {
	// ServiceName is the default service.name; OTEL_SERVICE_NAME overrides it.
	ServiceName string
	// Version is recorded as service.version.
	Version string
	// LogOutput receives JSON log lines; nil means os.Stderr.
	LogOutput io.Writer
	// LogLevel is debug, info, warn or error; empty means info.
	LogLevel string
}

// Telemetry is the process-wide tracer provider and logger.
type Telemetry struct {
	// Logger writes JSON lines; every line of a traced request can carry its
	// trace id (see LogAttrs).
	Logger *slog.Logger
	// TracerProvider is also installed as the global provider.
	TracerProvider trace.TracerProvider
	// Exporting reports whether spans leave the process.
	Exporting bool
	// MeterProvider records the gateway's metrics; it is also installed
	// as the global provider.
	MeterProvider metric.MeterProvider
	// MetricsHandler serves the metrics in the Prometheus text format.
	MetricsHandler http.Handler
	shutdown       func(context.Context) error
}

// Setup builds tracing and logging from the environment. Spans are exported
// only when the standard variables ask for it (OTEL_TRACES_EXPORTER, or an
// OTLP endpoint in OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); otherwise spans are still created, so
// trace ids reach the access log and traceparent is continued, but nothing is
// sent anywhere. W3C trace context and baggage are propagated.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	logger, err := NewLogger(opts.LogOutput, opts.LogLevel)
	if err != nil {
		return nil, err
	}
	if opts.ServiceName == "" {
		opts.ServiceName = "quotagate"
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(opts.ServiceName), semconv.ServiceVersion(opts.Version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exporting := exportRequested()
	if exporting {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry span exporter: %w", err)
		}
		if autoexport.IsNoneSpanExporter(exp) {
			exporting = false
		} else {
			tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
		}
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	mp, metricsHandler, err := newMeterProvider(res)
	if err != nil {
		return nil, err
	}
	otel.SetMeterProvider(mp)
	shutdown := func(ctx context.Context) error { return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx)) }
	return &Telemetry{Logger: logger, TracerProvider: tp, Exporting: exporting, MeterProvider: mp, MetricsHandler: metricsHandler, shutdown: shutdown}, nil
}

// newMeterProvider serves metrics for Prometheus to scrape, on a registry of
// the gateway's own so that tests and embedders do not collide on the
// global one.
func newMeterProvider(res *resource.Resource) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp))
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// Shutdown flushes buffered spans. Call it once, after the server drained.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

func exportRequested() bool {
	if v := os.Getenv("OTEL_TRACES_EXPORTER"); v != "" {
		return v != "none"
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewLogger returns a JSON slog logger at the named level.
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	if w == nil {
		w = os.Stderr
	}
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
			return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
		}
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), nil
}

// Tracer returns the gateway's tracer from the global provider.
func Tracer() trace.Tracer { return otel.Tracer(ScopeName) }

// TraceAttrs returns the trace and span ids of ctx as log attributes, so a log
// line can be joined with its trace.
func TraceAttrs(ctx context.Context) []slog.Attr {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []slog.Attr{slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())}
}
