package bedrocksim_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/quotagate/quotagate/bedrocksim"
)

// The role in the overflow account, and the temporary credentials assuming
// it yields.
const (
	overflowRole = "arn:aws:iam::111122223333:role/quotagate-overflow"
	externalID   = "quotagate-7f3a"
	tempKeyID    = "ASIAOVERFLOWEXAMPLE1"
	tempSecret   = "overflow/secret/EXAMPLEKEY"
	tempToken    = "IQoJb3JpZ2luX2VjEXAMPLE-session-token"
)

func overflowRoles(d time.Duration) map[string]bedrocksim.Role {
	return map[string]bedrocksim.Role{overflowRole: {
		AccessKeyID: tempKeyID, SecretAccessKey: tempSecret, SessionToken: tempToken,
		ExternalID: externalID, Duration: d,
	}}
}

// startSTS serves a simulated STS for the test.
func startSTS(t *testing.T, cfg bedrocksim.STSConfig) (*bedrocksim.STS, *httptest.Server) {
	t.Helper()
	s := bedrocksim.NewSTS(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

// startOverflowBedrock serves the Bedrock of the role's account: a Server
// that accepts the role's temporary key, behind the session-token check.
func startOverflowBedrock(t *testing.T, s *bedrocksim.STS) (*bedrocksim.Server, *httptest.Server) {
	t.Helper()
	sim := bedrocksim.New(bedrocksim.Config{Credentials: s.TemporaryCredentials()})
	ts := httptest.NewServer(s.RequireSessionToken(sim))
	t.Cleanup(ts.Close)
	return sim, ts
}

// stsClient is the unmodified SDK STS client pointed at url, signing with
// the given caller credentials. Retries are off so that tests count calls
// exactly.
func stsClient(url, keyID, secret string) *sts.Client {
	return sts.NewFromConfig(aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		HTTPClient:       bedrocksim.BufferedBodyClient{},
		RetryMaxAttempts: 1,
	}, func(o *sts.Options) { o.BaseEndpoint = aws.String(url) })
}

// assumeRole is the gateway's credential chain for the overflow account:
// AssumeRole through the SDK's provider, behind the SDK's cache.
func assumeRole(c *sts.Client, roleARN string, optFns ...func(*stscreds.AssumeRoleOptions)) *aws.CredentialsCache {
	return aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(c, roleARN, optFns...))
}

func withExternalID(id string) func(*stscreds.AssumeRoleOptions) {
	return func(o *stscreds.AssumeRoleOptions) { o.ExternalID = aws.String(id) }
}

func withCredentials(p aws.CredentialsProvider) func(*bedrockruntime.Options) {
	return func(o *bedrockruntime.Options) { o.Credentials = p }
}

// httpStatus is the HTTP status of an SDK error, 0 if it has none.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestSTSAssumeRoleThenInvokeModel(t *testing.T) {
	s, stsURL := startSTS(t, bedrocksim.STSConfig{Roles: overflowRoles(0)})
	sim, bedrockURL := startOverflowBedrock(t, s)

	creds := assumeRole(stsClient(stsURL.URL, bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey), overflowRole, withExternalID(externalID))
	c := client(bedrockURL.URL, withCredentials(creds))
	const calls = 3
	for i := range calls {
		if err := invokeClaude(t.Context(), c); err != nil {
			t.Fatalf("InvokeModel %d with the role's credentials: %v", i, err)
		}
	}
	if got := s.Calls(); got != 1 {
		t.Errorf("STS Calls() = %d after %d InvokeModel calls, want 1 (the cache keeps the credentials)", got, calls)
	}
	reqs := sim.Requests()
	if len(reqs) != calls {
		t.Fatalf("Bedrock saw %d requests, want %d", len(reqs), calls)
	}
	for _, r := range reqs {
		if got := r.Header.Get("X-Amz-Security-Token"); got != tempToken {
			t.Errorf("X-Amz-Security-Token = %q, want the role's session token", got)
		}
		if got := r.Header.Get("Authorization"); !strings.Contains(got, "Credential="+tempKeyID+"/") {
			t.Errorf("Authorization does not use the temporary key: %q", got)
		}
	}
}

// TestSTSCredentials checks what the SDK makes of the AssumeRole answer:
// every field of the XML document reaches aws.Credentials.
func TestSTSCredentials(t *testing.T) {
	s, ts := startSTS(t, bedrocksim.STSConfig{Roles: overflowRoles(0)})
	c := stsClient(ts.URL, bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey)

	out, err := c.AssumeRole(t.Context(), &sts.AssumeRoleInput{
		RoleArn: aws.String(overflowRole), RoleSessionName: aws.String("overflow-1"),
		ExternalId: aws.String(externalID), DurationSeconds: aws.Int32(1800),
	})
	if err != nil {
		t.Fatal(err)
	}
	cr := out.Credentials
	if cr == nil || out.AssumedRoleUser == nil {
		t.Fatalf("AssumeRole output lacks Credentials or AssumedRoleUser: %+v", out)
	}
	if aws.ToString(cr.AccessKeyId) != tempKeyID || aws.ToString(cr.SecretAccessKey) != tempSecret || aws.ToString(cr.SessionToken) != tempToken {
		t.Errorf("credentials = %s/%s/%s, want the role's", aws.ToString(cr.AccessKeyId), aws.ToString(cr.SecretAccessKey), aws.ToString(cr.SessionToken))
	}
	if left := time.Until(aws.ToTime(cr.Expiration)); left < 29*time.Minute || left > 31*time.Minute {
		t.Errorf("credentials expire in %v, want the 30 minutes asked for", left)
	}
	if got, want := aws.ToString(out.AssumedRoleUser.Arn), "arn:aws:sts::111122223333:assumed-role/quotagate-overflow/overflow-1"; got != want {
		t.Errorf("AssumedRoleUser.Arn = %q, want %q", got, want)
	}
	if got := aws.ToString(out.AssumedRoleUser.AssumedRoleId); !strings.HasPrefix(got, "AROA") || !strings.HasSuffix(got, ":overflow-1") {
		t.Errorf("AssumedRoleId = %q, want AROA...:overflow-1", got)
	}

	// Without DurationSeconds STS gives an hour; above the role's cap it
	// gives the cap.
	for _, tc := range []struct {
		name     string
		duration *int32
		role     time.Duration
		want     time.Duration
	}{
		{"default", nil, 0, time.Hour},
		{"capped by the role", aws.Int32(3600), 20 * time.Minute, 20 * time.Minute},
	} {
		s, ts := startSTS(t, bedrocksim.STSConfig{Roles: overflowRoles(tc.role)})
		out, err := stsClient(ts.URL, bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey).AssumeRole(t.Context(), &sts.AssumeRoleInput{
			RoleArn: aws.String(overflowRole), RoleSessionName: aws.String("s1"), ExternalId: aws.String(externalID), DurationSeconds: tc.duration,
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if left := time.Until(aws.ToTime(out.Credentials.Expiration)); left < tc.want-time.Minute || left > tc.want+time.Second {
			t.Errorf("%s: credentials expire in %v, want %v", tc.name, left, tc.want)
		}
		if s.Calls() != 1 {
			t.Errorf("%s: Calls() = %d, want 1", tc.name, s.Calls())
		}
	}
	if s.Calls() != 1 {
		t.Errorf("Calls() = %d, want 1", s.Calls())
	}
}

func TestSTSCallerAuthentication(t *testing.T) {
	s, ts := startSTS(t, bedrocksim.STSConfig{Roles: overflowRoles(0)})
	for _, tc := range []struct {
		name, keyID, secret string
		wantCode            string
	}{
		{"wrong secret", bedrocksim.AccessKeyID, "not-the-secret", "SignatureDoesNotMatch"},
		{"unknown key", "AKIAUNKNOWNEXAMPLE00", bedrocksim.SecretAccessKey, "InvalidClientTokenId"},
		// The role's temporary key is not a caller STS knows.
		{"temporary key", tempKeyID, tempSecret, "InvalidClientTokenId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds := assumeRole(stsClient(ts.URL, tc.keyID, tc.secret), overflowRole, withExternalID(externalID))
			_, err := creds.Retrieve(t.Context())
			if got := errorCode(err); got != tc.wantCode {
				t.Fatalf("error code = %q (%v), want %s", got, err, tc.wantCode)
			}
			if got := httpStatus(err); got != http.StatusForbidden {
				t.Errorf("status = %d, want 403", got)
			}
		})
	}
	if got := s.Calls(); got != 0 {
		t.Errorf("Calls() = %d after failures only, want 0", got)
	}
}

func TestSTSAccessDenied(t *testing.T) {
	s, stsURL := startSTS(t, bedrocksim.STSConfig{Roles: overflowRoles(0)})
	_, bedrockURL := startOverflowBedrock(t, s)
	caller := stsClient(stsURL.URL, bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey)
	for _, tc := range []struct {
		name string
		role string
		opts []func(*stscreds.AssumeRoleOptions)
	}{
		{"unknown role", "arn:aws:iam::111122223333:role/nobody", []func(*stscreds.AssumeRoleOptions){withExternalID(externalID)}},
		{"missing external id", overflowRole, nil},
		{"wrong external id", overflowRole, []func(*stscreds.AssumeRoleOptions){withExternalID("guess")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Through Bedrock, as the gateway will see it: the SDK fails
			// before sending and keeps STS's error code.
			c := client(bedrockURL.URL, withCredentials(assumeRole(caller, tc.role, tc.opts...)))
			err := invokeClaude(t.Context(), c)
			if got := errorCode(err); got != "AccessDenied" {
				t.Fatalf("error code = %q (%v), want AccessDenied", got, err)
			}
			if got := httpStatus(err); got != http.StatusForbidden {
				t.Errorf("status = %d, want 403", got)
			}
		})
	}
	if got := s.Calls(); got != 0 {
		t.Errorf("Calls() = %d after denials only, want 0", got)
	}
}

// stsErrorDoc is STS's error document, decoded independently of the SDK.
type stsErrorDoc struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Error   struct {
		Type, Code, Message string
	}
	RequestID string `xml:"RequestId"`
}

// postSTS sends a form signed for STS with the default credentials, for
// what the SDK refuses to send (its validators require RoleSessionName).
func postSTS(t *testing.T, url string, form url.Values) (*http.Response, stsErrorDoc) {
	t.Helper()
	body := form.Encode()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: bedrocksim.AccessKeyID, SecretAccessKey: bedrocksim.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "sts", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc stsErrorDoc
	if resp.StatusCode != http.StatusOK {
		if err := xml.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatalf("error body is not an STS ErrorResponse: %v", err)
		}
	}
	return resp, doc
}

func TestSTSRequestErrors(t *testing.T) {
	s, ts := startSTS(t, bedrocksim.STSConfig{Roles: overflowRoles(0)})
	assume := func(kv ...string) url.Values {
		v := url.Values{"Action": {"AssumeRole"}, "Version": {"2011-06-15"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, tc := range []struct {
		name       string
		form       url.Values
		wantStatus int
		wantCode   string
		wantIn     string
	}{
		{"no session name", assume("RoleArn", overflowRole, "ExternalId", externalID), 400, "ValidationError",
			"1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null"},
		{"no role, bad session name", assume("RoleSessionName", "a b"), 400, "ValidationError", "2 validation errors detected"},
		{"duration too short", assume("RoleArn", overflowRole, "RoleSessionName", "s1", "ExternalId", externalID, "DurationSeconds", "60"), 400, "ValidationError", "'durationSeconds'"},
		{"no action", url.Values{"Version": {"2011-06-15"}}, 400, "MissingAction", ""},
		{"other action", url.Values{"Action": {"GetCallerIdentity"}, "Version": {"2011-06-15"}}, 400, "InvalidAction", "GetCallerIdentity"},
		{"other version", url.Values{"Action": {"AssumeRole"}, "Version": {"2010-01-01"}}, 400, "InvalidAction", ""},
		{"wrong external id", assume("RoleArn", overflowRole, "RoleSessionName", "s1", "ExternalId", "guess"), 403, "AccessDenied", overflowRole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, doc := postSTS(t, ts.URL, tc.form)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if doc.Error.Type != "Sender" || doc.Error.Code != tc.wantCode {
				t.Errorf("Error Type/Code = %s/%s, want Sender/%s", doc.Error.Type, doc.Error.Code, tc.wantCode)
			}
			if !strings.Contains(doc.Error.Message, tc.wantIn) {
				t.Errorf("Message = %q, want it to contain %q", doc.Error.Message, tc.wantIn)
			}
			if doc.RequestID == "" || doc.RequestID != resp.Header.Get("x-amzn-RequestId") {
				t.Errorf("RequestId = %q, header x-amzn-RequestId = %q, want the same id in both", doc.RequestID, resp.Header.Get("x-amzn-RequestId"))
			}
			if strings.Contains(doc.Error.Message, "guess") {
				t.Errorf("Message quotes the external id sent: %q", doc.Error.Message)
			}
		})
	}

	// Unsigned: STS does not look at the parameters.
	resp, err := http.PostForm(ts.URL, assume("RoleArn", overflowRole, "RoleSessionName", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unsigned request: status = %d, want 403", resp.StatusCode)
	}
	if got := s.Calls(); got != 0 {
		t.Errorf("Calls() = %d after errors only, want 0", got)
	}
}

// TestSTSSessionToken checks RequireSessionToken: the Bedrock side accepts
// the temporary key only with its session token, only once STS handed it
// out, and only until it expires, after which the SDK's cache assumes the
// role again.
func TestSTSSessionToken(t *testing.T) {
	s, stsURL := startSTS(t, bedrocksim.STSConfig{Roles: overflowRoles(time.Second)})
	_, bedrockURL := startOverflowBedrock(t, s)
	static := func(token string) func(*bedrockruntime.Options) {
		return withCredentials(credentials.NewStaticCredentialsProvider(tempKeyID, tempSecret, token))
	}

	if err := invokeClaude(t.Context(), client(bedrockURL.URL, static(tempToken))); errorCode(err) != "UnrecognizedClientException" {
		t.Errorf("before AssumeRole: err = %v, want UnrecognizedClientException", err)
	}

	creds := assumeRole(stsClient(stsURL.URL, bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey), overflowRole, withExternalID(externalID))
	cached := client(bedrockURL.URL, withCredentials(creds))
	if err := invokeClaude(t.Context(), cached); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, token string }{{"no token", ""}, {"wrong token", "forged"}} {
		if err := invokeClaude(t.Context(), client(bedrockURL.URL, static(tc.token))); errorCode(err) != "UnrecognizedClientException" || httpStatus(err) != http.StatusForbidden {
			t.Errorf("%s: err = %v, want 403 UnrecognizedClientException", tc.name, err)
		}
	}
	if err := invokeClaude(t.Context(), client(bedrockURL.URL, static(tempToken))); err != nil {
		t.Errorf("right token: %v", err)
	}
	// Other keys pass through to the Server, which knows only the role's.
	if err := invokeClaude(t.Context(), client(bedrockURL.URL)); errorCode(err) != "UnrecognizedClientException" {
		t.Errorf("key the Server does not know: err = %v, want the Server's UnrecognizedClientException", err)
	}

	got, err := creds.Retrieve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(got.Expires) + 10*time.Millisecond)
	if err := invokeClaude(t.Context(), client(bedrockURL.URL, static(tempToken))); errorCode(err) != "ExpiredTokenException" || httpStatus(err) != http.StatusForbidden {
		t.Errorf("expired: err = %v, want 403 ExpiredTokenException", err)
	}
	if err := invokeClaude(t.Context(), cached); err != nil {
		t.Errorf("after expiry, through the cache: %v", err)
	}
	if got := s.Calls(); got != 2 {
		t.Errorf("Calls() = %d, want 2 (the cache assumed the role again after expiry)", got)
	}
}
