package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/internal/logbuf"
	"github.com/quotagate/quotagate/tenant"
)

// TestCheckConfigReportsEveryProblem: one run lists every bad variable, so
// an operator fixes them in one go.
func TestCheckConfigReportsEveryProblem(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	env := map[string]string{
		"QUOTAGATE_ADDR":                   "no-port",
		"QUOTAGATE_MAX_BODY_BYTES":         "-5",
		"QUOTAGATE_DRAIN_TIMEOUT":          "soon",
		"QUOTAGATE_TLS_CERT_FILE":          "/tmp/cert.pem",
		"QUOTAGATE_LOG_LEVEL":              "loud",
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "ftp://example",
		"QUOTAGATE_CONFIG":                 "../../quota/testdata/bad/many.yaml",
		"QUOTAGATE_FAILURE_POLICY":         "fail-sideways",
		"QUOTAGATE_REPLICAS":               "0",
		"QUOTAGATE_REDIS_URL":              "mysql://nope",
		"QUOTAGATE_TRUSTED_PROXIES":        "10.0.0.0/8,not-a-cidr",
		"QUOTAGATE_ADMIN_TOKEN":            "short",
		"QUOTAGATE_AUTH_FAILURES":          "0",
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"-check-config"}, env, &out, io.Discard)
	if err == nil {
		t.Fatal("got nil error, want the configuration refused")
	}
	for _, want := range []string{"QUOTAGATE_ADDR", "QUOTAGATE_MAX_BODY_BYTES", "QUOTAGATE_DRAIN_TIMEOUT", "QUOTAGATE_TLS_CERT_FILE", "QUOTAGATE_LOG_LEVEL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_REGION",
		"QUOTAGATE_CONFIG", "QUOTAGATE_FAILURE_POLICY", "QUOTAGATE_REPLICAS", "QUOTAGATE_REDIS_URL",
		"QUOTAGATE_TRUSTED_PROXIES", "QUOTAGATE_ADMIN_TOKEN", "QUOTAGATE_AUTH_FAILURES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

func TestCheckConfigAccepts(t *testing.T) {
	t.Setenv("AWS_REGION", "eu-west-1")
	var out bytes.Buffer
	env := map[string]string{"AWS_BEARER_TOKEN_BEDROCK": "secret-api-key"}
	if err := run(context.Background(), []string{"-check-config"}, env, &out, io.Discard); err != nil {
		t.Fatalf("check-config: %v", err)
	}
	if !strings.Contains(out.String(), "configuration ok") || strings.Contains(out.String(), "secret-api-key") {
		t.Errorf("output = %q, want ok and no secret", out.String())
	}
}

func TestUpstreamURL(t *testing.T) {
	cases := []struct {
		cfg    Config
		region string
		want   string
	}{
		{Config{}, "us-west-2", "https://bedrock-runtime.us-west-2.amazonaws.com"},
		{Config{}, "cn-north-1", "https://bedrock-runtime.cn-north-1.amazonaws.com.cn"},
		{Config{GlobalEndpoint: "http://global:1"}, "us-east-1", "http://global:1"},
		{Config{GlobalEndpoint: "http://global:1", ServiceEndpoint: "http://sim:2"}, "us-east-1", "http://sim:2"},
	}
	for _, c := range cases {
		if got := c.cfg.upstreamURL(c.region).String(); got != c.want {
			t.Errorf("upstreamURL(%+v, %s) = %s, want %s", c.cfg, c.region, got, c.want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sdkClient(endpoint string) *bedrockruntime.Client {
	return bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint: aws.String(endpoint), Region: "us-east-1", Retryer: aws.NopRetryer{}, HTTPClient: bedrocksim.BufferedBodyClient{},
		Credentials: credentials.NewStaticCredentialsProvider("AKIDDEMOUSER", "demo", ""),
	})
}

var helloMessages = []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "Hello"}}}}

// TestDemo runs the newcomer's first command: the gateway in front of the
// in-process simulator, answering a real SDK call, and stopping cleanly.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr logbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-demo"}, map[string]string{"QUOTAGATE_ADDR": "127.0.0.1:0"}, &stdout, &stderr)
	}()
	addr := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	waitFor(t, "the demo banner", func() bool { return addr.MatchString(stdout.String()) })
	base := addr.FindStringSubmatch(stdout.String())[1]
	if !strings.Contains(stdout.String(), "curl -s "+base+"/model/") {
		t.Errorf("banner lacks a ready-to-paste call:\n%s", stdout.String())
	}
	out, err := sdkClient(base).Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"), Messages: helloMessages})
	if err != nil {
		t.Fatalf("Converse through the demo: %v", err)
	}
	if out.Usage == nil || aws.ToInt32(out.Usage.OutputTokens) == 0 {
		t.Errorf("usage = %+v, want output tokens", out.Usage)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz = %v %v, want 200", resp, err)
	}
	resp.Body.Close()

	// HTTP/2 without TLS, as the JavaScript SDK speaks it by default.
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h2client := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	resp, err = h2client.Post(base+"/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":16}}`))
	if err != nil {
		t.Fatalf("h2c call: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("h2c call: status %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}

	// The demo enforces in-memory budgets: admitted calls show headroom.
	resp, err = http.Post(base+"/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":64}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining-Tokens") == "" {
		t.Errorf("demo call: status %d, x-ratelimit-remaining-tokens %q; want 200 and a figure", resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"quotagate_requests", "quotagate_quota_decisions", "quotagate_quota_utilisation", "quotagate_quota_store_duration_seconds"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run returned %v, want a clean stop", err)
	}
}

// startServer runs the gateway's server in front of a simulator until the
// returned stop function (SIGTERM's stand-in) is called.
func startServer(t *testing.T, cfg Config) (sim *bedrocksim.Server, base string, stop func(), done <-chan error) {
	t.Helper()
	sim = bedrocksim.New(bedrocksim.Config{})
	up := &http.Server{Handler: sim}
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = up.Serve(uln) }()
	t.Cleanup(func() { _ = up.Close() })
	demo := upstream{
		url:         mustURL("http://" + uln.Addr().String()),
		region:      "us-east-1",
		credentials: credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
	}
	cfg.MaxBodyBytes, cfg.UpstreamHeaderTimeout = 1<<20, time.Minute
	log := discardLog()
	srv := newServer(cfg, newGateway(cfg, demo, log), demo, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.run(ctx, ln) }()
	t.Cleanup(cancel)
	return sim, "http://" + ln.Addr().String(), cancel, errc
}

// TestDrainLetsStreamsFinish: on SIGTERM the gateway stops being ready but
// lets an in-flight stream run to its end.
func TestDrainLetsStreamsFinish(t *testing.T) {
	sim, base, stop, done := startServer(t, Config{DrainTimeout: time.Minute})
	release := sim.HoldStreams()
	ctx := context.Background()
	out, err := sdkClient(base).ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"), Messages: helloMessages})
	if err != nil {
		t.Fatal(err)
	}
	events := out.GetStream().Events()
	<-events
	stop()
	waitFor(t, "readyz to report draining", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return true // the listener is already closed: also not ready
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	release()
	n := 1
	for range events {
		n++
	}
	if err := out.GetStream().Err(); err != nil {
		t.Fatalf("stream cut by the drain: %v", err)
	}
	if n < 3 {
		t.Errorf("got %d events, want the whole stream", n)
	}
	if err := <-done; err != nil {
		t.Fatalf("run = %v, want a clean stop", err)
	}
}

// TestDrainTimeoutCancelsUpstream: a stream still running when the drain
// timeout ends is cancelled, upstream too, and the server stops.
func TestDrainTimeoutCancelsUpstream(t *testing.T) {
	sim, base, stop, done := startServer(t, Config{DrainTimeout: 100 * time.Millisecond})
	release := sim.HoldStreams()
	defer release()
	out, err := sdkClient(base).ConverseStream(context.Background(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"), Messages: helloMessages})
	if err != nil {
		t.Fatal(err)
	}
	<-out.GetStream().Events()
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run = %v", err)
	}
	waitFor(t, "the simulator to see the cancellation", func() bool { return sim.Stats().Cancelled == 1 })
	out.GetStream().Close()
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestDrainDelayReportsNotReady: during the drain delay the replica still
// serves, but /readyz says it is leaving, so load balancers drop it before
// its listener closes.
func TestDrainDelayReportsNotReady(t *testing.T) {
	_, base, stop, done := startServer(t, Config{DrainTimeout: time.Minute, DrainDelay: time.Second})
	stop()
	waitFor(t, "readyz to report draining", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("listener closed during the drain delay: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz during the delay = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Fatalf("run = %v, want a clean stop", err)
	}
}

const haikuID = "anthropic.claude-3-haiku-20240307-v1:0"

// writeBudgets writes a budgets file and returns its path.
func writeBudgets(t *testing.T, path, yaml string) string {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "budgets.yaml")
	}
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckConfigResolvesTenantSecrets: -check-config fails, naming the
// tenant and key id, when an access key's secret cannot be read, as
// start-up would; it never prints a secret.
func TestCheckConfigResolvesTenantSecrets(t *testing.T) {
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("QG_TEST_SEARCH_SECRET", "")
	t.Setenv("QG_TEST_CHAT_SECRET", "chat-secret-value")
	path := writeBudgets(t, "", `
tenants:
  search:
    access_keys: [{id: QGAKSEARCH0000001, secret_env: QG_TEST_SEARCH_SECRET}]
  chat:
    access_keys:
      - {id: QGAKCHAT000000001, secret_env: QG_TEST_CHAT_SECRET}
      - {id: QGAKCHAT000000002, secret_file: /nonexistent/quotagate-secret}
`)
	env := map[string]string{"QUOTAGATE_CONFIG": path, "AWS_BEARER_TOKEN_BEDROCK": "secret-api-key"}
	err := run(context.Background(), []string{"-check-config"}, env, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("-check-config passed with access-key secrets that cannot be read")
	}
	for _, want := range []string{`"search"`, "QGAKSEARCH0000001", "QG_TEST_SEARCH_SECRET", `"chat"`, "QGAKCHAT000000002", "/nonexistent/quotagate-secret"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "QGAKCHAT000000001") || strings.Contains(err.Error(), "chat-secret-value") {
		t.Errorf("error mentions a key that resolves, or its secret:\n%v", err)
	}
	t.Setenv("QG_TEST_SEARCH_SECRET", "search-secret-value")
	writeBudgets(t, path, `
tenants:
  search:
    access_keys: [{id: QGAKSEARCH0000001, secret_env: QG_TEST_SEARCH_SECRET}]
`)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-check-config"}, env, &out, io.Discard); err != nil {
		t.Fatalf("-check-config with every secret set: %v", err)
	}
	if strings.Contains(out.String(), "search-secret-value") {
		t.Error("a secret was printed")
	}
}

// TestReadyzWaitsForTenants: a replica whose tenant registry has not read
// the overrides yet (Redis down at start-up) is not ready: it would refuse
// keys issued through the admin API.
func TestReadyzWaitsForTenants(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	down, err := tenant.NewRegistry(tenant.Options{Client: c, Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tenant.NewRegistry(tenant.Options{Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(Config{}, http.NotFoundHandler(), upstream{}, discardLog())
	for _, tc := range []struct {
		name string
		reg  *tenant.Registry
		want int
	}{{"not loaded", down, http.StatusServiceUnavailable}, {"loaded", loaded, http.StatusOK}} {
		srv.tenants = &tenants{registry: tc.reg, log: discardLog()}
		w := httptest.NewRecorder()
		srv.ready(w, httptest.NewRequest("GET", "/readyz", nil), upstream{})
		if w.Code != tc.want {
			t.Errorf("%s: /readyz %d, want %d: %s", tc.name, w.Code, tc.want, w.Body)
		}
	}
}

// TestBudgetsReloadWarnsOfOverrideConflicts: a budgets file that shrinks a
// pool under the guarantees of admin overrides is put in force (only the
// admin can fix an override), with a warning naming the conflict, checked
// against the new file rather than the one it replaces.
func TestBudgetsReloadWarnsOfOverrideConflicts(t *testing.T) {
	file := func(tpm int) string {
		return fmt.Sprintf("models:\n  %s: {tpm: %d}\ntenants:\n  a:\n    budgets:\n      %s: {guaranteed_tpm: 600}\n", haikuID, tpm, haikuID)
	}
	path := writeBudgets(t, "", file(1000))
	cfg, err := loadConfig(map[string]string{"QUOTAGATE_CONFIG": path})
	if err != nil {
		t.Fatal(err)
	}
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	bud, err := newBudgets(cfg, false, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	ten, err := newTenants(cfg, bud, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ten.start(ctx)
	if _, _, err := ten.registry.Put(ctx, "b", []byte(`{"budgets": {"`+haikuID+`": {"guaranteed_tpm": 400}}}`)); err != nil {
		t.Fatal(err)
	}
	writeBudgets(t, path, file(800))
	if err := bud.watcher.Reload(); err != nil {
		t.Fatalf("the reload was refused for an override's conflict: %v", err)
	}
	if got := bud.config().Models[haikuID].Limits.TPM; got != 800 {
		t.Errorf("pool TPM after the reload: got %d, want 800", got)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "800") {
		t.Errorf("no warning of the guarantees over the new pool TPM:\n%s", out)
	}
}

// TestRequireAuthForbidsOpenMode: QUOTAGATE_REQUIRE_AUTH=true keeps a
// gateway with no tenants closed instead of open to everyone.
func TestRequireAuthForbidsOpenMode(t *testing.T) {
	for _, require := range []bool{false, true} {
		cfg, err := loadConfig(map[string]string{"QUOTAGATE_REQUIRE_AUTH": strconv.FormatBool(require)})
		if err != nil {
			t.Fatal(err)
		}
		bud, err := newBudgets(cfg, false, nil, discardLog())
		if err != nil {
			t.Fatal(err)
		}
		ten, err := newTenants(cfg, bud, discardLog())
		if err != nil {
			t.Fatal(err)
		}
		ten.start(context.Background())
		if open := ten.registry.Current(context.Background()).Open(); open == require {
			t.Errorf("QUOTAGATE_REQUIRE_AUTH=%t: open %t", require, open)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	c := Config{TrustedProxies: []string{"10.0.0.0/8", " 192.168.1.7 ", "::ffff:172.16.0.1", "fd00::/8", ""}}
	got, err := c.trustedProxies()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "172.16.0.1/32", "fd00::/8"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d: got %s, want %s", i, got[i], want[i])
		}
	}
}
