package e2e

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/redistest"
)

// TestRedisRestartMidRun kills the shared Redis in the middle of a
// saturating run and starts a new, empty one on the same port later, with
// the replicas in fail-open mode (QUOTAGATE_FAILURE_POLICY=fail-open,
// QUOTAGATE_REPLICAS=3).
//
// What it asserts, and why:
//   - every replica switches to its local share (quotagate_quota_degraded
//     is 1 on each while Redis is away) and calls keep being served: no
//     503, no other error;
//   - while degraded, the three local shares (limit/3 each) hold the fleet
//     within the budget: no window of the simulator's traffic that lies
//     wholly inside the outage carries more than the TPM or the RPM, and
//     no more than the concurrency limit are in progress at once;
//   - every replica switches back once Redis answers (the gauge returns to
//     0) and charges the new Redis again;
//   - no lease is left in the new Redis, and the simulator ends idle.
//
// Across each switch the budget cannot hold exactly: the counters are lost
// with the Redis process (nothing is persisted) and the local shares start
// empty, so a window that spans a switch may carry what the old store
// admitted plus what the new one admits: up to twice the budget. The
// simulator's quota is therefore twice the budget here, and the assertion
// that it throttles nothing checks that bound; the single-budget bound is
// checked inside the outage, from the simulator's own request log.
func TestRedisRestartMidRun(t *testing.T) {
	const (
		window  = 5 * time.Second
		killAt  = 6 * time.Second  // about one saturated window on Redis first
		startAt = 18 * time.Second // more than two windows without it
		runFor  = 26 * time.Second // then more than a window on the new Redis
		// settleIn is how long after the kill requests that Redis admitted
		// may still be arriving at the simulator; windows inside the
		// outage start after it.
		settleIn = 500 * time.Millisecond
	)
	budget := limits{tpm: 24_000, rpm: 400, concurrency: 12}
	simQuota := limits{tpm: 2 * budget.tpm, rpm: 2 * budget.rpm, concurrency: 2 * budget.concurrency}

	rs := redistest.StartServer(t)
	prefix := redistest.Prefix(t)
	sim := startSimulator(t, simOptions{model: testModel, limits: simQuota, window: window})
	gws := startGateways(t, gatewayOptions{
		replicas:    replicas,
		upstream:    sim.url,
		budgetsFile: writeBudgets(t, testModel, budget),
		redisURL:    "redis://" + rs.Addr(),
		redisPrefix: prefix,
		window:      window,
		maxWait:     maxWait,
		leaseTTL:    leaseTTL,
		extra: map[string]string{
			"QUOTAGATE_FAILURE_POLICY": "fail-open",
			"QUOTAGATE_REPLICAS":       "3",
		},
	})
	ps := prompts(24)
	costs := countCosts(t, ps)
	endpoints := make([]string, len(gws))
	for i, g := range gws {
		endpoints[i] = g.url
	}

	var outage atomic.Bool
	var killed, restarted time.Time
	degradedSeen := make([]float64, len(gws))
	sampled := false
	began := time.Now()
	rep := runLoad(t, loadOptions{
		endpoints: endpoints, clients: 96, duration: runFor, prompts: ps, costs: costs,
		onTick: func(elapsed time.Duration) {
			switch {
			case killed.IsZero() && elapsed >= killAt:
				rs.Stop()
				killed = time.Now()
				outage.Store(true)
			case !sampled && elapsed >= (killAt+startAt)/2:
				// Mid-outage: every replica has had many calls fail over.
				for i, g := range gws {
					v, err := g.metric("quotagate_quota_degraded")
					if err != nil {
						t.Errorf("%s: %v", g.name, err)
					}
					degradedSeen[i] = v
				}
				sampled = true
			case restarted.IsZero() && elapsed >= startAt:
				outage.Store(false)
				rs.Start()
				restarted = time.Now()
			}
		},
	}, outage.Load)

	// Right after the load, the new Redis must hold the pool's window: the
	// replicas charge it again. (The key expires a little over a window
	// after the last charge.)
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rc.Close()
	windowKeys := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	iter := rc.Scan(ctx, 0, prefix+"*:w", 100).Iterator()
	for iter.Next(ctx) {
		windowKeys++
	}
	cancel()

	// Each replica must have switched back: its probe runs every 250ms;
	// the bound only stops a broken switch from hanging the test.
	degradedAfter := make([]float64, len(gws))
	for i, g := range gws {
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := g.metric("quotagate_quota_degraded")
			degradedAfter[i] = v
			if err == nil && v == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, g := range gws {
		if err := g.alive(); err != nil {
			t.Error(err)
		}
	}
	slots, unsettled := checkNoLeases(t, rc, prefix, leaseTTL)
	inflight := waitSimIdle(t, sim)
	took := time.Since(began)
	redistest.DeleteByPrefix(t, rc, prefix)

	st := sim.Stats()
	ms := st.Models[testModel]
	recs := sim.log.served()
	from, to := killed.Add(settleIn), restarted
	inOutage := slidingWindows(recs, from, to, window, simRecord.served)
	reqsInOutage := slidingWindows(recs, from, to, window, func(simRecord) int { return 1 })
	peakInOutage := peakOverlap(recs, from, to)

	t.Logf("run: window %s, budget tpm %d rpm %d concurrency %d, simulator quota twice that; Redis killed at %s, restarted empty at %s, load %s; took %s",
		window, budget.tpm, budget.rpm, budget.concurrency, killed.Sub(rep.start).Round(time.Millisecond), restarted.Sub(rep.start).Round(time.Millisecond),
		rep.stop.Sub(rep.start).Round(time.Millisecond), took.Round(time.Second))
	t.Logf("gateway: %d calls sent, %d admitted and complete (%d of them started during the outage), %d cancelled mid-stream, %d throttled by the gateway, %d throttled by the simulator, %d other errors",
		rep.attempts, rep.byOutcome[admitted], rep.degradedServed, rep.byOutcome[cancelledByClient], rep.byOutcome[gatewayThrottled], rep.byOutcome[upstreamThrottled], rep.byOutcome[unexpected])
	t.Logf("degraded gauge: %v mid-outage, %v after the restart", degradedSeen, degradedAfter)
	t.Logf("inside the outage (%d windows from %s to %s): max tokens %d vs tpm %d, max requests %d vs rpm %d, peak concurrency %d vs %d",
		inOutage.windows, from.Sub(rep.start).Round(time.Millisecond), to.Sub(rep.start).Round(time.Millisecond),
		inOutage.max, budget.tpm, reqsInOutage.max, budget.rpm, peakInOutage, budget.concurrency)
	t.Logf("simulator: %d requests, %d throttled; max window tokens %d vs %d, max requests %d vs %d, peak concurrency %d vs %d",
		st.Total, st.Throttled, ms.MaxWindowTokens, simQuota.tpm, ms.MaxWindowRequests, simQuota.rpm, ms.PeakConcurrency, simQuota.concurrency)
	t.Logf("new Redis: %d window keys after the run; leases left: %d concurrency slots, %d unsettled; simulator in flight %d", windowKeys, slots, unsettled, inflight)
	for _, s := range rep.unexpectedSample {
		t.Logf("  unexpected: %s", s)
	}

	for i, v := range degradedSeen {
		if v != 1 {
			t.Errorf("%s quotagate_quota_degraded while Redis was down: got %v, want 1", gws[i].name, v)
		}
	}
	for i, v := range degradedAfter {
		if v != 0 {
			t.Errorf("%s quotagate_quota_degraded after Redis came back: got %v, want 0", gws[i].name, v)
		}
	}
	if rep.degradedServed == 0 {
		t.Errorf("calls served while Redis was down: got 0, want some (fail-open)")
	}
	if n := rep.byOutcome[unexpected]; n != 0 {
		t.Errorf("unexpected errors at the clients (503s included): got %d, want 0", n)
	}
	if inOutage.windows == 0 {
		t.Errorf("windows wholly inside the outage: got 0, want some")
	}
	if inOutage.max > budget.tpm {
		t.Errorf("tokens in one %s window inside the outage: got %d, want <= tpm %d (three local shares of a third)", window, inOutage.max, budget.tpm)
	}
	if reqsInOutage.max > budget.rpm {
		t.Errorf("requests in one %s window inside the outage: got %d, want <= rpm %d", window, reqsInOutage.max, budget.rpm)
	}
	if peakInOutage > budget.concurrency {
		t.Errorf("peak concurrency inside the outage: got %d, want <= %d", peakInOutage, budget.concurrency)
	}
	if st.Throttled != 0 || rep.byOutcome[upstreamThrottled] != 0 {
		t.Errorf("simulator throttles at twice the budget: got %d (%d seen by clients), want 0", st.Throttled, rep.byOutcome[upstreamThrottled])
		explainThrottles(t, sim.log.all())
	}
	if windowKeys == 0 {
		t.Errorf("window keys in the new Redis after the restart: got 0, want the pool's (the replicas did not charge it)")
	}
	if inflight != 0 {
		t.Errorf("simulator requests in flight after the run: got %d, want 0", inflight)
	}
}
