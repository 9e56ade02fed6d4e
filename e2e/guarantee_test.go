package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"
)

// The tenants of TestGuaranteeAcrossReplicas: steady holds a guarantee of
// half the pool, flood none.
const (
	steadyKeyID  = "QGAKE2ESTEADY0000001"
	steadySecret = "e2e-steady-secret-0123456789abcdefghij"
	floodKeyID   = "QGAKE2EFLOOD00000001"
	floodSecret  = "e2e-flood-secret-0123456789abcdefghijk"
	// Each tenant's requests name their own max tokens, so that the
	// simulator's log (which knows no tenants) tells them apart; the
	// simulator generates simOutputTokens (40) for both.
	steadyMaxTokens = 40
	floodMaxTokens  = 41
	guaranteeBudget = `models:
  %[1]s: {tpm: %[2]d, rpm: 100000, concurrency: 1000}
tenants:
  steady:
    access_keys: [{id: %[3]s, secret_env: STEADY_SECRET}]
    budgets:
      %[1]s: {guaranteed_tpm: %[4]d}
  flood:
    access_keys: [{id: %[5]s, secret_env: FLOOD_SECRET}]
`
)

// TestGuaranteeAcrossReplicas is the guaranteed-share proof end to end:
// three gateway processes on one Redis in front of a simulator with the
// pool's own quota. Tenant flood offers ten times the pool from the start;
// tenant steady is idle for the first window (so flood borrows its share
// too), then offers 1.2 times its guarantee (half the pool). A guarantee
// is granted in whole requests, so it is set at about 40 of them: one
// request less is under 3% of it. Measured from the simulator's own log
// over every sliding window from one window after steady started: steady
// gets at least 95% of its guarantee on average, the pool never exceeds
// its quota (no simulator throttle) and stays saturated.
func TestGuaranteeAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 45 seconds")
	}
	const (
		window    = 8 * time.Second
		tpm       = 24_000
		guarantee = 12_000
		idle      = 1 // windows of flood alone, borrowing steady's idle share
		warmup    = 1 // windows after steady starts, before measuring
		measured  = 3
	)
	redisURL, _, prefix, _ := sharedRedis(t)
	sim := startSimulator(t, simOptions{model: testModel, limits: limits{tpm: tpm, rpm: 100_000, concurrency: 1000}, window: window})
	budgets := filepath.Join(t.TempDir(), "budgets.yaml")
	if err := os.WriteFile(budgets, fmt.Appendf(nil, guaranteeBudget, testModel, tpm, steadyKeyID, guarantee, floodKeyID), 0o644); err != nil {
		t.Fatal(err)
	}
	gws := startGateways(t, gatewayOptions{
		replicas: 3, upstream: sim.url, budgetsFile: budgets, redisURL: redisURL, redisPrefix: prefix,
		window: window, maxWait: 0, leaseTTL: 30 * time.Second,
		extra: map[string]string{"STEADY_SECRET": steadySecret, "FLOOD_SECRET": floodSecret, "QUOTAGATE_REPLICAS": "3"},
	})

	// About 250 input tokens per request: large requests keep the request
	// rate (and the machine's load) modest at ten times the pool, yet a
	// guarantee of about 40 of them is granted finely enough.
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 22)
	converse := func(ctx context.Context, g *gateway, keyID, secret string, maxTokens int32) (*bedrockruntime.ConverseOutput, error) {
		return tenantClient(g.url, keyID, secret).Converse(ctx, &bedrockruntime.ConverseInput{
			ModelId:         aws.String(testModel),
			Messages:        []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: prompt}}}},
			InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(maxTokens)},
		})
	}
	// One call first, to learn what a request costs; the load's rates
	// follow from it.
	first, err := converse(context.Background(), gws[0], floodKeyID, floodSecret, floodMaxTokens)
	if err != nil {
		t.Fatal(err)
	}
	cost := int(*first.Usage.TotalTokens)

	var (
		wg                   sync.WaitGroup
		sent, ok429, unknown atomic.Int64
		rr                   atomic.Uint64
	)
	call := func(keyID, secret string, maxTokens int32) {
		defer wg.Done()
		g := gws[rr.Add(1)%uint64(len(gws))]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sent.Add(1)
		_, err := converse(ctx, g, keyID, secret, maxTokens)
		var ae smithy.APIError
		switch {
		case err == nil:
		case errors.As(err, &ae) && ae.ErrorCode() == "ThrottlingException":
			ok429.Add(1)
		default:
			unknown.Add(1)
			t.Errorf("unexpected error: %v", err)
		}
	}
	// pace sends one request per interval until end; the goroutines it
	// starts are waited for below.
	pace := func(rate float64, end time.Time, keyID, secret string, maxTokens int32) {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for now := range tick.C {
			if now.After(end) {
				return
			}
			wg.Add(1)
			go call(keyID, secret, maxTokens)
		}
	}
	start := time.Now()
	end := start.Add((idle + warmup + measured) * window)
	perSecond := func(tokens float64) float64 { return tokens / window.Seconds() / float64(cost) }
	var pacers sync.WaitGroup
	pacers.Go(func() { pace(perSecond(10*tpm), end, floodKeyID, floodSecret, floodMaxTokens) })
	pacers.Go(func() {
		time.Sleep(idle * window)
		pace(perSecond(1.2*guarantee), end, steadyKeyID, steadySecret, steadyMaxTokens)
	})
	pacers.Wait()
	wg.Wait()
	waitSimIdle(t, sim)

	recs := sim.log.served()
	from := start.Add((idle + warmup) * window)
	by := func(maxTokens int) func(simRecord) int {
		return func(r simRecord) int {
			if r.maxTokens != maxTokens {
				return 0
			}
			return r.served()
		}
	}
	steady := slidingWindows(recs, from, end, window, by(steadyMaxTokens))
	floodW := slidingWindows(recs, from, end, window, by(floodMaxTokens))
	pool := slidingWindows(recs, from, end, window, simRecord.served)
	whole := slidingWindows(recs, start, end, window, simRecord.served)
	lent := slidingWindows(recs, start, start.Add(window), window, by(floodMaxTokens))
	st := sim.Stats()
	t.Logf("%d calls (%d gateway throttles, %d other errors), ~%d tokens each; simulator throttles %d",
		sent.Load(), ok429.Load(), unknown.Load(), cost, st.Throttled)
	t.Logf("steady: mean %.0f, min %d of its guarantee %d per window (mean %.1f%%, min %.1f%%)",
		steady.mean, steady.min, guarantee, 100*steady.mean/guarantee, 100*float64(steady.min)/guarantee)
	t.Logf("flood: %d in the first window while steady was idle (%.1f%% of the pool), then mean %.0f per window; pool: mean %.0f, max %d of %d (%.1f%% mean)",
		lent.max, 100*float64(lent.max)/tpm, floodW.mean, pool.mean, whole.max, tpm, 100*pool.mean/tpm)
	if float64(lent.max) < 0.9*tpm {
		t.Errorf("flood got %d tokens while steady was idle, want at least 90%% of the pool: an idle guarantee is lent", lent.max)
	}
	if steady.mean < 0.95*guarantee {
		t.Errorf("steady got %.0f tokens per window on average, want at least 95%% of its guarantee %d", steady.mean, guarantee)
	}
	if st.Throttled > 0 {
		t.Errorf("the simulator throttled %d requests: the pool was over its quota", st.Throttled)
	}
	if whole.max > tpm {
		t.Errorf("the simulator served %d tokens in one window, over the pool's %d", whole.max, tpm)
	}
	if pool.mean < 0.9*tpm {
		t.Errorf("the pool served %.0f tokens per window on average, under 90%% of its %d: the guarantee must not idle it", pool.mean, tpm)
	}
}
