package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/quotagate/quotagate/bedrocksim"
)

// simulator is the upstream: a bedrocksim.Server on a loopback listener,
// with a log of every request it served, taken from the simulator's own
// accounting.
type simulator struct {
	*bedrocksim.Server
	url string
	log *simLog
}

// simOptions configure the simulator.
type simOptions struct {
	model  string
	limits limits
	window time.Duration
}

// The simulated model's speed: small, so that the run is short, but real,
// so that streams are streams (events arrive over about 100ms) and
// requests overlap.
const (
	simTTFT         = 20 * time.Millisecond
	simPerToken     = 2 * time.Millisecond
	simOutputTokens = 40
)

func startSimulator(t *testing.T, o simOptions) *simulator {
	t.Helper()
	log := &simLog{}
	sim := bedrocksim.New(bedrocksim.Config{
		Models: map[string]bedrocksim.Limits{
			o.model: {TPM: o.limits.tpm, RPM: o.limits.rpm, Concurrency: o.limits.concurrency},
		},
		Latency:      bedrocksim.Latency{TimeToFirstToken: simTTFT, PerOutputToken: simPerToken},
		OutputTokens: simOutputTokens,
		Window:       o.window,
		Logger:       slog.New(log),
	})
	srv := httptest.NewServer(&recorder{next: sim})
	t.Cleanup(srv.Close)
	return &simulator{Server: sim, url: srv.URL, log: log}
}

// simRecord is one request as the simulator served it.
type simRecord struct {
	at        time.Time // arrival, which is when the simulator charges it
	end       time.Time // when it logged the request, after settling its quota
	id        string    // x-amzn-RequestId
	op        string
	model     string // the model id the simulator served, as its quotas key it
	status    int
	input     int // input tokens as the simulator counts them
	output    int // output tokens generated (sent, for a cancelled stream)
	cancelled bool
	maxTokens int // from the request body
}

// served is what the request cost the simulator's quota once settled:
// input + output x burndown (burndown 1 here).
func (r simRecord) served() int { return r.input + r.output }

// charged is what the request cost the gateway's budget once settled. A
// cancelled stream keeps its whole reservation charged (README, "Reserve,
// then settle": Bedrock may have generated up to max tokens that nobody
// counted), which the simulator, knowing what it sent, does not.
func (r simRecord) charged() int {
	if r.cancelled {
		return r.input + r.maxTokens
	}
	return r.served()
}

type arrivalKey struct{}

type arrival struct {
	at        time.Time
	maxTokens int
}

// recorder notes each request's arrival and max tokens in its context,
// where simLog finds them when the simulator logs the request's end.
type recorder struct{ next http.Handler }

func (h *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := &arrival{at: time.Now()}
	body, err := io.ReadAll(r.Body)
	if err == nil {
		var b struct {
			MaxTokens       int `json:"max_tokens"` // Anthropic's native body
			InferenceConfig struct {
				MaxTokens int `json:"maxTokens"`
			} `json:"inferenceConfig"` // Converse
		}
		_ = json.Unmarshal(body, &b)
		a.maxTokens = max(b.MaxTokens, b.InferenceConfig.MaxTokens)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h.next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), arrivalKey{}, a)))
}

// simLog is a slog.Handler that keeps the simulator's per-request log line
// ("bedrock request") as records.
type simLog struct {
	mu   sync.Mutex
	recs []simRecord
}

func (l *simLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *simLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *simLog) WithGroup(string) slog.Handler            { return l }

func (l *simLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "bedrock request" {
		return nil
	}
	rec := simRecord{end: r.Time}
	var d time.Duration
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "operation":
			rec.op = a.Value.String()
		case "model":
			rec.model = a.Value.String()
		case "request_id":
			rec.id = a.Value.String()
		case "status":
			rec.status = int(a.Value.Int64())
		case "input_tokens":
			rec.input = int(a.Value.Int64())
		case "output_tokens":
			rec.output = int(a.Value.Int64())
		case "cancelled":
			rec.cancelled = a.Value.Bool()
		case "duration":
			d = a.Value.Duration()
		}
		return true
	})
	if a, ok := ctx.Value(arrivalKey{}).(*arrival); ok {
		rec.at, rec.maxTokens = a.at, a.maxTokens
	} else {
		rec.at = rec.end.Add(-d)
	}
	l.mu.Lock()
	l.recs = append(l.recs, rec)
	l.mu.Unlock()
	return nil
}

// all returns every request the simulator logged, in arrival order.
func (l *simLog) all() []simRecord {
	l.mu.Lock()
	out := slices.Clone(l.recs)
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b simRecord) int { return a.at.Compare(b.at) })
	return out
}

// served returns the requests the simulator admitted (status 200), in
// arrival order.
func (l *simLog) served() []simRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []simRecord
	for _, r := range l.recs {
		if r.status == http.StatusOK {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b simRecord) int { return a.at.Compare(b.at) })
	return out
}

// windowStats are the sums over the sliding windows [s, s+window) whose
// start s lies in [from, to-window], sampled every window/200, of
// cost(record) by arrival time.
type windowStats struct {
	windows  int
	min, max int
	mean     float64
	minAt    time.Time // start of the leanest window
}

func slidingWindows(recs []simRecord, from, to time.Time, window time.Duration, cost func(simRecord) int) windowStats {
	// Prefix sums by arrival: the sum over [s, e) is pre[j]-pre[i].
	at := make([]time.Time, len(recs))
	pre := make([]int, len(recs)+1)
	for i, r := range recs {
		at[i] = r.at
		pre[i+1] = pre[i] + cost(r)
	}
	idx := func(t time.Time) int { return sort.Search(len(at), func(i int) bool { return !at[i].Before(t) }) }
	var ws windowStats
	step := window / 200
	total := 0
	for s := from; !s.Add(window).After(to); s = s.Add(step) {
		sum := pre[idx(s.Add(window))] - pre[idx(s)]
		if ws.windows == 0 || sum < ws.min {
			ws.min, ws.minAt = sum, s
		}
		ws.max = max(ws.max, sum)
		total += sum
		ws.windows++
	}
	if ws.windows > 0 {
		ws.mean = float64(total) / float64(ws.windows)
	}
	return ws
}

// peakOverlap is the most requests in progress at the simulator at once
// (arrival to end) among those arriving in [from, to).
func peakOverlap(recs []simRecord, from, to time.Time) int {
	type edge struct {
		t     time.Time
		delta int
	}
	var es []edge
	for _, r := range recs {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		es = append(es, edge{r.at, 1}, edge{r.end, -1})
	}
	// Ends before starts at the same instant: a slot freed and retaken.
	slices.SortFunc(es, func(a, b edge) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	n, peak := 0, 0
	for _, e := range es {
		n += e.delta
		peak = max(peak, n)
	}
	return peak
}
