package telemetry

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// ServerHandler wraps h so that each request gets a server span that
// continues an incoming W3C traceparent. name gives the span name for a
// request; it should not contain high-cardinality values such as model ids.
func ServerHandler(h http.Handler, name func(*http.Request) string) http.Handler {
	return otelhttp.NewHandler(h, "bedrock-runtime",
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return name(r) }))
}
