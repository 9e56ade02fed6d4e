package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/quotagate/quotagate/bedrocksim"
)

// goodputTarget is one target of the goodput route: its budget, which is
// also the simulator's quota for the model.
type goodputTarget struct {
	model  string
	limits limits
}

// The goodput route: the primary can carry a third of the load; the two
// fallbacks together have room for the rest and a third more.
const (
	goodputWindow = 5 * time.Second
	goodputRun    = 12 * time.Second // 2.4 windows of load per strategy
	goodputLoad   = 3.0              // offered load, in primary TPMs
	// goodputMaxTokens is what every call asks for: the simulator's
	// output length, so that a call's reservation (input + max tokens)
	// is exactly what it costs once settled, and the offered load is
	// known before it is served.
	goodputMaxTokens = simOutputTokens
	minServed        = 0.99
)

var goodputTargets = []goodputTarget{
	{haiku, limits{tpm: 6000, rpm: 600, concurrency: 16}},
	{llama, limits{tpm: 8000, rpm: 600, concurrency: 16}},
	{nova, limits{tpm: 8000, rpm: 600, concurrency: 16}},
}

// TestGoodputProof is the overflow promise measured end to end: three
// replicas on one Redis route Converse calls (real SDK clients, retries
// off, spread over the replicas, paced at three times the primary's TPM)
// over a primary and two fallbacks of other families, in front of a
// simulator whose per-model quotas equal the budgets, with short windows
// for speed. Under both strategies, read from the simulator's own
// accounting: at least 99% of the calls are served, Bedrock throttles
// nothing, no target ever sees more tokens in a window than its TPM, and
// under spread every target carries a share.
func TestGoodputProof(t *testing.T) {
	if testing.Short() {
		t.Skip("runs about 35 seconds")
	}
	ps := prompts(24)
	costs := countCosts(t, ps)
	for _, strategy := range []string{"spread", "priority"} {
		t.Run(strategy, func(t *testing.T) { runGoodput(t, strategy, ps, costs) })
	}
}

// goodputCall is one call as the client saw it.
type goodputCall struct {
	sent time.Time
	by   servedBy
	err  error
}

func runGoodput(t *testing.T, strategy string, ps []prompt, costs *costTable) {
	models := map[string]bedrocksim.Limits{}
	budgets := "models:\n"
	var targets []string
	for _, g := range goodputTargets {
		l := g.limits
		models[g.model] = bedrocksim.Limits{TPM: l.tpm, RPM: l.rpm, Concurrency: l.concurrency}
		budgets += fmt.Sprintf("  %s: {tpm: %d, rpm: %d, concurrency: %d}\n", g.model, l.tpm, l.rpm, l.concurrency)
		targets = append(targets, g.model)
	}
	budgets += fmt.Sprintf("routes:\n  %s: {strategy: %s, targets: [%s]}\n", haiku, strategy, strings.Join(targets, ", "))
	sim := startSim(t, bedrocksim.Config{Models: models, Window: goodputWindow}, nil)
	gws, rc, prefix := routedWindow(t, sim, replicas, budgets, nil, goodputWindow)

	// Pace the calls so that they offer goodputLoad primary TPMs per
	// window, priced as the simulator prices them (Anthropic's count of
	// the Converse input, plus the output).
	mean := 0.0
	for i := range ps {
		mean += float64(costs.converse[i] + goodputMaxTokens)
	}
	mean /= float64(len(ps))
	primary := goodputTargets[0].limits.tpm
	rate := goodputLoad * float64(primary) / goodputWindow.Seconds() / mean // calls per second

	var (
		mu    sync.Mutex
		calls []goodputCall
		wg    sync.WaitGroup
	)
	offered := 0
	start := time.Now()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	for i := 0; time.Since(start) < goodputRun; i++ {
		<-tick.C
		p := ps[i%len(ps)]
		offered += costs.converse[i%len(ps)] + goodputMaxTokens
		g := gws[i%len(gws)]
		wg.Go(func() {
			c := goodputCall{sent: time.Now()}
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			out, err := sdk(g.url).Converse(ctx, &bedrockruntime.ConverseInput{
				ModelId:         aws.String(haiku),
				Messages:        converseMessages(p),
				System:          converseSystem(p),
				InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(goodputMaxTokens)},
			})
			c.err = err
			if err == nil {
				c.by = served(out.ResultMetadata)
			} else {
				var re *smithyhttp.ResponseError
				if errors.As(err, &re) && re.Response != nil {
					c.by = servedFrom(re.Response.Header)
				}
			}
			mu.Lock()
			calls = append(calls, c)
			mu.Unlock()
		})
	}
	tick.Stop()
	stop := time.Now()
	wg.Wait()
	for _, g := range gws {
		if err := g.alive(); err != nil {
			t.Error(err)
		}
	}
	slots, unsettled := checkNoLeases(t, rc, prefix, leaseTTL)
	inflight := waitSimIdle(t, sim)

	// The figures.
	windows := stop.Sub(start).Seconds() / goodputWindow.Seconds()
	ok := 0
	attempts := map[int]int{}
	byModel := map[string]int{}
	var errs []string
	for _, c := range calls {
		attempts[c.by.attempts]++
		if c.err != nil {
			if len(errs) < 5 {
				errs = append(errs, c.err.Error())
			}
			continue
		}
		ok++
		byModel[c.by.model]++
	}
	st := sim.Stats()
	reasons := fallbacksBy(t, gws, "reason")
	t.Logf("strategy %s: %d calls in %s (%.1f windows of %s) at %.1f/s, ~%.0f tokens each, %d replicas",
		strategy, len(calls), stop.Sub(start).Round(time.Millisecond), windows, goodputWindow, rate, mean, len(gws))
	t.Logf("  offered load: %.0f tokens per window = %.2fx the primary's tpm %d; fallbacks' tpm %d",
		float64(offered)/windows, float64(offered)/windows/float64(primary), primary, goodputTargets[1].limits.tpm+goodputTargets[2].limits.tpm)
	t.Logf("  served: %d of %d (%.2f%%); simulator throttles %d (faults %d); errors %v",
		ok, len(calls), pct(ok, len(calls)), st.Throttled, st.Faults, errs)
	t.Logf("  %-42s %9s %9s %6s %9s %9s %9s", "target", "max win", "tpm", "use%", "requests", "served by", "throttled")
	for _, g := range goodputTargets {
		ms := st.Models[g.model]
		t.Logf("  %-42s %9d %9d %6.1f %9d %9d %9d", g.model, ms.MaxWindowTokens, g.limits.tpm, pct(ms.MaxWindowTokens, g.limits.tpm), ms.Requests, byModel[g.model], ms.Throttled)
	}
	t.Logf("  fallbacks by reason: %v; by target left: %v", reasons, fallbacksBy(t, gws, "from"))
	t.Logf("  attempts per call: %v", sortedCounts(attempts))
	t.Logf("  leases left: %d slots, %d unsettled; simulator in flight %d", slots, unsettled, inflight)

	// The verdict.
	if float64(offered)/windows < 0.9*goodputLoad*float64(primary) {
		t.Errorf("offered load: got %.0f tokens per window, want about %.0fx the primary's tpm %d: the run proves nothing about overflow", float64(offered)/windows, goodputLoad, primary)
	}
	if float64(ok) < minServed*float64(len(calls)) {
		t.Errorf("served: got %d of %d calls, want at least %.0f%%", ok, len(calls), 100*minServed)
	}
	if st.Throttled != 0 {
		t.Errorf("simulator throttles: got %d, want 0 (the budgets equal its quotas)", st.Throttled)
		explainThrottles(t, sim.log.all())
	}
	for _, g := range goodputTargets {
		ms := st.Models[g.model]
		if ms.MaxWindowTokens > g.limits.tpm {
			t.Errorf("%s: got %d tokens in one %s window, want <= its tpm %d", g.model, ms.MaxWindowTokens, goodputWindow, g.limits.tpm)
		}
		if ms.MaxWindowRequests > g.limits.rpm || ms.PeakConcurrency > g.limits.concurrency {
			t.Errorf("%s: got %d requests in a window and %d at once, want <= rpm %d and concurrency %d",
				g.model, ms.MaxWindowRequests, ms.PeakConcurrency, g.limits.rpm, g.limits.concurrency)
		}
		// Spread draws by headroom x weight: every target serves a
		// share, at least a third of its share of the route's capacity.
		if strategy == "spread" && float64(byModel[g.model]) < float64(ok)*float64(g.limits.tpm)/float64(routeTPM())/3 {
			t.Errorf("%s under spread: served %d of %d calls, want a share of the load", g.model, byModel[g.model], ok)
		}
	}
	// Under priority the primary is not left idle while calls overflow:
	// it serves about its tpm per window, a third of the calls.
	if strategy == "priority" {
		if share := float64(byModel[haiku]) / float64(max(ok, 1)); share < 0.75/goodputLoad {
			t.Errorf("primary under priority: served %.1f%% of the calls, want about %.0f%% (its tpm is 1/%.0f of the load)", 100*share, 100/goodputLoad, goodputLoad)
		}
	}
	if inflight != 0 {
		t.Errorf("simulator requests in flight after the run: got %d, want 0", inflight)
	}
}

func routeTPM() int {
	n := 0
	for _, g := range goodputTargets {
		n += g.limits.tpm
	}
	return n
}

// sortedCounts renders a distribution in key order.
func sortedCounts(m map[int]int) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%d:%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}
