package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/bedrocksim"
)

const haiku = "anthropic.claude-3-haiku-20240307-v1:0"
const haikuPath = "/model/anthropic.claude-3-haiku-20240307-v1%3A0"

// converseBody asks for maxTokens output tokens with a short prompt.
func converseBody(maxTokens int) string {
	return fmt.Sprintf(`{"messages":[{"role":"user","content":[{"text":"Name three colours."}]}],"inferenceConfig":{"maxTokens":%d}}`, maxTokens)
}

// TestBudgetThrottles: once a model's TPM is spent, the next request is a
// 429 ThrottlingException naming the budget, with Retry-After, and it never
// reaches Bedrock.
func TestBudgetThrottles(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    tpm: 300\n"})
	var admitted int
	var last *http.Response
	for i := range 20 {
		resp := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(200)))
		h.waitLogs(t, i+1) // settled: the access log line follows the settle
		if resp.StatusCode != http.StatusOK {
			last = resp
			break
		}
		if i == 0 {
			rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			if err != nil || rem <= 0 || rem >= 300 {
				t.Errorf("x-ratelimit-remaining-tokens = %q, want between 0 and 300", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			}
			if resp.Header.Get("X-Ratelimit-Reset-Tokens") == "" {
				t.Errorf("admitted response lacks x-ratelimit-reset-tokens")
			}
		}
		admitted++
	}
	if last == nil {
		t.Fatalf("20 requests of ~210 tokens all admitted under tpm 300")
	}
	if admitted < 2 {
		t.Errorf("admitted %d requests, want at least 2 (reservations of ~210 tokens, each settled to ~35 actual)", admitted)
	}
	if got, want := last.Header.Get("X-Quotagate-Limit"), "model="+haiku+" dim=tpm"; got != want {
		t.Errorf("x-quotagate-limit = %q, want %q", got, want)
	}
	// At most a window plus the one bucket the check conservatively spans.
	if ra, err := strconv.Atoi(last.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 61 {
		t.Errorf("Retry-After = %q, want 1..61 seconds", last.Header.Get("Retry-After"))
	}
	checkBedrockError(t, last, http.StatusTooManyRequests, bedrock.Throttling)
	if got := h.sim.Stats().Total; got != admitted {
		t.Errorf("simulator served %d, want only the %d admitted", got, admitted)
	}
	// The SDK sees the same throttle as a typed exception.
	in := converseInput(haiku)
	in.InferenceConfig.MaxTokens = aws.Int32(250)
	_, err := h.client.Converse(testContext(t), in)
	var te *types.ThrottlingException
	if !errors.As(err, &te) {
		t.Errorf("SDK got %T (%v), want *types.ThrottlingException", err, err)
	}
}

// TestSettleRefunds: a reservation of max tokens is replaced by the actual
// usage when the response ends, so the unused part is available again.
func TestSettleRefunds(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    tpm: 10000\n"})
	first := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(4000)))
	h.waitLogs(t, 1)
	second := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(10)))
	r1, _ := strconv.Atoi(first.Header.Get("X-Ratelimit-Remaining-Tokens"))
	r2, _ := strconv.Atoi(second.Header.Get("X-Ratelimit-Remaining-Tokens"))
	// After the first: 10000 - ~4010 reserved. After the second: the first
	// settled at ~35 actual, so 10000 - ~35 - ~20 reserved.
	if r1 > 6000 || r2 < 9800 {
		t.Errorf("remaining after 1st %d, after 2nd %d; want <= 6000 then >= 9800 (refund of the unused reservation)", r1, r2)
	}
	line := h.logLine(t, bedrock.Converse, haiku)
	if reserved, charged := intField(line, "reserved_tokens"), intField(line, "charged_tokens"); charged <= 0 || charged >= reserved {
		t.Errorf("access log reserved %d charged %d, want 0 < charged < reserved", reserved, charged)
	}
}

// TestPerRequestCaps: over a cap is a ValidationException, reserves nothing
// and forwards nothing.
func TestPerRequestCaps(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    tpm: 10000\n    max_output_tokens: 500\n    max_input_tokens: 50\n"})
	cases := map[string]string{
		"max tokens over the cap":     converseBody(501),
		"no max tokens (default>cap)": `{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`,
		"input over the cap":          `{"messages":[{"role":"user","content":[{"text":"` + strings.Repeat("many words here ", 40) + `"}]}],"inferenceConfig":{"maxTokens":10}}`,
	}
	for name, body := range cases {
		resp := h.post(t, haikuPath+"/converse", "application/json", []byte(body))
		t.Run(name, func(t *testing.T) { checkBedrockError(t, resp, http.StatusBadRequest, bedrock.Validation) })
	}
	h.waitLogs(t, len(cases))
	ok := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(10)))
	if rem, _ := strconv.Atoi(ok.Header.Get("X-Ratelimit-Remaining-Tokens")); rem < 9900 {
		t.Errorf("remaining %d after rejected requests, want nothing reserved by them", rem)
	}
	if got := h.sim.Stats().Total; got != 1 {
		t.Errorf("simulator served %d, want 1", got)
	}
}

// TestReservationLargerThanBudget: a request that could never fit is a
// ValidationException, not an endless throttle.
func TestReservationLargerThanBudget(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    tpm: 100\n"})
	resp := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(500)))
	checkBedrockError(t, resp, http.StatusBadRequest, bedrock.Validation)
}

// TestWaitsForBudget: with a max wait, a request that meets a spent budget
// waits for the window to free instead of failing.
func TestWaitsForBudget(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    rpm: 2\n", window: 2 * time.Second, maxWait: 10 * time.Second})
	for range 3 {
		if resp := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(10))); resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200 after waiting", resp.StatusCode)
		}
	}
	h.waitLogs(t, 3) // each line is written after its response
	var waited bool
	for _, l := range h.logLines(t) {
		if _, ok := l["quota_wait_ms"]; ok {
			waited = true
		}
	}
	if !waited {
		t.Errorf("no request waited, want the third to wait for the window")
	}
}

// TestLeaseReleasedOnEveryPath: concurrency 1, and the slot comes back after
// success, an upstream error, a client cancel mid-stream and a bad request.
func TestLeaseReleasedOnEveryPath(t *testing.T) {
	// A wait lets the request after a cancelled stream wait out the slot's
	// linger (the upstream may still be generating for a while).
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    concurrency: 1\n    tpm: 100000\n", maxWait: 10 * time.Second})
	ctx := testContext(t)
	next := func(step string) {
		t.Helper()
		if _, err := h.client.Converse(ctx, converseInput(haiku)); err != nil {
			t.Fatalf("after %s: %v (slot not released?)", step, err)
		}
	}
	next("nothing")
	next("success")
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultServiceUnavailable})
	if _, err := h.client.Converse(ctx, converseInput(haiku)); err == nil {
		t.Fatal("want the injected upstream error")
	}
	next("upstream error")

	release := h.sim.HoldStreams()
	cctx, cancel := context.WithCancel(ctx)
	out, err := h.client.ConverseStream(cctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: converseInput("").Messages})
	if err != nil {
		t.Fatal(err)
	}
	<-out.GetStream().Events()
	// While the stream holds the slot, another request is throttled: sent
	// to a second replica on the same store that does not wait.
	impatient := *h.gateway
	impatient.MaxWait = 0
	replica := httptest.NewServer(&impatient)
	defer replica.Close()
	_, err = newClient(replica.URL).Converse(ctx, converseInput(haiku))
	var te *types.ThrottlingException
	if !errors.As(err, &te) {
		t.Errorf("second concurrent request: got %v, want ThrottlingException (concurrency 1)", err)
	}
	cancel()
	out.GetStream().Close()
	release()
	waitFor(t, "the cancelled stream to settle", func() bool {
		for _, l := range h.logLines(t) {
			if l["operation"] == string(bedrock.ConverseStream) {
				return true
			}
		}
		return false
	})
	line := h.logLine(t, bedrock.ConverseStream, haiku)
	if intField(line, "charged_tokens") != intField(line, "reserved_tokens") {
		t.Errorf("a stream cut short was charged %d of %d reserved, want all of it (Bedrock may have generated them)", intField(line, "charged_tokens"), intField(line, "reserved_tokens"))
	}
	next("client cancel")
}

// TestChargeByHowFarTheRequestGot: a request that never reached Bedrock
// costs nothing; a stream Bedrock ended with an exception costs its whole
// reservation, since it may have generated more than it reported.
func TestChargeByHowFarTheRequestGot(t *testing.T) {
	const budgets = "models:\n  " + haiku + ":\n    tpm: 100000\n"
	dead := newHarness(t, harnessOptions{budgets: budgets, upstreamURL: "http://127.0.0.1:1"})
	resp := dead.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(4000)))
	checkBedrockError(t, resp, http.StatusBadGateway, bedrock.ServiceUnavailable)
	dead.waitLogs(t, 1)
	if line := dead.logLines(t)[0]; intField(line, "charged_tokens") != 0 || intField(line, "reserved_tokens") < 4000 {
		t.Errorf("unreachable upstream: reserved %d charged %d, want the reservation refunded in full", intField(line, "reserved_tokens"), intField(line, "charged_tokens"))
	}

	h := newHarness(t, harnessOptions{budgets: budgets})
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultStreamError, AfterEvents: 2})
	out, err := h.client.ConverseStream(testContext(t), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: converseInput("").Messages,
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(500)}})
	if err != nil {
		t.Fatal(err)
	}
	for range out.GetStream().Events() {
	}
	var mse *types.ModelStreamErrorException
	if err := out.GetStream().Err(); !errors.As(err, &mse) {
		t.Fatalf("got %v, want *types.ModelStreamErrorException", err)
	}
	h.waitLogs(t, 1)
	if line := h.logLines(t)[0]; intField(line, "charged_tokens") != intField(line, "reserved_tokens") {
		t.Errorf("stream ended by an exception: reserved %d charged %d, want all of it", intField(line, "reserved_tokens"), intField(line, "charged_tokens"))
	}
}

// TestARNDrawsOnTheModelsBudget: a foundation-model ARN is the same Bedrock
// quota as the bare id, so it must not step around the model's budget.
func TestARNDrawsOnTheModelsBudget(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: "models:\n  " + haiku + ":\n    rpm: 1\n"})
	if resp := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(10))); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: status %d", resp.StatusCode)
	}
	arn := "/model/" + bedrock.EscapeModelID("arn:aws:bedrock:us-east-1::foundation-model/"+haiku)
	resp := h.post(t, arn+"/converse", "application/json", []byte(converseBody(10)))
	checkBedrockError(t, resp, http.StatusTooManyRequests, bedrock.Throttling)
	if got := resp.Header.Get("X-Quotagate-Limit"); got != "model="+haiku+" dim=rpm" {
		t.Errorf("x-quotagate-limit = %q, want the model's own budget", got)
	}
}
