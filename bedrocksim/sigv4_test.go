package bedrocksim_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/auth/bearer"

	"github.com/quotagate/quotagate/bedrocksim"
)

// tamper is an SDK HTTP client that changes a request after it was signed.
type tamper func(*http.Request)

func (f tamper) Do(r *http.Request) (*http.Response, error) {
	f(r)
	return bedrocksim.BufferedBodyClient{}.Do(r)
}

// skewedSigner signs with a clock that is off by skew.
type skewedSigner struct{ skew time.Duration }

func (s skewedSigner) SignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, at time.Time, optFns ...func(*v4.SignerOptions)) error {
	return v4.NewSigner().SignHTTP(ctx, creds, r, payloadHash, service, region, at.Add(s.skew), optFns...)
}

const claudeBody = `{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"messages":[{"role":"user","content":"hello"}]}`

func invokeClaude(ctx context.Context, c *bedrockruntime.Client) error {
	_, err := c.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
		ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"), Body: []byte(claudeBody),
	})
	return err
}

// errorCode is the AWS error code of an SDK error, for the exceptions that
// bedrockruntime/types has no type for.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestSigV4Failures(t *testing.T) {
	sim, ts := start(t, bedrocksim.Config{})
	cases := []struct {
		name     string
		opts     func(*bedrockruntime.Options)
		wantCode string
		wantMsg  string
	}{
		{
			name: "wrong secret",
			opts: func(o *bedrockruntime.Options) {
				o.Credentials = credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, "not-the-secret", "")
			},
			wantCode: "InvalidSignatureException",
			wantMsg:  "The request signature we calculated does not match the signature you provided.",
		},
		{
			name: "unknown access key",
			opts: func(o *bedrockruntime.Options) {
				o.Credentials = credentials.NewStaticCredentialsProvider("AKIANOTAKNOWNKEY0000", "secret", "")
			},
			wantCode: "UnrecognizedClientException",
			wantMsg:  "The security token included in the request is invalid.",
		},
		{
			name: "tampered body",
			opts: func(o *bedrockruntime.Options) {
				o.HTTPClient = tamper(func(r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					b = bytes.Replace(b, []byte("hello"), []byte("HELLO"), 1)
					r.Body = io.NopCloser(bytes.NewReader(b))
				})
			},
			wantCode: "InvalidSignatureException",
			wantMsg:  "does not match the signature you provided",
		},
		{
			name: "tampered signed header",
			opts: func(o *bedrockruntime.Options) {
				o.HTTPClient = tamper(func(r *http.Request) { r.Header.Set("Amz-Sdk-Invocation-Id", "00000000-0000-4000-8000-000000000000") })
			},
			wantCode: "InvalidSignatureException",
			wantMsg:  "does not match the signature you provided",
		},
		{
			name:     "stale date",
			opts:     func(o *bedrockruntime.Options) { o.HTTPSignerV4 = skewedSigner{-10 * time.Minute} },
			wantCode: "InvalidSignatureException",
			wantMsg:  "Signature expired",
		},
		{
			name:     "future date",
			opts:     func(o *bedrockruntime.Options) { o.HTTPSignerV4 = skewedSigner{10 * time.Minute} },
			wantCode: "InvalidSignatureException",
			wantMsg:  "Signature not yet current",
		},
		{
			name:     "other region",
			opts:     func(o *bedrockruntime.Options) { o.Region = "eu-west-1" },
			wantCode: "InvalidSignatureException",
			wantMsg:  "Credential should be scoped to a valid region.",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := invokeClaude(t.Context(), client(ts.URL, tc.opts))
			if got := errorCode(err); got != tc.wantCode {
				t.Fatalf("error: got %v (code %q), want %s", err, got, tc.wantCode)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("message: got %q, want it to contain %q", err.Error(), tc.wantMsg)
			}
		})
	}
	st := sim.Stats()
	if st.AuthFailures != len(cases) || st.Total != len(cases) || len(st.Requests) != 0 {
		t.Errorf("Stats: got %d auth failures of %d requests, %v passed, want %d of %d, none passed", st.AuthFailures, st.Total, st.Requests, len(cases), len(cases))
	}
	for _, r := range sim.Requests() {
		if r.Authenticated || r.Status != http.StatusForbidden {
			t.Errorf("record: got authenticated %v status %d, want false 403", r.Authenticated, r.Status)
		}
	}
}

func TestSigV4RawFailures(t *testing.T) {
	_, ts := start(t, bedrocksim.Config{})
	url := ts.URL + "/model/meta.llama3-8b-instruct-v1%3A0/invoke"
	body := []byte(`{"prompt":"hi"}`)

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if status, code, b := do(t, req); status != http.StatusForbidden || code != "MissingAuthenticationTokenException" {
		t.Errorf("no Authorization: got %d %s %s, want 403 MissingAuthenticationTokenException", status, code, b)
	}

	req = signedRequest(t, http.MethodPost, url, body)
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 SignedHeaders=host")
	if status, code, b := do(t, req); status != http.StatusForbidden || code != "IncompleteSignatureException" || !strings.Contains(string(b), "requires 'Credential' parameter") {
		t.Errorf("incomplete Authorization: got %d %s %s, want 403 IncompleteSignatureException", status, code, b)
	}

	req = signedRequest(t, http.MethodPost, url, body)
	req.Header.Set("X-Amz-Content-Sha256", strings.Repeat("0", 64))
	if status, code, b := do(t, req); status != http.StatusForbidden || code != "InvalidSignatureException" {
		t.Errorf("wrong x-amz-content-sha256: got %d %s %s, want 403 InvalidSignatureException", status, code, b)
	}

	// The path is verified exactly as received: the same request with the
	// model id's colon unescaped has another canonical URI.
	req = signedRequest(t, http.MethodPost, url, body)
	req.URL.RawPath = ""
	req.URL.Path = "/model/meta.llama3-8b-instruct-v1:0/invoke"
	if status, code, b := do(t, req); status != http.StatusForbidden || code != "InvalidSignatureException" {
		t.Errorf("path changed after signing: got %d %s %s, want 403 InvalidSignatureException", status, code, b)
	}
}

func TestAPIKeys(t *testing.T) {
	sim := bedrocksim.New(bedrocksim.Config{APIKeys: []string{"bedrock-api-key-good"}})
	// The SDK sends bearer tokens only over HTTPS.
	ts := httptest.NewTLSServer(sim)
	defer ts.Close()
	withKey := func(key string) func(*bedrockruntime.Options) {
		return func(o *bedrockruntime.Options) {
			o.HTTPClient = bedrocksim.BufferedBodyClient{Client: ts.Client()}
			o.Credentials = nil
			o.AuthSchemePreference = []string{"httpBearerAuth"}
			o.BearerAuthTokenProvider = bearer.TokenProviderFunc(func(context.Context) (bearer.Token, error) {
				return bearer.Token{Value: key}, nil
			})
		}
	}

	if err := invokeClaude(t.Context(), client(ts.URL, withKey("bedrock-api-key-good"))); err != nil {
		t.Errorf("accepted key: got %v, want success", err)
	}
	err := invokeClaude(t.Context(), client(ts.URL, withKey("bedrock-api-key-bad")))
	var ad *types.AccessDeniedException
	if !errors.As(err, &ad) || !strings.Contains(ad.ErrorMessage(), "API Key is valid") {
		t.Errorf("unknown key: got %v, want *types.AccessDeniedException", err)
	}
	recs := sim.Requests()
	if len(recs) != 2 || !recs[0].Authenticated || recs[1].Authenticated {
		t.Errorf("Requests: got %+v, want the good key authenticated and the bad one not", recs)
	}
	if got := recs[0].Header.Get("Authorization"); got != "Bearer bedrock-api-key-good" {
		t.Errorf("recorded Authorization: got %q, want the bearer token", got)
	}
}

// TestHTTP2 runs SigV4, a stream and a reset over HTTP/2 with TLS, where
// the reset cannot hijack the connection and aborts the stream instead.
func TestHTTP2(t *testing.T) {
	sim := bedrocksim.New(bedrocksim.Config{})
	ts := httptest.NewUnstartedServer(sim)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	c := client(ts.URL, func(o *bedrockruntime.Options) { o.HTTPClient = bedrocksim.BufferedBodyClient{Client: ts.Client()} })

	if err := invokeClaude(t.Context(), c); err != nil {
		t.Fatalf("InvokeModel over h2: %v", err)
	}
	st, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: userText("hi")})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range st.GetStream().Events() {
		n++
	}
	if err := st.GetStream().Err(); err != nil || n != 12 {
		t.Errorf("ConverseStream over h2: got %d events, %v, want 12 and no error", n, err)
	}
	sim.InjectFault(bedrocksim.Fault{Kind: bedrocksim.FaultReset})
	var ae smithy.APIError
	if err := invokeClaude(t.Context(), c); err == nil || errors.As(err, &ae) {
		t.Errorf("reset over h2: got %v, want a transport error", err)
	}
	recs := sim.Requests()
	if got := recs[len(recs)-1].Header.Get("X-Amz-Date"); got == "" || recs[0].Status != http.StatusOK {
		t.Errorf("records: got %+v, want the signed requests", recs)
	}
	if resp, err := ts.Client().Get(ts.URL); err != nil || resp.ProtoMajor != 2 {
		t.Errorf("protocol: got %v %v, want HTTP/2", resp, err)
	} else {
		resp.Body.Close()
	}
}
