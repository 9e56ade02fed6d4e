package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/quotagate/quotagate/bedrocksim"
)

// testModel is an Anthropic model, so that InvokeModel can send the
// Anthropic Messages body.
const testModel = "anthropic.claude-3-haiku-20240307-v1:0"

// The four operations the clients mix.
const (
	opConverse       = "Converse"
	opConverseStream = "ConverseStream"
	opInvoke         = "InvokeModel"
	opInvokeStream   = "InvokeModelWithResponseStream"
)

var operations = []string{opConverse, opConverseStream, opInvoke, opInvokeStream}

// maxTokenChoices are the max tokens clients ask for. The simulator
// generates simOutputTokens when allowed, so most requests reserve more
// than they use and are refunded at settle, as real callers do.
var maxTokenChoices = []int{16, 40, 64, 128}

// cancelShare is the share of streaming requests whose client cancels
// after the first event.
const cancelShare = 0.10

// prompt is one user message and an optional system prompt.
type prompt struct {
	system, user string
}

// prompts returns n English prompts of varied length (about 10 to 200
// words), some with a system prompt. English because the gateway's input
// estimate is calibrated per model by a running ratio: a mix of scripts in
// one pool is a calibration test of its own, not this one.
func prompts(n int) []prompt {
	words := strings.Fields("the quick brown fox jumps over a lazy dog while budgets of tokens per minute keep every replica honest and the simulator counts what it serves with care so that nothing is lost between reservation and settlement")
	rng := rand.New(rand.NewPCG(1, 2))
	text := func(k int) string {
		w := make([]string, k)
		for i := range w {
			w[i] = words[rng.IntN(len(words))]
		}
		return strings.Join(w, " ")
	}
	out := make([]prompt, n)
	for i := range out {
		out[i].user = text(10 + rng.IntN(190))
		if i%3 == 0 {
			out[i].system = text(5 + rng.IntN(30))
		}
	}
	return out
}

// request is one client call.
type request struct {
	op        string
	prompt    int
	maxTokens int
	cancel    bool // a stream the client abandons after its first event
}

// costTable holds each prompt's input tokens as the simulator counts them,
// for Converse and for the Anthropic body, so that the offered load is
// priced the way Bedrock prices it at request start: input + max tokens.
type costTable struct {
	converse, invoke []int
}

func (c *costTable) reservation(r request) int {
	in := c.converse[r.prompt]
	if r.op == opInvoke || r.op == opInvokeStream {
		in = c.invoke[r.prompt]
	}
	return in + r.maxTokens
}

// countCosts asks a private simulator's CountTokens (not the one under
// test, whose statistics must hold only the load) for every prompt.
func countCosts(t *testing.T, ps []prompt) *costTable {
	t.Helper()
	srv := httptest.NewServer(bedrocksim.New(bedrocksim.Config{}))
	defer srv.Close()
	c := bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint: aws.String(srv.URL),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   bedrocksim.BufferedBodyClient{},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ct := &costTable{converse: make([]int, len(ps)), invoke: make([]int, len(ps))}
	for i, p := range ps {
		conv, err := c.CountTokens(ctx, &bedrockruntime.CountTokensInput{
			ModelId: aws.String(testModel),
			Input:   &types.CountTokensInputMemberConverse{Value: types.ConverseTokensRequest{Messages: converseMessages(p), System: converseSystem(p)}},
		})
		if err != nil {
			t.Fatalf("CountTokens (Converse) on the private simulator: %v", err)
		}
		inv, err := c.CountTokens(ctx, &bedrockruntime.CountTokensInput{
			ModelId: aws.String(testModel),
			Input:   &types.CountTokensInputMemberInvokeModel{Value: types.InvokeModelTokensRequest{Body: anthropicBody(p, 1)}},
		})
		if err != nil {
			t.Fatalf("CountTokens (InvokeModel) on the private simulator: %v", err)
		}
		ct.converse[i], ct.invoke[i] = int(aws.ToInt32(conv.InputTokens)), int(aws.ToInt32(inv.InputTokens))
	}
	return ct
}

func converseMessages(p prompt) []types.Message {
	return []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: p.user}}}}
}

func converseSystem(p prompt) []types.SystemContentBlock {
	if p.system == "" {
		return nil
	}
	return []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: p.system}}
}

func anthropicBody(p prompt, maxTokens int) []byte {
	body := map[string]any{
		"anthropic_version": "bedrock-2023-05-31",
		"max_tokens":        maxTokens,
		"messages":          []map[string]any{{"role": "user", "content": []map[string]string{{"type": "text", "text": p.user}}}},
	}
	if p.system != "" {
		body["system"] = p.system
	}
	b, _ := json.Marshal(body)
	return b
}

// loadOptions shape the load.
type loadOptions struct {
	endpoints []string // the replicas, used round-robin
	clients   int
	duration  time.Duration
	prompts   []prompt
	costs     *costTable
	// onTick, when set, is called about every 100ms while the load runs,
	// with the time since it started (for scripted faults).
	onTick func(elapsed time.Duration)
}

// outcome is how one call ended, seen from the client.
type outcome int

const (
	admitted          outcome = iota // a complete response or stream
	cancelledByClient                // a stream abandoned on purpose after its first event
	gatewayThrottled                 // ThrottlingException carrying x-quotagate-limit
	upstreamThrottled                // ThrottlingException without it: Bedrock's own, passed through
	unexpected                       // anything else
)

// loadReport is what the clients saw.
type loadReport struct {
	start, stop      time.Time // the load ran in [start, stop); calls in flight at stop finished after
	attempts         int
	byOutcome        [unexpected + 1]int
	byOp             map[string]int // admitted or cancelled, per operation
	offeredTokens    int64          // reservation of every attempt, as Bedrock prices it
	firstThrottle    time.Time      // first gateway throttle: from then on the budget is saturated
	throttles        []time.Time    // every gateway throttle, for the timeline
	unexpectedSample []string
	// degradedServed counts admitted calls that started while inOutage
	// reported true (the Redis restart test).
	degradedServed int
}

// runLoad drives the replicas with closed-loop clients for o.duration:
// each client sends a call, and after a throttle (or any error) backs off
// briefly (20-100ms) and sends the next. Calls still in flight when the
// time is up finish normally. inOutage, when set, tells whether a call
// starts while the shared Redis is down.
func runLoad(t *testing.T, o loadOptions, inOutage func() bool) *loadReport {
	t.Helper()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 4 * o.clients
	transport.MaxIdleConnsPerHost = 2 * o.clients
	defer transport.CloseIdleConnections()
	httpClient := bedrocksim.BufferedBodyClient{Client: &http.Client{Transport: transport}}
	// A client per call, not one per replica shared by every goroutine:
	// smithy-go v1.28.9 keeps event-stream decoding state in one codec per
	// client, which concurrent streams race on (aws/smithy-go#714), and a
	// stream abandoned mid-way may still be decoding after Close returns.
	// The clients share one HTTP transport, so connections are reused.
	newClient := func(endpoint string) *bedrockruntime.Client {
		return bedrockruntime.New(bedrockruntime.Options{
			BaseEndpoint: aws.String(endpoint),
			Region:       "us-east-1",
			// The caller's own credentials: the gateway re-signs, so the
			// simulator never sees these.
			Credentials: credentials.NewStaticCredentialsProvider("AKIDE2ECLIENT0000001", "e2e-client-secret", ""),
			Retryer:     aws.NopRetryer{},
			HTTPClient:  httpClient,
		})
	}

	rep := &loadReport{byOp: make(map[string]int)}
	var mu sync.Mutex
	var next atomic.Uint64
	stopping := make(chan struct{})
	stop := sync.OnceFunc(func() { close(stopping) })
	var wg sync.WaitGroup
	// Also when onTick fails the test (runtime.Goexit): no client may
	// outlive the test.
	defer func() { stop(); wg.Wait() }()
	rep.start = time.Now()
	for w := range o.clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for {
				select {
				case <-stopping:
					return
				default:
				}
				r := request{
					op:        operations[rng.IntN(len(operations))],
					prompt:    rng.IntN(len(o.prompts)),
					maxTokens: maxTokenChoices[rng.IntN(len(maxTokenChoices))],
				}
				if r.op == opConverseStream || r.op == opInvokeStream {
					r.cancel = rng.Float64() < cancelShare
				}
				degraded := inOutage != nil && inOutage()
				c := newClient(o.endpoints[next.Add(1)%uint64(len(o.endpoints))])
				res, detail := call(c, o.prompts[r.prompt], r)
				now := time.Now()
				mu.Lock()
				rep.attempts++
				rep.byOutcome[res]++
				rep.offeredTokens += int64(o.costs.reservation(r))
				switch res {
				case admitted, cancelledByClient:
					rep.byOp[r.op]++
					if degraded && res == admitted {
						rep.degradedServed++
					}
				case gatewayThrottled:
					if rep.firstThrottle.IsZero() {
						rep.firstThrottle = now
					}
					rep.throttles = append(rep.throttles, now)
				case unexpected, upstreamThrottled:
					if len(rep.unexpectedSample) < 10 {
						rep.unexpectedSample = append(rep.unexpectedSample, r.op+": "+detail)
					}
				}
				mu.Unlock()
				if res != admitted && res != cancelledByClient {
					select {
					case <-stopping:
						return
					case <-time.After(time.Duration(20+rng.IntN(80)) * time.Millisecond):
					}
				}
			}
		})
	}
	tick := time.NewTicker(100 * time.Millisecond)
	for elapsed := time.Duration(0); elapsed < o.duration; elapsed = time.Since(rep.start) {
		<-tick.C
		if o.onTick != nil {
			o.onTick(time.Since(rep.start))
		}
	}
	tick.Stop()
	rep.stop = time.Now()
	stop()
	wg.Wait()
	return rep
}

// callTimeout bounds one call: far above the gateway's max wait plus a
// response, so that it only stops a hung call from hanging the test.
const callTimeout = 30 * time.Second

// call sends one request through the SDK and classifies the result.
func call(c *bedrockruntime.Client, p prompt, r request) (outcome, string) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	switch r.op {
	case opConverse:
		out, err := c.Converse(ctx, &bedrockruntime.ConverseInput{
			ModelId:         aws.String(testModel),
			Messages:        converseMessages(p),
			System:          converseSystem(p),
			InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(int32(r.maxTokens))},
		})
		if err != nil {
			return classify(err)
		}
		if out.Usage == nil || aws.ToInt32(out.Usage.OutputTokens) == 0 {
			return unexpected, "Converse response without usage"
		}
		return admitted, ""
	case opInvoke:
		out, err := c.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
			ModelId:     aws.String(testModel),
			ContentType: aws.String("application/json"),
			Accept:      aws.String("application/json"),
			Body:        anthropicBody(p, r.maxTokens),
		})
		if err != nil {
			return classify(err)
		}
		var body struct {
			Usage struct {
				OutputTokens int `json:"output_tokens"`
			} `json:"usage"`
		}
		if json.Unmarshal(out.Body, &body) != nil || body.Usage.OutputTokens == 0 {
			return unexpected, "InvokeModel response without usage"
		}
		return admitted, ""
	case opConverseStream:
		out, err := c.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
			ModelId:         aws.String(testModel),
			Messages:        converseMessages(p),
			System:          converseSystem(p),
			InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(int32(r.maxTokens))},
		})
		if err != nil {
			return classify(err)
		}
		st := out.GetStream()
		defer st.Close()
		events, sawMetadata := 0, false
		for ev := range st.Events() {
			events++
			if r.cancel {
				cancel() // the client leaves mid-stream
				return cancelledByClient, ""
			}
			if _, ok := ev.(*types.ConverseStreamOutputMemberMetadata); ok {
				sawMetadata = true
			}
		}
		if err := st.Err(); err != nil {
			return unexpected, fmt.Sprintf("stream broke after %d events: %v", events, err)
		}
		if !sawMetadata {
			return unexpected, fmt.Sprintf("stream ended after %d events without metadata", events)
		}
		return admitted, ""
	case opInvokeStream:
		out, err := c.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
			ModelId:     aws.String(testModel),
			ContentType: aws.String("application/json"),
			Accept:      aws.String("application/json"),
			Body:        anthropicBody(p, r.maxTokens),
		})
		if err != nil {
			return classify(err)
		}
		st := out.GetStream()
		defer st.Close()
		events, sawMetrics := 0, false
		for ev := range st.Events() {
			events++
			if r.cancel {
				cancel()
				return cancelledByClient, ""
			}
			if ch, ok := ev.(*types.ResponseStreamMemberChunk); ok && strings.Contains(string(ch.Value.Bytes), "amazon-bedrock-invocationMetrics") {
				sawMetrics = true
			}
		}
		if err := st.Err(); err != nil {
			return unexpected, fmt.Sprintf("stream broke after %d events: %v", events, err)
		}
		if !sawMetrics {
			return unexpected, fmt.Sprintf("stream ended after %d events without invocation metrics", events)
		}
		return admitted, ""
	}
	return unexpected, "unknown operation " + r.op
}

// classify sorts a failed call: a ThrottlingException is the gateway's own
// when it names the budget in x-quotagate-limit, else Bedrock's passed
// through.
func classify(err error) (outcome, string) {
	var te *types.ThrottlingException
	if errors.As(err, &te) {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.Response != nil && re.Response.Header.Get("X-Quotagate-Limit") != "" {
			return gatewayThrottled, ""
		}
		return upstreamThrottled, err.Error()
	}
	return unexpected, err.Error()
}
