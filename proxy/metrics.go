package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/telemetry"
)

// Metrics are the gateway's instruments. SREs watch usage against limits
// with them: decisions per budget and dimension, utilisation per budget,
// refunds and overruns at settle, store latency and errors, and how far the
// token estimate is from what Bedrock counted.
type Metrics struct {
	requests      metric.Int64Counter
	tokens        metric.Int64Counter
	decisions     metric.Int64Counter
	waits         metric.Float64Histogram
	storeDuration metric.Float64Histogram
	storeErrors   metric.Int64Counter
	settleTokens  metric.Int64Counter
	estimateError metric.Float64Histogram
	switches      metric.Int64Counter
	fallbacks     metric.Int64Counter

	mu          sync.Mutex
	utilisation map[utilKey]float64
	degraded    bool
}

type utilKey struct {
	scope string
	dim   quota.Dimension
}

// NewMetrics creates the instruments on mp; nil mp records nothing.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := &Metrics{utilisation: map[utilKey]float64{}}
	meter := mp.Meter(telemetry.ScopeName)
	var err error
	must := func(e error) {
		if err == nil && e != nil {
			err = e
		}
	}
	var e error
	m.requests, e = meter.Int64Counter("quotagate.requests", metric.WithDescription("Bedrock Runtime calls answered, by operation, model, tenant and status."))
	must(e)
	m.tokens, e = meter.Int64Counter("quotagate.tokens", metric.WithDescription("Tokens Bedrock reported, by model, tenant and type (input, output, cache_read, cache_write)."))
	must(e)
	m.decisions, e = meter.Int64Counter("quotagate.quota.decisions", metric.WithDescription("Admission decisions, by budget scope, dimension that denied, and decision."))
	must(e)
	m.waits, e = meter.Float64Histogram("quotagate.quota.wait.duration", metric.WithUnit("s"), metric.WithDescription("Time requests waited for a budget to free."))
	must(e)
	m.storeDuration, e = meter.Float64Histogram("quotagate.quota.store.duration", metric.WithUnit("s"), metric.WithDescription("Budget store call latency (one Redis round trip), by call and outcome."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
	must(e)
	m.storeErrors, e = meter.Int64Counter("quotagate.quota.store.errors", metric.WithDescription("Budget store calls that failed, by call."))
	must(e)
	m.settleTokens, e = meter.Int64Counter("quotagate.quota.settle.tokens", metric.WithDescription("Tokens refunded (reserved but not used) or charged as overrun (used beyond the reservation) at settle."))
	must(e)
	m.estimateError, e = meter.Float64Histogram("quotagate.tokens.estimate.error", metric.WithDescription("Relative error of the input-token estimate used for reservations: (estimate-actual)/actual."),
		metric.WithExplicitBucketBoundaries(-0.5, -0.25, -0.1, -0.05, 0, 0.05, 0.1, 0.25, 0.5, 1))
	must(e)
	m.switches, e = meter.Int64Counter("quotagate.quota.failover.switches", metric.WithDescription("Switches between the shared budget store and the failure policy, by direction."))
	must(e)
	m.fallbacks, e = meter.Int64Counter("quotagate.fallbacks", metric.WithDescription("Routed requests that moved from one target to another, by route, from, to and reason (budget_<dimension>, cooldown, over_cap, a Bedrock exception, connection, stream)."))
	must(e)
	util, e := meter.Float64ObservableGauge("quotagate.quota.utilisation", metric.WithDescription("Share of each budget's window limit in use at the last decision, by scope and dimension."))
	must(e)
	deg, e := meter.Int64ObservableGauge("quotagate.quota.degraded", metric.WithDescription("1 while the shared budget store is unreachable and the failure policy applies."))
	must(e)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, v := range m.utilisation {
			o.ObserveFloat64(util, v, metric.WithAttributes(attribute.String("scope", k.scope), attribute.String("dimension", string(k.dim))))
		}
		d := int64(0)
		if m.degraded {
			d = 1
		}
		o.ObserveInt64(deg, d)
		return nil
	}, util, deg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

// FailoverSwitched records a switch of the budget store; wire it to
// quota.Failover.OnSwitch.
func (m *Metrics) FailoverSwitched(degraded bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.degraded = degraded
	m.mu.Unlock()
	dir := "to_shared"
	if degraded {
		dir = "to_policy"
	}
	m.switches.Add(context.Background(), 1, metric.WithAttributes(attribute.String("direction", dir)))
}

func (m *Metrics) request(ctx context.Context, ex *exchange) {
	if m == nil {
		return
	}
	m.requests.Add(ctx, 1, metric.WithAttributes(
		attribute.String("operation", string(ex.route.Operation)),
		attribute.String("model", ex.requestedModel()),
		attribute.String("tenant", ex.tenantID()),
		attribute.Int("status", ex.status)))
	if !ex.usage.Known {
		return
	}
	for typ, n := range map[string]int{"input": ex.usage.InputTokens, "output": ex.usage.OutputTokens, "cache_read": ex.usage.CacheReadInputTokens, "cache_write": ex.usage.CacheWriteInputTokens} {
		if n > 0 {
			m.tokens.Add(ctx, int64(n), metric.WithAttributes(attribute.String("model", ex.route.ModelID), attribute.String("tenant", ex.tenantID()), attribute.String("type", typ)))
		}
	}
}

// decision counts an admission decision, and records b's utilisation from
// the decision's headroom when that headroom is b's (headroom is b's).
func (m *Metrics) decision(ctx context.Context, b quota.Budget, d quota.Decision, headroom bool) {
	if m == nil {
		return
	}
	if d.Allowed {
		m.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("scope", b.Scope), attribute.String("dimension", ""), attribute.String("decision", "admitted")))
	} else {
		m.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("scope", d.Scope), attribute.String("dimension", string(d.Dimension)), attribute.String("decision", "denied")))
	}
	if !headroom {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.Limits.TPM > 0 && d.RemainingTokens >= 0 {
		m.utilisation[utilKey{b.Scope, quota.TPM}] = 1 - float64(d.RemainingTokens)/float64(b.Limits.TPM)
	}
	if b.Limits.RPM > 0 && d.RemainingRequests >= 0 {
		m.utilisation[utilKey{b.Scope, quota.RPM}] = 1 - float64(d.RemainingRequests)/float64(b.Limits.RPM)
	}
}

func (m *Metrics) store(ctx context.Context, call string, d time.Duration, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
		m.storeErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("call", call)))
	}
	m.storeDuration.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("call", call), attribute.String("outcome", outcome)))
}

func (m *Metrics) settled(ctx context.Context, scope string, reserved, actual int64) {
	if m == nil || reserved == actual {
		return
	}
	kind, n := "refund", reserved-actual
	if actual > reserved {
		kind, n = "overrun", actual-reserved
	}
	m.settleTokens.Add(ctx, n, metric.WithAttributes(attribute.String("scope", scope), attribute.String("kind", kind)))
}

func (m *Metrics) waited(ctx context.Context, d time.Duration, admitted bool) {
	if m == nil || d <= 0 {
		return
	}
	m.waits.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.Bool("admitted", admitted)))
}

func (m *Metrics) estimate(ctx context.Context, model string, relErr float64) {
	if m == nil {
		return
	}
	m.estimateError.Record(ctx, relErr, metric.WithAttributes(attribute.String("model", model)))
}

// fallback counts a routed request moving on from one target to another.
func (m *Metrics) fallback(ctx context.Context, route, from, to, reason string) {
	if m == nil {
		return
	}
	m.fallbacks.Add(ctx, 1, metric.WithAttributes(attribute.String("route", route), attribute.String("from", from),
		attribute.String("to", to), attribute.String("reason", reason)))
}
