package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/telemetry"
	"github.com/quotagate/quotagate/tokens"
	"github.com/quotagate/quotagate/translate"
)

// Defaults for routed requests; see the Gateway fields.
const (
	DefaultMaxAttempts = 4
	DefaultRetryBase   = 50 * time.Millisecond
	DefaultRetryMax    = 2 * time.Second
	// maxFailureBody bounds the error body kept from an attempt that is
	// not relayed, in case it is the last and must be.
	maxFailureBody = 64 << 10
)

// UpstreamResolver gives the endpoint and the authenticating transport of
// an upstream that route targets name (another region, endpoint or
// account). Implementations cache: it is called for every routed request.
type UpstreamResolver interface {
	Resolve(ctx context.Context, u quota.Upstream) (*url.URL, http.RoundTripper, error)
}

// candidate is one route target made ready for this request: its body (in
// its family), what admission needs, and where it is sent.
type candidate struct {
	target quota.Target
	pool   string
	route  bedrock.Route
	body   []byte
	req    tokens.Request
	invoke *translate.Invoke
	url    *url.URL
	rt     http.RoundTripper
	mb     quota.ModelBudget

	prepared    bool   // body, request and upstream are set
	skip        string // why this target cannot take the request; "" when it can
	unavailable bool   // skipped because its upstream could not be set up

	plan     *budgetPlan // nil until first admitted against
	planErr  error       // the request cannot fit this target's caps
	never    bool        // its budget can never hold the request
	cooling  time.Duration
	headroom float64
	draw     float64 // spread's sampling key this round
	index    int     // position in the route's targets
	tried    int
}

// attemptResult is how one upstream call ended.
type attemptResult struct {
	done       bool // the caller has been answered (or is gone)
	reason     string
	retryAfter time.Duration
	failure    *failure
	// targetFault: the target failed (throttled, not ready, down), as
	// opposed to refusing this one request; only the former counts
	// towards its cooldown.
	targetFault bool
}

// failure is an upstream answer not relayed, kept in case no other
// attempt does better.
type failure struct {
	err     error // a call that got no answer
	status  int
	header  http.Header
	body    []byte // the error body, or the stream's first frame
	errType string // the Bedrock exception it carries
}

// errNoTarget: no target of a route can take the request.
var errNoTarget = errors.New("no route target can serve the request")

// serve admits and forwards the request: to its own model, or through its
// route's targets.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, ex *exchange) {
	ex.requested, ex.callerBody = ex.route, ex.body
	if rt, cfg, ok := g.routeFor(ex); ok {
		g.overflow(w, r, ex, cfg, rt)
		return
	}
	if !g.admit(w, r, ex) {
		return
	}
	g.forward(w, r, ex, ex.body)
}

// routeFor finds the route of the requested model. CountTokens generates
// nothing and draws on no quota, so it goes where it was sent.
func (g *Gateway) routeFor(ex *exchange) (quota.Route, *quota.Config, bool) {
	if g.Budgets == nil || ex.route.Operation == bedrock.CountTokens {
		return quota.Route{}, nil, false
	}
	cfg := g.Budgets()
	rt, ok := cfg.Route(quota.PoolID(ex.route.ModelID))
	return rt, cfg, ok
}

// overflow serves a routed request: it picks a target with room (in order,
// or by headroom), moves on at once when a budget says no, and moves on
// after Bedrock throttles or fails as long as nothing has reached the
// caller. Each attempt settles its own reservation.
func (g *Gateway) overflow(w http.ResponseWriter, r *http.Request, ex *exchange, cfg *quota.Config, rt quota.Route) {
	ctx := r.Context()
	cands, err := g.candidates(ex, cfg, rt, guarded(r, ex))
	if err != nil {
		g.fail(w, ex, err)
		return
	}
	defer func() {
		for _, c := range cands {
			if c.plan != nil {
				g.cancelTickets(ctx, c.plan.steps)
			}
		}
	}()
	// Budgets are waited for within MaxWait, as for any request; retries
	// after Bedrock's refusals are bounded by the attempts and the
	// caller's own deadline.
	deadline := time.Now().Add(g.MaxWait)
	callerDeadline, hasDeadline := ctx.Deadline()
	if hasDeadline && callerDeadline.Before(deadline) {
		deadline = callerDeadline
	}
	rs := &routeState{rt: rt, cfg: cfg, cands: cands, callerDeadline: callerDeadline, hasDeadline: hasDeadline}
	var (
		last      *failure
		denial    quota.Decision
		waitStart = time.Now()
	)
	for ex.attempts < g.maxAttempts() {
		g.order(ctx, ex, rt, cands)
		c, d, wait, err := g.admitFirst(ctx, ex, rs)
		if err != nil {
			if ctx.Err() != nil {
				ex.status, ex.err = statusClientClosed, ctx.Err()
				return
			}
			g.fail(w, ex, err)
			return
		}
		if c == nil {
			if d.Scope != "" {
				denial = d
			}
			if wait < 0 {
				if last != nil {
					break
				}
				g.fail(w, ex, g.nothingFits(cands, rt))
				return
			}
			if now := time.Now(); now.Add(wait).After(deadline) {
				if last != nil {
					break // Bedrock's own answer says more than a budget's
				}
				g.Metrics.waited(ctx, time.Since(waitStart), false)
				g.fail(w, ex, g.routeThrottle(rt, denial, cands, wait))
				return
			}
			if !sleepCtx(ctx, min(wait, maxPoll)) {
				ex.status, ex.err = statusClientClosed, ctx.Err()
				return
			}
			continue
		}
		// The request goes to c: its place in the other targets' wait
		// queues would only hold back their other callers from now on.
		for _, o := range cands {
			if o != c && o.plan != nil {
				g.cancelTickets(ctx, o.plan.steps)
			}
		}
		ex.waited = time.Since(waitStart)
		g.Metrics.waited(ctx, ex.waited, true)
		ex.attempts++
		c.tried++
		if rs.from != "" && rs.from != c.pool {
			g.Metrics.fallback(ctx, rt.Name, rs.from, c.pool, rs.why)
		}
		rs.from, rs.why = "", ""
		g.startRenewal(ex)
		res := g.attempt(w, r, ex, c, d)
		if res.done {
			return
		}
		last = res.failure
		rs.from, rs.why = c.pool, res.reason
		g.settle(ctx, ex)
		if res.targetFault {
			g.noteFailure(ctx, c, res)
		}
		ex.resetAttempt()
		waitStart = time.Now()
	}
	g.answerFailure(w, ex, last, rt)
}

// candidates lists rt's targets for this request. What is cheap to judge
// (the tenant's rules) is judged here; a target's body is translated only
// when the target is reached (prepare), as most requests are served by the
// first.
//
// A request with a guardrail goes only to targets on the gateway's own
// upstream: a guardrail exists in one account and region, and a target
// elsewhere would either refuse the request or, worse, serve it unguarded.
func (g *Gateway) candidates(ex *exchange, cfg *quota.Config, rt quota.Route, guarded bool) ([]*candidate, error) {
	ex.callerFamily, ex.callerModel = rt.Family(), ex.route.ModelID
	if tokens.FamilyOf(ex.callerModel) == tokens.Unknown && len(rt.Targets) > 0 {
		ex.callerModel = rt.Targets[0].Model // an alias: its callers write the first target's bodies
	}
	if ex.route.Operation.Native() && tokens.FamilyOf(ex.route.ModelID) != ex.callerFamily {
		// The body was read as the alias's family (none); read it as the
		// family its callers write, which also validates it.
		req, err := tokens.ParseInvoke(ex.callerFamily, ex.callerModel, ex.body)
		if err != nil {
			return nil, err
		}
		ex.req = req
	}
	out := make([]*candidate, 0, len(rt.Targets))
	for i, t := range rt.Targets {
		c := &candidate{
			target: t, pool: t.Pool(), index: i,
			route: bedrock.Route{Operation: ex.route.Operation, ModelID: t.Model, RawModelID: bedrock.EscapeModelID(t.Model)},
		}
		c.mb, _ = cfg.Model(c.pool)
		switch {
		case ex.tenant != nil && !ex.tenant.Allows(t.Model):
			c.skip = "the tenant may not call it"
		case ex.tenant != nil && ex.tenant.NoCrossFamily && tokens.FamilyOf(t.Model) != tokens.FamilyOf(ex.callerModel):
			c.skip = "the tenant keeps to its own model family (cross_family: false)"
		case guarded && t.Upstream != "":
			c.skip = "the request's guardrail exists only on the gateway's own upstream"
		}
		out = append(out, c)
	}
	return out, nil
}

// prepare makes a candidate ready to be sent: its body in its family, what
// admission reads from it, and its upstream. A target that cannot take the
// request gets a skip reason; an error is the caller's body's fault.
func (g *Gateway) prepare(ctx context.Context, ex *exchange, cfg *quota.Config, c *candidate) error {
	c.prepared = true
	targetFamily := tokens.FamilyOf(c.target.Model)
	var err error
	switch {
	case !ex.route.Operation.Native():
		c.body, err = translate.Converse(ex.callerModel, c.target.Model, ex.callerBody)
	case targetFamily == ex.callerFamily:
		c.body = ex.callerBody
	default:
		c.invoke, err = translate.NewInvoke(ex.callerFamily, ex.callerModel, targetFamily, c.target.Model, ex.callerBody)
		if err == nil {
			c.body = c.invoke.Body()
		}
	}
	if errors.Is(err, translate.ErrUntranslatable) {
		c.skip = err.Error()
		return nil
	}
	if err != nil {
		return err
	}
	if c.req, err = parseRequest(c.route, c.body); err != nil {
		c.skip = "its body: " + err.Error()
		return nil
	}
	if c.url, c.rt, err = g.upstreamOf(ctx, cfg, c.target); err != nil {
		g.logger().WarnContext(ctx, "route target unavailable", "target", c.pool, "error", err)
		c.skip, c.unavailable = "its upstream is unavailable", true
	}
	return nil
}

// guarded reports whether the request applies a Bedrock guardrail: the
// InvokeModel header, or Converse's guardrailConfig.
func guarded(r *http.Request, ex *exchange) bool {
	if r.Header.Get("X-Amzn-Bedrock-Guardrailidentifier") != "" {
		return true
	}
	if ex.route.Operation.Native() || !bytes.Contains(ex.body, []byte(`"guardrailConfig"`)) {
		return false
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(ex.body, &top); err != nil {
		return true // cannot tell: keep it where its guardrail may be
	}
	_, ok := top["guardrailConfig"]
	return ok
}

// upstreamOf resolves where a target is sent.
func (g *Gateway) upstreamOf(ctx context.Context, cfg *quota.Config, t quota.Target) (*url.URL, http.RoundTripper, error) {
	if t.Upstream == "" {
		return g.Upstream, g.transport(), nil
	}
	u, ok := cfg.Upstreams[t.Upstream]
	if !ok || g.Upstreams == nil {
		return nil, nil, fmt.Errorf("upstream %q is not configured", t.Upstream)
	}
	return g.Upstreams.Resolve(ctx, u)
}

// order sorts the candidates for this round. Cooled-down targets go last
// (admitFirst passes over them); under spread the others are drawn by
// headroom × weight, so that replicas spread load rather than all picking
// the emptiest target at once; under priority they keep the route's order.
func (g *Gateway) order(ctx context.Context, ex *exchange, rt quota.Route, cands []*candidate) {
	pools := make([]quota.Budget, len(cands))
	for i, c := range cands {
		pools[i] = quota.PoolBudget(c.pool, c.mb.Limits)
	}
	var states []quota.TargetState
	err := errors.New("no budget store")
	if ts := g.targetStore(); ts != nil {
		states, err = ts.TargetStates(ctx, pools)
	}
	if err != nil {
		if g.targetStore() != nil {
			g.logger().WarnContext(ctx, "reading route targets failed; trying them in order", "route", rt.Name, "error", err)
		}
		states = make([]quota.TargetState, len(cands))
	}
	for i, c := range cands {
		c.cooling = states[i].Cooling
		c.headroom = headroom(c.mb.Limits, states[i].Usage)
	}
	// The route's order first (the previous round's sort is undone), then
	// under spread a weighted draw: Efraimidis–Spirakis keys u^(1/w),
	// highest first; targets with no headroom keep the route's order after
	// the rest.
	slices.SortFunc(cands, func(a, b *candidate) int { return a.index - b.index })
	if rt.Strategy == quota.Spread {
		for _, c := range cands {
			c.draw = 0
			if w := float64(c.target.Weight) * c.headroom; w > 0 {
				c.draw = math.Pow(rand.Float64(), 1/w) + 1 // > 1, above every target without headroom
			}
		}
		slices.SortStableFunc(cands, func(a, b *candidate) int { return cmpDesc(a.draw, b.draw) })
	}
	// Within this request, a target not yet tried comes before one that
	// has just failed it; cooled-down targets come last.
	slices.SortStableFunc(cands, func(a, b *candidate) int {
		if d := boolInt(a.cooling > 0) - boolInt(b.cooling > 0); d != 0 {
			return d
		}
		return a.tried - b.tried
	})
}

// headroom is the share of a pool's tightest limit still free, 1 for an
// unlimited pool.
func headroom(l quota.Limits, u quota.Usage) float64 {
	h := 1.0
	free := func(limit, used int64) {
		if limit > 0 {
			h = min(h, max(float64(limit-used)/float64(limit), 0))
		}
	}
	free(l.TPM, u.WindowTokens)
	free(l.RPM, u.WindowRequests)
	free(l.Concurrency, u.InFlight)
	return h
}

// routeState is what one routed request carries from round to round.
type routeState struct {
	rt    quota.Route
	cfg   *quota.Config
	cands []*candidate
	// from and why are the target the request last left and the reason,
	// for the fallback metric.
	from, why string
	// retries counts the backoffs taken before retrying a failed target.
	retries        int
	callerDeadline time.Time
	hasDeadline    bool
}

// admitFirst admits the request on the first candidate, in order, whose
// budgets have room, without waiting on any. Before a target that has
// already failed this request is tried again it backs off (full jitter),
// whatever the reason the others are out of reach. When none has room it
// returns the shortest wait after which one may (negative: none ever
// will) and the last denial. Its errors are the caller's (a body that
// cannot be translated) or the budget store's, already classified.
func (g *Gateway) admitFirst(ctx context.Context, ex *exchange, rs *routeState) (*candidate, quota.Decision, time.Duration, error) {
	wait := time.Duration(-1)
	var denial quota.Decision
	shorter := func(d time.Duration) {
		if wait < 0 || d < wait {
			wait = d
		}
	}
	backedOff := false
	for _, c := range rs.cands {
		if !c.prepared && c.skip == "" {
			if err := g.prepare(ctx, ex, rs.cfg, c); err != nil {
				return nil, denial, 0, err
			}
			if c.skip != "" {
				rs.from, rs.why = c.pool, "untranslatable"
			}
		}
		switch {
		case c.skip != "", c.planErr != nil, c.never:
			continue
		case c.cooling > 0:
			shorter(c.cooling)
			rs.from, rs.why = c.pool, "cooldown"
			continue
		}
		if c.tried > 0 && !backedOff {
			rs.retries++
			sleep := fullJitter(g.retryBase(), g.retryMax(), rs.retries)
			if rs.hasDeadline && time.Now().Add(sleep).After(rs.callerDeadline) {
				return nil, denial, -1, nil // no time left to try it again
			}
			if !sleepCtx(ctx, sleep) {
				return nil, denial, 0, ctx.Err()
			}
			backedOff = true
		}
		ex.use(c)
		if g.Quota == nil || g.Budgets == nil {
			return c, quota.Decision{Allowed: true, RemainingTokens: -1, RemainingRequests: -1}, 0, nil
		}
		if c.plan == nil {
			p, err := g.plan(ctx, ex, c.mb, c.pool)
			if err != nil {
				c.planErr = err
				rs.from, rs.why = c.pool, "over_cap"
				continue
			}
			c.plan = &p
		}
		ex.plan = *c.plan
		d, err := g.admitSteps(ctx, ex, c.plan.steps)
		if err != nil {
			return nil, d, 0, fmt.Errorf("%w: %w", errBudgetStore, err)
		}
		g.Metrics.decision(ctx, c.plan.pool, d, c.plan.poolHeadroom)
		if d.Allowed {
			return c, d, 0, nil
		}
		denial = d
		rs.from, rs.why = c.pool, "budget_"+string(d.Dimension)
		if d.RetryAfter < 0 {
			c.never = true
			continue
		}
		shorter(max(d.RetryAfter, pollInterval))
		if len(c.plan.steps) > 1 && d.Scope == c.plan.steps[0].Budgets[0].Scope {
			// The tenant's budget over all models said no: every target
			// would hear the same, and its queue place is this one's.
			break
		}
	}
	return nil, denial, wait, nil
}

// use points the exchange at a candidate: what is sent, and what spans,
// settlement and usage read.
func (ex *exchange) use(c *candidate) {
	ex.route, ex.req, ex.invoke, ex.servedPool, ex.body = c.route, c.req, c.invoke, c.pool, c.body
	if c.plan != nil {
		ex.plan = *c.plan
	}
}

// resetAttempt clears what one upstream call left on the exchange, once it
// is settled, so that the next attempt starts clean.
func (ex *exchange) resetAttempt() {
	ex.leases, ex.admittedAfter, ex.stopRenewal = nil, nil, nil
	ex.wire, ex.upstreamStatus, ex.upstreamID = nil, 0, ""
	ex.upstreamEnded, ex.completed = false, false
	ex.usage, ex.errType, ex.err, ex.charged = tokens.Usage{}, "", nil, 0
}

// attempt makes one upstream call to c. It answers the caller unless
// Bedrock refused or failed in a way another target (or a later try) may
// not, and nothing has reached the caller yet.
func (g *Gateway) attempt(w http.ResponseWriter, r *http.Request, ex *exchange, c *candidate, d quota.Decision) attemptResult {
	ctx, span := g.tracer().Start(r.Context(), spanName(ex), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(g.requestAttrs(ex)...),
		trace.WithAttributes(
			telemetry.Attempt.Int(ex.attempts),
			telemetry.Target.String(c.pool),
			attribute.Bool("quotagate.translated", c.invoke != nil),
		))
	var res attemptResult
	defer func() {
		if !res.done {
			span.SetAttributes(telemetry.FallbackReason.String(res.reason))
		}
		if c.target.Upstream != "" {
			span.SetAttributes(telemetry.ServerAddress.String(c.url.Hostname()))
		}
		endClientSpan(span, ex)
	}()
	answer := func() {
		h := w.Header()
		h.Set("X-Quotagate-Served-Model", c.target.Model)
		if c.target.Upstream != "" {
			h.Set("X-Quotagate-Served-Upstream", c.target.Upstream)
		}
		h.Set("X-Quotagate-Attempts", strconv.Itoa(ex.attempts))
		setRateLimitHeaders(h, d)
	}
	resp, err := g.send(ctx, r, ex, c.url, c.rt, c.body)
	if err != nil {
		if r.Context().Err() != nil {
			ex.status, ex.err = statusClientClosed, r.Context().Err()
			return attemptResult{done: true}
		}
		ex.err = err
		res = attemptResult{reason: "connection", targetFault: true, failure: &failure{err: err}}
		return res
	}
	defer resp.Body.Close()
	errType := bedrock.ErrorType(ex.errType)
	// A fallback that refuses the request as invalid (a max tokens above
	// its own limit, a header only the first model knows) is not the
	// caller's answer: the request was written for another model. Move on,
	// without counting it against the target.
	refused := resp.StatusCode == http.StatusBadRequest && errType == bedrock.Validation && c.index > 0
	if resp.StatusCode >= 300 && (movesOn(resp.StatusCode, errType) || refused) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxFailureBody))
		res = attemptResult{reason: failureReason(resp.StatusCode, ex.errType), retryAfter: retryAfter(resp.Header), targetFault: !refused,
			failure: &failure{status: resp.StatusCode, header: resp.Header.Clone(), body: body, errType: ex.errType}}
		return res
	}
	var first []byte
	if resp.StatusCode == http.StatusOK && ex.route.Operation.Streaming() && isEventStream(resp.Header) {
		// Nothing has reached the caller until the first frame is read: an
		// exception in it is still a refusal another target may not give.
		frame, err := bedrock.NewFrameReader(resp.Body).Next()
		if err != nil {
			if r.Context().Err() != nil {
				ex.status, ex.err = statusClientClosed, r.Context().Err()
				return attemptResult{done: true}
			}
			err = fmt.Errorf("%w: %w", errUpstreamBadStream, err)
			ex.err = err
			res = attemptResult{reason: "stream", targetFault: true, failure: &failure{err: err}}
			return res
		}
		first = bytes.Clone(frame)
		if ev, err := bedrock.DecodeFrame(first); err == nil && ev.MessageType == bedrock.MessageTypeException {
			typ := bedrock.ErrorTypeFromStream(ev.ExceptionType)
			if movesOn(0, typ) {
				// Refused before generating: charged nothing, like an
				// error status.
				ex.errType, ex.upstreamStatus = string(typ), typ.Status()
				res = attemptResult{reason: string(typ), targetFault: true,
					failure: &failure{status: resp.StatusCode, header: resp.Header.Clone(), body: first, errType: string(typ)}}
				return res
			}
		}
	}
	answer()
	g.relay(w, r, ex, resp, first)
	res = attemptResult{done: true}
	return res
}

// movesOn reports whether a refusal is one another target (or a later
// try) may not give: throttles, a model still loading, timeouts and
// server-side failures. A caller's mistake (a validation error, access
// denied) would be refused everywhere.
func movesOn(status int, t bedrock.ErrorType) bool {
	return t.Retryable() || status >= 500
}

func failureReason(status int, errType string) string {
	if errType != "" {
		return errType
	}
	return "http_" + strconv.Itoa(status)
}

// retryAfter reads Bedrock's Retry-After header (seconds), 0 when absent.
func retryAfter(h http.Header) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After"))); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// noteFailure records a failed attempt in the target's shared state, so
// that every replica stops sending to a target Bedrock keeps refusing.
func (g *Gateway) noteFailure(ctx context.Context, c *candidate, res attemptResult) {
	ts := g.targetStore()
	if ts == nil {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	// The cooldown it starts is read back with the targets' state at the
	// next round (at once through a TargetCache).
	if _, err := ts.Failed(sctx, quota.PoolBudget(c.pool, c.mb.Limits), res.retryAfter, g.Cooldown); err != nil {
		g.logger().WarnContext(ctx, "recording a target failure failed", "target", c.pool, "error", err)
	}
}

// answerFailure answers when every attempt failed: with Bedrock's own last
// answer, as it would have reached a caller without the gateway.
func (g *Gateway) answerFailure(w http.ResponseWriter, ex *exchange, f *failure, rt quota.Route) {
	w.Header().Set("X-Quotagate-Attempts", strconv.Itoa(ex.attempts))
	switch {
	case f == nil:
		g.fail(w, ex, fmt.Errorf("%w: no target of %s could be tried", errUpstreamFailed, rt.Name))
	case f.err != nil:
		g.fail(w, ex, f.err)
	default:
		copyResponseHeaders(w.Header(), f.header)
		// The body kept may be cut short: let net/http count it.
		w.Header().Del("Content-Length")
		ex.status, ex.errType = f.status, f.errType
		ex.wroteHeader = true
		w.WriteHeader(f.status)
		n, _ := w.Write(f.body)
		ex.bytesOut = int64(n)
	}
}

// nothingFits is the answer when no target can ever take the request:
// each cannot take what it asks for, or its caps or budget are too small.
func (g *Gateway) nothingFits(cands []*candidate, rt quota.Route) error {
	var reasons []string
	unavailable, capped := false, error(nil)
	for _, c := range cands {
		switch {
		case c.skip != "":
			reasons = append(reasons, c.pool+": "+c.skip)
			unavailable = unavailable || c.unavailable
		case c.planErr != nil:
			capped = c.planErr
		default:
			reasons = append(reasons, c.pool+": its whole budget is smaller than the request's reservation")
		}
	}
	switch {
	case capped != nil && len(reasons) == 0:
		return capped
	case unavailable:
		// A target that could take it cannot be reached.
		return fmt.Errorf("%w: no target of %s can take this request: %s", errUpstreamFailed, rt.Name, strings.Join(reasons, "; "))
	}
	if capped != nil {
		reasons = append(reasons, capped.Error())
	}
	return fmt.Errorf("%w: no target of %s can take this request: %s", errNoTarget, rt.Name, strings.Join(reasons, "; "))
}

// routeThrottle is the 429 when every target is out of room or cooling
// down beyond the request's wait.
func (g *Gateway) routeThrottle(rt quota.Route, d quota.Decision, cands []*candidate, wait time.Duration) error {
	if d.Scope != "" {
		return &throttleError{scope: d.Scope, dim: d.Dimension, retryAfter: max(wait, pollInterval)}
	}
	return &throttleError{scope: "route=" + rt.Name, dim: "cooldown", retryAfter: max(wait, pollInterval)}
}

// fullJitter is AWS's "full jitter" backoff: uniform in [0, min(max,
// base·2^n)), so that replicas retrying together spread out.
func fullJitter(base, ceiling time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return rand.N(min(d, ceiling) + 1)
}

// sleepCtx sleeps for d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// targetStore keeps route targets' state and cooldowns: Targets, else the
// budget store, shared by replicas. Without either (no budgets at all)
// targets are tried in order and nothing is cooled down.
func (g *Gateway) targetStore() quota.Targets {
	if g.Targets != nil {
		return g.Targets
	}
	t, _ := g.Quota.(quota.Targets)
	return t
}

func (g *Gateway) maxAttempts() int {
	if g.MaxAttempts > 0 {
		return g.MaxAttempts
	}
	return DefaultMaxAttempts
}

func (g *Gateway) retryBase() time.Duration {
	if g.RetryBase > 0 {
		return g.RetryBase
	}
	return DefaultRetryBase
}

func (g *Gateway) retryMax() time.Duration {
	if g.RetryMax > 0 {
		return g.RetryMax
	}
	return DefaultRetryMax
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
