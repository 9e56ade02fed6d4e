package bedrocksim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/internal/jsondoc"
)

// start serves a simulator for the test.
func start(t *testing.T, cfg bedrocksim.Config) (*bedrocksim.Server, *httptest.Server) {
	t.Helper()
	sim := bedrocksim.New(cfg)
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	return sim, ts
}

// client is the unmodified SDK client pointed at url with the default
// static credentials. Retries are off so that tests count requests exactly,
// and SigV4 is forced even if AWS_BEARER_TOKEN_BEDROCK is set.
func client(url string, optFns ...func(*bedrockruntime.Options)) *bedrockruntime.Client {
	opts := bedrockruntime.Options{
		BaseEndpoint:     aws.String(url),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
		RetryMaxAttempts: 1,
		HTTPClient:       bedrocksim.BufferedBodyClient{},
	}
	sigV4 := func(o *bedrockruntime.Options) {
		o.AuthSchemePreference = nil
		o.BearerAuthTokenProvider = nil
	}
	return bedrockruntime.New(opts, append([]func(*bedrockruntime.Options){sigV4}, optFns...)...)
}

// userText is a one-message Converse conversation.
func userText(s string) []types.Message {
	return []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: s}}}}
}

// signedRequest builds a raw request signed like the SDK signs, for what
// the SDK cannot send (unknown paths, other methods).
func signedRequest(t testing.TB, method, url string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: bedrocksim.AccessKeyID, SecretAccessKey: bedrocksim.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "bedrock", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

// do sends a raw request and returns the status, the error type header and
// the body.
func do(t *testing.T, req *http.Request) (int, string, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), b
}

// get and str read decoded JSON (see internal/jsondoc).
var (
	get = jsondoc.At
	str = jsondoc.Str
)

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, b)
	}
	return m
}
