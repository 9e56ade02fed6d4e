package tokens

import (
	"math"
	"sync"
)

// Calibrator corrects input-token estimates per model from the usage Bedrock
// reports. EstimateText is one heuristic for every tokenizer; each model's
// real tokenizer differs from it by a roughly stable factor (more for code
// and CJK, less for plain English), so a running ratio of actual to
// estimated input tokens, per model, removes most of the error. The zero
// value is ready to use, with a 5% safety margin.
type Calibrator struct {
	// Margin is added on top of the corrected estimate, so that reservations
	// err a little high (over-reserving is refunded at settle; under-
	// reserving lets a budget overshoot). Zero means 0.05; negative means none.
	Margin float64
	// Weight is how much one observation moves the running ratio, in (0,1];
	// zero means 0.05 (about the last 20 requests).
	Weight float64

	ratios sync.Map // model id -> *ratio
}

type ratio struct {
	mu sync.Mutex
	v  float64
	n  int64
}

// Ratio bounds: one odd request (a huge image, a cached prompt) must not
// swing the estimate for everyone.
const (
	minRatio = 0.25
	maxRatio = 4
)

// Estimate returns the calibrated estimate for raw input tokens of a model.
func (c *Calibrator) Estimate(model string, raw int) int {
	if raw <= 0 {
		return raw
	}
	r := 1.0
	if v, ok := c.ratios.Load(model); ok {
		rt := v.(*ratio)
		rt.mu.Lock()
		r = rt.v
		rt.mu.Unlock()
	}
	return int(math.Ceil(float64(raw) * r * (1 + c.margin())))
}

// Observe feeds back one request: the raw (uncalibrated) estimate and the
// input tokens Bedrock counted. It returns the relative error of the
// calibrated estimate that was used, (estimate-actual)/actual, for metrics.
func (c *Calibrator) Observe(model string, raw, actual int) float64 {
	if raw <= 0 || actual <= 0 {
		return 0
	}
	used := c.Estimate(model, raw)
	v, _ := c.ratios.LoadOrStore(model, &ratio{v: 1})
	rt := v.(*ratio)
	obs := min(max(float64(actual)/float64(raw), minRatio), maxRatio)
	rt.mu.Lock()
	w := c.weight()
	if rt.n < int64(1/w) {
		// Until enough requests were seen, average them equally: the first
		// observations say more than the prior of 1.
		w = 1 / float64(rt.n+1)
	}
	rt.v += w * (obs - rt.v)
	rt.n++
	rt.mu.Unlock()
	return float64(used-actual) / float64(actual)
}

// Ratio returns the current actual/estimate ratio of a model (1 when
// nothing was observed).
func (c *Calibrator) Ratio(model string) float64 {
	if v, ok := c.ratios.Load(model); ok {
		rt := v.(*ratio)
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return rt.v
	}
	return 1
}

func (c *Calibrator) margin() float64 {
	switch {
	case c.Margin == 0:
		return 0.05
	case c.Margin < 0:
		return 0
	}
	return c.Margin
}

func (c *Calibrator) weight() float64 {
	if c.Weight <= 0 || c.Weight > 1 {
		return 0.05
	}
	return c.Weight
}
