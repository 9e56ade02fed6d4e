package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tenant"
)

const (
	llama = "meta.llama3-8b-instruct-v1:0"
	nova  = "amazon.nova-lite-v1:0"
)

// westResolver serves the "west" upstream: a second simulator that only
// accepts requests signed for us-west-2.
type westResolver struct {
	url *url.URL
	rt  http.RoundTripper
}

func (w westResolver) Resolve(_ context.Context, u quota.Upstream) (*url.URL, http.RoundTripper, error) {
	if u.Name != "west" {
		return nil, nil, errors.New("unknown upstream " + u.Name)
	}
	return w.url, w.rt, nil
}

// newWest starts the second region and wires it into h's gateway.
func newWest(t *testing.T, h *harness) *bedrocksim.Server {
	t.Helper()
	sim := bedrocksim.New(bedrocksim.Config{Region: "us-west-2"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	h.gateway.Upstreams = westResolver{url: u, rt: &proxy.Signer{
		Transport:   proxy.NewTransport(proxy.TransportOptions{}),
		Credentials: credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
		Region:      "us-west-2",
	}}
	return sim
}

// anthropicMessages is a Claude Messages body with a system prompt and two
// turns, as an app written for Claude sends it.
const anthropicMessages = `{"anthropic_version":"bedrock-2023-05-31","max_tokens":200,"system":"You are terse.",
"messages":[{"role":"user","content":"Name a colour."},{"role":"assistant","content":"Blue."},{"role":"user","content":"Another?"}]}`

type claudeAnswer struct {
	Type       string `json:"type"`
	Role       string `json:"role"`
	StopReason string `json:"stop_reason"`
	Content    []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Usage struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

// invokeClaude calls InvokeModel with a Claude Messages body, checks that
// the answer reads as a Claude message whoever served it, and returns it
// with the response headers.
func invokeClaude(ctx context.Context, t *testing.T, h *harness, model string) (claudeAnswer, http.Header) {
	t.Helper()
	out, err := h.client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(model), ContentType: aws.String("application/json"), Body: []byte(anthropicMessages),
	})
	if err != nil {
		t.Fatalf("InvokeModel %s: %v", model, err)
	}
	hdr := headersOf(t, out.ResultMetadata)
	var a claudeAnswer
	if err := json.Unmarshal(out.Body, &a); err != nil {
		t.Fatalf("the answer is not JSON: %v\n%s", err, out.Body)
	}
	if a.Type != "message" || a.Role != "assistant" || len(a.Content) != 1 || a.Content[0].Type != "text" || a.Content[0].Text == "" ||
		a.StopReason == "" || a.Usage.InputTokens == 0 || a.Usage.OutputTokens == 0 {
		t.Errorf("served by %s, the answer is not a Claude message: %s", hdr.Get("X-Quotagate-Served-Model"), out.Body)
	}
	return a, hdr
}

// headersOf returns the HTTP headers of an SDK call's response.
func headersOf(t *testing.T, md middleware.Metadata) http.Header {
	t.Helper()
	raw, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	if !ok {
		t.Fatalf("no raw HTTP response in the result metadata")
	}
	return raw.Header
}

// routed is a budgets file: haiku's pool is tiny, and its route overflows
// to the same model in another region, then to Llama and Nova.
const routed = `
models:
  anthropic.claude-3-haiku-20240307-v1:0: {tpm: 400}
upstreams:
  west: {region: us-west-2}
routes:
  anthropic.claude-3-haiku-20240307-v1:0:
    targets: [anthropic.claude-3-haiku-20240307-v1:0, meta.llama3-8b-instruct-v1:0, amazon.nova-lite-v1:0]
  claude-west:
    targets: ["anthropic.claude-3-haiku-20240307-v1:0@west"]
  anthropic.claude-3-sonnet-20240229-v1:0:
    targets: [amazon.nova-lite-v1:0]
`

// sonnet's route sends it to Nova only.
const sonnet = "anthropic.claude-3-sonnet-20240229-v1:0"

// unbudgeted routes haiku to Llama with no budget in the way.
var unbudgeted = haikuThenLlama(nil)

// haikuThenLlama is a budgets file whose route sends haiku's requests to
// haiku, then Llama; pools holds the models section's entries (id: limits).
func haikuThenLlama(pools map[string]string) string {
	var b strings.Builder
	if len(pools) > 0 {
		b.WriteString("models:\n")
		for _, id := range slices.Sorted(maps.Keys(pools)) {
			fmt.Fprintf(&b, "  %s: %s\n", id, pools[id])
		}
	}
	b.WriteString("routes:\n  " + haiku + ":\n    targets: [" + haiku + ", " + llama + "]\n")
	return b.String()
}

func TestOverflowBudgetDenialTranslatesToLlama(t *testing.T) {
	// Every answer uses all its max tokens, so a call costs its whole
	// reservation: 400 TPM holds one.
	h := newHarness(t, harnessOptions{budgets: routed, sim: bedrocksim.Config{OutputTokens: 1000}})
	ctx := testContext(t)
	var served []string
	for range 4 {
		_, hdr := invokeClaude(ctx, t, h, haiku)
		served = append(served, hdr.Get("X-Quotagate-Served-Model"))
	}
	// The first call is Claude's, the next overflow to Llama at once,
	// without waiting.
	if served[0] != haiku || served[1] != llama || served[3] != llama {
		t.Errorf("served by %v, want haiku first and then llama", served)
	}
	var sawLlama bool
	for _, rec := range h.sim.Requests() {
		if rec.ModelID == llama {
			sawLlama = true
			if !strings.Contains(string(rec.Body), `"prompt"`) || !strings.Contains(string(rec.Body), "<|start_header_id|>system") {
				t.Errorf("llama got a body not in its family: %s", rec.Body)
			}
		}
	}
	if !sawLlama {
		t.Error("the simulator never saw a Llama call")
	}
}

func TestOverflowStreamTranslatesFromNova(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: routed})
	ctx := testContext(t)
	want, hdr := invokeClaude(ctx, t, h, sonnet)
	if got := hdr.Get("X-Quotagate-Served-Model"); got != nova {
		t.Fatalf("served by %q, want %s", got, nova)
	}
	out, err := h.client.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(sonnet), ContentType: aws.String("application/json"), Body: []byte(anthropicMessages),
	})
	if err != nil {
		t.Fatal(err)
	}
	stream := out.GetStream()
	defer stream.Close()
	var kinds []string
	var text strings.Builder
	var outTokens int
	for ev := range stream.Events() {
		chunk, ok := ev.(*types.ResponseStreamMemberChunk)
		if !ok {
			t.Fatalf("unexpected event %T", ev)
		}
		var c struct {
			Type  string `json:"type"`
			Delta struct {
				Text string `json:"text"`
			} `json:"delta"`
			Usage struct {
				OutputTokens int `json:"output_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(chunk.Value.Bytes, &c); err != nil {
			t.Fatalf("chunk is not JSON: %v", err)
		}
		kinds = append(kinds, c.Type)
		text.WriteString(c.Delta.Text)
		if c.Type == "message_delta" {
			outTokens = c.Usage.OutputTokens
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(kinds) < 5 || kinds[0] != "message_start" || kinds[len(kinds)-1] != "message_stop" {
		t.Errorf("events %v, want Claude's message_start ... message_stop", kinds)
	}
	if text.String() != want.Content[0].Text {
		t.Errorf("streamed text %q, want the plain answer's %q", text.String(), want.Content[0].Text)
	}
	if outTokens != want.Usage.OutputTokens {
		t.Errorf("streamed output tokens %d, want %d", outTokens, want.Usage.OutputTokens)
	}
}

func TestOverflowOtherRegionIsResigned(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: routed})
	west := newWest(t, h)
	ctx := testContext(t)
	out, err := h.client.Converse(ctx, converseInput("claude-west"))
	if err != nil {
		t.Fatalf("Converse via west: %v", err)
	}
	hdr := headersOf(t, out.ResultMetadata)
	if hdr.Get("X-Quotagate-Served-Model") != haiku || hdr.Get("X-Quotagate-Served-Upstream") != "west" {
		t.Errorf("served-by headers %v", hdr)
	}
	if n := west.Stats().Requests["Converse"]; n != 1 {
		t.Errorf("west saw %d Converse calls, want 1", n)
	}
	if n := h.sim.Stats().Total; n != 0 {
		t.Errorf("the default upstream saw %d calls, want 0", n)
	}
}

func TestOverflowThrottleMovesOnAndCools(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: `
routes:
  anthropic.claude-3-haiku-20240307-v1:0:
    targets: [anthropic.claude-3-haiku-20240307-v1:0, amazon.nova-lite-v1:0]
`})
	h.gateway.Cooldown = quota.Cooldown{After: 2, Window: time.Minute, Cool: time.Minute}
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultThrottle, Times: 1000})
	ctx := testContext(t)
	for i := range 6 {
		out, err := h.client.Converse(ctx, converseInput(haiku))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		hdr := headersOf(t, out.ResultMetadata)
		wantAttempts := "2"
		if i >= 2 {
			wantAttempts = "1" // haiku is cooled down after two throttles
		}
		if hdr.Get("X-Quotagate-Served-Model") != nova || hdr.Get("X-Quotagate-Attempts") != wantAttempts {
			t.Errorf("call %d: served by %q in %q attempts, want %s in %s", i, hdr.Get("X-Quotagate-Served-Model"), hdr.Get("X-Quotagate-Attempts"), nova, wantAttempts)
		}
	}
	if n := h.sim.Stats().Faults; n != 2 {
		t.Errorf("haiku was throttled %d times, want 2 (then cooled down)", n)
	}
}

func TestOverflowStreamFirstFrameThrottleMovesOn(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: unbudgeted})
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultThrottleMidStream, AfterEvents: 0})
	ctx := testContext(t)
	out, err := h.client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
		ModelId: aws.String(haiku), Messages: converseInput(haiku).Messages,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := headersOf(t, out.ResultMetadata).Get("X-Quotagate-Served-Model"); got != llama {
		t.Errorf("served by %q, want %s", got, llama)
	}
	stream := out.GetStream()
	defer stream.Close()
	for range stream.Events() {
	}
	if err := stream.Err(); err != nil {
		t.Errorf("stream after the fallback: %v", err)
	}
}

func TestOverflowMidStreamFailureIsTyped(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: unbudgeted, sim: bedrocksim.Config{OutputTokens: 40}})
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultThrottleMidStream, AfterEvents: 2})
	ctx := testContext(t)
	out, err := h.client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
		ModelId: aws.String(haiku), Messages: converseInput(haiku).Messages,
	})
	if err != nil {
		t.Fatal(err)
	}
	stream := out.GetStream()
	defer stream.Close()
	n := 0
	for range stream.Events() {
		n++
	}
	var te *types.ThrottlingException
	if err := stream.Err(); !errors.As(err, &te) {
		t.Fatalf("after %d events the stream ended with %v, want a ThrottlingException", n, err)
	}
	if h.sim.Stats().Total != 1 {
		t.Errorf("the simulator saw %d calls: a started stream must not be retried", h.sim.Stats().Total)
	}
}

func TestOverflowNoTargetCanTakeTheRequest(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: `
routes:
  anthropic.claude-3-haiku-20240307-v1:0:
    targets: [meta.llama3-8b-instruct-v1:0]
`})
	body := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"stop_sequences":["END"],"messages":[{"role":"user","content":"hi"}]}`
	_, err := h.client.InvokeModel(testContext(t), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(haiku), ContentType: aws.String("application/json"), Body: []byte(body),
	})
	var ve *types.ValidationException
	if !errors.As(err, &ve) || !strings.Contains(ve.ErrorMessage(), "stop") {
		t.Fatalf("got %v, want a ValidationException naming the stop sequences", err)
	}
	if h.sim.Stats().Total != 0 {
		t.Error("an untranslatable request reached Bedrock")
	}
}

func TestOverflowChargesTheTargetUsed(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: haikuThenLlama(map[string]string{haiku: "{tpm: 100}", llama: "{tpm: 100000, concurrency: 5}"})})
	ctx := testContext(t)
	// The reservation (input + 200) never fits haiku's 100 TPM: served by
	// Llama, and charged there.
	a, _ := invokeClaude(ctx, t, h, haiku)
	h.logLine(t, "InvokeModel", haiku) // settled: the log line comes after
	ur := h.store.(quota.UsageReader)
	used, err := ur.Usage(ctx, quota.PoolBudget(llama, quota.Limits{}))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(a.Usage.InputTokens + a.Usage.OutputTokens); used.WindowTokens != want || used.InFlight != 0 {
		t.Errorf("llama's pool: %d tokens, %d in flight; want %d (what Bedrock counted) and 0", used.WindowTokens, used.InFlight, want)
	}
	tenantUse, err := ur.Usage(ctx, quota.TenantPoolBudget("default", llama, quota.Limits{}))
	if err != nil {
		t.Fatal(err)
	}
	if tenantUse.WindowTokens != used.WindowTokens {
		t.Errorf("the tenant's share of llama: %d tokens, want %d", tenantUse.WindowTokens, used.WindowTokens)
	}
	if primary, _ := ur.Usage(ctx, quota.PoolBudget(haiku, quota.Limits{})); primary.WindowTokens != 0 || primary.WindowRequests != 0 {
		t.Errorf("haiku's pool was charged %+v for a call it never served", primary)
	}
}

func TestOverflowAllTargetsFailRelaysBedrocksAnswer(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: haikuThenLlama(map[string]string{haiku: "{tpm: 100000, concurrency: 5}", llama: "{tpm: 100000, concurrency: 5}"})})
	h.gateway.RetryBase, h.gateway.RetryMax = time.Millisecond, 5*time.Millisecond
	h.sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultServiceUnavailable, Times: 100})
	ctx := testContext(t)
	_, err := h.client.Converse(ctx, converseInput(haiku))
	var su *types.ServiceUnavailableException
	if !errors.As(err, &su) {
		t.Fatalf("got %v, want Bedrock's ServiceUnavailableException", err)
	}
	if n := h.sim.Stats().Faults; n != proxy.DefaultMaxAttempts {
		t.Errorf("Bedrock was called %d times, want %d (the attempt limit)", n, proxy.DefaultMaxAttempts)
	}
	h.logLine(t, "Converse", haiku)
	ur := h.store.(quota.UsageReader)
	for _, m := range []string{haiku, llama} {
		u, _ := ur.Usage(ctx, quota.PoolBudget(m, quota.Limits{}))
		if u.WindowTokens != 0 || u.InFlight != 0 {
			t.Errorf("%s: %+v left charged after refusals", m, u)
		}
	}
}

func TestOverflowSpreadUsesEveryTarget(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: `
models:
  anthropic.claude-3-haiku-20240307-v1:0: {tpm: 1000000}
  amazon.nova-lite-v1:0: {tpm: 1000000}
routes:
  anthropic.claude-3-haiku-20240307-v1:0:
    strategy: spread
    targets: [anthropic.claude-3-haiku-20240307-v1:0, amazon.nova-lite-v1:0]
`})
	ctx := testContext(t)
	counts := map[string]int{}
	for range 40 {
		out, err := h.client.Converse(ctx, converseInput(haiku))
		if err != nil {
			t.Fatal(err)
		}
		counts[headersOf(t, out.ResultMetadata).Get("X-Quotagate-Served-Model")]++
	}
	// Equal weights and headroom: each target is drawn about half the
	// time; 40 draws leave both well above zero but for bad luck of 2^-39.
	if counts[haiku] == 0 || counts[nova] == 0 {
		t.Errorf("spread served %v, want both targets used", counts)
	}
}

// TestOverflowTenantRules: a tenant reaches only the targets it may call,
// and one that keeps to its family (cross_family: false) is never served
// by another.
func TestOverflowTenantRules(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: `
routes:
  anthropic.claude-3-haiku-20240307-v1:0:
    targets: [anthropic.claude-3-haiku-20240307-v1:0, meta.llama3-8b-instruct-v1:0, anthropic.claude-3-sonnet-20240229-v1:0]
`})
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("tenant-secret-0123456789abcdefghij"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := tenant.FromConfig(map[string]quota.TenantConfig{
		"strict": {AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKSTRICT0000000001", SecretFile: secret}}, NoCrossFamily: true},
		"claude": {AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKCLAUDE0000000001", SecretFile: secret}}, Models: []string{"anthropic.*"}},
	}, "file")
	if err != nil {
		t.Fatal(err)
	}
	h.gateway.Tenants = fixedTenants{dir}
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultThrottle, Times: 2})
	for _, id := range []string{"QGAKSTRICT0000000001", "QGAKCLAUDE0000000001"} {
		out, err := sdkClient(h.front.URL, id, "tenant-secret-0123456789abcdefghij").Converse(testContext(t), converseInput(haiku))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if got := headersOf(t, out.ResultMetadata).Get("X-Quotagate-Served-Model"); got != sonnet {
			t.Errorf("%s: served by %s, want %s (llama is another family, or not allowed)", id, got, sonnet)
		}
	}
}

// TestOverflowThrottledAttemptIsNotCounted: a request Bedrock throttled
// holds neither tokens nor a request in its target's window, as Bedrock
// does not count it either; the target that served is charged.
func TestOverflowThrottledAttemptIsNotCounted(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: haikuThenLlama(map[string]string{haiku: "{tpm: 100000, rpm: 10}", llama: "{tpm: 100000, rpm: 10}"})})
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultThrottle})
	ctx := testContext(t)
	if _, err := h.client.Converse(ctx, converseInput(haiku)); err != nil {
		t.Fatal(err)
	}
	h.logLine(t, "Converse", haiku)
	ur := h.store.(quota.UsageReader)
	if u, _ := ur.Usage(ctx, quota.PoolBudget(haiku, quota.Limits{})); u != (quota.Usage{}) {
		t.Errorf("haiku, throttled: %+v, want nothing counted", u)
	}
	if u, _ := ur.Usage(ctx, quota.PoolBudget(llama, quota.Limits{})); u.WindowRequests != 1 || u.WindowTokens == 0 {
		t.Errorf("llama, which served: %+v, want 1 request and its tokens", u)
	}
}

// TestOverflowAliasForRestrictedTenant: a tenant limited to Claude models
// may call an alias whose targets include one, and is served only by it.
func TestOverflowAliasForRestrictedTenant(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: `
routes:
  claude:
    targets: [anthropic.claude-3-haiku-20240307-v1:0, meta.llama3-8b-instruct-v1:0]
  llama-only:
    targets: [meta.llama3-8b-instruct-v1:0]
`})
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("tenant-secret-0123456789abcdefghij"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := tenant.FromConfig(map[string]quota.TenantConfig{
		"claude": {AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKCLAUDE0000000001", SecretFile: secret}}, Models: []string{"anthropic.*"}},
	}, "file")
	if err != nil {
		t.Fatal(err)
	}
	h.gateway.Tenants = fixedTenants{dir}
	h.gateway.RetryBase, h.gateway.RetryMax = time.Millisecond, 5*time.Millisecond
	h.gateway.Cooldown = quota.Cooldown{After: 100, Window: time.Minute, Cool: time.Minute}
	h.sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultThrottle, Times: proxy.DefaultMaxAttempts})
	c := sdkClient(h.front.URL, "QGAKCLAUDE0000000001", "tenant-secret-0123456789abcdefghij")
	// Haiku is throttled at every attempt and Llama is not the tenant's:
	// Bedrock's throttle is the answer, never a model the tenant may not
	// use.
	_, err = c.Converse(testContext(t), converseInput("claude"))
	var te *types.ThrottlingException
	if !errors.As(err, &te) {
		t.Fatalf("alias, haiku throttled: %v, want Bedrock's ThrottlingException", err)
	}
	out, err := c.Converse(testContext(t), converseInput("claude"))
	if err != nil {
		t.Fatalf("alias: %v", err)
	}
	if got := headersOf(t, out.ResultMetadata).Get("X-Quotagate-Served-Model"); got != haiku {
		t.Errorf("served by %s, want %s", got, haiku)
	}
	_, err = c.Converse(testContext(t), converseInput("llama-only"))
	var ad *types.AccessDeniedException
	if !errors.As(err, &ad) {
		t.Errorf("an alias with none of the tenant's models: %v, want AccessDeniedException", err)
	}
}

// upstreamOrder records the models an upstream transport was asked for.
type upstreamOrder struct {
	mu     sync.Mutex
	models []string
	rt     http.RoundTripper
}

func (o *upstreamOrder) RoundTrip(r *http.Request) (*http.Response, error) {
	m, _ := url.PathUnescape(strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/model/"), "/")[0])
	o.mu.Lock()
	o.models = append(o.models, m)
	o.mu.Unlock()
	return o.rt.RoundTrip(r)
}

// TestOverflowRetriesKeepPriorityOrder: after every target failed once,
// the next round starts again from the first (a round must not inherit
// the order the last one left).
func TestOverflowRetriesKeepPriorityOrder(t *testing.T) {
	rec := &upstreamOrder{}
	h := newHarness(t, harnessOptions{budgets: `
routes:
  anthropic.claude-3-haiku-20240307-v1:0:
    targets: [anthropic.claude-3-haiku-20240307-v1:0, meta.llama3-8b-instruct-v1:0, amazon.nova-lite-v1:0]
`, wrap: func(rt http.RoundTripper) http.RoundTripper { rec.rt = rt; return rec }})
	h.gateway.RetryBase, h.gateway.RetryMax = time.Millisecond, 2*time.Millisecond
	h.gateway.MaxAttempts = 6
	h.gateway.Cooldown = quota.Cooldown{After: 100, Window: time.Minute, Cool: time.Minute}
	h.sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultServiceUnavailable, Times: 100})
	_, err := h.client.Converse(testContext(t), converseInput(haiku))
	var su *types.ServiceUnavailableException
	if !errors.As(err, &su) {
		t.Fatalf("got %v, want Bedrock's last ServiceUnavailableException", err)
	}
	want := []string{haiku, llama, nova, haiku, llama, nova}
	if strings.Join(rec.models, " ") != strings.Join(want, " ") {
		t.Errorf("attempts went to %v, want %v", rec.models, want)
	}
}

// TestOverflowUntranslatableBodyIsValidation: a body its own family's
// parser lets through but translation cannot read is the caller's
// mistake (400), not a store outage (503, which SDKs retry).
func TestOverflowUntranslatableBodyIsValidation(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: haikuThenLlama(map[string]string{haiku: "{tpm: 10}"})})
	body := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"temperature":"hot","messages":[{"role":"user","content":"hi"}]}`
	resp := h.post(t, haikuPath+"/invoke", "application/json", []byte(body))
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Amzn-Errortype") != "ValidationException" {
		t.Errorf("got %d %s, want 400 ValidationException", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"))
	}
}

// TestOverflowLeavesOtherQueuesOnAdmission: a routed request refused by
// one target's budget and served by another gives up its place in the
// first's wait queue at once, rather than hold back that target's other
// callers for as long as its answer takes.
func TestOverflowLeavesOtherQueuesOnAdmission(t *testing.T) {
	h := newHarness(t, harnessOptions{budgets: `
models:
  anthropic.claude-3-haiku-20240307-v1:0: {tpm: 1000}
  meta.llama3-8b-instruct-v1:0: {tpm: 1000000}
routes:
  ab:
    targets: [anthropic.claude-3-haiku-20240307-v1:0, meta.llama3-8b-instruct-v1:0]
`, sim: bedrocksim.Config{OutputTokens: 5}})
	ctx := testContext(t)
	withMax := func(model string, n int32) *bedrockruntime.ConverseStreamInput {
		return &bedrockruntime.ConverseStreamInput{ModelId: aws.String(model), Messages: converseInput(model).Messages,
			InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(n)}}
	}
	// Two streams held open: one fills 600 of haiku's 1000 tokens; the
	// routed one (600 more) is refused there and served by Llama.
	var wg sync.WaitGroup
	defer wg.Wait() // after release, below
	release := h.sim.HoldStreams()
	defer release()
	for _, model := range []string{haiku, "ab"} {
		// A client per stream: the SDK's event decoder is not safe for two
		// streams of one client at once (smithy-go, found by -race here).
		out, err := newClient(h.front.URL).ConverseStream(ctx, withMax(model, 600))
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		wg.Go(func() {
			for range out.GetStream().Events() {
			}
			out.GetStream().Close()
		})
		if model == "ab" {
			if got := headersOf(t, out.ResultMetadata).Get("X-Quotagate-Served-Model"); got != llama {
				t.Fatalf("the routed stream was served by %s, want %s", got, llama)
			}
		}
	}
	// A small call fits in what haiku has left, with nobody waiting for it.
	if _, err := h.client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String(haiku), Messages: converseInput(haiku).Messages,
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(50)}}); err != nil {
		t.Errorf("a call that fits haiku while the routed one streams from Llama: %v", err)
	}
}
