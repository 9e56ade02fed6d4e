package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// Settings shared by every run.
const (
	replicas = 3
	maxWait  = 2 * time.Second
	leaseTTL = 5 * time.Second
	// minOfferedRatio is how far beyond the budget the clients must ask for
	// the run to prove anything about saturation. Twice the budget already
	// keeps it saturated; the closed-loop clients offer less on a busy CI
	// machine (2.96x in one run with every package testing at once), so
	// the bar is set where the proof needs it, not where a quiet machine
	// lands.
	minOfferedRatio = 2.5
	// minGoodput is the promise: under saturation, admissions reach at
	// least 95% of the limit, as tokens per window over the saturated part
	// of the run.
	minGoodput = 0.95
	// embeddedClients is the number of clients against the embedded
	// miniredis fallback.
	embeddedClients = 24
)

// accuracyCase is one run of the accuracy proof.
type accuracyCase struct {
	window   time.Duration // TPM and RPM period, on the replicas and the simulator alike
	duration time.Duration // how long the clients ask for more than the budget
	limits   limits
	clients  int
}

// TestAccuracyShortWindows runs the proof with 5-second windows, about
// four of them, so that it is fast enough for every run of the suite.
func TestAccuracyShortWindows(t *testing.T) {
	runAccuracy(t, accuracyCase{
		window:   5 * time.Second,
		duration: 20 * time.Second,
		limits:   limits{tpm: 24_000, rpm: 400, concurrency: 12},
		clients:  96,
	})
}

// TestAccuracyRealMinutes runs the proof with the production window of 60
// seconds for two and a half minutes, the same request rate as the short
// run, so that a whole window slides over saturated traffic more than
// once. It is skipped with -short.
func TestAccuracyRealMinutes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 2.5 minutes of real 60-second windows; skipped with -short")
	}
	runAccuracy(t, accuracyCase{
		window:   time.Minute,
		duration: 150 * time.Second,
		limits:   limits{tpm: 288_000, rpm: 4_800, concurrency: 12},
		clients:  96,
	})
}

func runAccuracy(t *testing.T, c accuracyCase) {
	redisURL, rc, prefix, embedded := sharedRedis(t)
	var extra map[string]string
	minOffered := minOfferedRatio
	if embedded {
		// miniredis runs its Lua in this race-instrumented process, far
		// slower than redis-server: give its calls time, and ask less of it.
		extra = map[string]string{"QUOTAGATE_REDIS_TIMEOUT": "5s"}
		c.clients = min(c.clients, embeddedClients)
		// Fewer clients offer less; the gateway throttling at all (checked
		// below) is what shows the budget saturated.
		minOffered = 1.5
	}
	sim := startSimulator(t, simOptions{model: testModel, limits: c.limits, window: c.window})
	gws := startGateways(t, gatewayOptions{
		replicas:    replicas,
		upstream:    sim.url,
		budgetsFile: writeBudgets(t, testModel, c.limits),
		redisURL:    redisURL,
		redisPrefix: prefix,
		window:      c.window,
		maxWait:     maxWait,
		leaseTTL:    leaseTTL,
		extra:       extra,
	})
	ps := prompts(24)
	costs := countCosts(t, ps)
	endpoints := make([]string, len(gws))
	for i, g := range gws {
		endpoints[i] = g.url
	}

	began := time.Now()
	rep := runLoad(t, loadOptions{endpoints: endpoints, clients: c.clients, duration: c.duration, prompts: ps, costs: costs}, nil)
	for _, g := range gws {
		if err := g.alive(); err != nil {
			t.Error(err)
		}
	}
	slots, unsettled := checkNoLeases(t, rc, prefix, leaseTTL)
	inflight := waitSimIdle(t, sim)
	took := time.Since(began)

	st := sim.Stats()
	ms := st.Models[testModel]
	recs := sim.log.served()
	windows := float64(rep.stop.Sub(rep.start)) / float64(c.window)
	offered := float64(rep.offeredTokens) / (float64(c.limits.tpm) * windows)

	t.Logf("run: window %s, load %s (%.1f windows), %d replicas, %d clients, budget = simulator quota: tpm %d rpm %d concurrency %d; took %s",
		c.window, rep.stop.Sub(rep.start).Round(time.Millisecond), windows, replicas, c.clients, c.limits.tpm, c.limits.rpm, c.limits.concurrency, took.Round(time.Second))
	t.Logf("offered load: %d tokens reserved by %d calls = %.2fx the budget (%.0f tokens per window vs tpm %d)",
		rep.offeredTokens, rep.attempts, offered, float64(rep.offeredTokens)/windows, c.limits.tpm)
	t.Logf("gateway: %d calls sent, %d admitted and complete, %d cancelled by the client mid-stream, %d throttled by the gateway (x-quotagate-limit), %d throttled by the simulator, %d other errors; served by operation %v",
		rep.attempts, rep.byOutcome[admitted], rep.byOutcome[cancelledByClient], rep.byOutcome[gatewayThrottled], rep.byOutcome[upstreamThrottled], rep.byOutcome[unexpected], rep.byOp)
	t.Logf("simulator: %d requests, %d throttled (model %d), %d cancelled, served %d input + %d output tokens",
		st.Total, st.Throttled, ms.Throttled, st.Cancelled, ms.InputTokens, ms.OutputTokens)
	t.Logf("simulator windows: max tokens %d vs tpm %d (%.1f%%), max requests %d vs rpm %d, peak concurrency %d vs %d",
		ms.MaxWindowTokens, c.limits.tpm, pct(ms.MaxWindowTokens, c.limits.tpm), ms.MaxWindowRequests, c.limits.rpm, ms.PeakConcurrency, c.limits.concurrency)
	t.Logf("leases left: %d concurrency slots, %d unsettled leases in Redis; simulator in flight %d", slots, unsettled, inflight)
	for _, s := range rep.unexpectedSample {
		t.Logf("  unexpected: %s", s)
	}

	if offered < minOffered {
		t.Errorf("offered load: got %.2fx the budget, want at least %.1fx (the run proves nothing about saturation)", offered, minOffered)
	}
	if st.Throttled != 0 || ms.Throttled != 0 || rep.byOutcome[upstreamThrottled] != 0 {
		t.Errorf("simulator throttles: got %d (model %d; %d seen by clients), want 0", st.Throttled, ms.Throttled, rep.byOutcome[upstreamThrottled])
		explainThrottles(t, sim.log.all())
	}
	if ms.MaxWindowTokens > c.limits.tpm {
		t.Errorf("simulator max tokens in one %s window: got %d, want <= tpm %d", c.window, ms.MaxWindowTokens, c.limits.tpm)
	}
	if ms.MaxWindowRequests > c.limits.rpm {
		t.Errorf("simulator max requests in one %s window: got %d, want <= rpm %d", c.window, ms.MaxWindowRequests, c.limits.rpm)
	}
	if ms.PeakConcurrency > c.limits.concurrency {
		t.Errorf("simulator peak concurrency: got %d, want <= %d", ms.PeakConcurrency, c.limits.concurrency)
	}

	// Goodput is measured on the simulator's own per-request accounting:
	// every request it served, at its settled cost (input + output x
	// burndown), placed at its arrival, which is when the simulator charges
	// it. The saturated part of the run is from the first throttle the
	// gateway answered (from then on the clients ask for more than the
	// budget) to the end of the load. Sliding windows of the budget's
	// length, stepped by 1/200 of a window, cover it.
	//
	// The promise is a rate: the mean over those windows (the tokens
	// admitted over the saturated part, per window) must reach 95% of the
	// TPM. The leanest single window is logged but not asserted: a sliding
	// window replays the shape of the traffic it admitted one window
	// earlier, and capacity charged at t comes back only after the window
	// plus up to one bucket plus the time a waiter takes to notice, so a
	// burst of admissions (all clients start at once) comes back a little
	// later every window, and a window whose edge falls inside such a burst
	// misses that slice of it however good the limiter is.
	//
	// Served counts what the simulator generated. Admitted adds, for each
	// stream a client abandoned, the rest of its reservation (input + max
	// tokens), which the gateway keeps charged by design since Bedrock may
	// have generated it (README, "Reserve, then settle"); it is what the
	// budget really admitted, and what the 95% is asserted on.
	if os.Getenv("QUOTAGATE_E2E_TIMELINE") != "" {
		logTimeline(t, rep, recs, c.window/60)
	}
	if rep.firstThrottle.IsZero() {
		t.Errorf("the gateway never throttled: got 0 throttles, want the budget saturated (offered %.2fx)", offered)
		return
	}
	served := slidingWindows(recs, rep.firstThrottle, rep.stop, c.window, simRecord.served)
	charged := slidingWindows(recs, rep.firstThrottle, rep.stop, c.window, simRecord.charged)
	t.Logf("goodput over %d sliding windows from %s to %s of the run: admitted mean %.0f tokens per window (%.1f%% of tpm), served mean %.0f (%.1f%%); leanest window admitted %d (%.1f%%), served %d (%.1f%%) from %s",
		served.windows, rep.firstThrottle.Sub(rep.start).Round(time.Millisecond), rep.stop.Sub(rep.start).Round(time.Millisecond),
		charged.mean, 100*charged.mean/float64(c.limits.tpm), served.mean, 100*served.mean/float64(c.limits.tpm),
		charged.min, pct(charged.min, c.limits.tpm), served.min, pct(served.min, c.limits.tpm), charged.minAt.Sub(rep.start).Round(time.Millisecond))

	if want := minGoodput * float64(c.limits.tpm); charged.windows == 0 || charged.mean < want {
		t.Errorf("goodput under saturation: got %.0f tokens admitted per %s window (%.1f%% of tpm), want >= %.0f (%.0f%%)",
			charged.mean, c.window, 100*charged.mean/float64(c.limits.tpm), want, 100*minGoodput)
	}
	if n := rep.byOutcome[unexpected]; n != 0 {
		t.Errorf("unexpected errors at the clients: got %d, want 0", n)
	}
	if inflight != 0 {
		t.Errorf("simulator requests in flight after the run: got %d, want 0", inflight)
	}
}

// waitSimIdle waits for the simulator to finish every request (a stream a
// client abandoned ends when its cancellation arrives) and returns what is
// still in flight.
func waitSimIdle(t *testing.T, sim *simulator) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := sim.Stats().InFlight
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// explainThrottles logs, for each request the simulator throttled, the
// requests it had in progress then (arrival to the end of its log line,
// which follows the release of its concurrency slot), so that a failure
// says which path let the gateway admit too early.
func explainThrottles(t *testing.T, recs []simRecord) {
	shown := 0
	for _, r := range recs {
		if r.status != http.StatusTooManyRequests || shown == 3 {
			continue
		}
		shown++
		var lines []string
		for _, o := range recs {
			if o.status == http.StatusOK && !o.at.After(r.at) && !o.end.Before(r.at) {
				lines = append(lines, fmt.Sprintf("    %-30s arrived %9s before, ended %9s after; cancelled %t, output %d of max %d; request id %s",
					o.op, r.at.Sub(o.at).Round(time.Microsecond), o.end.Sub(r.at).Round(time.Microsecond), o.cancelled, o.output, o.maxTokens, o.id))
			}
		}
		t.Logf("simulator refused %s at %s (status %d); in progress then: %d requests\n%s",
			r.op, r.at.Format("15:04:05.000000"), r.status, len(lines), strings.Join(lines, "\n"))
	}
}

// logTimeline logs, per step of the run, what the simulator served (by
// arrival) and how often the gateway throttled: the shape behind the
// figures, for investigating a failure.
func logTimeline(t *testing.T, rep *loadReport, recs []simRecord, step time.Duration) {
	n := int(rep.stop.Sub(rep.start)/step) + 1
	served := make([]int, n)
	reqs := make([]int, n)
	thr := make([]int, n)
	for _, r := range recs {
		if i := int(r.at.Sub(rep.start) / step); i >= 0 && i < n {
			served[i] += r.served()
			reqs[i]++
		}
	}
	for _, at := range rep.throttles {
		if i := int(at.Sub(rep.start) / step); i >= 0 && i < n {
			thr[i]++
		}
	}
	for i := range n {
		t.Logf("timeline %8s: served %6d tokens in %3d requests, %4d throttles", (time.Duration(i) * step).String(), served[i], reqs[i], thr[i])
	}
}

func pct(a, b int) float64 { return 100 * float64(a) / float64(b) }
