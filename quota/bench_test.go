package quota

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/redistest"
)

// benchBudgets are a pool and a tenant budget, as the gateway sends them,
// with limits that never deny: the benchmarks measure the admit and settle
// path itself.
func benchBudgets() []Budget {
	const big = 1 << 50
	return []Budget{
		{Scope: "model=m", Tag: "m", ID: "pool", Limits: Limits{TPM: big, RPM: big, Concurrency: big, TokensPerDay: big}},
		{Scope: "tenant=t model=m", Tag: "m", ID: "t:t", Limits: Limits{TPM: big, RPM: big, Concurrency: big}},
	}
}

func benchAdmitSettle(b *testing.B, s Store) {
	ctx := context.Background()
	r := Request{Budgets: benchBudgets(), Tokens: 1000}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d, err := s.Admit(ctx, r)
			if err != nil || !d.Allowed {
				b.Errorf("Admit: %+v, %v", d, err)
				return
			}
			if err := s.Settle(ctx, d.Lease, 800); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRedisAdmitSettle is one request's store work: Admit then
// Settle, on two budgets. roundtrips/op counts the commands sent to Redis.
func BenchmarkRedisAdmitSettle(b *testing.B) {
	c, prefix := redistest.New(b)
	var n atomic.Int64
	c.AddHook(countHook{&n})
	s := NewRedisStore(c, Options{KeyPrefix: prefix})
	benchAdmitSettle(b, s)
	b.ReportMetric(float64(n.Load())/float64(b.N), "roundtrips/op")
}

func BenchmarkMemoryAdmitSettle(b *testing.B) {
	benchAdmitSettle(b, NewMemoryStore(Options{}))
}

// countHook counts round trips: each command, or each pipeline.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}
