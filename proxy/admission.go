package proxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/quotagate/quotagate/quota"
)

// Defaults for admission; see the Gateway fields.
const (
	DefaultLeaseTTL = time.Minute
	// pollInterval is how often a waiting request retries when the store
	// cannot say when room frees (a concurrency slot, its turn in the queue).
	pollInterval = 25 * time.Millisecond
	// maxPoll caps one sleep, so that a waiter refreshes its queue ticket
	// well within the ticket's lifetime.
	maxPoll = time.Second
	// settleTimeout bounds the settle round trip after the response ended.
	settleTimeout = 2 * time.Second
	// abandonLinger is how long the concurrency slot of an upstream call
	// that was cut short stays taken. Bedrock stops generating only when it
	// notices the closed connection (milliseconds later); freeing the slot
	// at once let the next request reach an upstream still at its limit
	// (found by the e2e accuracy proof).
	abandonLinger = 2 * time.Second
)

// budgetPlan is what admission decided to charge for one request.
type budgetPlan struct {
	model    quota.ModelBudget
	budget   quota.Budget
	reserved int64
	rawInput int // the uncalibrated estimate, for calibration feedback
}

// admit reserves the request's tokens in every budget that applies, waiting
// while the budget frees within MaxWait and the caller's deadline. It
// answers the caller itself and returns false when the request must not go
// upstream.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, ex *exchange) bool {
	if g.Quota == nil || g.Budgets == nil {
		return true
	}
	cfg := g.Budgets()
	if cfg == nil {
		return true
	}
	mb, ok := cfg.Model(quota.PoolID(ex.route.ModelID))
	if !ok {
		return true // no budget names this model: unlimited
	}
	plan, err := g.plan(r.Context(), ex, mb)
	if err != nil {
		g.fail(w, ex, err)
		return false
	}
	ex.plan = plan
	if plan.budget.Limits.IsZero() {
		return true
	}

	ctx, span := g.tracer().Start(r.Context(), "quota.admit", trace.WithAttributes(
		attribute.String("quota.pool", plan.budget.Tag),
		attribute.Int64("quota.reserved_tokens", plan.reserved),
	))
	defer span.End()
	req := quota.Request{Budgets: []quota.Budget{plan.budget}, Tokens: plan.reserved, LeaseTTL: g.leaseTTL()}
	deadline := time.Now().Add(g.MaxWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	waitStart := time.Now()
	var storeTime time.Duration
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		d, err := g.Quota.Admit(ctx, req)
		storeTime += time.Since(t0)
		g.Metrics.store(ctx, "admit", time.Since(t0), err)
		span.SetAttributes(attribute.Int("quota.attempts", attempt), attribute.Float64("quota.store_ms", ms(storeTime)))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
			if r.Context().Err() != nil {
				ex.status, ex.err = statusClientClosed, r.Context().Err()
				return false
			}
			g.fail(w, ex, fmt.Errorf("%w: %w", errBudgetStore, err))
			return false
		}
		g.Metrics.decision(ctx, plan.budget, d)
		if d.Allowed {
			span.SetAttributes(attribute.String("quota.decision", "admitted"))
			ex.lease = &d.Lease
			ex.waited = time.Since(waitStart)
			g.Metrics.waited(ctx, ex.waited, true)
			setRateLimitHeaders(w.Header(), d)
			g.startRenewal(ex)
			return true
		}
		span.SetAttributes(attribute.String("quota.decision", "denied"), attribute.String("quota.dimension", string(d.Dimension)), attribute.String("quota.scope", d.Scope))
		if d.RetryAfter < 0 {
			g.fail(w, ex, fmt.Errorf("%w: the request reserves %d tokens, more than the whole %s budget of %s allows; lower max tokens or the input",
				errOverCap, plan.reserved, d.Dimension, d.Scope))
			return false
		}
		req.Ticket = d.Ticket
		sleep := d.RetryAfter
		if sleep <= 0 {
			sleep = pollInterval
		}
		sleep = min(sleep, maxPoll)
		if now := time.Now(); now.Add(d.RetryAfter).After(deadline) || now.Add(sleep).After(deadline) {
			g.cancelTicket(r.Context(), plan.budget.Tag, req.Ticket)
			g.Metrics.waited(ctx, time.Since(waitStart), false)
			g.fail(w, ex, &throttleError{scope: d.Scope, dim: d.Dimension, retryAfter: max(d.RetryAfter, pollInterval)})
			return false
		}
		timer := time.NewTimer(sleep)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			g.cancelTicket(r.Context(), plan.budget.Tag, req.Ticket)
			ex.status, ex.err = statusClientClosed, ctx.Err()
			return false
		}
	}
}

// plan applies the per-request caps and computes the reservation:
// estimated input + max output tokens x burndown, as Bedrock itself counts a
// request against its quota when it starts.
func (g *Gateway) plan(ctx context.Context, ex *exchange, mb quota.ModelBudget) (budgetPlan, error) {
	maxOut := mb.MaxOutput(ex.req.MaxTokens, ex.req.MaxTokensSet)
	if mb.MaxOutputTokens > 0 && maxOut > mb.MaxOutputTokens {
		how := "asks for"
		if !ex.req.MaxTokensSet {
			how = "names no max tokens, so the model's default applies:"
		}
		return budgetPlan{}, fmt.Errorf("%w: the request %s %d output tokens; the limit for %s is %d", errOverCap, how, maxOut, ex.route.ModelID, mb.MaxOutputTokens)
	}
	raw := ex.req.InputTokens
	input := g.estimateInput(ctx, ex, raw)
	if mb.MaxInputTokens > 0 && input > mb.MaxInputTokens {
		return budgetPlan{}, fmt.Errorf("%w: the input is about %d tokens; the limit for %s is %d", errOverCap, input, ex.route.ModelID, mb.MaxInputTokens)
	}
	ex.estInput = input
	if r := mb.Reservation(input, maxOut); r > quota.MaxTokens {
		return budgetPlan{}, fmt.Errorf("%w: the request reserves %d tokens; lower max tokens", errOverCap, r)
	}
	return budgetPlan{
		model:    mb,
		reserved: mb.Reservation(input, maxOut),
		rawInput: raw,
		budget: quota.Budget{
			Scope:  "model=" + quota.PoolID(ex.route.ModelID),
			Tag:    quota.PoolID(ex.route.ModelID),
			ID:     "pool",
			Limits: mb.Limits,
		},
	}, nil
}

// estimateInput is the input-token figure reservations use: exact from
// Bedrock's CountTokens when enabled and it answers, else the calibrated
// estimate.
func (g *Gateway) estimateInput(ctx context.Context, ex *exchange, raw int) int {
	if g.CountTokens != nil {
		if n, err := g.CountTokens(ctx, ex.route, ex.body); err == nil && n > 0 {
			ex.exactInput = true
			return n
		}
	}
	if g.Calibrator != nil {
		return g.Calibrator.Estimate(ex.route.ModelID, raw)
	}
	return raw
}

// startRenewal keeps a concurrency lease alive while a long request runs.
// The goroutine belongs to the exchange: settle stops it and waits for it.
func (g *Gateway) startRenewal(ex *exchange) {
	if ex.lease == nil || ex.plan.budget.Limits.Concurrency == 0 {
		return
	}
	ttl := g.leaseTTL()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
				t0 := time.Now()
				err := g.Quota.Renew(ctx, *ex.lease, ttl)
				cancel()
				g.Metrics.store(context.Background(), "renew", time.Since(t0), err)
			}
		}
	})
	ex.stopRenewal = func() { close(stop); wg.Wait() }
}

// settle replaces the reservation with what the request actually cost, on
// every path. It runs after the response is complete (and flushed), so it
// adds no latency the caller sees.
func (g *Gateway) settle(ctx context.Context, ex *exchange) {
	if ex.stopRenewal != nil {
		ex.stopRenewal()
	}
	if ex.plan.rawInput > 0 && ex.usage.Known && !ex.exactInput && g.Calibrator != nil {
		actualIn := ex.usage.InputTokens + ex.usage.CacheReadInputTokens + ex.usage.CacheWriteInputTokens
		g.Metrics.estimate(ctx, ex.route.ModelID, g.Calibrator.Observe(ex.route.ModelID, ex.plan.rawInput, actualIn))
	}
	if ex.lease == nil {
		return
	}
	actual := g.actualTokens(ex)
	ex.charged = actual
	if ex.requestWritten.Load() && !ex.completed && !ex.upstreamEnded && ex.upstreamStatus < 300 {
		ex.lease.Linger = abandonLinger
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	t0 := time.Now()
	err := g.Quota.Settle(sctx, *ex.lease, actual)
	g.Metrics.store(sctx, "settle", time.Since(t0), err)
	if err != nil {
		// The reservation stays charged (conservative) and the lease
		// expires by its TTL: nothing is under-counted.
		g.logger().WarnContext(ctx, "settle failed; reservation stays charged", "request_id", ex.id, "error", err)
		return
	}
	g.Metrics.settled(sctx, ex.plan.budget.Scope, ex.lease.Tokens, actual)
}

// actualTokens is what the request cost against the budget: input +
// cache-write + output x burndown from the usage Bedrock reported. Without
// usage: nothing when Bedrock was never asked or refused the request, and
// the whole reservation when a response was cut short, since Bedrock may
// have generated up to max tokens that nobody counted for us.
func (g *Gateway) actualTokens(ex *exchange) int64 {
	switch {
	case ex.usage.Known && ex.completed:
		burn := max(ex.plan.model.OutputBurndown, 1)
		return int64(ex.usage.InputTokens+ex.usage.CacheWriteInputTokens) + int64(math.Ceil(float64(ex.usage.OutputTokens)*burn))
	case !ex.requestWritten.Load():
		return 0 // never reached Bedrock
	case ex.upstreamStatus >= 300:
		return 0
	default:
		return ex.lease.Tokens
	}
}

func (g *Gateway) cancelTicket(ctx context.Context, tag, ticket string) {
	if ticket == "" {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	_ = g.Quota.Cancel(cctx, tag, ticket) // an unremoved ticket expires by itself
}

func (g *Gateway) leaseTTL() time.Duration {
	if g.LeaseTTL > 0 {
		return g.LeaseTTL
	}
	return DefaultLeaseTTL
}

// setRateLimitHeaders tells an admitted caller its headroom, in the header
// names common to LLM APIs.
func setRateLimitHeaders(h http.Header, d quota.Decision) {
	if d.RemainingTokens >= 0 {
		h.Set("X-Ratelimit-Remaining-Tokens", strconv.FormatInt(d.RemainingTokens, 10))
	}
	if d.RemainingRequests >= 0 {
		h.Set("X-Ratelimit-Remaining-Requests", strconv.FormatInt(d.RemainingRequests, 10))
	}
	if d.ResetTokens > 0 {
		h.Set("X-Ratelimit-Reset-Tokens", d.ResetTokens.Round(time.Millisecond).String())
	}
}

// throttleError is a budget's no: a 429 ThrottlingException naming the
// budget, with when to retry.
type throttleError struct {
	scope      string
	dim        quota.Dimension
	retryAfter time.Duration
}

func (e *throttleError) Error() string {
	return fmt.Sprintf("Too many %s, please wait before trying again. Quotagate budget %s (%s) is exhausted.", throttledWhat(e.dim), e.scope, e.dim)
}

func (e *throttleError) Unwrap() error { return errThrottled }

// limitHeader is the x-quotagate-limit value, e.g.
// "model=anthropic.claude-3-haiku-20240307-v1:0 dim=tpm".
func (e *throttleError) limitHeader() string { return e.scope + " dim=" + string(e.dim) }

// retryAfterSeconds rounds up: a client that waits the advertised seconds
// must find room.
func (e *throttleError) retryAfterSeconds() int {
	return max(int(math.Ceil(e.retryAfter.Seconds())), 1)
}

func throttledWhat(d quota.Dimension) string {
	switch d {
	case quota.TPM, quota.TokensPerDay:
		return "tokens"
	}
	return "requests"
}

var _ error = (*throttleError)(nil)

// isThrottle reports whether err is a budget's no, and which.
func isThrottle(err error) (*throttleError, bool) {
	var te *throttleError
	ok := errors.As(err, &te)
	return te, ok
}
