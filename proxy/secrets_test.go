package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/quotagate/quotagate/authfail"
	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tenant"
)

// TestSecretsNeverLeak drives the gateway through every authentication
// outcome, success and failure, and scans everything it writes for
// credentials: the access log, every span (name, attributes, events,
// status) and every response (headers and body). Issue 4: "never a key or
// secret anywhere in logs or spans". It also checks that the tenant is on
// the server span whenever the caller's credentials were good.
func TestSecretsNeverLeak(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	// Keys made as the admin API makes them: random, so that nothing in
	// the output can match them by chance.
	searchKey, searchHash := newAPIKey(t)
	adsKey, adsHash := newAPIKey(t)
	strayKey, strayHash := newAPIKey(t) // a well-formed key no tenant has
	keyID, secret, err := tenant.NewAccessKey()
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(t.TempDir(), "search-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := tenant.FromConfig(map[string]quota.TenantConfig{
		"search": {
			APIKeys:    []string{searchHash},
			AccessKeys: []quota.AccessKeyConfig{{ID: keyID, SecretFile: secretFile}},
			Models:     []string{"anthropic.*"},
		},
		"ads": {APIKeys: []string{adsHash}, Models: []string{"meta.*"}},
	}, "file")
	if err != nil {
		t.Fatalf("tenant.FromConfig: %v", err)
	}

	h := newHarness(t, harnessOptions{})
	const failures = 3
	h.gateway.Tenants = tenant.Static{Dir: dir}
	h.gateway.Tracer = tp.Tracer("quotagate-test")
	h.gateway.AuthFailures = authfail.NewMemory(authfail.Options{Failures: failures, Period: time.Hour})
	// Every request comes from loopback: each case names its own client in
	// X-Forwarded-For, so that only the throttling case is throttled.
	h.gateway.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	// The server span as in production (telemetry.ServerHandler), with
	// this test's provider rather than the global one, and W3C trace
	// context so that each request's spans can be told apart. TLS with
	// HTTP/2, as the gateway serves the SDKs.
	front := httptest.NewUnstartedServer(otelhttp.NewHandler(h.gateway, "bedrock-runtime",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return proxy.SpanName(r) })))
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)

	var (
		secrets = map[string]string{ // what must never be written, by name
			"search bearer key":   searchKey,
			"ads bearer key":      adsKey,
			"stray bearer key":    strayKey,
			"search secret":       secret,
			"gateway secret":      bedrocksim.SecretAccessKey,
			"wrong secret":        "wrong-" + secret[6:],
			"search key hash":     searchHash,
			"ads key hash":        adsHash,
			"stray key hash":      strayHash,
			"search key hash hex": strings.TrimPrefix(searchHash, tenant.KeyHashPrefix),
		}
		responses []string
	)
	const haikuConverse = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
	const llamaConverse = "/model/meta.llama3-8b-instruct-v1%3A0/converse"
	body := []byte(`{"messages":[{"role":"user","content":[{"text":"Name three colours."}]}],"inferenceConfig":{"maxTokens":40}}`)

	// send posts body to path from client with auth applied, under its
	// own trace id, and returns the status and the trace id.
	n := 0
	send := func(t *testing.T, path, client string, auth func(*http.Request)) (int, trace.TraceID) {
		t.Helper()
		n++
		var tid trace.TraceID
		copy(tid[:], fmt.Sprintf("secrets-case-%03d", n))
		req, err := http.NewRequest(http.MethodPost, front.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", client)
		req.Header.Set("traceparent", "00-"+tid.String()+"-00f067aa0ba902b7-01")
		auth(req)
		if _, sig, ok := strings.Cut(req.Header.Get("Authorization"), "Signature="); ok {
			secrets[fmt.Sprintf("signature %d", n)] = sig
		}
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		var hdr strings.Builder
		_ = resp.Header.Write(&hdr)
		responses = append(responses, hdr.String()+"\n"+string(got))
		return resp.StatusCode, tid
	}
	bearer := func(v string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", v) }
	}
	signV4 := func(id, secret string) func(*http.Request) {
		return func(r *http.Request) {
			sum := sha256.Sum256(body)
			creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "bedrock", "us-east-1", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The last cases throttle one client: it guesses as often as it may,
	// then it is refused before its credentials are looked at.
	const guesser = "203.0.113.66"
	cases := []secretCase{
		{"bearer", haikuConverse, "198.51.100.1", bearer("Bearer " + searchKey), 200, "search"},
		{"SigV4", haikuConverse, "198.51.100.2", signV4(keyID, secret), 200, "search"},
		{"bearer scheme in lower case", llamaConverse, "198.51.100.3", bearer("bearer " + adsKey), 200, "ads"},
		{"unknown bearer key", haikuConverse, "198.51.100.4", bearer("Bearer " + strayKey), 403, ""},
		{"key without a scheme", haikuConverse, "198.51.100.5", bearer(searchKey), 403, ""},
		{"tab after Bearer", haikuConverse, "198.51.100.6", bearer("Bearer\t" + searchKey), 403, ""},
		{"lower-case bearer with a tab", haikuConverse, "198.51.100.7", bearer("bearer\t" + searchKey), 403, ""},
		{"wrong SigV4 secret", haikuConverse, "198.51.100.8", signV4(keyID, secrets["wrong secret"]), 403, ""},
		{"model not allowed, bearer", llamaConverse, "198.51.100.9", bearer("Bearer " + searchKey), 403, "search"},
		{"model not allowed, SigV4", llamaConverse, "198.51.100.10", signV4(keyID, secret), 403, "search"},
	}
	for i := range failures {
		guess := strayKey[:len(strayKey)-2] + fmt.Sprint(10+i)
		cases = append(cases, secretCase{fmt.Sprintf("guess %d", i+1), haikuConverse, guesser, bearer("Bearer " + guess), 403, ""})
	}
	cases = append(cases,
		secretCase{"throttled source, guess", haikuConverse, guesser, bearer("Bearer " + strayKey), 429, ""},
		secretCase{"throttled source, right key", haikuConverse, guesser, bearer("Bearer " + searchKey), 429, ""},
		secretCase{"throttled source, right signature", haikuConverse, guesser, signV4(keyID, secret), 429, ""},
		secretCase{"another source, unaffected", haikuConverse, "203.0.113.67", bearer("Bearer " + searchKey), 200, "search"},
	)

	traces := map[string]trace.TraceID{}
	for _, tc := range cases {
		status, tid := send(t, tc.path, tc.client, tc.auth)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, status, tc.status)
		}
		traces[tc.name] = tid
	}

	// Every request has finished (its access-log line is written after
	// the response), and so has every span.
	waitFor(t, "every access-log line", func() bool { return strings.Count(h.logs.String(), "\n") >= len(cases) })
	spans := exp.GetSpans()

	// The tenant is on the server span of every request whose credentials
	// were good, including one refused for its model, and on no other.
	for _, tc := range cases {
		var server *tracetest.SpanStub
		for i := range spans {
			if spans[i].SpanContext.TraceID() == traces[tc.name] && spans[i].SpanKind == trace.SpanKindServer {
				server = &spans[i]
			}
		}
		if server == nil {
			t.Errorf("%s: no server span", tc.name)
			continue
		}
		got := ""
		for _, kv := range server.Attributes {
			if kv.Key == "quotagate.tenant" {
				got = kv.Value.Emit()
			}
		}
		if got != tc.tenant {
			t.Errorf("%s: server span quotagate.tenant = %q, want %q", tc.name, got, tc.tenant)
		}
	}

	outputs := map[string]string{"access log": h.logs.String()}
	for i, r := range responses {
		outputs[fmt.Sprintf("response to %q", cases[i].name)] = r
	}
	for _, s := range spans {
		outputs[fmt.Sprintf("span %q of %s", s.Name, s.SpanContext.TraceID())] = spanText(t, s)
	}
	if len(spans) < len(cases) {
		t.Errorf("got %d spans for %d requests, want at least one each", len(spans), len(cases))
	}
	for where, text := range outputs {
		for what, s := range secrets {
			if frag, ok := leaked(text, s, what); ok {
				t.Errorf("%s carries the %s (%q):\n%s", where, what, frag, text)
			}
		}
	}
}

// secretCase is one request of TestSecretsNeverLeak.
type secretCase struct {
	name, path string
	client     string // the X-Forwarded-For its (trusted) proxy sends
	auth       func(*http.Request)
	status     int
	tenant     string // on the server span; "" for none
}

// newAPIKey is a bearer key and its hash as the admin API issues them.
func newAPIKey(t *testing.T) (key, hash string) {
	t.Helper()
	key, hash, err := tenant.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return key, hash
}

// spanText is everything a span exporter would send of s: name, status,
// attributes, events and links.
func spanText(t *testing.T, s tracetest.SpanStub) string {
	t.Helper()
	b, err := json.Marshal(struct {
		Name       string
		Status     sdktrace.Status
		Attributes any
		Events     any
		Links      any
		Resource   any
	}{s.Name, s.Status, s.Attributes, s.Events, s.Links, s.Resource.Attributes()})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// leaked reports a fragment of secret found in text. A hash only leaks
// whole: its first 16 hex digits are the key's public id. Any other secret
// leaks through any 12 characters of it, so that a quote cut short (as an
// error message might cut a header) is caught too.
func leaked(text, secret, what string) (string, bool) {
	if strings.Contains(what, "hash") {
		return secret, strings.Contains(text, secret)
	}
	const window = 12
	for i := 0; i+window <= len(secret); i++ {
		if strings.Contains(text, secret[i:i+window]) {
			return secret[i : i+window], true
		}
	}
	return "", false
}
