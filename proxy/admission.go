package proxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/telemetry"
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
	reserved int64
	rawInput int // the uncalibrated estimate, for calibration feedback
	// steps are the admissions to make, one per hash tag, all or none: the
	// tenant's budget over all models ("*") first, when it has one, then
	// the model pool with the tenant's share of it. The pool step is last
	// because it is the contended one: a "*" step that the pool refuses is
	// voided, which costs only the tenant's own budget a round trip.
	steps []quota.Request
	// pool is the pool step's first budget, the one metrics and spans
	// name.
	pool quota.Budget
	// poolHeadroom reports whether a decision's headroom is the pool's.
	poolHeadroom bool
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
	pool := quota.PoolID(ex.route.ModelID)
	mb, _ := cfg.Model(pool) // an unlisted model has no pool limits, but the tenant's usage is still counted
	plan, err := g.plan(r.Context(), ex, mb, pool)
	if err != nil {
		g.fail(w, ex, err)
		return false
	}
	ex.plan = plan

	ctx, span := g.tracer().Start(r.Context(), "quota.admit", trace.WithAttributes(
		attribute.String("quota.pool", pool),
		telemetry.Tenant.String(ex.tenantID()),
		attribute.Int64("quota.reserved_tokens", plan.reserved),
	))
	defer span.End()
	deadline := time.Now().Add(g.MaxWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	waitStart := time.Now()
	var storeTime time.Duration
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		d, err := g.admitSteps(ctx, ex, plan.steps)
		storeTime += time.Since(t0)
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
		g.Metrics.decision(ctx, plan.pool, d, plan.poolHeadroom)
		if d.Allowed {
			span.SetAttributes(attribute.String("quota.decision", "admitted"))
			ex.waited = time.Since(waitStart)
			g.Metrics.waited(ctx, ex.waited, true)
			setRateLimitHeaders(w.Header(), d)
			g.startRenewal(ex)
			return true
		}
		span.SetAttributes(attribute.String("quota.decision", "denied"), attribute.String("quota.dimension", string(d.Dimension)), attribute.String("quota.scope", d.Scope))
		if d.RetryAfter < 0 {
			g.cancelTickets(r.Context(), plan.steps)
			g.fail(w, ex, fmt.Errorf("%w: the request reserves %d tokens, more than the whole %s budget of %s allows; lower max tokens or the input",
				errOverCap, plan.reserved, d.Dimension, d.Scope))
			return false
		}
		sleep := d.RetryAfter
		if sleep <= 0 {
			sleep = pollInterval
		}
		sleep = min(sleep, maxPoll)
		if now := time.Now(); now.Add(d.RetryAfter).After(deadline) || now.Add(sleep).After(deadline) {
			g.cancelTickets(r.Context(), plan.steps)
			g.Metrics.waited(ctx, time.Since(waitStart), false)
			g.fail(w, ex, &throttleError{scope: d.Scope, dim: d.Dimension, retryAfter: max(d.RetryAfter, pollInterval)})
			return false
		}
		timer := time.NewTimer(sleep)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			g.cancelTickets(r.Context(), plan.steps)
			ex.status, ex.err = statusClientClosed, ctx.Err()
			return false
		}
	}
}

// admitSteps makes the plan's admissions in order. All admitted: the leases
// are on ex and the decision carries the tightest headroom. One denied:
// the steps admitted before it are voided, its ticket is kept in steps for
// the next attempt, and its decision is returned. An error voids likewise.
func (g *Gateway) admitSteps(ctx context.Context, ex *exchange, steps []quota.Request) (quota.Decision, error) {
	leases := make([]quota.Lease, 0, len(steps))
	answered := make([]time.Duration, 0, len(steps))
	undo := func() {
		for _, l := range leases {
			l.Void = true
			g.settleLease(ctx, l, 0)
		}
	}
	var out quota.Decision
	for i := range steps {
		t0 := time.Now()
		d, err := g.Quota.Admit(ctx, steps[i])
		g.Metrics.store(ctx, "admit", time.Since(t0), err)
		if err != nil {
			undo()
			return d, err
		}
		if !d.Allowed {
			steps[i].Ticket = d.Ticket
			undo()
			return d, nil
		}
		steps[i].Ticket = ""
		leases = append(leases, d.Lease)
		answered = append(answered, time.Since(ex.start))
		if i == 0 {
			out = d
			continue
		}
		out.RemainingTokens = tighter(out.RemainingTokens, d.RemainingTokens)
		out.RemainingRequests = tighter(out.RemainingRequests, d.RemainingRequests)
		out.ResetTokens = max(out.ResetTokens, d.ResetTokens)
	}
	ex.leases, ex.admittedAfter = leases, answered
	return out, nil
}

// tighter is the smaller headroom, where -1 means unlimited.
func tighter(a, b int64) int64 {
	switch {
	case a < 0:
		return b
	case b < 0:
		return a
	}
	return min(a, b)
}

// plan applies the per-request caps, computes the reservation (estimated
// input + max output tokens x burndown, as Bedrock itself counts a request
// against its quota when it starts) and lays out the admissions.
//
// pool is the budget pool the request draws on: the requested model's, or
// for a routed request its target's (id@upstream for another upstream).
func (g *Gateway) plan(ctx context.Context, ex *exchange, mb quota.ModelBudget, pool string) (budgetPlan, error) {
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
	reserved := mb.Reservation(input, maxOut)
	if reserved > quota.MaxTokens {
		return budgetPlan{}, fmt.Errorf("%w: the request reserves %d tokens; lower max tokens", errOverCap, reserved)
	}
	plan := budgetPlan{model: mb, reserved: reserved, rawInput: raw}
	tenantID := ex.tenantID()
	plan.pool = quota.PoolBudget(pool, mb.Limits)
	var mine quota.TenantBudget
	if ex.tenant != nil {
		mine, _ = ex.tenant.Budget(pool)
		if all, ok := ex.tenant.Budget(quota.AllModels); ok && !all.Limits.IsZero() {
			plan.steps = append(plan.steps, quota.Request{
				Budgets: []quota.Budget{quota.TenantAllBudget(tenantID, all.Limits)}, Tokens: reserved, LeaseTTL: g.leaseTTL(),
			})
		}
	}
	step := quota.Request{
		Budgets:  []quota.Budget{plan.pool, quota.TenantPoolBudget(tenantID, pool, mine.Limits)},
		Tokens:   reserved,
		LeaseTTL: g.leaseTTL(),
	}
	// Guarantees are shares of the pool's TPM: without one (a file edit
	// may drop it under an admin override's guarantee) there is nothing
	// to share.
	if ex.dir != nil && mb.Limits.TPM > 0 {
		if gs := ex.dir.Guarantees(pool); len(gs) > 0 {
			sh := &quota.Shares{Budget: 0, Holders: make([]quota.Holder, len(gs))}
			for i, gu := range gs {
				sh.Holders[i] = quota.Holder{ID: quota.TenantPoolBudget(gu.Tenant, pool, quota.Limits{}).ID, TPM: gu.TPM}
			}
			step.Shares = sh
		}
	}
	plan.steps = append(plan.steps, step)
	// A decision's headroom is the tightest budget's; it measures the
	// pool's utilisation only when no tenant budget can be tighter.
	plan.poolHeadroom = len(plan.steps) == 1 && mine.Limits.TPM == 0 && mine.Limits.RPM == 0
	return plan, nil
}

// estimateInput is the input-token figure reservations use: exact from
// Bedrock's CountTokens when enabled and it answers, else the calibrated
// estimate.
func (g *Gateway) estimateInput(ctx context.Context, ex *exchange, raw int) int {
	ex.exactInput = false
	// CountTokens asks the gateway's own upstream: a target elsewhere
	// (id@upstream) is estimated instead.
	if g.CountTokens != nil && !strings.Contains(ex.servedPool, "@") {
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

// startRenewal keeps the concurrency leases alive while a long request
// runs. The goroutine belongs to the exchange: settle stops it and waits
// for it.
func (g *Gateway) startRenewal(ex *exchange) {
	if len(ex.leases) == 0 {
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
				for _, l := range ex.leases {
					ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
					t0 := time.Now()
					err := g.Quota.Renew(ctx, l, ttl)
					cancel()
					g.Metrics.store(context.Background(), "renew", time.Since(t0), err)
				}
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
	if len(ex.leases) == 0 {
		return
	}
	actual := g.actualTokens(ex)
	ex.charged = actual
	linger := ex.requestWritten() && !ex.completed && !ex.upstreamEnded && ex.upstreamStatus < 300
	sent := ex.sentAfter()
	// A request Bedrock throttled did not run: it holds neither tokens nor
	// a request of the window, as Bedrock does not count it either, so a
	// fallback or a retry is not refused for it.
	throttled := ex.upstreamStatus == http.StatusTooManyRequests
	for i, l := range ex.leases {
		if linger {
			l.Linger = abandonLinger
		}
		l.Void = throttled
		if sent > ex.admittedAfter[i] {
			// When the request left, on the store's clock: the moment the
			// admission's answer arrived stands for l.At, which it
			// follows, so this is a lower bound and the charge never
			// moves further than the request's own wait to go out (see
			// quota.Lease.SentAt).
			l.SentAt = l.At + (sent - ex.admittedAfter[i]).Milliseconds()
		}
		if g.settleLease(ctx, l, actual) {
			g.Metrics.settled(ctx, l.Budgets[0].Scope, l.Tokens, actual)
		}
	}
}

// settleLease settles one lease, detached from the caller's cancellation
// and bounded in time. On failure the reservation stays charged
// (conservative) and the lease expires by its TTL: nothing is
// under-counted.
func (g *Gateway) settleLease(ctx context.Context, l quota.Lease, actual int64) bool {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	t0 := time.Now()
	err := g.Quota.Settle(sctx, l, actual)
	g.Metrics.store(sctx, "settle", time.Since(t0), err)
	if err != nil {
		g.logger().WarnContext(ctx, "settle failed; reservation stays charged", "lease", l.ID, "scope", l.Budgets[0].Scope, "error", err)
		return false
	}
	return true
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
	case !ex.requestWritten():
		return 0 // never reached Bedrock
	case ex.upstreamStatus >= 300:
		return 0
	default:
		return ex.plan.reserved
	}
}

// cancelTickets gives up every wait-queue place the request holds.
func (g *Gateway) cancelTickets(ctx context.Context, steps []quota.Request) {
	for i, st := range steps {
		if st.Ticket == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		_ = g.Quota.Cancel(cctx, st.Budgets[0].Tag, st.Ticket) // an unremoved ticket expires by itself
		cancel()
		steps[i].Ticket = ""
	}
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
