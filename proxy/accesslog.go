package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/quotagate/quotagate/telemetry"
)

// finish runs once per request, on every path, after the response is
// complete: it writes the access-log line. Bodies and credentials are never
// logged; the model id, token counts and ids are.
func (g *Gateway) finish(ctx context.Context, ex *exchange) {
	if ex.status == 0 && ctx.Err() != nil {
		ex.status = statusClientClosed
	}
	g.settle(ctx, ex)
	g.Metrics.request(ctx, ex)
	lg := g.logger()
	level := slog.LevelInfo
	if ex.status >= 500 {
		level = slog.LevelWarn
	}
	if !lg.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 24)
	attrs = append(attrs,
		slog.String("request_id", ex.id),
		slog.String("operation", string(ex.route.Operation)),
		slog.String("model", ex.requestedModel()),
		slog.String("tenant", ex.tenantID()),
		slog.Int("status", ex.status),
		slog.Float64("latency_ms", ms(time.Since(ex.start))),
	)
	attrs = append(attrs, telemetry.TraceAttrs(ctx)...)
	if ex.attempts > 0 {
		attrs = append(attrs, slog.String("served", ex.servedPool), slog.Int("attempts", ex.attempts))
	}
	if ex.upstreamDur > 0 {
		attrs = append(attrs, slog.Float64("upstream_latency_ms", ms(ex.upstreamDur)))
	}
	if ex.firstByte > 0 {
		attrs = append(attrs, slog.Float64("first_byte_ms", ms(ex.firstByte)))
	}
	if ex.req.Family != "" {
		attrs = append(attrs, slog.String("family", string(ex.req.Family)))
	}
	if ex.route.ModelID != "" {
		est := ex.req.InputTokens
		if ex.estInput > 0 {
			est = ex.estInput // calibrated, or exact from CountTokens
		}
		attrs = append(attrs, slog.Int("est_input_tokens", est), slog.Int("max_tokens", ex.req.MaxTokens))
	}
	if len(ex.leases) > 0 {
		attrs = append(attrs, slog.Int64("reserved_tokens", ex.plan.reserved), slog.Int64("charged_tokens", ex.charged))
		if ex.waited > time.Millisecond {
			attrs = append(attrs, slog.Float64("quota_wait_ms", ms(ex.waited)))
		}
	}
	if ex.usage.Known {
		attrs = append(attrs,
			slog.Int("input_tokens", ex.usage.InputTokens),
			slog.Int("output_tokens", ex.usage.OutputTokens),
			slog.Int("cache_read_tokens", ex.usage.CacheReadInputTokens),
			slog.Int("cache_write_tokens", ex.usage.CacheWriteInputTokens),
			slog.String("stop_reason", ex.usage.StopReason),
		)
	}
	if ex.events > 0 {
		attrs = append(attrs, slog.Int("events", ex.events))
	}
	attrs = append(attrs, slog.Int64("bytes_out", ex.bytesOut))
	if ex.upstreamID != "" {
		attrs = append(attrs, slog.String("upstream_request_id", ex.upstreamID))
	}
	if ex.errType != "" {
		attrs = append(attrs, slog.String("error_type", ex.errType))
	}
	if ex.err != nil {
		attrs = append(attrs, slog.String("error", ex.err.Error()))
	}
	lg.LogAttrs(ctx, level, "request", attrs...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// newRequestID returns 16 random bytes in hex: unique across replicas
// without coordination.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
