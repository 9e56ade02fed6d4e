package bedrocksim_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/quotagate/quotagate/bedrocksim"
)

const haiku = "anthropic.claude-3-haiku-20240307-v1:0"

// fixedClock is a quota clock that only moves when told.
type fixedClock struct{ ns atomic.Int64 }

func newFixedClock() *fixedClock {
	c := &fixedClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fixedClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fixedClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// converseHaiku asks for maxTokens output tokens with a short prompt. The
// simulator counts "hello" as 3 (message) + 2 (text) = 5 input tokens.
func converseHaiku(ctx context.Context, c *bedrockruntime.Client, maxTokens int32) error {
	_, err := c.Converse(ctx, &bedrockruntime.ConverseInput{
		ModelId:         aws.String(haiku),
		Messages:        userText("hello"),
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(maxTokens)},
	})
	return err
}

const helloInput = 5

func throttled(t *testing.T, err error, msg string) {
	t.Helper()
	var te *types.ThrottlingException
	if !errors.As(err, &te) {
		t.Fatalf("got %v, want *types.ThrottlingException", err)
	}
	if !strings.Contains(te.ErrorMessage(), msg) {
		t.Errorf("message: got %q, want %q", te.ErrorMessage(), msg)
	}
}

func TestRPM(t *testing.T) {
	clock := newFixedClock()
	sim, ts := start(t, bedrocksim.Config{Models: map[string]bedrocksim.Limits{haiku: {RPM: 2}}, Now: clock.now})
	c := client(ts.URL)
	for i := range 2 {
		if err := converseHaiku(t.Context(), c, 50); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	throttled(t, converseHaiku(t.Context(), c, 50), "Too many requests, please wait before trying again.")

	clock.advance(time.Minute) // the first two leave the window
	if err := converseHaiku(t.Context(), c, 50); err != nil {
		t.Fatalf("after a minute: got %v, want success", err)
	}
	st := sim.Stats()
	if st.Throttled != 1 || st.Models[haiku].Throttled != 1 || st.Models[haiku].Requests != 4 {
		t.Errorf("Stats: got %d throttled (model %+v), want 1 of 4", st.Throttled, st.Models[haiku])
	}
	if got := st.Models[haiku].MaxWindowRequests; got != 2 {
		t.Errorf("MaxWindowRequests: got %d, want 2", got)
	}
}

func TestTPMAndSettleRefund(t *testing.T) {
	clock := newFixedClock()
	sim, ts := start(t, bedrocksim.Config{Models: map[string]bedrocksim.Limits{haiku: {TPM: 1000}}, Now: clock.now})
	c := client(ts.URL)

	// Reserves 5 + 900 = 905 of 1000 and settles to 5 + 24 = 29.
	if err := converseHaiku(t.Context(), c, 900); err != nil {
		t.Fatal(err)
	}
	// Fits only because the first was refunded: 29 + 905 <= 1000.
	if err := converseHaiku(t.Context(), c, 900); err != nil {
		t.Fatalf("after settle: got %v, want the refund to leave room", err)
	}
	// 58 + 5 + 940 > 1000.
	throttled(t, converseHaiku(t.Context(), c, 940), "Too many tokens, please wait before trying again.")
	// A reservation larger than the whole quota never fits.
	clock.advance(2 * time.Minute)
	throttled(t, converseHaiku(t.Context(), c, 1000), "Too many tokens")

	ms := sim.Stats().Models[haiku]
	if want := 2 * (helloInput + 24); ms.MaxWindowTokens != want {
		t.Errorf("MaxWindowTokens: got %d, want %d (settled, not reserved)", ms.MaxWindowTokens, want)
	}
	if ms.InputTokens != 2*helloInput || ms.OutputTokens != 48 || ms.Throttled != 2 {
		t.Errorf("model stats: got %+v, want 2 served requests and 2 throttled", ms)
	}
}

func TestBurndown(t *testing.T) {
	clock := newFixedClock()
	sim, ts := start(t, bedrocksim.Config{Default: bedrocksim.Limits{TPM: 1000, OutputBurndown: 5}, Now: clock.now})
	c := client(ts.URL)

	// 5 + 200 x 5 = 1005 > 1000: the reservation burns max tokens 5x too.
	throttled(t, converseHaiku(t.Context(), c, 200), "Too many tokens")
	// 5 + 150 x 5 = 755 fits, and settles to 5 + 24 x 5 = 125.
	if err := converseHaiku(t.Context(), c, 150); err != nil {
		t.Fatal(err)
	}
	ms := sim.Stats().Models[haiku]
	if want := helloInput + 24*5; ms.MaxWindowTokens != want {
		t.Errorf("MaxWindowTokens: got %d, want %d", ms.MaxWindowTokens, want)
	}
	if ms.OutputTokens != 24 {
		t.Errorf("OutputTokens: got %d, want the 24 served, not burned", ms.OutputTokens)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{Default: bedrocksim.Limits{Concurrency: 1}})
	c := client(ts.URL)
	release := sim.HoldStreams()
	defer release()

	st, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: userText("hello")})
	if err != nil {
		t.Fatal(err)
	}
	events := st.GetStream().Events()
	if _, ok := <-events; !ok { // the first event: the stream now holds its slot
		t.Fatalf("no first event: %v", st.GetStream().Err())
	}
	throttled(t, converseHaiku(t.Context(), c, 50), "Too many requests")

	release()
	for range events {
	}
	if err := st.GetStream().Err(); err != nil {
		t.Fatal(err)
	}
	// The client sees the end of a stream only after the handler returned,
	// so the slot is free now.
	if err := converseHaiku(t.Context(), c, 50); err != nil {
		t.Errorf("after the stream ended: got %v, want success", err)
	}
	if got := sim.Stats().Models[haiku].PeakConcurrency; got != 1 {
		t.Errorf("PeakConcurrency: got %d, want 1", got)
	}
}

// TestWindowNeverExceedsTPM drives one model from many goroutines while the
// quota clock moves forward, and checks that no window ever held more than
// the quota, and that the quota was actually used.
func TestWindowNeverExceedsTPM(t *testing.T) {
	var ticks atomic.Int64
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Every reading moves the clock 100ms, so 600 requests span about two
	// minutes and the window slides.
	now := func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * 100 * time.Millisecond) }
	const tpm, rpm = 1200, 60
	sim, ts := start(t, bedrocksim.Config{Default: bedrocksim.Limits{TPM: tpm, RPM: rpm}, Now: now})
	c := client(ts.URL)

	const workers, perWorker = 12, 50
	var ok, denied atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				err := converseHaiku(t.Context(), c, 60) // reserves 65, settles to 29
				var te *types.ThrottlingException
				switch {
				case err == nil:
					ok.Add(1)
				case errors.As(err, &te):
					denied.Add(1)
				default:
					t.Errorf("request: %v", err)
				}
			}
		})
	}
	wg.Wait()

	ms := sim.Stats().Models[haiku]
	t.Logf("admitted %d, throttled %d, %+v", ok.Load(), denied.Load(), ms)
	if ok.Load() == 0 || denied.Load() == 0 {
		t.Fatalf("got %d admitted and %d throttled, want both", ok.Load(), denied.Load())
	}
	if ms.MaxWindowTokens > tpm || ms.MaxWindowTokens == 0 {
		t.Errorf("MaxWindowTokens: got %d, want 0 < it <= %d", ms.MaxWindowTokens, tpm)
	}
	if ms.MaxWindowRequests > rpm || ms.MaxWindowRequests == 0 {
		t.Errorf("MaxWindowRequests: got %d, want 0 < it <= %d", ms.MaxWindowRequests, rpm)
	}
	if ms.Requests != workers*perWorker || ms.Throttled != int(denied.Load()) {
		t.Errorf("model stats: got %+v, want %d requests, %d throttled", ms, workers*perWorker, denied.Load())
	}
}

func TestSetLimits(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	c := client(ts.URL)
	if err := converseHaiku(t.Context(), c, 50); err != nil {
		t.Fatal(err)
	}
	sim.SetLimits(haiku, bedrocksim.Limits{RPM: 1})
	throttled(t, converseHaiku(t.Context(), c, 50), "Too many requests")
	sim.SetLimits(haiku, bedrocksim.Limits{})
	if err := converseHaiku(t.Context(), c, 50); err != nil {
		t.Errorf("limits lifted: got %v, want success", err)
	}
}
