package sigv4_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/sigv4"
)

const (
	keyID  = "QGAKTESTKEY000000001"
	secret = "test-secret-0123456789abcdefghijklmnopqrs"
	// A Converse path as the SDK sends it: the model id's colon escaped.
	url  = "https://gateway.example:8443/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
	body = `{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`
)

// now is the verifier's clock in every test; requests are signed at it
// unless a test says otherwise.
var now = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func verifier() *sigv4.Verifier {
	return &sigv4.Verifier{
		Service: "bedrock",
		Now:     func() time.Time { return now },
		Secret: func(id string) (string, bool) {
			if id == keyID {
				return secret, true
			}
			return "", false
		},
	}
}

// signed is a request signed by aws-sdk-go-v2's own signer, as an SDK client
// sends it.
type signed struct {
	region, service string
	key, secret     string
	at              time.Time
	contentSHA      bool // send X-Amz-Content-Sha256, as S3-style clients do
}

func (s signed) request(t testing.TB) *http.Request {
	t.Helper()
	if s.region == "" {
		s.region = "us-east-1"
	}
	if s.service == "" {
		s.service = "bedrock"
	}
	if s.key == "" {
		s.key, s.secret = keyID, secret
	}
	if s.at.IsZero() {
		s.at = now
	}
	r, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Amz-Sdk-Invocation-Id", "2f1c3f8e-1111-4a5b-9c0d-000000000001")
	r.Header.Set("User-Agent", "aws-sdk-go-v2/1.0 test")
	sum := sha256.Sum256([]byte(body))
	hash := hex.EncodeToString(sum[:])
	if s.contentSHA {
		r.Header.Set("X-Amz-Content-Sha256", hash)
	}
	creds := aws.Credentials{AccessKeyID: s.key, SecretAccessKey: s.secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hash, s.service, s.region, s.at); err != nil {
		t.Fatal(err)
	}
	return r
}

// errType is the Bedrock exception of a Verify error, or "" for none.
func errType(t *testing.T, err error) bedrock.ErrorType {
	t.Helper()
	if err == nil {
		return ""
	}
	var be *bedrock.Error
	if !errors.As(err, &be) {
		t.Fatalf("error %v (%T) is not a *bedrock.Error", err, err)
	}
	return be.Type
}

func TestSigV4Accepts(t *testing.T) {
	cases := []struct {
		name string
		req  func(t testing.TB) *http.Request
	}{
		{"good request", signed{}.request},
		{"with x-amz-content-sha256", signed{contentSHA: true}.request},
		{"other region", signed{region: "eu-west-1"}.request},
		{"signed 4 minutes ago", signed{at: now.Add(-4 * time.Minute)}.request},
		{"signed 4 minutes ahead", signed{at: now.Add(4 * time.Minute)}.request},
		{"unsigned header changed", func(t testing.TB) *http.Request {
			// The signer never signs User-Agent (proxies rewrite it), so
			// a change to it must not matter.
			r := signed{}.request(t)
			r.Header.Set("User-Agent", "something-else/2.0")
			r.Header.Set("X-Forwarded-For", "203.0.113.7")
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := verifier().Verify(tc.req(t), []byte(body))
			if err != nil || id != keyID {
				t.Fatalf("Verify: got %q, %v, want %q, nil", id, err, keyID)
			}
		})
	}
}

func TestSigV4Rejects(t *testing.T) {
	cases := []struct {
		name    string
		req     func(t testing.TB) *http.Request
		body    string // the body received; default body
		v       func(v *sigv4.Verifier)
		want    bedrock.ErrorType
		wantMsg string
	}{
		{
			name: "wrong service", req: signed{service: "s3"}.request,
			want: bedrock.InvalidSignature, wantMsg: "Credential should be scoped to correct service: 'bedrock'.",
		},
		{
			name: "region pinned", req: signed{region: "eu-west-1"}.request, v: func(v *sigv4.Verifier) { v.Region = "us-east-1" },
			want: bedrock.InvalidSignature, wantMsg: "Credential should be scoped to a valid region.",
		},
		{
			name: "tampered body", req: signed{}.request, body: strings.Replace(body, "hello", "HELLO", 1),
			want: bedrock.InvalidSignature, wantMsg: sigv4.MsgSignatureMismatch,
		},
		{
			name: "tampered body with x-amz-content-sha256", req: signed{contentSHA: true}.request, body: strings.Replace(body, "hello", "HELLO", 1),
			want: bedrock.InvalidSignature, wantMsg: "The provided 'x-amz-content-sha256' header does not match what was computed.",
		},
		{
			name: "tampered signed header",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Set("Amz-Sdk-Invocation-Id", "00000000-0000-4000-8000-000000000000")
				return r
			},
			want: bedrock.InvalidSignature, wantMsg: sigv4.MsgSignatureMismatch,
		},
		{
			name: "other host",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Host = "elsewhere.example"
				return r
			},
			want: bedrock.InvalidSignature, wantMsg: sigv4.MsgSignatureMismatch,
		},
		{
			name: "other path",
			req: func(t testing.TB) *http.Request {
				// The same model id with its colon unescaped is another
				// canonical URI.
				r := signed{}.request(t)
				r.URL.RawPath, r.URL.Path = "", "/model/anthropic.claude-3-haiku-20240307-v1:0/converse"
				return r
			},
			want: bedrock.InvalidSignature, wantMsg: sigv4.MsgSignatureMismatch,
		},
		{
			name: "wrong secret", req: signed{key: keyID, secret: "not-the-secret"}.request,
			want: bedrock.InvalidSignature, wantMsg: sigv4.MsgSignatureMismatch,
		},
		{
			name: "skew beyond 5 min in the past", req: signed{at: now.Add(-5*time.Minute - time.Second)}.request,
			want: bedrock.InvalidSignature, wantMsg: "Signature expired: 20260314T150425Z is now earlier than 20260314T150426Z (20260314T150926Z - 5 min.)",
		},
		{
			name: "skew beyond 5 min in the future", req: signed{at: now.Add(5*time.Minute + time.Second)}.request,
			want: bedrock.InvalidSignature, wantMsg: "Signature not yet current: 20260314T151427Z is still later than 20260314T151426Z (20260314T150926Z + 5 min.)",
		},
		{
			name: "unknown key", req: signed{key: "QGAKUNKNOWN000000000", secret: secret}.request,
			want: bedrock.UnrecognizedClient, wantMsg: sigv4.MsgUnrecognizedClient,
		},
		{
			name: "no Authorization",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Del("Authorization")
				return r
			},
			want: bedrock.MissingAuthenticationToken, wantMsg: sigv4.MsgMissingToken,
		},
		{
			name: "other scheme",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
				return r
			},
			want: bedrock.IncompleteSignature, wantMsg: sigv4.MsgUnsupportedAlgorithm,
		},
		{
			name: "no Credential",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Set("Authorization", "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abcdef")
				return r
			},
			want: bedrock.IncompleteSignature, wantMsg: "Authorization header requires 'Credential' parameter.",
		},
		{
			name: "short Credential",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+keyID+"/20260314/bedrock, SignedHeaders=host, Signature=abcdef")
				return r
			},
			want: bedrock.IncompleteSignature, wantMsg: "Credential must have exactly 5 slash-delimited elements",
		},
		{
			name: "no X-Amz-Date",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Del("X-Amz-Date")
				return r
			},
			want: bedrock.IncompleteSignature, wantMsg: "requires existence of either a 'X-Amz-Date' or a 'Date' header",
		},
		{
			name: "bad X-Amz-Date",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Set("X-Amz-Date", "2026-03-14T15:09:26Z")
				return r
			},
			want: bedrock.IncompleteSignature, wantMsg: "Date must be in ISO-8601 'basic format'.",
		},
		{
			name: "host not signed",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), ";host;", ";", 1))
				return r
			},
			want: bedrock.IncompleteSignature, wantMsg: "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
		},
		{
			name: "signed header missing",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Del("Amz-Sdk-Invocation-Id")
				return r
			},
			want: bedrock.InvalidSignature, wantMsg: sigv4.MsgSignatureMismatch,
		},
		{
			name: "signed headers out of order",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "amz-sdk-invocation-id;content-length", "content-length;amz-sdk-invocation-id", 1))
				return r
			},
			want: bedrock.InvalidSignature, wantMsg: sigv4.MsgSignatureMismatch,
		},
		{
			name: "scope date differs",
			req: func(t testing.TB) *http.Request {
				r := signed{}.request(t)
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/20260314/", "/20260313/", 1))
				return r
			},
			want: bedrock.InvalidSignature, wantMsg: "Date in Credential scope does not match",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := verifier()
			if tc.v != nil {
				tc.v(v)
			}
			b := body
			if tc.body != "" {
				b = tc.body
			}
			r := tc.req(t)
			_, sig, _ := strings.Cut(r.Header.Get("Authorization"), "Signature=")
			id, err := v.Verify(r, []byte(b))
			if got := errType(t, err); got != tc.want || id != "" {
				t.Fatalf("Verify: got %q, %v, want no id and %s", id, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("message: got %q, want it to contain %q", err.Error(), tc.wantMsg)
			}
			// Messages end up in logs: they must not carry the signature.
			if len(sig) >= 16 && strings.Contains(err.Error(), sig) {
				t.Errorf("message %q contains the signature", err.Error())
			}
		})
	}
}

// TestSigV4NoSecretFunc checks that a verifier without a key source knows
// no key, rather than panicking.
func TestSigV4NoSecretFunc(t *testing.T) {
	v := &sigv4.Verifier{Service: "bedrock", Now: func() time.Time { return now }}
	if _, err := v.Verify(signed{}.request(t), []byte(body)); errType(t, err) != bedrock.UnrecognizedClient {
		t.Errorf("Verify: got %v, want UnrecognizedClientException", err)
	}
}

// TestSigV4BodyRead checks that Verify uses the body it is given, not the
// request's (already consumed) Body.
func TestSigV4BodyRead(t *testing.T) {
	r := signed{}.request(t)
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		t.Fatal(err)
	}
	if _, err := verifier().Verify(r, buf.Bytes()); err != nil {
		t.Errorf("Verify after the body was read: %v", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	r := signed{}.request(b)
	v := verifier()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(r, []byte(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSigV4MessagesQuoteNoHeader: an error message reaches the caller's
// 403 body and the access log, so it must not quote any part of a header. A
// header that is not SigV4 at all is often a key: a Bedrock API key sent
// without its scheme, or "Bearer" and a tab.
func TestSigV4MessagesQuoteNoHeader(t *testing.T) {
	const key = "ABSKQmVkcm9ja0FQSUtleS1zZWNyZXQtMDEyMzQ1Njc4OQ=="
	const marker = "k3yMaterialInAHeader0123"
	cases := []struct {
		name   string
		header string // the header set
		value  string
		want   bedrock.ErrorType
	}{
		{"API key without a scheme", "Authorization", key, bedrock.IncompleteSignature},
		{"Bearer and a tab", "Authorization", "Bearer\t" + key, bedrock.IncompleteSignature},
		{"Bearer with no key", "Authorization", "Bearer" + key, bedrock.IncompleteSignature},
		{"Basic", "Authorization", "Basic " + key, bedrock.IncompleteSignature},
		{"scope date", "Authorization", "AWS4-HMAC-SHA256 Credential=" + keyID + "/" + marker + "/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef", bedrock.InvalidSignature},
		{"scope terminator", "Authorization", "AWS4-HMAC-SHA256 Credential=" + keyID + "/20260314/us-east-1/bedrock/" + marker + ", SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef", bedrock.InvalidSignature},
		{"scope service", "Authorization", "AWS4-HMAC-SHA256 Credential=" + keyID + "/20260314/us-east-1/" + marker + "/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef", bedrock.InvalidSignature},
		{"X-Amz-Date", "X-Amz-Date", marker, bedrock.IncompleteSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := signed{}.request(t)
			r.Header.Set(tc.header, tc.value)
			_, err := verifier().Verify(r, []byte(body))
			if got := errType(t, err); got != tc.want {
				t.Fatalf("Verify: got %v, want %s", err, tc.want)
			}
			for _, secret := range []string{key, marker} {
				if s, ok := quotes(err.Error(), secret); ok {
					t.Errorf("message %q quotes %q of the header", err.Error(), s)
				}
			}
		})
	}
}

// quotes reports whether msg holds any 8 consecutive characters of secret,
// which catches a quote cut short as well as a whole one.
func quotes(msg, secret string) (string, bool) {
	for i := 0; i+8 <= len(secret); i++ {
		if strings.Contains(msg, secret[i:i+8]) {
			return secret[i : i+8], true
		}
	}
	return "", false
}

// jsHTTP2Request is a Converse request exactly as @aws-sdk/client-bedrock-runtime
// 3.1164.0 (Node.js 20) sent it to a Go HTTP/2 TLS server: the client
// defaults to HTTP/2, and its host-header middleware then signs
// ":authority" (hostname:port) instead of host. Go's server puts the
// pseudo-header in Request.Host; no Host header remains.
func jsHTTP2Request(t testing.TB) *http.Request {
	t.Helper()
	const body = `{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`
	r := httptest.NewRequest(http.MethodPost, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", strings.NewReader(body))
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Host = "127.0.0.1:44013"
	r.RemoteAddr = "127.0.0.1:51234"
	for k, v := range map[string]string{
		"Amz-Sdk-Invocation-Id": "46a1ffe9-5dee-4ab7-840e-7cfeaaa0f7d7",
		"Amz-Sdk-Request":       "attempt=1; max=1",
		"Authorization":         "AWS4-HMAC-SHA256 Credential=QGAKJSTESTKEY0000001/20261129/us-east-1/bedrock/aws4_request, SignedHeaders=:authority;amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;x-amz-content-sha256;x-amz-date;x-amz-user-agent, Signature=10d54c33d6bf6b8a5a9603cf71463f06e9182a0f71649600f922d113cb11d6bd",
		"Content-Length":        "59",
		"Content-Type":          "application/json",
		"User-Agent":            "aws-sdk-js/3.1163.0 ua/2.1 os/linux#6.18.44-fc-v857 lang/js md/nodejs#20.20.2 api/bedrock-runtime#3.1163.0 m/N,E,e",
		"X-Amz-Content-Sha256":  "331b626fbec967399a3c05643d22e56af43ee9839874a2db641bd025f84436d8",
		"X-Amz-Date":            "20261129T021408Z",
		"X-Amz-User-Agent":      "aws-sdk-js/3.1163.0",
	} {
		r.Header.Set(k, v)
	}
	return r
}

// TestSigV4HTTP2Authority verifies a request signed by the AWS SDK for
// JavaScript v3 over HTTP/2, whose signature covers ":authority" rather
// than host, and checks that the pseudo-header stands for the request's
// Host: the same signature for another host is refused.
func TestSigV4HTTP2Authority(t *testing.T) {
	const body = `{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`
	v := &sigv4.Verifier{
		Service: "bedrock",
		Now:     func() time.Time { return time.Date(2026, 11, 29, 2, 14, 8, 0, time.UTC) },
		Secret: func(id string) (string, bool) {
			return "js-test-secret-0123456789abcdefghijklmn", id == "QGAKJSTESTKEY0000001"
		},
	}
	if id, err := v.Verify(jsHTTP2Request(t), []byte(body)); err != nil || id != "QGAKJSTESTKEY0000001" {
		t.Fatalf("Verify: got %q, %v, want the JS client's key id", id, err)
	}
	r := jsHTTP2Request(t)
	r.Host = "127.0.0.1:44014"
	if _, err := v.Verify(r, []byte(body)); errType(t, err) != bedrock.InvalidSignature {
		t.Errorf("Verify for another :authority: got %v, want InvalidSignatureException", err)
	}
}

// TestSigV4TestSuite checks the canonicalisation against vectors of AWS's
// SigV4 test suite (post-vanilla and post-vanilla-query), which no SDK
// signer here produced.
func TestSigV4TestSuite(t *testing.T) {
	v := &sigv4.Verifier{
		Service: "service",
		Now:     func() time.Time { return time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC) },
		Secret: func(id string) (string, bool) {
			return "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", id == "AKIDEXAMPLE"
		},
	}
	for _, tc := range []struct{ name, target, sig string }{
		{"post-vanilla", "/", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
		{"post-vanilla-query", "/?Param1=value1", "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.target, nil)
			r.Host = "example.amazonaws.com"
			r.Header.Set("X-Amz-Date", "20150830T123600Z")
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="+tc.sig)
			if id, err := v.Verify(r, nil); err != nil || id != "AKIDEXAMPLE" {
				t.Errorf("Verify: got %q, %v, want AKIDEXAMPLE", id, err)
			}
		})
	}
}
