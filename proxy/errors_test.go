package proxy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/bedrocksim"
)

// TestBadInputsAreRejectedBeforeForwarding: each bad request gets Bedrock's
// error shape, and none of them reaches Bedrock.
func TestBadInputsAreRejectedBeforeForwarding(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.gateway.MaxBodyBytes = 1024
	const claude = "/model/anthropic.claude-3-haiku-20240307-v1%3A0"
	cases := []struct {
		name, method, path, contentType, body string
		status                                int
		errType                               bedrock.ErrorType
	}{
		{"malformed JSON", "POST", claude + "/invoke", "application/json", `{"messages": [`, 400, bedrock.Validation},
		{"not an object", "POST", claude + "/converse", "application/json", `[1,2,3]`, 400, bedrock.Validation},
		{"empty body", "POST", claude + "/converse", "application/json", ``, 400, bedrock.Validation},
		{"max tokens not a number", "POST", claude + "/invoke", "application/json", `{"anthropic_version":"bedrock-2023-05-31","max_tokens":"many","messages":[]}`, 400, bedrock.Validation},
		{"negative maxTokens", "POST", claude + "/converse", "application/json", `{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":-1}}`, 400, bedrock.Validation},
		{"count-tokens without input", "POST", claude + "/count-tokens", "application/json", `{}`, 400, bedrock.Validation},
		{"body too large", "POST", claude + "/invoke", "application/json", `{"prompt":"` + strings.Repeat("a", 2048) + `"}`, 400, bedrock.Validation},
		{"unsupported content type", "POST", claude + "/invoke", "text/plain", `hello`, 400, bedrock.Validation},
		{"missing model id", "POST", "/model//converse", "application/json", `{}`, 404, bedrock.UnknownOperation},
		{"unknown operation", "POST", claude + "/summon", "application/json", `{}`, 404, bedrock.UnknownOperation},
		{"unknown path", "POST", "/v1/chat/completions", "application/json", `{}`, 404, bedrock.UnknownOperation},
		{"wrong method", "GET", claude + "/converse", "", ``, 404, bedrock.UnknownOperation},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, h.front.URL+c.path, strings.NewReader(c.body))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			resp, err := h.front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			checkBedrockError(t, resp, c.status, c.errType)
		})
	}
	if got := h.sim.Stats().Total + len(h.sim.Requests()); got != 0 {
		t.Errorf("simulator received %d requests, want none forwarded", got)
	}
}

// checkBedrockError asserts the full error shape: status, X-Amzn-ErrorType,
// and a JSON body with message and __type.
func checkBedrockError(t *testing.T, resp *http.Response, status int, errType bedrock.ErrorType) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d", resp.StatusCode, status)
	}
	if got := resp.Header.Get("X-Amzn-ErrorType"); got != string(errType) {
		t.Errorf("X-Amzn-ErrorType = %q, want %q", got, errType)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var body struct {
		Message string `json:"message"`
		Type    string `json:"__type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	if body.Type != string(errType) || body.Message == "" {
		t.Errorf("error body = %+v, want __type %s and a message", body, errType)
	}
}

// TestSDKSeesGatewayErrorsTyped: what the gateway itself refuses still
// becomes a typed exception in the SDK.
func TestSDKSeesGatewayErrorsTyped(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, err := h.client.InvokeModel(testContext(t), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(families[0].model), Body: []byte(`{"messages": [`),
	})
	var ve *types.ValidationException
	if !errors.As(err, &ve) {
		t.Fatalf("got %T (%v), want *types.ValidationException", err, err)
	}
	if h.sim.Stats().Total != 0 {
		t.Errorf("malformed body was forwarded")
	}
}

// TestUpstreamUnreachable: a dead upstream is a 502 the SDK can retry.
func TestUpstreamUnreachable(t *testing.T) {
	h := newHarness(t, harnessOptions{upstreamURL: "http://127.0.0.1:1"})
	_, err := h.client.Converse(testContext(t), converseInput(families[0].model))
	var su *types.ServiceUnavailableException
	if !errors.As(err, &su) {
		t.Fatalf("got %T (%v), want *types.ServiceUnavailableException", err, err)
	}
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadGateway {
		t.Errorf("status = %v, want 502", err)
	}
}

// tamper changes the body after the gateway signed it, like a corrupting
// middlebox would.
type tamper struct{ next http.RoundTripper }

func (tp tamper) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	body = bytes.Replace(body, []byte("colours"), []byte("colors!"), 1)
	r.Body = io.NopCloser(bytes.NewReader(body))
	return tp.next.RoundTrip(r)
}

// TestSimulatorRejectsTamperedSignature: the simulator's SigV4 check accepts
// the gateway's signatures (every other test) and refuses a request altered
// after signing; the refusal passes through to the SDK unchanged.
func TestSimulatorRejectsTamperedSignature(t *testing.T) {
	h := newHarness(t, harnessOptions{wrap: func(rt http.RoundTripper) http.RoundTripper { return tamper{rt} }})
	_, err := h.client.Converse(testContext(t), converseInput(families[0].model))
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidSignatureException" {
		t.Fatalf("got %v, want InvalidSignatureException", err)
	}
	if s := h.sim.Stats(); s.AuthFailures != 1 || s.Requests[bedrock.Converse] != 0 {
		t.Errorf("simulator auth failures %d, served %d; want 1 and 0", s.AuthFailures, s.Requests[bedrock.Converse])
	}
}

// TestHeaders: request headers Bedrock acts on are forwarded, the caller's
// credentials and cookies are not; Bedrock's response headers come back.
func TestHeaders(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	body := families[0].body
	req, _ := http.NewRequest(http.MethodPost, h.front.URL+"/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", strings.NewReader(body))
	forwarded := map[string]string{
		"Content-Type":                             "application/json",
		"Accept":                                   "application/json",
		"X-Amzn-Bedrock-Trace":                     "ENABLED",
		"X-Amzn-Bedrock-Guardrailidentifier":       "gr-123",
		"X-Amzn-Bedrock-Guardrailversion":          "1",
		"X-Amzn-Bedrock-Performanceconfig-Latency": "optimized",
		"X-Amzn-Bedrock-Service-Tier":              "priority",
	}
	dropped := map[string]string{
		"Authorization":        "AWS4-HMAC-SHA256 Credential=" + callerKeyID + "/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00",
		"X-Amz-Security-Token": "caller-session-token",
		"Cookie":               "session=secret",
		"X-Api-Key":            "should-not-travel",
	}
	for k, v := range forwarded {
		req.Header.Set(k, v)
	}
	for k, v := range dropped {
		req.Header.Set(k, v)
	}
	resp, err := h.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	rec := h.sim.Requests()
	if len(rec) != 1 {
		t.Fatalf("simulator recorded %d requests, want 1", len(rec))
	}
	got := rec[0].Header
	for k, v := range forwarded {
		if got.Get(k) != v {
			t.Errorf("upstream %s = %q, want %q", k, got.Get(k), v)
		}
	}
	for k, v := range dropped {
		if strings.Contains(strings.Join(got.Values(k), ","), v) {
			t.Errorf("upstream received the caller's %s", k)
		}
	}
	if !strings.Contains(got.Get("Authorization"), "Credential="+bedrocksim.AccessKeyID) || strings.Contains(got.Get("Authorization"), callerKeyID) {
		t.Errorf("upstream Authorization = %q, want the gateway's own signature", got.Get("Authorization"))
	}
	for _, k := range []string{"X-Amzn-Bedrock-Input-Token-Count", "X-Amzn-Bedrock-Output-Token-Count", "X-Amzn-Bedrock-Invocation-Latency", "X-Amzn-Requestid"} {
		if resp.Header.Get(k) == "" {
			t.Errorf("response lacks %s", k)
		}
	}
}

// TestNoSecretsInLogs scans everything the gateway logged for credentials
// and prompt text.
func TestNoSecretsInLogs(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := testContext(t)
	if _, err := h.client.Converse(ctx, converseInput(families[0].model)); err != nil {
		t.Fatal(err)
	}
	_, _ = h.client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(families[0].model), Body: []byte(`{"bad json`)})
	h.logLine(t, bedrock.Converse, families[0].model)
	logs := h.logs.String()
	for _, secret := range []string{callerSecret, callerKeyID, "Name three colours", "Be brief", "bad json", "Signature="} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}
