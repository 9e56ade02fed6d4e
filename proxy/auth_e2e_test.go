package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"

	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/telemetry"
	"github.com/quotagate/quotagate/tenant"
)

// The tenants of the end-to-end tests: "search" may call Anthropic models,
// with a bearer key and an access key; "ads" may call Meta models.
const (
	e2eSearchKey    = "qg-e2e-search-bearer-key-0001"
	e2eSearchKeyID  = "QGAKE2ESEARCH0000001"
	e2eSearchSecret = "e2e-search-secret-0123456789abcdefghij"
	e2eAdsKey       = "qg-e2e-ads-bearer-key-0002"
	e2eLlama        = "meta.llama3-8b-instruct-v1:0"
)

// fixedTenants is a tenant.Source with one directory.
type fixedTenants struct{ dir *tenant.Directory }

func (f fixedTenants) Current(context.Context) *tenant.Directory { return f.dir }

// withTenants gives the harness's gateway the e2e tenants and checks that
// an unauthenticated request is then refused.
func withTenants(t *testing.T, h *harness) {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "search-secret")
	if err := os.WriteFile(secretFile, []byte(e2eSearchSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	hash := func(k string) string {
		sum := sha256.Sum256([]byte(k))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	dir, err := tenant.FromConfig(map[string]quota.TenantConfig{
		"search": {
			APIKeys:    []string{hash(e2eSearchKey)},
			AccessKeys: []quota.AccessKeyConfig{{ID: e2eSearchKeyID, SecretFile: secretFile}},
			Models:     []string{"anthropic.*"},
		},
		"ads": {APIKeys: []string{hash(e2eAdsKey)}, Models: []string{"meta.*"}},
	}, "file")
	if err != nil {
		t.Fatalf("tenant.FromConfig: %v", err)
	}
	h.gateway.Tenants = fixedTenants{dir}

	// A request without credentials must be refused once tenants exist.
	resp := h.post(t, haikuPath+"/converse", "application/json", []byte(`{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`))
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Amzn-ErrorType") != "MissingAuthenticationTokenException" {
		t.Fatalf("request without credentials: %d %s, want 403 MissingAuthenticationTokenException", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
}

// sdkClient is the unmodified SDK pointed at endpoint with static
// credentials.
func sdkClient(endpoint, keyID, secret string) *bedrockruntime.Client {
	return bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "eu-central-1", // any region: the gateway is not regional
		Credentials:  credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   bedrocksim.BufferedBodyClient{},
	})
}

// apiErrorCode is the exception name of an SDK error, or "".
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestAuthE2ESigV4 drives the real SDK with a tenant's access key: the
// gateway verifies the caller's signature and re-signs with its own
// credentials (the simulator knows only those).
func TestAuthE2ESigV4(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	withTenants(t, h)
	ctx := testContext(t)

	out, err := sdkClient(h.front.URL, e2eSearchKeyID, e2eSearchSecret).Converse(ctx, converseInput(haiku))
	if err != nil {
		t.Fatalf("Converse with the tenant's access key: %v", err)
	}
	if out.Usage == nil || aws.ToInt32(out.Usage.OutputTokens) == 0 {
		t.Errorf("Converse usage: got %+v, want output tokens", out.Usage)
	}
	recs := h.sim.Requests()
	if got := recs[len(recs)-1].Header.Get("Authorization"); !strings.Contains(got, "Credential="+bedrocksim.AccessKeyID+"/") {
		t.Errorf("upstream Authorization: got %q, want the gateway's own signature", got)
	}

	cases := []struct {
		name, keyID, secret, want string
	}{
		{"wrong secret", e2eSearchKeyID, "not-the-secret", "InvalidSignatureException"},
		{"unknown access key", "QGAKE2EUNKNOWN000001", e2eSearchSecret, "UnrecognizedClientException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdkClient(h.front.URL, tc.keyID, tc.secret).Converse(ctx, converseInput(haiku))
			var re interface{ HTTPStatusCode() int }
			if got := apiErrorCode(err); got != tc.want || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
				t.Fatalf("Converse: got %v (code %q), want 403 %s", err, got, tc.want)
			}
		})
	}
	if n := len(h.sim.Requests()); n != len(recs) {
		t.Errorf("upstream requests: got %d more, want none for refused callers", n-len(recs))
	}
}

// TestAuthE2EBearer drives the real SDK with a Bedrock API key from
// AWS_BEARER_TOKEN_BEDROCK, as an unmodified application configures it. The
// SDK sends bearer tokens only over HTTPS, so the gateway serves TLS.
func TestAuthE2EBearer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	withTenants(t, h)
	front := httptest.NewTLSServer(telemetry.ServerHandler(h.gateway, proxy.SpanName))
	t.Cleanup(front.Close)
	ctx := testContext(t)

	// Keep the default chain away from the machine's own AWS setup.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "us-west-2")
	client := func(key string) *bedrockruntime.Client {
		t.Setenv("AWS_BEARER_TOKEN_BEDROCK", key)
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return bedrockruntime.NewFromConfig(cfg, func(o *bedrockruntime.Options) {
			o.BaseEndpoint = aws.String(front.URL)
			o.HTTPClient = bedrocksim.BufferedBodyClient{Client: front.Client()}
			o.Retryer = aws.NopRetryer{}
		})
	}

	if _, err := client(e2eSearchKey).Converse(ctx, converseInput(haiku)); err != nil {
		t.Fatalf("Converse with the tenant's bearer key: %v", err)
	}
	recs := h.sim.Requests()
	if got := recs[len(recs)-1].Header.Get("Authorization"); !strings.HasPrefix(got, "AWS4-HMAC-SHA256 ") || strings.Contains(got, e2eSearchKey) {
		t.Errorf("upstream Authorization: got %q, want the gateway's SigV4 and never the caller's key", got)
	}

	_, err := client("qg-e2e-not-a-key").Converse(ctx, converseInput(haiku))
	if got := apiErrorCode(err); got != "UnrecognizedClientException" {
		t.Errorf("unknown bearer key: got %v (code %q), want UnrecognizedClientException", err, got)
	}
	if strings.Contains(h.logs.String(), e2eSearchKey) || strings.Contains(h.logs.String(), "qg-e2e-not-a-key") {
		t.Errorf("access log carries a bearer key:\n%s", h.logs.String())
	}
}

// TestAuthE2EModelNotAllowed checks that a tenant calling a model outside
// its list gets the SDK's typed AccessDeniedException, with either
// credential kind.
func TestAuthE2EModelNotAllowed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	withTenants(t, h)
	ctx := testContext(t)
	before := len(h.sim.Requests())

	_, err := sdkClient(h.front.URL, e2eSearchKeyID, e2eSearchSecret).Converse(ctx, converseInput(e2eLlama))
	var ad *types.AccessDeniedException
	if !errors.As(err, &ad) || !strings.Contains(ad.ErrorMessage(), `"search"`) || !strings.Contains(ad.ErrorMessage(), e2eLlama) {
		t.Fatalf("search calling %s: got %v, want *types.AccessDeniedException naming the tenant and model", e2eLlama, err)
	}
	if strings.Contains(ad.ErrorMessage(), e2eSearchSecret) || strings.Contains(ad.ErrorMessage(), e2eSearchKeyID) {
		t.Errorf("AccessDeniedException message %q carries a credential", ad.ErrorMessage())
	}
	if n := len(h.sim.Requests()); n != before {
		t.Errorf("upstream requests: got %d, want none for a model not allowed", n-before)
	}
}
