package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/bedrocksim"
)

// The models of the overflow tests, one per family the routes cross.
const (
	haiku  = testModel // Anthropic, the usual primary
	haiku2 = "anthropic.claude-3-5-haiku-20241022-v1:0"
	llama  = otherModel // Meta Llama
	nova   = "amazon.nova-lite-v1:0"
)

// The routed tests share a simple budgets shape: every pool far from full
// (the tests are about where requests go, not how many), unless a test
// says otherwise.
const roomyPools = `models:
  %[1]s: {tpm: 1000000, rpm: 10000}
  %[2]s: {tpm: 1000000, rpm: 10000}
  %[3]s: {tpm: 1000000, rpm: 10000}
  %[4]s: {tpm: 1000000, rpm: 10000}
`

func roomy() string { return fmt.Sprintf(roomyPools, haiku, haiku2, llama, nova) }

// startSim starts a simulator configured by cfg, logging into a simLog
// like startSimulator's, with the e2e model speed unless cfg sets one. wrap,
// when set, wraps the simulator's handler (e.g. STS.RequireSessionToken).
func startSim(t *testing.T, cfg bedrocksim.Config, wrap func(http.Handler) http.Handler) *simulator {
	t.Helper()
	log := &simLog{}
	if cfg.Latency == (bedrocksim.Latency{}) {
		cfg.Latency = bedrocksim.Latency{TimeToFirstToken: simTTFT, PerOutputToken: simPerToken}
	}
	if cfg.OutputTokens == 0 {
		cfg.OutputTokens = simOutputTokens
	}
	cfg.Logger = slog.New(log)
	sim := bedrocksim.New(cfg)
	var h http.Handler = &recorder{next: sim}
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &simulator{Server: sim, url: srv.URL, log: log}
}

// routed starts n replicas in front of sim with the budgets file body, on
// the shared Redis, and returns them with the test's Redis client and
// prefix.
func routed(t *testing.T, sim *simulator, n int, budgets string, extra map[string]string) ([]*gateway, *redis.Client, string) {
	t.Helper()
	return routedWindow(t, sim, n, budgets, extra, time.Minute)
}

// routedWindow is routed with budgets over window.
func routedWindow(t *testing.T, sim *simulator, n int, budgets string, extra map[string]string, window time.Duration) ([]*gateway, *redis.Client, string) {
	t.Helper()
	redisURL, rc, prefix, embedded := sharedRedis(t)
	path := filepath.Join(t.TempDir(), "budgets.yaml")
	if err := os.WriteFile(path, []byte(budgets), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	if embedded {
		env["QUOTAGATE_REDIS_TIMEOUT"] = "5s"
	}
	maps.Copy(env, extra)
	gws := startGateways(t, gatewayOptions{
		replicas: n, upstream: sim.url, budgetsFile: path, redisURL: redisURL, redisPrefix: prefix,
		window: window, maxWait: 2 * time.Second, leaseTTL: leaseTTL, extra: env,
	})
	return gws, rc, prefix
}

// sdkTransport is shared by the SDK clients of these tests, so that
// connections are reused across the clients made per call.
var sdkTransport = func() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 512, 256
	return tr
}()

// sdk is a real Bedrock Runtime client of the gateway at endpoint, with the
// SDK's retries off so that every answer the test sees is the gateway's.
// Make one per call when calls stream concurrently (aws/smithy-go#714, see
// runLoad).
func sdk(endpoint string) *bedrockruntime.Client {
	return bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDE2ECLIENT0000001", "e2e-client-secret", ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   bedrocksim.BufferedBodyClient{Client: &http.Client{Transport: sdkTransport}},
	})
}

// servedBy reads the gateway's routing headers from an SDK call's raw
// response.
type servedBy struct {
	model, upstream string
	attempts        int
}

func (s servedBy) String() string {
	u := ""
	if s.upstream != "" {
		u = "@" + s.upstream
	}
	return fmt.Sprintf("%s%s after %d attempts", s.model, u, s.attempts)
}

func served(md middleware.Metadata) servedBy {
	raw, _ := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	if raw == nil || raw.Response == nil {
		return servedBy{}
	}
	return servedFrom(raw.Header)
}

func servedFrom(h http.Header) servedBy {
	n, _ := strconv.Atoi(h.Get("X-Quotagate-Attempts"))
	return servedBy{model: h.Get("X-Quotagate-Served-Model"), upstream: h.Get("X-Quotagate-Served-Upstream"), attempts: n}
}

// callsTo returns the requests the simulator logged for model.
func callsTo(sim *simulator, model string) []simRecord {
	var out []simRecord
	for _, r := range sim.log.all() {
		if r.model == model {
			out = append(out, r)
		}
	}
	return out
}

// recorded returns the simulator's last recorded request for model and
// operation, with its body as the gateway sent it.
func recorded(t *testing.T, sim *simulator, model string, op bedrock.Operation) bedrocksim.Recorded {
	t.Helper()
	reqs := sim.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].ModelID == model && reqs[i].Operation == op {
			return reqs[i]
		}
	}
	t.Fatalf("the simulator recorded no %s call to %s", op, model)
	return bedrocksim.Recorded{}
}

// cooling reports whether pool is cooled down in Redis, on the server's
// clock, as cooldown.lua keeps it: <prefix>{<pool>}:cool "until" in Unix ms.
func cooling(t *testing.T, rc *redis.Client, prefix, pool string) bool {
	t.Helper()
	c, err := coolingErr(rc, prefix, pool)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// coolingErr is cooling for goroutines other than the test's.
func coolingErr(rc *redis.Client, prefix, pool string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now, err := rc.Time(ctx).Result()
	if err != nil {
		return false, fmt.Errorf("redis TIME: %w", err)
	}
	until, err := rc.HGet(ctx, prefix+"{"+pool+"}:cool", "until").Int64()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the cooldown of %s: %w", pool, err)
	}
	return until > now.UnixMilli(), nil
}

// fallbackSeries returns the quotagate_fallbacks_total series on a
// replica's /metrics, keyed by their labels.
func fallbackSeries(g *gateway) (map[string]float64, error) {
	const name = "quotagate_fallbacks_total"
	status, body, err := httpGet(g.url + "/metrics")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: status %d", g.name, status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(series, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(series, name)] += v
	}
	return out, sc.Err()
}

// label reads one label's value from a series' {a="x",b="y"} part.
func label(labels, name string) string {
	_, rest, ok := strings.Cut(labels, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// fallbacksBy sums the replicas' fallback counts by one label.
func fallbacksBy(t *testing.T, gws []*gateway, by string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, g := range gws {
		s, err := fallbackSeries(g)
		if err != nil {
			t.Errorf("scraping %s: %v", g.name, err)
			continue
		}
		for labels, v := range s {
			out[label(labels, by)] += v
		}
	}
	return out
}

// anthropicConversation is an Anthropic Messages body with a system
// prompt and two turns of conversation before the question.
func anthropicConversation(maxTokens int) []byte {
	b, _ := json.Marshal(map[string]any{
		"anthropic_version": "bedrock-2023-05-31",
		"max_tokens":        maxTokens,
		"system":            "You answer in one short paragraph about rate limits.",
		"messages": []map[string]any{
			{"role": "user", "content": "What does a token bucket do?"},
			{"role": "assistant", "content": [](map[string]string){{"type": "text", "text": "It lets requests through at a steady rate, with some burst."}}},
			{"role": "user", "content": [](map[string]string){{"type": "text", "text": "And a sliding window over a minute of tokens?"}}},
		},
	})
	return b
}

// anthropicMessage is the Anthropic Messages response body.
type anthropicMessage struct {
	Type       string `json:"type"`
	Role       string `json:"role"`
	Content    []struct{ Type, Text string }
	StopReason string `json:"stop_reason"`
	Usage      struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

// anthropicStream is what an Anthropic InvokeModelWithResponseStream
// carried, read from its chunks.
type anthropicStream struct {
	types         []string // the event types, in order
	text          string   // the text deltas, concatenated
	inputTokens   int      // message_start's usage
	finalInput    int      // message_delta's input_tokens, when it has them
	outputTokens  int      // message_delta's usage
	stopReason    string
	metricsInput  int // amazon-bedrock-invocationMetrics on the last chunk
	metricsOutput int
}

func readAnthropicStream(t *testing.T, st *bedrockruntime.InvokeModelWithResponseStreamEventStream) anthropicStream {
	t.Helper()
	defer st.Close()
	var s anthropicStream
	for ev := range st.Events() {
		ch, ok := ev.(*types.ResponseStreamMemberChunk)
		if !ok {
			t.Fatalf("stream event %T, want a chunk", ev)
		}
		var c struct {
			Type    string `json:"type"`
			Message struct {
				Role  string `json:"role"`
				Usage struct {
					InputTokens int `json:"input_tokens"`
				} `json:"usage"`
			} `json:"message"`
			Delta struct {
				Type       string `json:"type"`
				Text       string `json:"text"`
				StopReason string `json:"stop_reason"`
			} `json:"delta"`
			Usage struct {
				InputTokens  *int `json:"input_tokens"`
				OutputTokens int  `json:"output_tokens"`
			} `json:"usage"`
			Metrics *struct {
				InputTokenCount  int `json:"inputTokenCount"`
				OutputTokenCount int `json:"outputTokenCount"`
			} `json:"amazon-bedrock-invocationMetrics"`
		}
		if err := json.Unmarshal(ch.Value.Bytes, &c); err != nil {
			t.Fatalf("stream chunk %q: %v", ch.Value.Bytes, err)
		}
		s.types = append(s.types, c.Type)
		switch c.Type {
		case "message_start":
			if c.Message.Role != "assistant" {
				t.Errorf("message_start role: got %q, want assistant", c.Message.Role)
			}
			s.inputTokens = c.Message.Usage.InputTokens
		case "content_block_delta":
			s.text += c.Delta.Text
		case "message_delta":
			s.stopReason, s.outputTokens = c.Delta.StopReason, c.Usage.OutputTokens
			if c.Usage.InputTokens != nil {
				// Anthropic's message_delta usage is cumulative and may
				// carry the input count too: a translated stream whose
				// target reports its input only at the end puts it here.
				s.finalInput = *c.Usage.InputTokens
			}
		}
		if c.Metrics != nil {
			s.metricsInput, s.metricsOutput = c.Metrics.InputTokenCount, c.Metrics.OutputTokenCount
		}
	}
	if err := st.Err(); err != nil {
		t.Fatalf("stream ended with %v after events %v", err, s.types)
	}
	return s
}

// privateAnswer asks a private simulator (same output length, no quotas,
// not the one under test) what model generates for body: the text the
// gateway's translated answer must carry.
func privateAnswer(t *testing.T, model string, body []byte) []byte {
	t.Helper()
	srv := httptest.NewServer(bedrocksim.New(bedrocksim.Config{OutputTokens: simOutputTokens}))
	defer srv.Close()
	c := bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint: aws.String(srv.URL),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
		Retryer:      aws.NopRetryer{},
	})
	out, err := c.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(model), ContentType: aws.String("application/json"), Body: body,
	})
	if err != nil {
		t.Fatalf("InvokeModel %s on a private simulator with the body the gateway sent: %v", model, err)
	}
	return out.Body
}

// TestOverflowTranslatesAnthropicToLlamaAndNova sends Anthropic Messages
// bodies (a system prompt and two turns) through routes whose only target
// is of another family, with the real SDK: the caller gets Anthropic
// Messages answers and Anthropic stream events carrying the text and the
// token counts of the Llama or Nova model the simulator ran, which it ran
// on a body of its own family.
func TestOverflowTranslatesAnthropicToLlamaAndNova(t *testing.T) {
	sim := startSim(t, bedrocksim.Config{}, nil)
	gws, _, _ := routed(t, sim, 1, roomy()+fmt.Sprintf(`routes:
  %s: {targets: [%s]}
  %s: {targets: [%s]}
`, haiku, llama, haiku2, nova), nil)
	cases := []struct {
		requested, target string
		// answerText reads the target family's own answer.
		answerText func(t *testing.T, body []byte) string
		// checkBody checks the body the target got is its family's.
		checkBody func(t *testing.T, body []byte)
	}{
		{haiku, llama,
			func(t *testing.T, b []byte) string {
				var r struct{ Generation string }
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatal(err)
				}
				return r.Generation
			},
			func(t *testing.T, b []byte) {
				var r struct {
					Prompt    *string         `json:"prompt"`
					MaxGenLen int             `json:"max_gen_len"`
					Messages  json.RawMessage `json:"messages"`
				}
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatalf("Llama body %s: %v", b, err)
				}
				if r.Prompt == nil || !strings.Contains(*r.Prompt, "rate limits") || !strings.Contains(*r.Prompt, "sliding window") || r.MaxGenLen != 64 || r.Messages != nil {
					t.Errorf("Llama body: got %s, want a prompt holding the system text and every turn, max_gen_len 64 and no messages", b)
				}
			}},
		{haiku2, nova,
			func(t *testing.T, b []byte) string {
				var r struct {
					Output struct {
						Message struct{ Content []struct{ Text string } }
					}
				}
				if err := json.Unmarshal(b, &r); err != nil || len(r.Output.Message.Content) == 0 {
					t.Fatalf("Nova answer %s: %v", b, err)
				}
				return r.Output.Message.Content[0].Text
			},
			func(t *testing.T, b []byte) {
				var r struct {
					Messages []struct {
						Role    string
						Content []struct{ Text *string }
					}
					System          []struct{ Text string }
					InferenceConfig map[string]int `json:"inferenceConfig"`
					MaxTokens       *int           `json:"max_tokens"`
				}
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatalf("Nova body %s: %v", b, err)
				}
				ok := len(r.Messages) == 3 && len(r.System) == 1 && strings.Contains(r.System[0].Text, "rate limits") && r.MaxTokens == nil &&
					(r.InferenceConfig["maxTokens"] == 64 || r.InferenceConfig["max_new_tokens"] == 64)
				for _, m := range r.Messages {
					ok = ok && len(m.Content) > 0 && m.Content[0].Text != nil
				}
				if !ok {
					t.Errorf("Nova body: got %s, want 3 messages of text blocks, the system prompt as a block and inferenceConfig max tokens 64", b)
				}
			}},
	}
	for _, c := range cases {
		t.Run(strings.SplitN(c.target, ".", 2)[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			body := anthropicConversation(64)
			out, err := sdk(gws[0].url).InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
				ModelId: aws.String(c.requested), ContentType: aws.String("application/json"), Accept: aws.String("application/json"), Body: body,
			})
			if err != nil {
				t.Fatalf("InvokeModel %s: %v", c.requested, err)
			}
			if got := served(out.ResultMetadata); got.model != c.target || got.upstream != "" || got.attempts != 1 {
				t.Errorf("served by: got %v, want %s after 1 attempt", got, c.target)
			}
			var msg anthropicMessage
			if err := json.Unmarshal(out.Body, &msg); err != nil {
				t.Fatalf("answer %s: not an Anthropic Messages body: %v", out.Body, err)
			}
			sent := recorded(t, sim, c.target, bedrock.InvokeModel)
			c.checkBody(t, sent.Body)
			want := c.answerText(t, privateAnswer(t, c.target, sent.Body))
			calls := callsTo(sim, c.target)
			if len(calls) != 1 || calls[0].status != http.StatusOK {
				t.Fatalf("simulator calls to %s: got %+v, want one served", c.target, calls)
			}
			if msg.Type != "message" || msg.Role != "assistant" || len(msg.Content) != 1 || msg.Content[0].Type != "text" ||
				msg.Content[0].Text == "" || msg.Content[0].Text != want || msg.StopReason == "" {
				t.Errorf("answer: got %s, want an Anthropic message from the assistant with one text block %q and a stop reason", out.Body, want)
			}
			if msg.Usage.InputTokens != calls[0].input || msg.Usage.OutputTokens != calls[0].output {
				t.Errorf("answer usage: got input %d output %d, want the simulator's %d and %d", msg.Usage.InputTokens, msg.Usage.OutputTokens, calls[0].input, calls[0].output)
			}

			sout, err := sdk(gws[0].url).InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
				ModelId: aws.String(c.requested), ContentType: aws.String("application/json"), Accept: aws.String("application/json"), Body: body,
			})
			if err != nil {
				t.Fatalf("InvokeModelWithResponseStream %s: %v", c.requested, err)
			}
			if got := served(sout.ResultMetadata); got.model != c.target || got.attempts != 1 {
				t.Errorf("stream served by: got %v, want %s after 1 attempt", got, c.target)
			}
			s := readAnthropicStream(t, sout.GetStream())
			c.checkBody(t, recorded(t, sim, c.target, bedrock.InvokeModelWithResponseStream).Body)
			calls = callsTo(sim, c.target)
			if len(calls) != 2 || calls[1].status != http.StatusOK {
				t.Fatalf("simulator calls to %s: got %+v, want two served", c.target, calls)
			}
			sc := calls[1]
			if len(s.types) < 4 || s.types[0] != "message_start" || s.types[len(s.types)-1] != "message_stop" || !slices.Contains(s.types, "content_block_delta") {
				t.Errorf("stream events: got %v, want message_start, content block events, message_delta, message_stop", s.types)
			}
			if s.text != msg.Content[0].Text {
				t.Errorf("streamed text: got %q, want the non-streamed answer's %q", s.text, msg.Content[0].Text)
			}
			// The input count belongs on message_start; a target that
			// reports it only at its end (Nova) can put it on
			// message_delta's cumulative usage instead.
			if (s.inputTokens != sc.input && s.finalInput != sc.input) || s.outputTokens != sc.output || s.stopReason == "" {
				t.Errorf("stream usage: got input %d on message_start (%d on message_delta) output %d stop %q, want the simulator's %d and %d and a stop reason",
					s.inputTokens, s.finalInput, s.outputTokens, s.stopReason, sc.input, sc.output)
			}
			if s.metricsInput != sc.input || s.metricsOutput != sc.output {
				t.Errorf("stream invocation metrics: got input %d output %d, want %d and %d", s.metricsInput, s.metricsOutput, sc.input, sc.output)
			}
			t.Logf("%s served by %s: %q (%d+%d tokens); stream events %v", c.requested, c.target, msg.Content[0].Text, sc.input, sc.output, s.types)
		})
	}
}

// converseOnce sends one Converse call and returns its answer, or fails.
func converseOnce(t *testing.T, endpoint, model string) (*bedrockruntime.ConverseOutput, servedBy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := sdk(endpoint).Converse(ctx, converseInput(model))
	if err != nil {
		t.Fatalf("Converse %s: %v", model, err)
	}
	return out, served(out.ResultMetadata)
}

func converseInput(model string) *bedrockruntime.ConverseInput {
	return &bedrockruntime.ConverseInput{
		ModelId:         aws.String(model),
		System:          []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "Be brief."}},
		Messages:        converseMessages(prompt{user: "How do replicas share one budget?"}),
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(64)},
	}
}

// checkConverse checks a Converse answer is a normal one.
func checkConverse(t *testing.T, out *bedrockruntime.ConverseOutput) {
	t.Helper()
	msg, ok := out.Output.(*types.ConverseOutputMemberMessage)
	if !ok || msg.Value.Role != types.ConversationRoleAssistant || len(msg.Value.Content) == 0 {
		t.Fatalf("Converse output: got %#v, want an assistant message", out.Output)
	}
	text, ok := msg.Value.Content[0].(*types.ContentBlockMemberText)
	if !ok || text.Value == "" || out.StopReason == "" || out.Usage == nil || aws.ToInt32(out.Usage.OutputTokens) == 0 {
		t.Errorf("Converse answer: got content %#v, stop %q, usage %+v; want text, a stop reason and usage", msg.Value.Content[0], out.StopReason, out.Usage)
	}
}

// TestOverflowConverseAcrossFamilies sends Converse calls on a route whose
// Anthropic primary cannot serve them: once because Bedrock refuses it
// (an injected ServiceUnavailable, then a ModelNotReady), once because
// its budget can never hold the request. Meta's Llama serves them with an
// ordinary answer, and the served-model header says so.
func TestOverflowConverseAcrossFamilies(t *testing.T) {
	sim := startSim(t, bedrocksim.Config{}, nil)
	gws, _, _ := routed(t, sim, 1, fmt.Sprintf(`models:
  %[1]s: {tpm: 1000000, rpm: 10000}
  %[2]s: {tpm: 1000000, rpm: 10000}
  %[3]s: {tpm: 30, rpm: 10000}
routes:
  %[1]s: {targets: [%[1]s, %[2]s]}
  %[3]s: {targets: [%[3]s, %[2]s]}
`, haiku, llama, haiku2), nil)

	for _, kind := range []bedrocksim.FaultKind{bedrocksim.FaultServiceUnavailable, bedrocksim.FaultModelNotReady} {
		sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: kind})
		out, by := converseOnce(t, gws[0].url, haiku)
		checkConverse(t, out)
		if by.model != llama || by.attempts != 2 {
			t.Errorf("after %s on %s: served by %v, want %s after 2 attempts", kind, haiku, by, llama)
		}
	}
	// tpm 30 is less than any Converse reservation (input + 64 max tokens).
	out, by := converseOnce(t, gws[0].url, haiku2)
	checkConverse(t, out)
	if by.model != llama || by.attempts != 1 {
		t.Errorf("with %s's budget too small: served by %v, want %s after 1 attempt", haiku2, by, llama)
	}
	if n := len(callsTo(sim, haiku2)); n != 0 {
		t.Errorf("calls to %s, whose budget cannot hold the request: got %d, want 0", haiku2, n)
	}
	got := fallbacksBy(t, gws, "reason")
	t.Logf("fallbacks by reason: %v", got)
	if got["ServiceUnavailableException"] != 1 || got["ModelNotReadyException"] != 1 || got["over_cap"]+got["budget_tpm"] < 1 {
		t.Errorf("quotagate_fallbacks_total by reason: got %v, want ServiceUnavailableException 1, ModelNotReadyException 1, and over_cap or budget_tpm", got)
	}
}

// TestOverflowThrottleStorm throttles the primary for the whole run (as a
// region out of capacity does) while fallbacks have room, and sends 300
// Converse calls, 50 at a time, through two replicas with the SDK's
// retries off. Nearly every call is served; the primary is tried until
// its failures cool it down for every replica, and a call sent while it is
// cooled down (as read from Redis just before sending) goes straight to a
// fallback.
func TestOverflowThrottleStorm(t *testing.T) {
	const (
		calls   = 300
		workers = 50
	)
	sim := startSim(t, bedrocksim.Config{}, nil)
	sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultThrottle, Times: 10_000})
	gws, rc, prefix := routed(t, sim, 2, roomy()+fmt.Sprintf(`routes:
  %s: {targets: [%[1]s, %s, %s]}
`, haiku, llama, nova), map[string]string{
		// Longer than the storm, so that "cooled down when sent" stays
		// true until the call arrives.
		"QUOTAGATE_COOLDOWN": "60s",
	})

	type result struct {
		by         servedBy
		err        error
		cooledSent bool
	}
	results := make([]result, calls)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= calls {
					return
				}
				results[i].cooledSent, results[i].err = coolingErr(rc, prefix, haiku)
				if results[i].err != nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				out, err := sdk(gws[i%len(gws)].url).Converse(ctx, converseInput(haiku))
				cancel()
				results[i].err = err
				if err == nil {
					results[i].by = served(out.ResultMetadata)
				}
			}
		})
	}
	wg.Wait()

	ok, cooled, cooledStraight := 0, 0, 0
	byModel := map[string]int{}
	attempts := map[int]int{}
	var errs []string
	for _, r := range results {
		if r.err != nil {
			if len(errs) < 5 {
				errs = append(errs, r.err.Error())
			}
			continue
		}
		ok++
		byModel[r.by.model]++
		attempts[r.by.attempts]++
		if r.cooledSent {
			cooled++
			if r.by.attempts == 1 && r.by.model != haiku {
				cooledStraight++
			}
		}
	}
	primary := len(callsTo(sim, haiku))
	t.Logf("%d calls: %d served (%.1f%%), by model %v, attempts %v; errors %v", calls, ok, pct(ok, calls), byModel, attempts, errs)
	t.Logf("primary: %d calls reached it (all throttled); %d calls were sent while it was cooled down, %d of them served by a fallback at the first attempt", primary, cooled, cooledStraight)
	t.Logf("fallbacks by reason: %v", fallbacksBy(t, gws, "reason"))

	if ok*100 < calls*99 {
		t.Errorf("served: got %d of %d, want at least 99%%", ok, calls)
	}
	if byModel[haiku] != 0 {
		t.Errorf("calls served by the throttled primary: got %d, want 0", byModel[haiku])
	}
	if cooled == 0 || cooledStraight != cooled {
		t.Errorf("calls sent while the primary was cooled down: got %d, of which %d went straight to a fallback; want some, all of them", cooled, cooledStraight)
	}
	// Before the cooldown, about every call in flight (one per worker)
	// can have tried the primary; after it, none.
	if primary > calls-cooled || primary*3 > calls {
		t.Errorf("calls to the throttled primary: got %d for %d calls (%d sent before it was cooled down), want far fewer than the calls", primary, calls, calls-cooled)
	}
}

// TestOverflowCooldownSharedByReplicas shows that a cooldown is shared:
// replica A sees the primary fail three times and cools it; replica B then
// sends nothing to it while the cooldown lasts, and uses it again after.
func TestOverflowCooldownSharedByReplicas(t *testing.T) {
	sim := startSim(t, bedrocksim.Config{}, nil)
	gws, rc, prefix := routed(t, sim, 2, roomy()+fmt.Sprintf(`routes:
  %s: {targets: [%[1]s, %s]}
`, haiku, llama), map[string]string{
		"QUOTAGATE_COOLDOWN":        "3s",
		"QUOTAGATE_COOLDOWN_AFTER":  "3",
		"QUOTAGATE_COOLDOWN_WINDOW": "1m",
	})
	a, b := gws[0], gws[1]
	sim.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultServiceUnavailable, Times: 3})
	for i := range 3 {
		if cooling(t, rc, prefix, haiku) {
			t.Fatalf("the primary is cooled down after %d failures, want after 3", i)
		}
		out, by := converseOnce(t, a.url, haiku)
		checkConverse(t, out)
		if by.model != llama || by.attempts != 2 {
			t.Errorf("A, call %d: served by %v, want %s after 2 attempts", i+1, by, llama)
		}
	}
	if !cooling(t, rc, prefix, haiku) {
		t.Fatalf("the primary is not cooled down after 3 failures on A")
	}
	before := len(callsTo(sim, haiku))
	for i := range 5 {
		if !cooling(t, rc, prefix, haiku) {
			t.Fatalf("the cooldown ended before B's call %d; the test needs it to last", i+1)
		}
		out, by := converseOnce(t, b.url, haiku)
		checkConverse(t, out)
		if by.model != llama || by.attempts != 1 {
			t.Errorf("B during the cooldown, call %d: served by %v, want %s after 1 attempt", i+1, by, llama)
		}
	}
	if after := len(callsTo(sim, haiku)); after != before {
		t.Errorf("calls to the primary from B during the cooldown: got %d, want 0", after-before)
	}
	// The cooldown ends on Redis's clock; wait for it rather than sleeping
	// its length. The bound only keeps a broken cooldown from hanging.
	deadline := time.Now().Add(30 * time.Second)
	for cooling(t, rc, prefix, haiku) {
		if time.Now().After(deadline) {
			t.Fatal("the primary was still cooled down 30s after its 3s cooldown began")
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, by := converseOnce(t, b.url, haiku)
	checkConverse(t, out)
	if by.model != haiku || by.attempts != 1 {
		t.Errorf("B after the cooldown: served by %v, want %s after 1 attempt", by, haiku)
	}
	t.Logf("primary calls: %d while failing (A), 0 during the cooldown (B), then %d after it", before, len(callsTo(sim, haiku))-before)
}

// streamOutcome is how a stream read through the SDK ended.
type streamOutcome struct {
	events int
	err    error
	by     servedBy
}

func converseStream(t *testing.T, endpoint, model string) streamOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := converseInput(model)
	out, err := sdk(endpoint).ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
		ModelId: in.ModelId, System: in.System, Messages: in.Messages, InferenceConfig: in.InferenceConfig,
	})
	if err != nil {
		return streamOutcome{err: err}
	}
	st := out.GetStream()
	defer st.Close()
	o := streamOutcome{by: served(out.ResultMetadata)}
	sawMetadata := false
	for ev := range st.Events() {
		o.events++
		if _, ok := ev.(*types.ConverseStreamOutputMemberMetadata); ok {
			sawMetadata = true
		}
	}
	o.err = st.Err()
	if o.err == nil && !sawMetadata {
		o.err = fmt.Errorf("the stream ended after %d events without metadata (a silent EOF)", o.events)
	}
	return o
}

func invokeStream(t *testing.T, endpoint, model string, body []byte) streamOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := sdk(endpoint).InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(model), ContentType: aws.String("application/json"), Accept: aws.String("application/json"), Body: body,
	})
	if err != nil {
		return streamOutcome{err: err}
	}
	st := out.GetStream()
	defer st.Close()
	o := streamOutcome{by: served(out.ResultMetadata)}
	stopped := false
	for ev := range st.Events() {
		o.events++
		if ch, ok := ev.(*types.ResponseStreamMemberChunk); ok && strings.Contains(string(ch.Value.Bytes), `"message_stop"`) {
			stopped = true
		}
	}
	o.err = st.Err()
	if o.err == nil && !stopped {
		o.err = fmt.Errorf("the stream ended after %d events without message_stop (a silent EOF)", o.events)
	}
	return o
}

// TestOverflowMidStreamFailureIsTypedException: once a stream's first
// event has reached the caller the gateway cannot move it elsewhere, and
// a failure after that reaches the SDK as the typed exception Bedrock
// sent, also through a translated stream; a stream whose first frame is a
// throttle, having sent nothing, is moved to the next target unseen.
func TestOverflowMidStreamFailureIsTypedException(t *testing.T) {
	sim := startSim(t, bedrocksim.Config{}, nil)
	gws, _, _ := routed(t, sim, 1, roomy()+fmt.Sprintf(`routes:
  %s: {targets: [%[1]s, %s]}
  %s: {targets: [%s]}
`, haiku, llama, haiku2, llama), nil)
	url := gws[0].url
	body := anthropicBody(prompt{user: "Tell me about sliding windows."}, 64)

	cases := []struct {
		name   string
		model  string // the target the fault is injected on
		kind   bedrocksim.FaultKind
		op     bedrock.Operation
		call   func() streamOutcome
		wantAs func(error) bool
	}{
		{"ConverseStream/stream-error", haiku, bedrocksim.FaultStreamError, bedrock.ConverseStream,
			func() streamOutcome { return converseStream(t, url, haiku) },
			func(err error) bool { var e *types.ModelStreamErrorException; return errors.As(err, &e) }},
		{"ConverseStream/throttle", haiku, bedrocksim.FaultThrottleMidStream, bedrock.ConverseStream,
			func() streamOutcome { return converseStream(t, url, haiku) },
			func(err error) bool { var e *types.ThrottlingException; return errors.As(err, &e) }},
		{"InvokeModelWithResponseStream/stream-error", haiku, bedrocksim.FaultStreamError, bedrock.InvokeModelWithResponseStream,
			func() streamOutcome { return invokeStream(t, url, haiku, body) },
			func(err error) bool { var e *types.ModelStreamErrorException; return errors.As(err, &e) }},
		{"InvokeModelWithResponseStream/translated-throttle", llama, bedrocksim.FaultThrottleMidStream, bedrock.InvokeModelWithResponseStream,
			func() streamOutcome { return invokeStream(t, url, haiku2, body) },
			func(err error) bool { var e *types.ThrottlingException; return errors.As(err, &e) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sim.InjectFault(bedrocksim.Fault{Model: c.model, Operation: c.op, Kind: c.kind, AfterEvents: 3})
			o := c.call()
			t.Logf("%d events, then %v (served by %v)", o.events, o.err, o.by)
			if o.events < 2 || o.err == nil || !c.wantAs(o.err) {
				t.Errorf("got %d events then %v, want 2 or more events then the typed %s exception", o.events, o.err, c.kind)
			}
			if o.by.model != c.model || o.by.attempts != 1 {
				t.Errorf("served by %v, want %s after 1 attempt: a started stream is never moved", o.by, c.model)
			}
		})
	}

	t.Run("first-frame-throttle-falls-back", func(t *testing.T) {
		for _, op := range []bedrock.Operation{bedrock.ConverseStream, bedrock.InvokeModelWithResponseStream} {
			sim.InjectFault(bedrocksim.Fault{Model: haiku, Operation: op, Kind: bedrocksim.FaultThrottleMidStream, AfterEvents: 0})
			var o streamOutcome
			if op == bedrock.ConverseStream {
				o = converseStream(t, url, haiku)
			} else {
				o = invokeStream(t, url, haiku, body)
			}
			if o.err != nil || o.by.model != llama || o.by.attempts != 2 {
				t.Errorf("%s whose first frame is a throttle: got %d events, error %v, served by %v; want a whole stream from %s after 2 attempts", op, o.events, o.err, o.by, llama)
			}
		}
		got := fallbacksBy(t, gws, "reason")
		t.Logf("fallbacks by reason: %v", got)
		if got["ThrottlingException"] != 2 {
			t.Errorf("fallbacks for a first-frame throttle: got %v, want ThrottlingException 2", got)
		}
	})
}

// Another upstream: a second simulator that answers only us-west-2
// signatures, reached as model@west.
const westRole = "arn:aws:iam::210987654321:role/quotagate-overflow"

// TestOverflowOtherRegion routes overflow to the same model on another
// upstream: a second simulator configured for us-west-2, which refuses
// anything not signed for that region. Once with the gateway's own
// credentials, once through an assumed role (STS AssumeRole against
// bedrocksim.STS, whose temporary credentials and session token the
// second simulator requires).
func TestOverflowOtherRegion(t *testing.T) {
	for _, withRole := range []bool{false, true} {
		name := "own-credentials"
		if withRole {
			name = "assumed-role"
		}
		t.Run(name, func(t *testing.T) {
			sts := bedrocksim.NewSTS(bedrocksim.STSConfig{Roles: map[string]bedrocksim.Role{westRole: {
				AccessKeyID: "ASIAE2EWESTROLE00001", SecretAccessKey: "e2e-west-role-secret-0123456789abcdefgh",
				SessionToken: "e2e-west-session-token", ExternalID: "quotagate-e2e",
			}}})
			cfg := bedrocksim.Config{Region: "us-west-2"}
			var wrap func(http.Handler) http.Handler
			role := ""
			extra := map[string]string{}
			if withRole {
				cfg.Credentials = sts.TemporaryCredentials() // only the role's
				wrap = sts.RequireSessionToken
				stsSrv := httptest.NewServer(sts)
				t.Cleanup(stsSrv.Close)
				extra["AWS_ENDPOINT_URL_STS"] = stsSrv.URL
				role = "\n    role_arn: " + westRole + "\n    external_id: quotagate-e2e"
			}
			east := startSim(t, bedrocksim.Config{}, nil)
			west := startSim(t, cfg, wrap)
			gws, _, _ := routed(t, east, 1, fmt.Sprintf(`models:
  %[1]s: {tpm: 1000000, rpm: 10000}
  %[1]s@west: {tpm: 1000000, rpm: 10000}
upstreams:
  west:
    region: us-west-2
    endpoint: %[2]s%[3]s
routes:
  %[1]s: {targets: [%[1]s, %[1]s@west]}
`, haiku, west.url, role), extra)

			east.InjectFault(bedrocksim.Fault{Model: haiku, Kind: bedrocksim.FaultThrottle, Times: 3})
			out, by := converseOnce(t, gws[0].url, haiku)
			checkConverse(t, out)
			if by.model != haiku || by.upstream != "west" || by.attempts != 2 {
				t.Errorf("Converse: served by %v, want %s@west after 2 attempts", by, haiku)
			}
			iout, err := sdk(gws[0].url).InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
				ModelId: aws.String(haiku), ContentType: aws.String("application/json"), Body: anthropicConversation(32),
			})
			if err != nil {
				t.Fatalf("InvokeModel: %v", err)
			}
			if by := served(iout.ResultMetadata); by.model != haiku || by.upstream != "west" {
				t.Errorf("InvokeModel: served by %v, want %s@west", by, haiku)
			}
			o := converseStream(t, gws[0].url, haiku)
			if o.err != nil || o.by.upstream != "west" {
				t.Errorf("ConverseStream: got %d events, error %v, served by %v; want a whole stream from west", o.events, o.err, o.by)
			}
			st := west.Stats()
			reqs := west.Requests()
			if st.AuthFailures != 0 || st.Models[haiku].Requests != 3 || len(reqs) != 3 {
				t.Errorf("west simulator: got %d requests for %s, %d auth failures; want 3 and 0", st.Models[haiku].Requests, haiku, st.AuthFailures)
			}
			for _, r := range reqs {
				auth := r.Header.Get("Authorization")
				if !strings.Contains(auth, "/us-west-2/bedrock/aws4_request") || !r.Authenticated {
					t.Errorf("west got %s signed %q (authenticated %t), want a us-west-2 scope", r.Operation, auth, r.Authenticated)
				}
				if withRole && (!strings.Contains(auth, "Credential=ASIAE2EWESTROLE00001/") || r.Header.Get("X-Amz-Security-Token") != "e2e-west-session-token") {
					t.Errorf("west got %s signed %q with token %q, want the role's key and session token", r.Operation, auth, r.Header.Get("X-Amz-Security-Token"))
				}
			}
			if withRole && sts.Calls() != 1 {
				t.Errorf("AssumeRole calls: got %d, want 1 (the credentials are cached)", sts.Calls())
			}
			if n := len(callsTo(east, haiku)); n != 3 {
				t.Errorf("calls to the throttled east primary: got %d, want 3 (one per call, before moving on)", n)
			}
		})
	}
}
