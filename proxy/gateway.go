package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/telemetry"
	"github.com/quotagate/quotagate/tenant"
	"github.com/quotagate/quotagate/tokens"
	"github.com/quotagate/quotagate/translate"
)

// DefaultMaxBodyBytes is Bedrock's own limit on an InvokeModel body
// (25,000,000 bytes in the API reference).
const DefaultMaxBodyBytes = 25_000_000

// Gateway serves Bedrock Runtime's API and forwards to one upstream. Its
// fields are its configuration; set them before the first request and do not
// change them afterwards. The zero value is not usable: Upstream is required.
type Gateway struct {
	// Upstream is the Bedrock Runtime endpoint, for example
	// https://bedrock-runtime.us-east-1.amazonaws.com.
	Upstream *url.URL
	// Transport sends upstream requests. It must authenticate them: normally
	// a *Signer around NewTransport. nil means http.DefaultTransport, which
	// only an unauthenticated test upstream accepts.
	Transport http.RoundTripper
	// MaxBodyBytes caps a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives one access-log line per request; nil discards them.
	Logger *slog.Logger
	// Tracer creates the upstream client spans; nil uses telemetry.Tracer().
	Tracer trace.Tracer
	// Metrics records the gateway's instruments; nil records nothing.
	Metrics *Metrics

	// Quota holds the shared budgets. With Budgets, it enables admission:
	// every request is reserved before it goes upstream and settled when
	// it ends. nil disables budgets.
	Quota quota.Store
	// Budgets returns the budgets in force (the hot-reloaded file); nil,
	// or a nil result, disables budgets.
	Budgets func() *quota.Config
	// MaxWait is how long a request may wait for its budget to free before
	// it is answered with ThrottlingException (the caller's own deadline
	// shortens it). Zero means no waiting.
	MaxWait time.Duration
	// LeaseTTL bounds how long a concurrency slot outlives a replica that
	// died mid-request; it is renewed while a request runs. Zero means
	// DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Calibrator corrects input estimates per model from actual usage;
	// nil uses the raw estimates.
	Calibrator *tokens.Calibrator
	// CountTokens, when set, asks Bedrock for the exact input tokens before
	// admission (see NewCountTokens); on error the estimate is used.
	CountTokens func(ctx context.Context, route bedrock.Route, body []byte) (int, error)

	// Tenants yields the tenants in force: callers must authenticate as
	// one of them (a bearer key or SigV4) and call only its models. nil,
	// or a directory with no tenant, serves everyone as the default tenant.
	Tenants tenant.Source
	// AuthFailures throttles sources that keep failing authentication;
	// nil does not throttle them.
	AuthFailures AuthLimiter
	// Upstreams resolves the other upstreams (regions, endpoints, accounts)
	// that route targets name; nil serves only targets on Upstream.
	Upstreams UpstreamResolver
	// Targets keeps route targets' state and cooldowns, shared by the
	// replicas; nil uses Quota (when it can). A quota.TargetCache in front
	// saves a round trip per routed request.
	Targets quota.Targets
	// Cooldown says when a route target that Bedrock keeps refusing is set
	// aside by every replica; zero means quota.DefaultCooldown.
	Cooldown quota.Cooldown
	// MaxAttempts bounds the upstream calls of one routed request; 0 means
	// DefaultMaxAttempts.
	MaxAttempts int
	// RetryBase and RetryMax shape the full-jitter backoff before a routed
	// request tries a target a second time; 0 means DefaultRetryBase and
	// DefaultRetryMax.
	RetryBase, RetryMax time.Duration

	// TrustedProxies are the load balancers and proxies in front of the
	// gateway whose X-Forwarded-For is believed. A request from one of
	// them has its authentication failures counted against the right-most
	// X-Forwarded-For address that is not itself a trusted proxy, rather
	// than against the proxy, which would throttle every tenant behind it
	// at once. Addresses are matched unmapped (an IPv4-mapped IPv6 peer
	// matches an IPv4 prefix). nil trusts no peer: failures are counted
	// against the peer's address and X-Forwarded-For is ignored.
	TrustedProxies []netip.Prefix
}

var _ http.Handler = (*Gateway)(nil)

// tenantID names the caller in budgets, spans, metrics and logs; it is
// empty until the caller is authenticated (a refused request has no
// tenant).
func (ex *exchange) tenantID() string {
	if ex.tenant == nil {
		return ""
	}
	return ex.tenant.ID
}

// requestedModel is the model id the caller named (for a routed request,
// ex.route is the target being served).
func (ex *exchange) requestedModel() string {
	if ex.requested.ModelID != "" {
		return ex.requested.ModelID
	}
	return ex.route.ModelID
}

// exchange is the state of one request as it moves through ServeHTTP. The
// access log line, the span attributes and (with budgets) the settlement are
// all read from it when the request ends, whichever way it ends.
type exchange struct {
	id          string
	start       time.Time
	route       bedrock.Route
	req         tokens.Request
	usage       tokens.Usage
	status      int
	errType     string // Bedrock exception name, ours or upstream's
	err         error  // our own failure, if any
	upstreamID  string
	upstreamDur time.Duration // until upstream response headers
	firstByte   time.Duration // until the first body byte or event reached the caller
	bytesOut    int64
	events      int
	wroteHeader bool

	body           []byte
	plan           budgetPlan
	estInput       int               // the input estimate admission used
	exactInput     bool              // estInput came from CountTokens
	tenant         *tenant.Tenant    // who is calling; nil before authentication
	dir            *tenant.Directory // the tenants in force for this request
	leases         []quota.Lease     // one per admission step, all settled at the end
	admittedAfter  []time.Duration   // when each lease's admission was answered, since start
	charged        int64             // tokens charged at settle
	waited         time.Duration
	stopRenewal    func()
	upstreamCalled bool
	wire           *wireState        // the current attempt's; nil before one is sent
	invoke         *translate.Invoke // set when the native body was translated for the served model
	requested      bedrock.Route     // what the caller asked for; route is what is being served
	callerBody     []byte            // the body as the caller sent it (body is the served target's)
	callerFamily   tokens.Family     // the family of callerBody, for a routed native request
	callerModel    string            // the model callerBody is written for (an alias's first target)
	servedPool     string            // the routed target serving the request (pool id), "" when not routed
	attempts       int               // upstream calls made for a routed request
	upstreamStatus int
	upstreamEnded  bool // Bedrock closed the stream (after its last event or an exception)
	completed      bool // the whole response reached the caller
}

// ServeHTTP handles one Bedrock Runtime call.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := &exchange{id: newRequestID(), start: time.Now()}
	ctx := r.Context()
	defer g.finish(ctx, ex)
	defer func() {
		// A panic in our code must still answer the caller and settle; the
		// abort sentinel is net/http's own way to drop a connection.
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			g.logger().ErrorContext(ctx, "panic serving request", "request_id", ex.id, "panic", fmt.Sprint(p))
			err := fmt.Errorf("%w: panic", errInternal)
			if !ex.wroteHeader {
				g.fail(w, ex, err)
				return
			}
			// A response is under way: never let it look complete. A
			// stream gets an exception event; a plain body is cut, which
			// the caller's HTTP client reports as an error. The deferred
			// finish still settles first.
			if ex.route.Operation.Streaming() {
				g.breakStream(w, http.NewResponseController(w), ex, err)
				return
			}
			ex.err = err
			panic(http.ErrAbortHandler)
		}
	}()

	route, ok := bedrock.ParsePath(r.URL.EscapedPath())
	if !ok || r.Method != http.MethodPost {
		g.fail(w, ex, fmt.Errorf("%w: %s %s", errUnknownOperation, r.Method, r.URL.EscapedPath()))
		return
	}
	ex.route = route
	serverSpan := trace.SpanFromContext(ctx)
	serverSpan.SetAttributes(telemetry.RequestID.String(ex.id), telemetry.Operation.String(string(route.Operation)), telemetry.GenAIRequestModel.String(route.ModelID))

	// Who is calling is settled before the body is judged, so that an
	// unauthenticated caller learns nothing from validation errors, and as
	// far as the headers allow before it is even read: a blocked source, a
	// missing or unknown key never makes the gateway buffer a body. A SigV4
	// signature covers the body's hash, so it is checked once it is read.
	auth, err := g.authHeaders(ctx, r)
	if err != nil {
		ex.tenant, ex.dir = auth.tenant, auth.dir
		g.fail(w, ex, err)
		return
	}
	body, err := g.readBody(r)
	if err != nil {
		g.fail(w, ex, err)
		return
	}
	ex.body = body
	auth, err = g.authBody(ctx, r, auth, body)
	ex.tenant, ex.dir = auth.tenant, auth.dir
	if err != nil {
		g.fail(w, ex, err)
		return
	}
	if !acceptedContentType(r.Header.Get("Content-Type")) {
		// The header is not quoted back: nothing a caller sent is echoed.
		g.fail(w, ex, fmt.Errorf("%w: the gateway accepts application/json bodies", errUnsupportedMedia))
		return
	}
	serverSpan.SetAttributes(telemetry.Tenant.String(ex.tenant.ID))
	if ex.req, err = parseRequest(route, body); err != nil {
		g.fail(w, ex, err)
		return
	}
	g.serve(w, r, ex)
}

// readBody reads the whole request body, which SigV4 needs to hash before
// sending and the token estimate needs to parse.
func (g *Gateway) readBody(r *http.Request) ([]byte, error) {
	limit := g.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes is over the %d byte limit", errBodyTooLarge, r.ContentLength, limit)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the request body: %w", errClientBody, err)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: the body is over the %d byte limit", errBodyTooLarge, limit)
	}
	return buf.Bytes(), nil
}

// parseRequest reads what admission needs from the body, and rejects a body
// Bedrock would reject anyway before it costs an upstream call.
func parseRequest(route bedrock.Route, body []byte) (tokens.Request, error) {
	family := tokens.FamilyOf(route.ModelID)
	switch {
	case route.Operation.Native():
		return tokens.ParseInvoke(family, route.ModelID, body)
	case route.Operation == bedrock.CountTokens:
		return tokens.ParseCountTokens(family, route.ModelID, body)
	default:
		return tokens.ParseConverse(route.ModelID, body)
	}
}

// forward sends the request upstream and relays the response.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, ex *exchange, body []byte) {
	ctx, span := g.tracer().Start(r.Context(), spanName(ex), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(g.requestAttrs(ex)...))
	defer func() { endClientSpan(span, ex) }()
	resp, err := g.send(ctx, r, ex, g.Upstream, g.transport(), body)
	if err != nil {
		if r.Context().Err() != nil {
			ex.status, ex.err = statusClientClosed, r.Context().Err()
			return
		}
		g.fail(w, ex, err)
		return
	}
	defer resp.Body.Close()
	g.relay(w, r, ex, resp, nil)
}

// send makes one upstream call of ex.route with body and returns Bedrock's
// response, whatever its status; an error is a call that got no response,
// already classified.
func (g *Gateway) send(ctx context.Context, r *http.Request, ex *exchange, upstream *url.URL, rt http.RoundTripper, body []byte) (*http.Response, error) {
	out, err := g.newUpstreamRequest(ctx, r, upstream, ex.route, body)
	if err != nil {
		return nil, err
	}
	ex.upstreamCalled = true
	// Whether the request left this process decides what a failure costs:
	// a request never written (no credentials, a refused dial) cannot have
	// been served, so it is charged nothing. Each call has its own record,
	// as the transport's goroutine may still write it after RoundTrip.
	ws := &wireState{}
	ex.wire = ws
	out = out.WithContext(httptrace.WithClientTrace(out.Context(), &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			ws.sentAfter.Store(int64(time.Since(ex.start)))
			ws.written.Store(info.Err == nil)
		},
	}))
	resp, err := rt.RoundTrip(out)
	ex.upstreamDur = time.Since(ex.start)
	if err != nil {
		return nil, classifyTransport(err)
	}
	ex.upstreamStatus = resp.StatusCode
	ex.upstreamID = resp.Header.Get("X-Amzn-Requestid")
	ex.errType = ""
	if resp.StatusCode >= 300 {
		ex.errType = upstreamErrorType(resp.Header)
	}
	return resp, nil
}

// relay answers the caller with Bedrock's response: its headers, then the
// stream (first, when set, is its first frame, already read) or the body.
func (g *Gateway) relay(w http.ResponseWriter, r *http.Request, ex *exchange, resp *http.Response, first []byte) {
	copyResponseHeaders(w.Header(), resp.Header)
	if resp.StatusCode == http.StatusOK && ex.route.Operation.Streaming() && isEventStream(resp.Header) {
		g.relayStream(w, r, ex, resp, first)
		return
	}
	g.relayBody(w, ex, resp)
}

// wireState records when one upstream call's request was written.
type wireState struct {
	written   atomic.Bool  // set by the transport's goroutine
	sentAfter atomic.Int64 // when the request was written, as time since start (ns)
}

// requestWritten reports whether the current attempt's request left this
// process whole.
func (ex *exchange) requestWritten() bool { return ex.wire != nil && ex.wire.written.Load() }

// sentAfter is when the current attempt's request was written, since start.
func (ex *exchange) sentAfter() time.Duration {
	if ex.wire == nil {
		return 0
	}
	return time.Duration(ex.wire.sentAfter.Load())
}

// newUpstreamRequest builds the request Bedrock receives: the same escaped
// path (SigV4 escapes it once more, so it must stay byte-identical), the
// allow-listed headers, the body, and our trace context.
func (g *Gateway) newUpstreamRequest(ctx context.Context, r *http.Request, upstream *url.URL, route bedrock.Route, body []byte) (*http.Request, error) {
	if upstream == nil {
		return nil, fmt.Errorf("%w: no upstream configured", errInternal)
	}
	u := *upstream
	u.RawPath = strings.TrimSuffix(upstream.EscapedPath(), "/") + bedrock.Path(route.Operation, route.RawModelID)
	path, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, fmt.Errorf("%w: upstream path: %w", errInternal, err)
	}
	u.Path, u.RawQuery, u.Fragment = path, "", ""
	out, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: upstream request: %w", errInternal, err)
	}
	forwardRequestHeaders(out.Header, r.Header)
	if out.Header.Get("Content-Type") == "" {
		out.Header.Set("Content-Type", "application/json")
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(out.Header))
	return out, nil
}

// relayBody copies a complete (non-stream) response, byte for byte, keeping a
// bounded copy to read usage from. A translated request's answer is read
// whole and translated back instead.
func (g *Gateway) relayBody(w http.ResponseWriter, ex *exchange, resp *http.Response) {
	if ex.invoke != nil && resp.StatusCode == http.StatusOK {
		g.relayTranslated(w, ex, resp)
		return
	}
	ex.status = resp.StatusCode
	ex.wroteHeader = true
	w.WriteHeader(resp.StatusCode)
	capture := &boundedBuffer{max: maxUsageCapture}
	n, err := copyBuffered(io.MultiWriter(w, capture), resp.Body)
	ex.bytesOut = n
	if n > 0 {
		ex.firstByte = time.Since(ex.start)
	}
	if err != nil {
		ex.err = fmt.Errorf("%w: copying response: %w", errUpstreamFailed, err)
	} else {
		// Flush before settle runs, so the caller has the whole response
		// while the settle round trip happens.
		_ = http.NewResponseController(w).Flush()
		ex.completed = true
	}
	if resp.StatusCode == http.StatusOK {
		ex.usage = usageFromBody(ex, capture.Bytes()).Merge(tokens.UsageFromHeaders(resp.Header))
	}
}

// relayTranslated answers with Bedrock's response translated into the
// caller's family. Usage is read from the response as Bedrock sent it.
func (g *Gateway) relayTranslated(w http.ResponseWriter, ex *exchange, resp *http.Response) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, DefaultMaxBodyBytes+1))
	if err != nil {
		ex.err = fmt.Errorf("%w: reading the response: %w", errUpstreamFailed, err)
		w.Header().Del("Content-Length")
		g.fail(w, ex, ex.err)
		return
	}
	headerUsage := tokens.UsageFromHeaders(resp.Header)
	ex.usage = usageFromBody(ex, body).Merge(headerUsage)
	// Bedrock answered, so the call is complete whatever happens next: a
	// translation failure still costs what Bedrock counted.
	ex.completed = true
	out, err := ex.invoke.Response(body, headerUsage)
	if err != nil {
		w.Header().Del("Content-Length")
		g.fail(w, ex, fmt.Errorf("%w: translating %s's answer: %w", errInternal, ex.route.ModelID, err))
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	ex.status = resp.StatusCode
	ex.wroteHeader = true
	w.WriteHeader(resp.StatusCode)
	n, err := w.Write(out)
	ex.bytesOut = int64(n)
	ex.firstByte = time.Since(ex.start)
	if err != nil {
		ex.completed = false
		ex.err = fmt.Errorf("%w: writing the response: %w", errUpstreamFailed, err)
		return
	}
	_ = http.NewResponseController(w).Flush()
}

// maxUsageCapture bounds how much of a plain response is kept for reading
// usage. Text responses are far smaller; a larger one (an image model's
// base64 output) still has its usage in the token-count headers.
const maxUsageCapture = 8 << 20

func usageFromBody(ex *exchange, body []byte) tokens.Usage {
	if len(body) == 0 || len(body) >= maxUsageCapture {
		return tokens.Usage{}
	}
	switch {
	case ex.route.Operation.Native():
		return tokens.UsageFromInvoke(ex.req.Family, body)
	case ex.route.Operation == bedrock.CountTokens:
		return tokens.UsageFromCountTokens(body)
	default:
		return tokens.UsageFromConverse(body)
	}
}

// fail answers with the Bedrock-shaped form of err, unless a response has
// already started (then the caller sees a cut or a stream exception instead).
func (g *Gateway) fail(w http.ResponseWriter, ex *exchange, err error) {
	ex.err = err
	be := bedrockError(err)
	ex.errType = string(be.Type)
	if ex.wroteHeader {
		return
	}
	if te, ok := isThrottle(err); ok {
		w.Header().Set("X-Quotagate-Limit", te.limitHeader())
	}
	ex.status = be.Status()
	ex.wroteHeader = true
	be.Write(w)
}

// statusClientClosed is logged (never sent) when the caller went away, after
// nginx's convention, so that access logs tell cancellations from errors.
const statusClientClosed = 499

func (g *Gateway) transport() http.RoundTripper {
	if g.Transport != nil {
		return g.Transport
	}
	return http.DefaultTransport
}

func (g *Gateway) tracer() trace.Tracer {
	if g.Tracer != nil {
		return g.Tracer
	}
	return telemetry.Tracer()
}

func (g *Gateway) logger() *slog.Logger {
	if g.Logger != nil {
		return g.Logger
	}
	return discardLogger
}

var discardLogger = slog.New(slog.DiscardHandler)

// spanName follows the GenAI convention "{operation} {model}".
func spanName(ex *exchange) string {
	return genAIOperation(ex) + " " + ex.route.ModelID
}

func genAIOperation(ex *exchange) string {
	switch {
	case ex.route.Operation == bedrock.CountTokens:
		return telemetry.OperationCountTokens
	case !ex.route.Operation.Native():
		return telemetry.OperationChat
	}
	switch ex.req.Family {
	case tokens.Anthropic, tokens.Nova, tokens.Cohere:
		return telemetry.OperationChat
	}
	return telemetry.OperationTextCompletion
}

func (g *Gateway) requestAttrs(ex *exchange) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		telemetry.GenAIOperationName.String(genAIOperation(ex)),
		telemetry.ProviderAWSBedrock,
		telemetry.GenAIRequestModel.String(ex.route.ModelID),
		telemetry.Operation.String(string(ex.route.Operation)),
		telemetry.BodyFamily.String(string(ex.req.Family)),
		telemetry.EstimatedInputTokens.Int(ex.req.InputTokens),
		telemetry.RequestID.String(ex.id),
		telemetry.Tenant.String(ex.tenantID()),
	}
	if ex.req.MaxTokens > 0 {
		attrs = append(attrs, telemetry.GenAIRequestMaxTokens.Int(ex.req.MaxTokens))
	}
	if g.Upstream != nil {
		attrs = append(attrs, telemetry.ServerAddress.String(g.Upstream.Hostname()))
	}
	return attrs
}

func endClientSpan(span trace.Span, ex *exchange) {
	span.SetAttributes(telemetry.HTTPResponseStatusCode.Int(ex.status))
	span.SetAttributes(usageAttrs(ex)...)
	if ex.upstreamID != "" {
		span.SetAttributes(telemetry.UpstreamRequestID.String(ex.upstreamID))
	}
	if ex.errType != "" {
		span.SetAttributes(telemetry.ErrorType.String(ex.errType))
		span.SetStatus(codes.Error, ex.errType)
	} else if ex.err != nil {
		span.SetAttributes(telemetry.ErrorType.String(errorTypeName(ex.err)))
		span.SetStatus(codes.Error, ex.err.Error())
	}
	span.End()
}

func usageAttrs(ex *exchange) []attribute.KeyValue {
	if !ex.usage.Known {
		return nil
	}
	attrs := []attribute.KeyValue{
		telemetry.GenAIUsageInputTokens.Int(ex.usage.InputTokens),
		telemetry.GenAIUsageOutputTokens.Int(ex.usage.OutputTokens),
	}
	if ex.usage.CacheReadInputTokens > 0 {
		attrs = append(attrs, telemetry.GenAIUsageCacheReadTokens.Int(ex.usage.CacheReadInputTokens))
	}
	if ex.usage.CacheWriteInputTokens > 0 {
		attrs = append(attrs, telemetry.CacheWriteTokens.Int(ex.usage.CacheWriteInputTokens))
	}
	if ex.usage.StopReason != "" {
		attrs = append(attrs, telemetry.GenAIResponseFinishReason.StringSlice([]string{ex.usage.StopReason}))
	}
	return attrs
}

// errorTypeName names a failure that has no Bedrock exception, for error.type.
func errorTypeName(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "client_cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "_OTHER"
}

// SpanName names the server span of a request "{method} {route}", with the
// model id left out of the name (it is an attribute) so that span names stay
// few.
func SpanName(r *http.Request) string {
	if route, ok := bedrock.ParsePath(r.URL.EscapedPath()); ok {
		return r.Method + " " + bedrock.Path(route.Operation, "{modelId}")
	}
	return r.Method
}
