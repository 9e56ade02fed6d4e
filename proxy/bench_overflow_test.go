package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quotagate/quotagate/internal/redistest"
	"github.com/quotagate/quotagate/quota"
)

// BenchmarkOverflow measures what a route adds to a request: reading the
// targets' state (one pipelined Redis round trip, or a map lookup in
// memory), and for another family translating the body there and the
// answer back. Each pair is measured in one run (docs/PERFORMANCE.md).
func BenchmarkOverflow(b *testing.B) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	run := func(b *testing.B, base, path string, body []byte) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
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
	const limits = "{tpm: 1000000000, rpm: 100000000, concurrency: 100000}"
	const pools = "models:\n  " + haiku + ": " + limits + "\n  " + llama + ": " + limits + "\n"
	const routeSame = pools + "routes:\n  " + haiku + ":\n    targets: [" + haiku + ", " + llama + "]\n"
	const routeLlama = pools + "routes:\n  " + haiku + ":\n    targets: [" + llama + "]\n"
	invoke := []byte(anthropicMessages)
	const invokePath = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"

	plain := newHarness(b, harnessOptions{budgets: pools})
	b.Run("invoke/budgets/memory", func(b *testing.B) { run(b, plain.front.URL, invokePath, invoke) })
	same := newHarness(b, harnessOptions{budgets: routeSame})
	b.Run("invoke/routed/memory", func(b *testing.B) { run(b, same.front.URL, invokePath, invoke) })
	toLlama := newHarness(b, harnessOptions{budgets: routeLlama})
	b.Run("invoke/routed+translated/memory", func(b *testing.B) { run(b, toLlama.front.URL, invokePath, invoke) })

	rc, prefix := redistest.New(b)
	redisPlain := newHarness(b, harnessOptions{budgets: pools, store: quota.NewRedisStore(rc, quota.Options{KeyPrefix: prefix + "a:"})})
	b.Run("invoke/budgets/redis", func(b *testing.B) { run(b, redisPlain.front.URL, invokePath, invoke) })
	redisSame := newHarness(b, harnessOptions{budgets: routeSame, store: quota.NewRedisStore(rc, quota.Options{KeyPrefix: prefix + "b:"})})
	b.Run("invoke/routed/redis", func(b *testing.B) { run(b, redisSame.front.URL, invokePath, invoke) })
	// As cmd/gateway runs it: target states cached for 100ms per replica.
	cached := newHarness(b, harnessOptions{budgets: routeSame, store: quota.NewRedisStore(rc, quota.Options{KeyPrefix: prefix + "c:"})})
	cached.gateway.Targets = &quota.TargetCache{Targets: cached.store.(quota.Targets), TTL: 100 * time.Millisecond}
	b.Run("invoke/routed+cache/redis", func(b *testing.B) { run(b, cached.front.URL, invokePath, invoke) })
}
