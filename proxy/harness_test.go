package proxy_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/internal/logbuf"
	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/telemetry"
)

// The caller's own credentials. The simulator does not know them, so a
// request that reaches it with these (rather than re-signed by the gateway)
// fails: every passing end-to-end test proves the re-signing.
const (
	callerKeyID  = "AKIDCALLERONLY000001"
	callerSecret = "caller-secret-never-forwarded"
)

// harness is client (real AWS SDK) -> gateway -> simulated Bedrock, each a
// real HTTP server on loopback.
type harness struct {
	sim      *bedrocksim.Server
	upstream *httptest.Server
	gateway  *proxy.Gateway
	front    *httptest.Server
	client   *bedrockruntime.Client
	logs     *logbuf.Buffer
	store    quota.Store
}

type harnessOptions struct {
	sim bedrocksim.Config
	// wrap, when set, wraps the gateway's upstream transport (after signing).
	wrap func(http.RoundTripper) http.RoundTripper
	// upstreamURL overrides where the gateway sends requests.
	upstreamURL string
	// budgets, when set, is a budgets file (YAML) enforced with store (or
	// an in-memory store with window).
	budgets  string
	store    quota.Store
	window   time.Duration
	maxWait  time.Duration
	leaseTTL time.Duration
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	h := &harness{logs: &logbuf.Buffer{}}
	h.sim = bedrocksim.New(o.sim)
	h.upstream = httptest.NewServer(h.sim)
	t.Cleanup(h.upstream.Close)
	u, err := url.Parse(h.upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	if o.upstreamURL != "" {
		u, _ = url.Parse(o.upstreamURL)
	}
	var inner http.RoundTripper = proxy.NewTransport(proxy.TransportOptions{})
	if o.wrap != nil {
		inner = o.wrap(inner)
	}
	h.gateway = &proxy.Gateway{
		Upstream: u,
		Transport: &proxy.Signer{
			Transport:   inner,
			Credentials: credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
			Region:      "us-east-1",
		},
		Logger: slog.New(slog.NewJSONHandler(h.logs, nil)),
	}
	if o.budgets != "" {
		cfg, err := quota.ParseConfig([]byte(o.budgets))
		if err != nil {
			t.Fatalf("budgets: %v", err)
		}
		if o.store == nil {
			o.store = quota.NewMemoryStore(quota.Options{Window: o.window, LeaseTTL: o.leaseTTL})
		}
		h.store = o.store
		h.gateway.Quota = o.store
		h.gateway.Budgets = func() *quota.Config { return cfg }
		h.gateway.MaxWait = o.maxWait
		h.gateway.LeaseTTL = o.leaseTTL
	}
	h.front = httptest.NewServer(telemetry.ServerHandler(h.gateway, proxy.SpanName))
	t.Cleanup(h.front.Close)
	h.client = newClient(h.front.URL)
	return h
}

// newClient is the unmodified AWS SDK client, pointed at the gateway only by
// BaseEndpoint. Retries are off so that every test counts exact requests.
func newClient(endpoint string) *bedrockruntime.Client {
	return bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(callerKeyID, callerSecret, ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   bedrocksim.BufferedBodyClient{},
	})
}

// post sends a raw request to the gateway, for inputs the SDK would refuse
// to send.
func (h *harness) post(t testing.TB, path, contentType string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.front.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// waitFor polls cond until it holds. The generous bound only stops a broken
// test from hanging; it is not a performance assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
