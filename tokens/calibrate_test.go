package tokens

import (
	"math"
	"sync"
	"testing"
)

// TestCalibratorConverges: a model whose tokenizer counts 1.6x our heuristic
// ends up reserved at 1.6x plus the margin, and the reported error shrinks.
func TestCalibratorConverges(t *testing.T) {
	var c Calibrator
	if got := c.Estimate("m", 1000); got != 1050 {
		t.Fatalf("uncalibrated estimate = %d, want 1050 (5%% margin)", got)
	}
	first := c.Observe("m", 1000, 1600)
	var last float64
	for range 50 {
		last = c.Observe("m", 1000, 1600)
	}
	if math.Abs(c.Ratio("m")-1.6) > 0.01 {
		t.Errorf("ratio = %.3f, want 1.6", c.Ratio("m"))
	}
	if got := c.Estimate("m", 1000); got != 1680 {
		t.Errorf("calibrated estimate = %d, want 1680", got)
	}
	if !(first < -0.3 && math.Abs(last-0.05) < 0.01) {
		t.Errorf("estimate error went %.3f -> %.3f, want about -0.34 -> +0.05", first, last)
	}
	if got := c.Ratio("other"); got != 1 {
		t.Errorf("unrelated model ratio = %v, want 1", got)
	}
}

func TestCalibratorBoundsOutliers(t *testing.T) {
	c := Calibrator{Margin: -1}
	c.Observe("m", 10, 100000)
	if got := c.Ratio("m"); got != maxRatio {
		t.Errorf("ratio after an outlier = %v, want the bound %v", got, maxRatio)
	}
	if got := c.Observe("m", 0, 5); got != 0 {
		t.Errorf("Observe with no estimate = %v, want 0 (ignored)", got)
	}
}

func TestCalibratorConcurrent(t *testing.T) {
	var c Calibrator
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				c.Observe("m", 100, 120)
				_ = c.Estimate("m", 100)
			}
		})
	}
	wg.Wait()
	if math.Abs(c.Ratio("m")-1.2) > 0.01 {
		t.Errorf("ratio = %v, want 1.2", c.Ratio("m"))
	}
}
