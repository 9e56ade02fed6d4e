package bedrocksim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quotagate/quotagate/bedrock"
)

// Config configures a simulated Bedrock Runtime. The zero value works: it
// accepts DefaultCredentials signed for us-east-1, has no quotas and no
// latency, and generates 24 output tokens per response.
type Config struct {
	// Region is the signing region requests must be scoped to, as a regional
	// Bedrock endpoint only accepts its own region. Default "us-east-1".
	Region string
	// Credentials maps SigV4 access key ids to secret access keys. Nil means
	// DefaultCredentials.
	Credentials map[string]string
	// APIKeys are the accepted Bedrock API keys (Authorization: Bearer <key>).
	// None by default.
	APIKeys []string
	// Models holds per-model quotas, keyed by model id: the decoded id from
	// the path, and for ARNs the part after the last '/' (so an
	// inference-profile ARN shares the quota of its profile id).
	Models map[string]Limits
	// Default applies to models not in Models. The zero value is unlimited.
	Default Limits
	// Latency is how long the simulated model takes.
	Latency Latency
	// OutputTokens is how many tokens a response generates when the request's
	// max tokens allow it. Default 24; negative means none.
	OutputTokens int
	// Window is the sliding window of the TPM and RPM quotas. Default one
	// minute, as Bedrock's quotas are per minute.
	Window time.Duration
	// Now is the clock of the quotas. Default time.Now. SigV4 skew is always
	// checked against the wall clock, because that is what the SDKs sign with.
	Now func() time.Time
	// Logger receives one line per request. Nil discards.
	Logger *slog.Logger
}

// Limits are one model's Bedrock quotas. Zero means unlimited.
type Limits struct {
	// TPM is tokens per minute (per Window): input plus output x burndown.
	TPM int
	// RPM is requests per minute (per Window).
	RPM int
	// Concurrency bounds the requests in progress at once.
	Concurrency int
	// OutputBurndown is how many quota tokens one output token consumes.
	// Bedrock burns Claude 4-class output tokens 5x ("How tokens are counted
	// in Amazon Bedrock"). Zero means 1.
	OutputBurndown int
}

// Latency is the simulated model's speed.
type Latency struct {
	// TimeToFirstToken passes before the first streamed event (and before a
	// non-streamed response, together with the per-token time).
	TimeToFirstToken time.Duration
	// PerOutputToken passes for every generated token.
	PerOutputToken time.Duration
}

// Server is a simulated Bedrock Runtime endpoint. It implements
// http.Handler; serve it with net/http or net/http/httptest. All methods are
// safe for concurrent use.
type Server struct {
	region       string
	creds        map[string]string
	apiKeys      [][32]byte
	modelLimits  map[string]Limits
	defaults     Limits
	latency      Latency
	outputTokens int
	window       time.Duration
	now          func() time.Time
	log          *slog.Logger

	mu     sync.Mutex
	models map[string]*limiter
	faults []*pendingFault
	hold   *streamHold
	recent [recentRequests]*Recorded
	next   int // index in recent of the next record
	stats  Stats
}

// recentRequests is how many requests Requests keeps.
const recentRequests = 256

// maxBodyBytes bounds a request body. Bedrock accepts payloads of up to
// 20 MB (Anthropic Claude Messages API request limits).
const maxBodyBytes = 20 << 20

// maxRecordedBody bounds the body kept per recorded request, so that 256
// records stay small.
const maxRecordedBody = 1 << 20

// New returns a Server configured by cfg, with the documented defaults for
// its zero fields.
func New(cfg Config) *Server {
	s := &Server{
		region:       cfg.Region,
		creds:        make(map[string]string),
		modelLimits:  make(map[string]Limits, len(cfg.Models)),
		defaults:     cfg.Default,
		latency:      cfg.Latency,
		outputTokens: cfg.OutputTokens,
		window:       cfg.Window,
		now:          cfg.Now,
		log:          cfg.Logger,
		models:       make(map[string]*limiter),
	}
	if s.region == "" {
		s.region = "us-east-1"
	}
	src := cfg.Credentials
	if src == nil {
		src = DefaultCredentials
	}
	for id, secret := range src {
		s.creds[id] = secret
	}
	for _, k := range cfg.APIKeys {
		s.apiKeys = append(s.apiKeys, hashKey(k))
	}
	for id, l := range cfg.Models {
		s.modelLimits[id] = l
	}
	switch {
	case s.outputTokens == 0:
		s.outputTokens = 24
	case s.outputTokens < 0:
		s.outputTokens = 0
	}
	if s.window <= 0 {
		s.window = time.Minute
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.stats.Requests = make(map[bedrock.Operation]int)
	return s
}

var _ http.Handler = (*Server)(nil)

// ServeHTTP answers one Bedrock Runtime request. It reads top to bottom like
// the real front end: record, authenticate, route, then let the model
// family, the faults, the quota and the generator have their say.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	// Every AWS response carries a request id, errors included.
	sw.Header().Set("x-amzn-RequestId", newUUID())

	route, routed := bedrock.ParsePath(r.URL.EscapedPath())
	body, readErr := io.ReadAll(http.MaxBytesReader(sw, r.Body, maxBodyBytes))
	rec := s.begin(r, route, body)
	res := &result{}
	defer func() { s.finish(r, rec, sw, res, start) }()

	if readErr != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(readErr, &tooLarge) {
			bedrock.Errorf(bedrock.RequestEntityTooLarge, "Request body exceeds the maximum size of %d bytes.", maxBodyBytes).Write(sw)
			return
		}
		// The client went away while sending: nobody to answer.
		res.cancelled = true
		return
	}
	if err := s.authenticate(r, body); err != nil {
		s.count(func(st *Stats) { st.AuthFailures++ })
		err.Write(sw)
		return
	}
	s.mu.Lock()
	rec.Authenticated = true
	s.mu.Unlock()

	if !routed || r.Method != http.MethodPost {
		// Bedrock's REST front end knows operations by method and path; any
		// other combination is an unknown operation, not a 405.
		bedrock.Errorf(bedrock.UnknownOperation, "Unknown operation %s %s", r.Method, r.URL.EscapedPath()).Write(sw)
		return
	}
	s.count(func(st *Stats) { st.Requests[route.Operation]++ })
	res.op = route.Operation
	s.serve(r.Context(), sw, route, body, start, res)
}

// result is what one request did, for the log line and the statistics.
type result struct {
	op                  bedrock.Operation
	model               string
	inputTokens, output int
	cancelled           bool
}

// serve runs an authenticated, routed request.
func (s *Server) serve(ctx context.Context, w http.ResponseWriter, route bedrock.Route, body []byte, start time.Time, res *result) {
	model := quotaKey(route.ModelID)
	fam, ok := lookupFamily(model)
	if !ok {
		bedrock.Errorf(bedrock.Validation, "The provided model identifier is invalid.").Write(w)
		return
	}
	res.model = model
	lim := s.limiter(model)
	lim.countRequest()

	pending := s.matchFault(model, route.Operation)
	if pending != nil && !pending.Kind.midStream() {
		if f, ok := s.useFault(pending); ok {
			s.count(func(st *Stats) { st.Faults++ })
			s.serveFault(w, f)
			return
		}
	}

	var (
		req *nativeRequest
		err *bedrock.Error
	)
	switch route.Operation {
	case bedrock.InvokeModel, bedrock.InvokeModelWithResponseStream:
		req, err = fam.parse(model, body)
	case bedrock.Converse, bedrock.ConverseStream:
		req, err = parseConverse(fam, body)
	case bedrock.CountTokens:
		var n int
		if n, err = countTokens(fam, model, body); err == nil {
			writeJSON(w, http.StatusOK, map[string]any{"inputTokens": n})
		} else {
			err.Write(w)
		}
		return
	}
	if err != nil {
		err.Write(w)
		return
	}

	ch, denied := lim.admit(s.now(), req.inputTokens, req.maxTokens)
	if denied != nil {
		s.count(func(st *Stats) { st.Throttled++ })
		denied.Write(w)
		return
	}
	g := newGeneration(model, req, s.outputTokens)
	res.inputTokens = req.inputTokens
	var fault *Fault
	if pending != nil && pending.Kind.midStream() {
		fault, _ = s.useFault(pending)
	}
	defer func() {
		// Settle on every path: the reservation becomes what was used.
		lim.settle(s.now(), ch, req.inputTokens, res.output)
	}()

	switch route.Operation {
	case bedrock.InvokeModel:
		s.invoke(ctx, w, fam, req, g, start, res)
	case bedrock.Converse:
		s.converse(ctx, w, g, start, res)
	case bedrock.InvokeModelWithResponseStream:
		s.stream(ctx, w, invokeStream(fam, req, g), g, fault, start, res)
	case bedrock.ConverseStream:
		s.stream(ctx, w, converseStream(g), g, fault, start, res)
	}
}

// invoke answers InvokeModel with the family's native body and Bedrock's
// usage headers.
func (s *Server) invoke(ctx context.Context, w http.ResponseWriter, fam family, req *nativeRequest, g *generation, start time.Time, res *result) {
	if !s.generate(ctx, g, start, res) {
		return
	}
	h := w.Header()
	h.Set("X-Amzn-Bedrock-Input-Token-Count", strconv.Itoa(g.inputTokens))
	h.Set("X-Amzn-Bedrock-Output-Token-Count", strconv.Itoa(g.outputTokens()))
	h.Set("X-Amzn-Bedrock-Invocation-Latency", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	writeJSON(w, http.StatusOK, fam.response(req, g))
}

// converse answers Converse in the model-independent Converse shape.
func (s *Server) converse(ctx context.Context, w http.ResponseWriter, g *generation, start time.Time, res *result) {
	if !s.generate(ctx, g, start, res) {
		return
	}
	writeJSON(w, http.StatusOK, converseResponse(g, time.Since(start)))
}

// generate waits as long as the simulated model needs for a whole
// response. It reports false when the client went away first; the tokens
// generated by then are recorded in res.
func (s *Server) generate(ctx context.Context, g *generation, start time.Time, res *result) bool {
	n := g.outputTokens()
	d := s.latency.TimeToFirstToken + time.Duration(n)*s.latency.PerOutputToken
	if err := sleep(ctx, d); err != nil {
		res.cancelled = true
		if per := s.latency.PerOutputToken; per > 0 {
			done := int((time.Since(start) - s.latency.TimeToFirstToken) / per)
			res.output = min(max(done, 0), n)
		}
		return false
	}
	res.output = n
	return true
}

// begin records an arriving request.
func (s *Server) begin(r *http.Request, route bedrock.Route, body []byte) *Recorded {
	rec := &Recorded{
		Operation: route.Operation,
		ModelID:   route.ModelID,
		Header:    r.Header.Clone(),
		Body:      body[:min(len(body), maxRecordedBody)],
	}
	s.mu.Lock()
	s.recent[s.next] = rec
	s.next = (s.next + 1) % recentRequests
	s.stats.Total++
	s.stats.InFlight++
	s.mu.Unlock()
	return rec
}

// finish records how a request ended and logs it.
func (s *Server) finish(r *http.Request, rec *Recorded, sw *statusWriter, res *result, start time.Time) {
	cancelled := res.cancelled
	s.mu.Lock()
	rec.Status = sw.status
	s.stats.InFlight--
	if cancelled {
		s.stats.Cancelled++
	}
	s.mu.Unlock()
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "bedrock request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.String("operation", string(res.op)),
		slog.String("model", res.model),
		slog.Int("status", sw.status),
		slog.Int("input_tokens", res.inputTokens),
		slog.Int("output_tokens", res.output),
		slog.Bool("cancelled", cancelled),
		slog.Duration("duration", time.Since(start)),
		slog.String("request_id", sw.Header().Get("x-amzn-RequestId")),
	)
}

// count changes the server statistics under the lock.
func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// limiter returns the quota state of a model, creating it on first use.
func (s *Server) limiter(model string) *limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.models[model]
	if !ok {
		lim, ok := s.modelLimits[model]
		if !ok {
			lim = s.defaults
		}
		l = newLimiter(lim, s.window)
		s.models[model] = l
	}
	return l
}

// SetLimits replaces one model's quotas, effective for the next request.
// The model id is keyed as in Config.Models.
func (s *Server) SetLimits(model string, l Limits) {
	s.mu.Lock()
	s.modelLimits[model] = l
	lim, ok := s.models[model]
	s.mu.Unlock()
	if ok {
		lim.setLimits(l)
	}
}

// quotaKey is the model id a quota applies to: Bedrock meters an ARN's
// resource (foundation-model/<id> or inference-profile/<id>) the same as the
// bare id.
func quotaKey(modelID string) string {
	if i := strings.LastIndexByte(modelID, '/'); i >= 0 {
		return modelID[i+1:]
	}
	return modelID
}

// statusWriter remembers the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeJSON writes a complete JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only maps, slices, strings and numbers: cannot happen
		bedrock.Errorf(bedrock.InternalServer, "The server encountered an internal error while processing the request.").Write(w)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b) // a client that went away was already counted by the caller
}

// sleep waits for d or until ctx is done, whichever is first, so that a
// client that goes away stops the simulated work at once.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newUUID returns a random (version 4) UUID, the form of x-amzn-RequestId.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
