package sigv4_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
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
			want: bedrock.IncompleteSignature, wantMsg: "Unsupported AWS 'algorithm': 'Basic'.",
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
