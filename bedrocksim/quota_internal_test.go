package bedrocksim

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// settled is one settled charge, kept by the test to check the limiter
// against a brute-force computation.
type settled struct {
	at             time.Time
	tokens, output int
}

// bruteMax is the largest sum of settled tokens and count of requests over
// every window (t-w, t], trying every charge time as t.
func bruteMax(log []settled, w time.Duration) (tokens, requests int) {
	for _, end := range log {
		sum, n := 0, 0
		for _, c := range log {
			if c.at.After(end.at.Add(-w)) && !c.at.After(end.at) {
				sum += c.tokens
				n++
			}
		}
		tokens, requests = max(tokens, sum), max(requests, n)
	}
	return tokens, requests
}

// TestLimiterMatchesBruteForce interleaves admissions and settles in random
// order on an injected clock and compares the limiter's window maxima with
// a brute-force computation over the whole history.
func TestLimiterMatchesBruteForce(t *testing.T) {
	const window = time.Minute
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 42))
		limits := Limits{TPM: 2000, RPM: 50, Concurrency: 8}
		if seed%2 == 1 {
			limits = Limits{} // many charges per window, many open at once
		}
		l := newLimiter(limits, window)
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		type open struct {
			c          *charge
			in, maxOut int
		}
		var inflight []open
		var log []settled
		for step := range 3000 {
			if step%599 == 0 {
				// Mid-run, open requests count nothing yet.
				wantTokens, wantRequests := bruteMax(log, window)
				if st := l.snapshot(); st.MaxWindowTokens != wantTokens || st.MaxWindowRequests != wantRequests {
					t.Fatalf("seed %d step %d: got max window %d tokens %d requests, want %d and %d", seed, step, st.MaxWindowTokens, st.MaxWindowRequests, wantTokens, wantRequests)
				}
			}
			now = now.Add(time.Duration(rng.IntN(900)) * time.Millisecond)
			if len(inflight) > 0 && (rng.IntN(2) == 0 || step > 2900) {
				i := rng.IntN(len(inflight))
				o := inflight[i]
				inflight = append(inflight[:i], inflight[i+1:]...)
				out := rng.IntN(o.maxOut + 1)
				l.settle(now, o.c, o.in, out)
				log = append(log, settled{at: o.c.at, tokens: o.in + out})
				continue
			}
			in, maxTokens := 1+rng.IntN(100), 1+rng.IntN(300)
			c, denied := l.admit(now, in, maxTokens)
			if denied == nil {
				inflight = append(inflight, open{c, in, maxTokens})
			}
		}
		for _, o := range inflight {
			l.settle(now, o.c, o.in, 0)
			log = append(log, settled{at: o.c.at, tokens: o.in})
		}
		wantTokens, wantRequests := bruteMax(log, window)
		if seed == 0 {
			t.Logf("settled %d, throttled %d, window max %d tokens %d requests", len(log), l.stats.Throttled, wantTokens, wantRequests)
		}
		st := l.snapshot()
		if st.MaxWindowTokens != wantTokens || st.MaxWindowRequests != wantRequests {
			t.Errorf("seed %d: got max window %d tokens %d requests, want %d and %d", seed, st.MaxWindowTokens, st.MaxWindowRequests, wantTokens, wantRequests)
		}
		if limits.TPM > 0 && (wantTokens > 2000 || wantRequests > 50 || st.PeakConcurrency > 8) {
			t.Errorf("seed %d: a window held %d tokens and %d requests, peak %d, want <= 2000, 50, 8", seed, wantTokens, wantRequests, st.PeakConcurrency)
		}
		// Everything is settled: what is kept is at most twice a window.
		if kept := len(l.charges); kept > 2*(wantRequests+1) {
			t.Errorf("seed %d: %d charges kept, want at most %d", seed, kept, 2*(wantRequests+1))
		}
	}
}

// TestLimiterWindowEdges checks the window's bounds: a charge exactly one
// window old no longer counts.
func TestLimiterWindowEdges(t *testing.T) {
	const window = time.Minute
	l := newLimiter(Limits{TPM: 100, OutputBurndown: 2}, window)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c, denied := l.admit(t0, 10, 45)
	if denied != nil {
		t.Fatalf("first: got %v, want admitted", denied)
	}
	if _, denied := l.admit(t0.Add(window-time.Nanosecond), 1, 0); denied == nil {
		t.Errorf("inside the window: got admitted, want throttled")
	}
	if _, denied := l.admit(t0.Add(window), 100, 0); denied != nil {
		t.Errorf("one window later: got %v, want admitted", denied)
	}
	l.settle(t0.Add(window), c, 10, 5)
	if st := l.snapshot(); st.MaxWindowTokens != 20 || st.InputTokens != 10 || st.OutputTokens != 5 {
		t.Errorf("after settle: got %+v, want 20 tokens in the window (10 + 5 x 2)", st)
	}
}

// TestLimiterClockStepsBack keeps the log sorted when the injected clock
// goes backwards.
func TestLimiterClockStepsBack(t *testing.T) {
	l := newLimiter(Limits{}, time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, _ := l.admit(t0, 10, 0)
	b, _ := l.admit(t0.Add(-time.Second), 10, 0)
	if l.charges[0] != b || l.charges[1] != a {
		t.Fatalf("charges: got %v, want sorted by time", l.charges)
	}
	l.settle(t0, a, 10, 0)
	l.settle(t0, b, 10, 0)
	if st := l.snapshot(); st.MaxWindowTokens != 20 {
		t.Errorf("MaxWindowTokens: got %d, want 20", st.MaxWindowTokens)
	}
}

// BenchmarkLimiter measures an admission and its settle on one model from
// many goroutines, with a window full of charges.
func BenchmarkLimiter(b *testing.B) {
	l := newLimiter(Limits{TPM: 1 << 40, RPM: 1 << 40}, time.Minute)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var tick atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := base.Add(time.Duration(tick.Add(1)) * time.Millisecond)
			c, denied := l.admit(now, 100, 200)
			if denied != nil {
				b.Fatal(denied)
			}
			l.settle(now, c, 100, 24)
		}
	})
}
