package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"

	"github.com/quotagate/quotagate/bedrocksim"
)

// The tenants of TestTenantsAcrossReplicas. Their secrets reach the
// replicas through the environment, as a Kubernetes Secret would.
const (
	searchKeyID   = "QGAKE2ESEARCH0000001"
	searchSecret  = "e2e-search-secret-0123456789abcdefghij"
	adsKeyID      = "QGAKE2EADS0000000001"
	adsSecret     = "e2e-ads-secret-0123456789abcdefghijklm"
	adminToken    = "e2e-admin-token-0123456789"
	otherModel    = "meta.llama3-8b-instruct-v1:0"
	tenantsBudget = `models:
  %[1]s: {tpm: 1000000, rpm: 10000, concurrency: 100}
tenants:
  search:
    access_keys: [{id: %[2]s, secret_env: SEARCH_SECRET}]
    models: ["anthropic.*"]
  ads:
    access_keys: [{id: %[3]s, secret_env: ADS_SECRET}]
    models: ["anthropic.*"]
    budgets:
      %[1]s: {tpm: 100000}
`
)

// TestTenantsAcrossReplicas runs two gateway processes sharing one Redis,
// with tenants from the budgets file, and drives them with the real SDK
// (SigV4, static credentials) and the admin API over HTTP:
//   - callers are told apart, and one tenant's credentials, models and
//     budget are not another's;
//   - an admin change made on one replica is enforced by the other on its
//     next request, and a key revoked on one fails on the other's next
//     request;
//   - a replica started afterwards (a restart) has every change;
//   - no secret appears in any replica's log.
func TestTenantsAcrossReplicas(t *testing.T) {
	redisURL, _, prefix, _ := sharedRedis(t)
	sim := startSimulator(t, simOptions{model: testModel, limits: limits{tpm: 10_000_000, rpm: 100_000, concurrency: 1000}, window: time.Minute})
	budgets := filepath.Join(t.TempDir(), "budgets.yaml")
	if err := os.WriteFile(budgets, fmt.Appendf(nil, tenantsBudget, testModel, searchKeyID, adsKeyID), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := gatewayOptions{
		replicas: 2, upstream: sim.url, budgetsFile: budgets, redisURL: redisURL, redisPrefix: prefix,
		window: time.Minute, maxWait: 0, leaseTTL: 30 * time.Second,
		extra: map[string]string{
			"QUOTAGATE_ADMIN_TOKEN": adminToken,
			"SEARCH_SECRET":         searchSecret,
			"ADS_SECRET":            adsSecret,
			// Access-log lines too, so that the secret scan below reads
			// everything a replica writes about a request.
			"QUOTAGATE_LOG_LEVEL": "info",
		},
	}
	gws := startGateways(t, opts)
	r1, r2 := gws[0], gws[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	search := func(g *gateway) *bedrockruntime.Client { return tenantClient(g.url, searchKeyID, searchSecret) }
	ads := func(g *gateway) *bedrockruntime.Client { return tenantClient(g.url, adsKeyID, adsSecret) }

	// Who is calling.
	for _, g := range gws {
		wantCode(t, "search on "+g.name, converse(ctx, search(g), testModel), "")
		wantCode(t, "ads on "+g.name, converse(ctx, ads(g), testModel), "")
		wantCode(t, "unknown key", converse(ctx, tenantClient(g.url, "AKIDE2ECLIENT0000001", "x"), testModel), "UnrecognizedClientException")
		wantCode(t, "ads's key id with search's secret", converse(ctx, tenantClient(g.url, adsKeyID, searchSecret), testModel), "InvalidSignatureException")
		wantCode(t, "search calling a model it may not", converse(ctx, search(g), otherModel), "AccessDeniedException")
	}

	// A budget change on replica 1 is enforced by replica 2 at once: ads
	// may now make one request per window, and has made none in this one
	// only if the change resets nothing, so count from its usage.
	patch(t, r1, "/admin/v1/tenants/ads", fmt.Sprintf(`{"budgets": {%q: {"rpm": 3}}}`, testModel), http.StatusOK)
	used := usageOf(t, r2, "ads", testModel).WindowRequests
	if used != 2 {
		t.Fatalf("ads's requests in the window before the change: %d, want the 2 it made", used)
	}
	wantCode(t, "ads's third request on replica 2", converse(ctx, ads(r2), testModel), "")
	wantCode(t, "ads's fourth request on replica 2, over its new rpm of 3", converse(ctx, ads(r2), testModel), "ThrottlingException")
	wantCode(t, "ads's fourth request on replica 1", converse(ctx, ads(r1), testModel), "ThrottlingException")
	// ads's budget is its own: search, on the same pool, is unaffected.
	for range 5 {
		wantCode(t, "search while ads is throttled", converse(ctx, search(r2), testModel), "")
	}
	// Each tenant's usage is its own.
	if u := usageOf(t, r1, "search", testModel); u.WindowRequests != 7 {
		t.Errorf("search's requests in the window: %d, want 7", u.WindowRequests)
	}
	if u := usageOf(t, r1, "ads", testModel); u.WindowRequests != 3 {
		t.Errorf("ads's requests in the window: %d, want 3 (the throttled ones cost nothing)", u.WindowRequests)
	}

	// A key issued on replica 1 works on replica 2 at once; revoked on
	// replica 1, it fails on replica 2's very next request.
	issued := issueAccessKey(t, r1, "search")
	wantCode(t, "issued key on replica 2", converse(ctx, tenantClient(r2.url, issued.AccessKeyID, issued.Secret), testModel), "")
	del(t, r1, "/admin/v1/tenants/search/keys/"+issued.AccessKeyID, http.StatusNoContent)
	wantCode(t, "revoked key on replica 2", converse(ctx, tenantClient(r2.url, issued.AccessKeyID, issued.Secret), testModel), "UnrecognizedClientException")

	// A tenant's credentials open nothing on the admin API: not even its
	// own usage, let alone another tenant's.
	for _, tok := range []string{searchSecret, searchKeyID, issued.Secret} {
		if status, _ := adminCall(r1, http.MethodGet, "/admin/v1/tenants/ads/usage", tok, ""); status != http.StatusUnauthorized {
			t.Errorf("usage read with a tenant's credential: status %d, want 401", status)
		}
	}

	// A replica started now (a restart) has every change from Redis.
	bin, dir := gatewayBinary(t), t.TempDir()
	r3 := startGateway(t, bin, dir, 2, opts).readyOrRestart(t, bin, dir, 2, opts)
	wantCode(t, "ads on a new replica, still over its rpm of 3", converse(ctx, ads(r3), testModel), "ThrottlingException")
	wantCode(t, "revoked key on a new replica", converse(ctx, tenantClient(r3.url, issued.AccessKeyID, issued.Secret), testModel), "UnrecognizedClientException")
	wantCode(t, "search on a new replica", converse(ctx, search(r3), testModel), "")

	// Removing the override puts the file's budget back everywhere.
	del(t, r2, "/admin/v1/tenants/ads/override", http.StatusNoContent)
	wantCode(t, "ads after its override is removed", converse(ctx, ads(r1), testModel), "")

	for _, g := range append(gws, r3) {
		g.stop()
		log := g.logTail(64 << 20)
		for _, secret := range []string{searchSecret, adsSecret, adminToken, issued.Secret} {
			if strings.Contains(log, secret) {
				t.Errorf("%s's log contains a secret (%.6s...)", g.name, secret)
			}
		}
		if !strings.Contains(log, `"tenant":"search"`) {
			t.Errorf("%s's access log names no tenant", g.name)
		}
	}
	if n := sim.Stats().Total; n == 0 {
		t.Error("the simulator served nothing")
	}
}

// tenantClient is the unmodified SDK with a tenant's static credentials.
func tenantClient(endpoint, keyID, secret string) *bedrockruntime.Client {
	return bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "eu-west-1", // any region: the gateway verifies any
		Credentials:  credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   bedrocksim.BufferedBodyClient{},
	})
}

func converse(ctx context.Context, c *bedrockruntime.Client, model string) error {
	_, err := c.Converse(ctx, &bedrockruntime.ConverseInput{
		ModelId:         aws.String(model),
		Messages:        []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "Hello"}}}},
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(64)},
	})
	return err
}

// wantCode checks a call's outcome: success for "", else that AWS error
// code.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("%s: %v, want success", what, err)
		}
		return
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

func adminCall(g *gateway, method, path, token, body string) (int, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, g.url+path, strings.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func adminDo(t *testing.T, g *gateway, method, path, body string, want int) []byte {
	t.Helper()
	status, b := adminCall(g, method, path, adminToken, body)
	if status != want {
		t.Fatalf("%s %s on %s: %d %s, want %d", method, path, g.name, status, bytes.TrimSpace(b), want)
	}
	return b
}

func patch(t *testing.T, g *gateway, path, body string, want int) {
	t.Helper()
	adminDo(t, g, http.MethodPatch, path, body, want)
}

func del(t *testing.T, g *gateway, path string, want int) {
	t.Helper()
	adminDo(t, g, http.MethodDelete, path, "", want)
}

// tenantUsage is one pool's counters from the admin usage endpoint.
type tenantUsage struct {
	WindowTokens   int64 `json:"window_tokens"`
	WindowRequests int64 `json:"window_requests"`
	DayTokens      int64 `json:"day_tokens"`
	InFlight       int64 `json:"in_flight"`
}

func usageOf(t *testing.T, g *gateway, tenantID, model string) tenantUsage {
	t.Helper()
	b := adminDo(t, g, http.MethodGet, "/admin/v1/tenants/"+tenantID+"/usage?model="+model, "", http.StatusOK)
	var out struct {
		Models []struct {
			Model string      `json:"model"`
			Usage tenantUsage `json:"usage"`
		} `json:"models"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("usage of %s: %v in %s", tenantID, err, b)
	}
	for _, m := range out.Models {
		if m.Model == model {
			return m.Usage
		}
	}
	t.Fatalf("usage of %s names no %s: %s", tenantID, model, b)
	return tenantUsage{}
}

// issuedKey is an access key from the admin API.
type issuedKey struct {
	AccessKeyID string `json:"access_key_id"`
	Secret      string `json:"secret_access_key"`
}

func issueAccessKey(t *testing.T, g *gateway, tenantID string) issuedKey {
	t.Helper()
	b := adminDo(t, g, http.MethodPost, "/admin/v1/tenants/"+tenantID+"/keys", `{"type":"sigv4"}`, http.StatusCreated)
	var k issuedKey
	if err := json.Unmarshal(b, &k); err != nil || k.AccessKeyID == "" || k.Secret == "" {
		t.Fatalf("issued key: %v in %s", err, b)
	}
	return k
}
