package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/authfail"
	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/internal/redistest"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tenant"
)

// Credentials of the test tenants. "search" may call Anthropic models,
// "ads" Meta models.
const (
	searchAPIKey   = "qg-test-search-bearer-key-0001"
	searchKeyID    = "QGAKSEARCH0000000001"
	searchSecret   = "search-secret-0123456789abcdefghijklmn"
	adsAPIKey      = "qg-test-ads-bearer-key-0002"
	haikuModel     = "anthropic.claude-3-haiku-20240307-v1:0"
	llamaModel     = "meta.llama3-8b-instruct-v1:0"
	converseBody   = `{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`
	attackerSource = "198.51.100.7"
	otherSource    = "203.0.113.9"
)

// staticSource is a tenant.Source that always yields one directory.
type staticSource struct{ dir *tenant.Directory }

func (s staticSource) Current(context.Context) *tenant.Directory { return s.dir }

func hashedKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// testTenants builds the test directory with tenant.FromConfig. While the
// tenant package is still a contract skeleton the test is skipped, saying
// so, rather than failing the tree.
func testTenants(t testing.TB) *tenant.Directory {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "search-secret")
	if err := os.WriteFile(secretFile, []byte(searchSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	return fromConfig(t, map[string]quota.TenantConfig{
		"search": {
			APIKeys:    []string{hashedKey(searchAPIKey)},
			AccessKeys: []quota.AccessKeyConfig{{ID: searchKeyID, SecretFile: secretFile}},
			Models:     []string{"anthropic.*"},
		},
		"ads": {
			APIKeys: []string{hashedKey(adsAPIKey)},
			Models:  []string{"meta.*"},
		},
	})
}

func fromConfig(t testing.TB, tenants map[string]quota.TenantConfig) (dir *tenant.Directory) {
	t.Helper()
	func() {
		defer func() {
			if p := recover(); p != nil {
				if fmt.Sprint(p) != "not implemented" {
					panic(p)
				}
				t.Skip("tenant.FromConfig is not implemented yet (contract skeleton)")
			}
		}()
		var err error
		if dir, err = tenant.FromConfig(tenants, "file"); err != nil {
			t.Fatalf("tenant.FromConfig: %v", err)
		}
	}()
	return dir
}

// authRequest is a Converse request for model from source, as the gateway
// receives it.
func authRequest(t testing.TB, model, source string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://gateway.test/model/"+strings.ReplaceAll(model, ":", "%3A")+"/converse", strings.NewReader(converseBody))
	r.Header.Set("Content-Type", "application/json")
	r.RemoteAddr = source + ":40000"
	return r
}

func withBearer(r *http.Request, key string) *http.Request {
	r.Header.Set("Authorization", "Bearer "+key)
	return r
}

// withSigV4 signs r as the AWS SDK does, with the payload hash of body.
func withSigV4(t testing.TB, r *http.Request, keyID, secret, region string) *http.Request {
	t.Helper()
	sum := sha256.Sum256([]byte(converseBody))
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "bedrock", region, time.Now()); err != nil {
		t.Fatal(err)
	}
	return r
}

// authOutcome is what the caller of an authenticated request is told: the
// tenant, or the Bedrock exception and status.
func authOutcome(t testing.TB, g *Gateway, r *http.Request, body string) (string, *bedrock.Error) {
	t.Helper()
	tn, err := g.authenticate(r.Context(), r, []byte(body))
	if err != nil {
		if tn != nil {
			t.Errorf("authenticate: got tenant %q with error %v", tn.ID, err)
		}
		return "", bedrockError(err)
	}
	return tn.ID, nil
}

func TestAuthOpenMode(t *testing.T) {
	cases := []struct {
		name string
		g    *Gateway
	}{
		{"no tenant source", &Gateway{}},
		{"no tenant configured", &Gateway{Tenants: staticSource{fromConfig(t, map[string]quota.TenantConfig{})}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []*http.Request{
				authRequest(t, haikuModel, otherSource),
				withBearer(authRequest(t, haikuModel, otherSource), "anything"),
				withSigV4(t, authRequest(t, llamaModel, otherSource), "AKIDUNKNOWN000000000", "x", "us-east-1"),
			} {
				if id, be := authOutcome(t, tc.g, r, converseBody); be != nil || id != tenant.DefaultID {
					t.Errorf("authenticate: got %q, %v, want the %q tenant", id, be, tenant.DefaultID)
				}
			}
		})
	}
}

func TestAuthErrors(t *testing.T) {
	g := &Gateway{Tenants: staticSource{testTenants(t)}}
	cases := []struct {
		name       string
		req        func(t *testing.T) *http.Request
		body       string // received body; default converseBody
		wantTenant string
		wantType   bedrock.ErrorType
		wantMsg    string
	}{
		{
			name: "bearer key",
			req: func(t *testing.T) *http.Request {
				return withBearer(authRequest(t, haikuModel, otherSource), searchAPIKey)
			},
			wantTenant: "search",
		},
		{
			name: "bearer scheme in lower case",
			req: func(t *testing.T) *http.Request {
				r := authRequest(t, llamaModel, otherSource)
				r.Header.Set("Authorization", "bearer "+adsAPIKey)
				return r
			},
			wantTenant: "ads",
		},
		{
			name: "SigV4",
			req: func(t *testing.T) *http.Request {
				return withSigV4(t, authRequest(t, haikuModel, otherSource), searchKeyID, searchSecret, "us-east-1")
			},
			wantTenant: "search",
		},
		{
			name: "SigV4 for another region",
			req: func(t *testing.T) *http.Request {
				return withSigV4(t, authRequest(t, haikuModel, otherSource), searchKeyID, searchSecret, "ap-southeast-2")
			},
			wantTenant: "search",
		},
		{
			name: "unknown bearer key",
			req: func(t *testing.T) *http.Request {
				return withBearer(authRequest(t, haikuModel, otherSource), "qg-not-a-key")
			},
			wantType: bedrock.UnrecognizedClient, wantMsg: "The security token included in the request is invalid.",
		},
		{
			name:     "empty bearer key",
			req:      func(t *testing.T) *http.Request { return withBearer(authRequest(t, haikuModel, otherSource), "") },
			wantType: bedrock.UnrecognizedClient, wantMsg: "The security token included in the request is invalid.",
		},
		{
			name: "unknown access key",
			req: func(t *testing.T) *http.Request {
				return withSigV4(t, authRequest(t, haikuModel, otherSource), "QGAKUNKNOWN000000000", searchSecret, "us-east-1")
			},
			wantType: bedrock.UnrecognizedClient, wantMsg: "The security token included in the request is invalid.",
		},
		{
			name: "wrong secret",
			req: func(t *testing.T) *http.Request {
				return withSigV4(t, authRequest(t, haikuModel, otherSource), searchKeyID, "not-the-secret", "us-east-1")
			},
			wantType: bedrock.InvalidSignature, wantMsg: "The request signature we calculated does not match",
		},
		{
			name: "tampered body",
			req: func(t *testing.T) *http.Request {
				return withSigV4(t, authRequest(t, haikuModel, otherSource), searchKeyID, searchSecret, "us-east-1")
			},
			body:     strings.Replace(converseBody, "hello", "HELLO", 1),
			wantType: bedrock.InvalidSignature, wantMsg: "The request signature we calculated does not match",
		},
		{
			name: "signed for another service",
			req: func(t *testing.T) *http.Request {
				r := authRequest(t, haikuModel, otherSource)
				sum := sha256.Sum256([]byte(converseBody))
				creds := aws.Credentials{AccessKeyID: searchKeyID, SecretAccessKey: searchSecret}
				_ = v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "sagemaker", "us-east-1", time.Now())
				return r
			},
			wantType: bedrock.InvalidSignature, wantMsg: "Credential should be scoped to correct service: 'bedrock'.",
		},
		{
			name:     "no Authorization",
			req:      func(t *testing.T) *http.Request { return authRequest(t, haikuModel, otherSource) },
			wantType: bedrock.MissingAuthenticationToken, wantMsg: "Missing Authentication Token",
		},
		{
			name: "malformed Authorization",
			req: func(t *testing.T) *http.Request {
				r := authRequest(t, haikuModel, otherSource)
				r.Header.Set("Authorization", "AWS4-HMAC-SHA256 SignedHeaders=host")
				return r
			},
			wantType: bedrock.IncompleteSignature, wantMsg: "Authorization header requires 'Credential' parameter.",
		},
		{
			name: "other scheme",
			req: func(t *testing.T) *http.Request {
				r := authRequest(t, haikuModel, otherSource)
				r.Header.Set("Authorization", "Basic "+searchAPIKey)
				return r
			},
			wantType: bedrock.IncompleteSignature, wantMsg: msgBadAuthorization,
		},
		{
			// A Bedrock API key sent as the whole header: the message
			// must not quote its start, as a scheme.
			name: "key without a scheme",
			req: func(t *testing.T) *http.Request {
				r := authRequest(t, haikuModel, otherSource)
				r.Header.Set("Authorization", searchAPIKey)
				return r
			},
			wantType: bedrock.IncompleteSignature, wantMsg: msgBadAuthorization,
		},
		{
			name: "tab after Bearer",
			req: func(t *testing.T) *http.Request {
				r := authRequest(t, haikuModel, otherSource)
				r.Header.Set("Authorization", "Bearer\t"+searchAPIKey)
				return r
			},
			wantType: bedrock.IncompleteSignature, wantMsg: msgBadAuthorization,
		},
		{
			name: "SigV4 scheme with a tab",
			req: func(t *testing.T) *http.Request {
				r := withSigV4(t, authRequest(t, haikuModel, otherSource), searchKeyID, searchSecret, "us-east-1")
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), " ", "\t", 1))
				return r
			},
			wantType: bedrock.IncompleteSignature, wantMsg: msgBadAuthorization,
		},
		{
			name: "bearer key, model not allowed",
			req: func(t *testing.T) *http.Request {
				return withBearer(authRequest(t, llamaModel, otherSource), searchAPIKey)
			},
			wantType: bedrock.AccessDenied, wantMsg: `tenant "search" is not allowed to call model "` + llamaModel + `"`,
		},
		{
			name: "SigV4, model not allowed",
			req: func(t *testing.T) *http.Request {
				return withSigV4(t, authRequest(t, llamaModel, otherSource), searchKeyID, searchSecret, "us-east-1")
			},
			wantType: bedrock.AccessDenied, wantMsg: `tenant "search" is not allowed to call model "` + llamaModel + `"`,
		},
		{
			name: "another tenant's model",
			req: func(t *testing.T) *http.Request {
				return withBearer(authRequest(t, haikuModel, otherSource), adsAPIKey)
			},
			wantType: bedrock.AccessDenied, wantMsg: `tenant "ads" is not allowed to call model "` + haikuModel + `"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := converseBody
			if tc.body != "" {
				body = tc.body
			}
			r := tc.req(t)
			id, be := authOutcome(t, g, r, body)
			if tc.wantType == "" {
				if be != nil || id != tc.wantTenant {
					t.Fatalf("authenticate: got %q, %v, want tenant %q", id, be, tc.wantTenant)
				}
				return
			}
			if be == nil || be.Type != tc.wantType || be.Status() != http.StatusForbidden {
				t.Fatalf("authenticate: got %q, %v, want 403 %s", id, be, tc.wantType)
			}
			if !strings.Contains(be.Message, tc.wantMsg) {
				t.Errorf("message: got %q, want it to contain %q", be.Message, tc.wantMsg)
			}
			noSecrets(t, "message", be.Message, r)
		})
	}
}

// noSecrets fails if s carries any 8 consecutive characters of a key, a
// secret or r's signature: a quote cut short leaks as much as a whole one.
func noSecrets(t testing.TB, what, s string, r *http.Request) {
	t.Helper()
	secrets := []string{searchAPIKey, adsAPIKey, searchSecret}
	if _, sig, ok := strings.Cut(r.Header.Get("Authorization"), "Signature="); ok && len(sig) >= 16 {
		secrets = append(secrets, sig)
	}
	for _, x := range secrets {
		for i := 0; i+8 <= len(x); i++ {
			if strings.Contains(s, x[i:i+8]) {
				t.Errorf("%s %q contains %q of a secret", what, s, x[i:i+8])
				break
			}
		}
	}
}

// TestAuthNoDirectory checks that a tenant source that yields nothing
// fails closed instead of opening the gateway.
func TestAuthNoDirectory(t *testing.T) {
	g := &Gateway{Tenants: staticSource{nil}}
	_, be := authOutcome(t, g, withBearer(authRequest(t, haikuModel, otherSource), searchAPIKey), converseBody)
	if be == nil || be.Type != bedrock.ServiceUnavailable || be.Status() != http.StatusServiceUnavailable {
		t.Errorf("authenticate: got %v, want 503 ServiceUnavailableException", be)
	}
}

// countingLimiter counts the failures reported to an AuthLimiter.
type countingLimiter struct {
	AuthLimiter
	failures atomic.Int64
}

func (c *countingLimiter) Failed(ctx context.Context, source string) (time.Duration, error) {
	c.failures.Add(1)
	return c.AuthLimiter.Failed(ctx, source)
}

// wantThrottled checks a 429 ThrottlingException with Retry-After, as the
// caller receives it.
func wantThrottled(t testing.TB, g *Gateway, r *http.Request, what string) {
	t.Helper()
	_, err := g.authenticate(r.Context(), r, []byte(converseBody))
	if err == nil {
		t.Fatalf("%s: authenticated, want 429 ThrottlingException", what)
	}
	w := httptest.NewRecorder()
	g.fail(w, &exchange{}, err)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("X-Amzn-Errortype") != string(bedrock.Throttling) || w.Header().Get("Retry-After") == "" {
		t.Fatalf("%s: got %d %s Retry-After %q (%v), want 429 ThrottlingException with Retry-After", what, w.Code,
			w.Header().Get("X-Amzn-Errortype"), w.Header().Get("Retry-After"), err)
	}
	noSecrets(t, "throttle body", w.Body.String(), r)
}

func wantDenied(t testing.TB, g *Gateway, r *http.Request, what string) {
	t.Helper()
	if _, be := authOutcome(t, g, r, converseBody); be == nil || be.Status() != http.StatusForbidden {
		t.Fatalf("%s: got %v, want a 403", what, be)
	}
}

func wantTenant(t testing.TB, g *Gateway, r *http.Request, want, what string) {
	t.Helper()
	if id, be := authOutcome(t, g, r, converseBody); be != nil || id != want {
		t.Fatalf("%s: got %q, %v, want tenant %q", what, id, be, want)
	}
}

func TestAuthThrottleMemory(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	lim := &countingLimiter{AuthLimiter: authfail.NewMemory(authfail.Options{Failures: 3, Period: time.Minute, Now: func() time.Time { return now }})}
	g := &Gateway{Tenants: staticSource{testTenants(t)}, AuthFailures: lim}

	for i := range 3 {
		wantDenied(t, g, withBearer(authRequest(t, haikuModel, attackerSource), fmt.Sprintf("guess-%d", i)), fmt.Sprintf("failure %d", i+1))
	}
	wantThrottled(t, g, withBearer(authRequest(t, haikuModel, attackerSource), "guess-3"), "failure over the limit")
	counted := lim.failures.Load()

	// Blocked: even the right key is refused, before it is looked at.
	wantThrottled(t, g, withBearer(authRequest(t, haikuModel, attackerSource), searchAPIKey), "right key from a blocked source")
	wantThrottled(t, g, withSigV4(t, authRequest(t, haikuModel, attackerSource), searchKeyID, "wrong", "us-east-1"), "wrong signature from a blocked source")
	if got := lim.failures.Load(); got != counted {
		t.Errorf("failures counted while blocked: got %d more, want none (credentials not checked)", got-counted)
	}
	// Other sources are not affected.
	wantTenant(t, g, withBearer(authRequest(t, haikuModel, otherSource), searchAPIKey), "search", "another source")

	// The limit refills at 3 a minute: after 20 s one more failure is
	// answered, then the source is blocked again.
	now = now.Add(20*time.Second + time.Millisecond)
	wantTenant(t, g, withBearer(authRequest(t, haikuModel, attackerSource), searchAPIKey), "search", "right key after the block")
	wantDenied(t, g, withBearer(authRequest(t, haikuModel, attackerSource), "guess-4"), "one failure after the block")
	wantThrottled(t, g, withBearer(authRequest(t, haikuModel, attackerSource), "guess-5"), "second failure after the block")
}

// TestAuthThrottleRedis shares the failure count of one source between two
// gateways through Redis: each sees only part of the failures, both refuse
// the source once it is over the limit, including with the right key.
func TestAuthThrottleRedis(t *testing.T) {
	c, prefix := redistest.New(t)
	// redis_rate puts its own "rate:" before our prefix.
	t.Cleanup(func() { redistest.DeleteByPrefix(t, c, "rate:"+prefix) })
	dir := testTenants(t)
	opts := authfail.Options{Failures: 4, Period: time.Minute, KeyPrefix: prefix}
	limA, limB := &countingLimiter{AuthLimiter: authfail.NewRedis(c, opts)}, &countingLimiter{AuthLimiter: authfail.NewRedis(c, opts)}
	a := &Gateway{Tenants: staticSource{dir}, AuthFailures: limA}
	b := &Gateway{Tenants: staticSource{dir}, AuthFailures: limB}

	for i, g := range []*Gateway{a, b, a, b} {
		wantDenied(t, g, withBearer(authRequest(t, haikuModel, attackerSource), fmt.Sprintf("guess-%d", i)), fmt.Sprintf("failure %d", i+1))
	}
	// B has seen two failures, the shared count four: the fifth is over.
	wantThrottled(t, b, withSigV4(t, authRequest(t, haikuModel, attackerSource), searchKeyID, "guess", "us-east-1"), "fifth failure on B")
	wantThrottled(t, b, withBearer(authRequest(t, haikuModel, attackerSource), searchAPIKey), "right key from the blocked source on B")
	// A learns of the block from the shared count at its next failure,
	// and blocks locally from then on.
	wantThrottled(t, a, withBearer(authRequest(t, haikuModel, attackerSource), "guess-6"), "sixth failure on A")
	counted := limA.failures.Load() + limB.failures.Load()
	wantThrottled(t, a, withBearer(authRequest(t, haikuModel, attackerSource), searchAPIKey), "right key from the blocked source on A")
	if got := limA.failures.Load() + limB.failures.Load(); got != counted {
		t.Errorf("failures counted while blocked: got %d more, want none", got-counted)
	}
	// Other sources, and good requests, are unaffected.
	wantTenant(t, a, withBearer(authRequest(t, haikuModel, otherSource), searchAPIKey), "search", "another source on A")
	wantTenant(t, b, withSigV4(t, authRequest(t, haikuModel, otherSource), searchKeyID, searchSecret, "us-east-1"), "search", "another source on B")

	keys, err := c.Keys(t.Context(), "rate:"+prefix+"*").Result()
	if err != nil || len(keys) != 1 || keys[0] != "rate:"+prefix+attackerSource {
		t.Errorf("Redis keys: got %v, %v, want one for the failing source", keys, err)
	}
}

// TestAuthGoodRequestsSkipRedis checks that successful authentications make
// no Redis call: the limiter points at a Redis that does not answer.
func TestAuthGoodRequestsSkipRedis(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + fmt.Sprint(redistest.FreePort(t)), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	var logs bytes.Buffer
	g := &Gateway{
		Tenants:      staticSource{testTenants(t)},
		AuthFailures: authfail.NewRedis(c, authfail.Options{Failures: 1}),
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	}
	for range 5 {
		wantTenant(t, g, withBearer(authRequest(t, haikuModel, otherSource), searchAPIKey), "search", "good request")
	}
	if logs.Len() != 0 {
		t.Errorf("logs after good requests: %s, want none (no limiter call)", logs.String())
	}
	// A failure while Redis is down is still refused, and logged without
	// the key.
	r := withBearer(authRequest(t, haikuModel, attackerSource), searchAPIKey+"x")
	wantDenied(t, g, r, "failure with the limiter down")
	if !strings.Contains(logs.String(), "authentication failure not counted") {
		t.Errorf("logs: got %q, want the uncounted failure logged", logs.String())
	}
	noSecrets(t, "log", logs.String(), r)
}

func TestAuthClientSource(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1:5000":    "192.0.2.1",
		"[2001:db8::1]:443": "2001:db8::1",
		"@":                 "@", // a unix socket peer
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = addr
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		if got := (&Gateway{}).clientSource(r); got != want {
			t.Errorf("clientSource(%q) with no trusted proxy: got %q, want %q", addr, got, want)
		}
	}
}

// TestAuthClientSourceTrustedProxies: behind trusted proxies the source is
// the right-most X-Forwarded-For address that is not a trusted proxy, and
// nothing a client writes in the header can choose it.
func TestAuthClientSourceTrustedProxies(t *testing.T) {
	g := &Gateway{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8"),
	}}
	cases := []struct {
		name, remote string
		xff          []string // one entry per X-Forwarded-For line
		want         string
	}{
		{"untrusted peer, spoofed header", "198.51.100.7:40000", []string{"203.0.113.9"}, "198.51.100.7"},
		{"untrusted IPv6 peer, spoofed header", "[2001:db8::66]:40000", []string{"10.0.0.1"}, "2001:db8::66"},
		{"trusted peer, no header", "10.0.0.2:40000", nil, "10.0.0.2"},
		{"trusted peer", "10.0.0.2:40000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", "10.0.0.2:40000", []string{"203.0.113.9, 10.1.0.1, 10.2.0.1"}, "203.0.113.9"},
		{"client's own entries ignored", "10.0.0.2:40000", []string{"192.0.2.50, 10.9.9.9, 203.0.113.9, 10.1.0.1"}, "203.0.113.9"},
		{"several header lines", "10.0.0.2:40000", []string{"192.0.2.50", "203.0.113.9", "10.1.0.1"}, "203.0.113.9"},
		{"every address trusted", "10.0.0.2:40000", []string{"10.3.0.1, 10.1.0.1"}, "10.3.0.1"},
		{"garbage stops the walk", "10.0.0.2:40000", []string{"192.0.2.50, not-an-ip, 10.1.0.1"}, "10.1.0.1"},
		{"empty entry stops the walk", "10.0.0.2:40000", []string{"192.0.2.50,, 10.1.0.1"}, "10.1.0.1"},
		{"entry with a port", "10.0.0.2:40000", []string{"203.0.113.9:51000"}, "203.0.113.9"},
		{"IPv6 client", "10.0.0.2:40000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"bracketed IPv6 client with a port", "10.0.0.2:40000", []string{"[2001:db8::1]:51000"}, "2001:db8::1"},
		{"bracketed IPv6 client", "10.0.0.2:40000", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv6 proxies", "[fd00::2]:40000", []string{"2001:db8::1, fd00::1"}, "2001:db8::1"},
		{"IPv4-mapped trusted peer", "[::ffff:10.0.0.2]:40000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped client", "10.0.0.2:40000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := g.clientSource(r); got != tc.want {
				t.Errorf("clientSource: got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAuthThrottleBehindProxy: behind a trusted load balancer, failures are
// counted per client, so one client that keeps failing does not block every
// tenant behind the same balancer, and cannot dodge its block by writing
// X-Forwarded-For itself.
func TestAuthThrottleBehindProxy(t *testing.T) {
	lim := authfail.NewMemory(authfail.Options{Failures: 3, Period: time.Hour})
	g := &Gateway{
		Tenants:        staticSource{testTenants(t)},
		AuthFailures:   lim,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	viaBalancer := func(r *http.Request, forwarded string) *http.Request {
		r.RemoteAddr = "10.0.0.2:40000"
		r.Header.Set("X-Forwarded-For", forwarded)
		return r
	}
	for i := range 3 {
		// The attacker writes its own X-Forwarded-For; the balancer
		// appends the address it saw.
		spoofed := fmt.Sprintf("192.0.2.%d, %s", i, attackerSource)
		wantDenied(t, g, viaBalancer(withBearer(authRequest(t, haikuModel, otherSource), fmt.Sprintf("guess-%d", i)), spoofed), fmt.Sprintf("failure %d", i+1))
	}
	wantThrottled(t, g, viaBalancer(withBearer(authRequest(t, haikuModel, otherSource), "guess-3"), "192.0.2.99, "+attackerSource), "failure over the limit")
	wantTenant(t, g, viaBalancer(withBearer(authRequest(t, haikuModel, otherSource), searchAPIKey), otherSource), "search", "another client behind the balancer")
	if _, blocked := lim.Blocked("10.0.0.2"); blocked {
		t.Error("the balancer itself is blocked")
	}
}

// TestAuthNotLoaded: while the directory has not read the admin API's keys
// (Redis down at start-up), a key it does not know may be one of those:
// the caller is told to retry (503, which the SDKs retry) instead of being
// refused, and the failure is not counted against it. Known keys work, and
// a bad signature from a known key is still a 403.
func TestAuthNotLoaded(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + fmt.Sprint(redistest.FreePort(t)), MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	reg, err := tenant.NewRegistry(tenant.Options{Client: c, Logger: slog.New(slog.DiscardHandler), CheckTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(t.TempDir(), "search-secret")
	if err := os.WriteFile(secretFile, []byte(searchSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetFile(map[string]quota.TenantConfig{"search": {
		APIKeys:    []string{hashedKey(searchAPIKey)},
		AccessKeys: []quota.AccessKeyConfig{{ID: searchKeyID, SecretFile: secretFile}},
		Models:     []string{"anthropic.*"},
	}}); err != nil {
		t.Fatal(err)
	}
	if reg.Current(t.Context()).Loaded() {
		t.Fatal("the registry's directory is loaded with Redis down")
	}
	lim := &countingLimiter{AuthLimiter: authfail.NewMemory(authfail.Options{Failures: 1})}
	g := &Gateway{Tenants: reg, AuthFailures: lim}

	for _, tc := range []struct {
		name string
		r    *http.Request
	}{
		{"unknown bearer key", withBearer(authRequest(t, haikuModel, attackerSource), "qg-issued-by-the-admin-api")},
		{"unknown access key", withSigV4(t, authRequest(t, haikuModel, attackerSource), "QGAKISSUEDBYADMIN001", "its-secret", "us-east-1")},
	} {
		_, be := authOutcome(t, g, tc.r, converseBody)
		if be == nil || be.Type != bedrock.ServiceUnavailable || be.Status() != http.StatusServiceUnavailable ||
			be.Message != "The gateway cannot verify credentials right now. Try again later." {
			t.Errorf("%s: got %v, want 503 ServiceUnavailableException", tc.name, be)
		}
		if be != nil && be.RetryAfter < 1 {
			t.Errorf("%s: Retry-After %d, want at least 1", tc.name, be.RetryAfter)
		}
	}
	if n := lim.failures.Load(); n != 0 {
		t.Errorf("failures counted: %d, want none for keys that may be good", n)
	}
	wantTenant(t, g, withBearer(authRequest(t, haikuModel, attackerSource), searchAPIKey), "search", "known bearer key")
	wantTenant(t, g, withSigV4(t, authRequest(t, haikuModel, attackerSource), searchKeyID, searchSecret, "us-east-1"), "search", "known access key")
	if _, be := authOutcome(t, g, withSigV4(t, authRequest(t, haikuModel, attackerSource), searchKeyID, "wrong", "us-east-1"), converseBody); be == nil || be.Type != bedrock.InvalidSignature {
		t.Errorf("known access key, wrong secret: got %v, want 403 InvalidSignatureException", be)
	}
	if n := lim.failures.Load(); n != 1 {
		t.Errorf("failures counted: %d, want the bad signature's", n)
	}
}

// TestAuthErrorClasses checks the one mapping of each auth class to its
// exception, including when the lead's code wraps it further.
func TestAuthErrorClasses(t *testing.T) {
	for class, want := range map[error]bedrock.ErrorType{
		errMissingToken:            bedrock.MissingAuthenticationToken,
		errIncompleteSignature:     bedrock.IncompleteSignature,
		errUnrecognizedClient:      bedrock.UnrecognizedClient,
		errInvalidSignature:        bedrock.InvalidSignature,
		errModelDenied:             bedrock.AccessDenied,
		errAuthThrottled:           bedrock.Throttling,
		errTenantsUnavailable:      bedrock.ServiceUnavailable,
		errCredentialsUnverifiable: bedrock.ServiceUnavailable,
	} {
		err := fmt.Errorf("authenticating: %w", &authError{class: class, msg: "msg for the caller"})
		be := bedrockError(err)
		if be.Type != want || !errors.Is(err, class) {
			t.Errorf("%v: got %s, want %s", class, be.Type, want)
		}
		if class != errTenantsUnavailable && be.Message != "msg for the caller" {
			t.Errorf("%v: message %q, want the auth error's own", class, be.Message)
		}
	}
	if be := bedrockError(authThrottled(1500 * time.Millisecond)); be.RetryAfter != 2 || be.Status() != http.StatusTooManyRequests {
		t.Errorf("throttled 1.5 s: got Retry-After %d status %d, want 2 and 429", be.RetryAfter, be.Status())
	}
}

// BenchmarkAuthenticate is the hot path of a gateway with tenants and a
// failure limiter: a good bearer key and a good SigV4 signature, in
// parallel, with no limiter call.
func BenchmarkAuthenticate(b *testing.B) {
	g := &Gateway{Tenants: staticSource{testTenants(b)}, AuthFailures: authfail.NewMemory(authfail.Options{})}
	for _, bc := range []struct {
		name string
		req  *http.Request
	}{
		{"bearer", withBearer(authRequest(b, haikuModel, otherSource), searchAPIKey)},
		{"sigv4", withSigV4(b, authRequest(b, haikuModel, otherSource), searchKeyID, searchSecret, "us-east-1")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := g.authenticate(bc.req.Context(), bc.req, []byte(converseBody)); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// untouchedBody fails the test if the gateway reads it.
type untouchedBody struct{ t *testing.T }

func (b untouchedBody) Read([]byte) (int, error) {
	b.t.Error("the gateway read the body of a request it could refuse from its headers")
	return 0, errors.New("read")
}
func (untouchedBody) Close() error { return nil }

// TestAuthRefusesBeforeReadingTheBody: credentials that the headers alone
// refuse (none, an unknown bearer key, an unknown access key id, a blocked
// source) are answered without reading the body, so an unauthenticated
// caller cannot make the gateway buffer megabytes, and learns nothing from
// the body's validation.
func TestAuthRefusesBeforeReadingTheBody(t *testing.T) {
	lim := authfail.NewMemory(authfail.Options{Failures: 1, Period: time.Hour})
	g := &Gateway{Tenants: staticSource{testTenants(t)}, AuthFailures: lim, Upstream: mustURL(t, "http://127.0.0.1:1")}
	cases := []struct {
		name, authz string
		status      int
		errType     bedrock.ErrorType
	}{
		{"no credentials", "", 403, bedrock.MissingAuthenticationToken},
		{"unknown bearer key", "Bearer qg-nobody", 429, bedrock.Throttling}, // the second failure from this source
		{"blocked source, good key", "Bearer " + searchAPIKey, 429, bedrock.Throttling},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "/model/"+haikuModel+"/converse", nil)
		r.Body = untouchedBody{t}
		r.ContentLength = 25_000_000
		r.Header.Set("Content-Type", "text/plain") // judged only after authentication
		if c.authz != "" {
			r.Header.Set("Authorization", c.authz)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != c.status || w.Header().Get("X-Amzn-ErrorType") != string(c.errType) {
			t.Errorf("%s: got %d %s, want %d %s", c.name, w.Code, w.Header().Get("X-Amzn-ErrorType"), c.status, c.errType)
		}
	}
	// An unknown access key id, from a source not yet blocked.
	g.AuthFailures = authfail.NewMemory(authfail.Options{Failures: 5, Period: time.Hour})
	r := httptest.NewRequest(http.MethodPost, "/model/"+haikuModel+"/converse", nil)
	r.Body = untouchedBody{t}
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDNOBODY0000000001/20261129/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != 403 || w.Header().Get("X-Amzn-ErrorType") != string(bedrock.UnrecognizedClient) {
		t.Errorf("unknown access key id: got %d %s, want 403 UnrecognizedClientException", w.Code, w.Header().Get("X-Amzn-ErrorType"))
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
