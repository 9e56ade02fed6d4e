package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/quotagate/quotagate/internal/redistest"
	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tenant"
)

// BenchmarkProxy measures one Converse round trip through the gateway to a
// zero-latency simulator, against the same call made to the simulator
// directly. The difference between the two is what the gateway adds: body
// parsing, re-signing, header filtering and relaying. Compare the pair from
// one run (docs/PERFORMANCE.md); absolute figures depend on the machine.
func BenchmarkProxy(b *testing.B) {
	h := newHarness(b, harnessOptions{})
	body := []byte(`{"messages":[{"role":"user","content":[{"text":"Name three colours."}]}],"inferenceConfig":{"maxTokens":40}}`)
	const path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	// The simulator checks SigV4, so the direct path is signed like the
	// gateway signs, by the same Signer type.
	direct := h.gateway.Transport
	run := func(b *testing.B, do func(*http.Request) (*http.Response, error), base string) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, direct.RoundTrip, h.upstream.URL) })
	b.Run("gateway", func(b *testing.B) { run(b, client.Do, h.front.URL) })

	// With budgets: one admission and one settle per request, in memory and
	// in a real Redis (two round trips).
	const budgets = "models:\n  " + haiku + ":\n    tpm: 1000000000\n    rpm: 100000000\n    concurrency: 100000\n"
	mem := newHarness(b, harnessOptions{budgets: budgets})
	b.Run("gateway+budgets/memory", func(b *testing.B) { run(b, client.Do, mem.front.URL) })
	rc, prefix := redistest.New(b)
	red := newHarness(b, harnessOptions{budgets: budgets, store: quota.NewRedisStore(rc, quota.Options{KeyPrefix: prefix})})
	b.Run("gateway+budgets/redis", func(b *testing.B) { run(b, client.Do, red.front.URL) })

	// With tenants on Redis as a deployment runs them: the caller signs
	// with its tenant's access key (SigV4 verified by the gateway), the
	// registry checks its version (one GET), and the admission charges the
	// pool and the tracked tenant budget. The signing client is the same
	// Signer type, so the client's own cost matches the direct path's.
	ten := newHarness(b, harnessOptions{budgets: budgets, store: quota.NewRedisStore(rc, quota.Options{KeyPrefix: prefix + "t:"})})
	reg, err := tenant.NewRegistry(tenant.Options{Client: rc, KeyPrefix: prefix + "t:"})
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("BENCH_TENANT_SECRET", "bench-tenant-secret-0123456789abcdefghij")
	if err := reg.SetFile(map[string]quota.TenantConfig{"bench": {
		AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKBENCH00000000001", SecretEnv: "BENCH_TENANT_SECRET"}},
	}}); err != nil {
		b.Fatal(err)
	}
	ten.gateway.Tenants = reg
	caller := &proxy.Signer{
		Transport:   client.Transport,
		Credentials: credentials.NewStaticCredentialsProvider("QGAKBENCH00000000001", "bench-tenant-secret-0123456789abcdefghij", ""),
		Region:      "us-east-1",
	}
	b.Run("gateway+tenants+budgets/redis", func(b *testing.B) { run(b, caller.RoundTrip, ten.front.URL) })
}
