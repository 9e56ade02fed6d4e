package authfail

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/redistest"
)

// TestMemoryBounded: a flood from more sources than MaxSources grows
// neither the counts nor the block list beyond it.
func TestMemoryBounded(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	l := NewMemory(Options{Failures: 1, MaxSources: 3, Now: func() time.Time { return now }})
	for i := range 10 {
		src := fmt.Sprintf("192.0.2.%d", i)
		for range 2 {
			if _, err := l.Failed(t.Context(), src); err != nil {
				t.Fatal(err)
			}
		}
		if _, blocked := l.Blocked(src); !blocked {
			t.Errorf("%s: not blocked after 2 failures with a limit of 1", src)
		}
	}
	l.mu.Lock()
	buckets := len(l.buckets)
	l.mu.Unlock()
	if n := len(l.blocks.until); n > 3 || buckets > 3 {
		t.Errorf("remembered sources: got %d blocked and %d counts, want at most 3 each", n, buckets)
	}
}

// TestRedisSharesCounts: two limiters on one Redis (two replicas) count one
// source's failures together, and each blocks it locally once over.
func TestRedisSharesCounts(t *testing.T) {
	c, prefix := redistest.New(t)
	now := time.Now()
	o := Options{Failures: 3, Period: time.Minute, KeyPrefix: prefix, Now: func() time.Time { return now }}
	a, b := NewRedis(c, o), NewRedis(c, o)
	ctx := context.Background()
	for i, l := range []*Redis{a, b, a} {
		if d, err := l.Failed(ctx, "192.0.2.7"); err != nil || d != 0 {
			t.Fatalf("failure %d: blocked %v, %v; want counted, not blocked", i+1, d, err)
		}
	}
	d, err := b.Failed(ctx, "192.0.2.7")
	if err != nil || d <= 0 {
		t.Fatalf("fourth failure: %v, %v; want blocked", d, err)
	}
	if _, blocked := b.Blocked("192.0.2.7"); !blocked {
		t.Error("b does not block the source it saw go over")
	}
	if _, blocked := a.Blocked("192.0.2.7"); blocked {
		t.Error("a blocks a source before it saw a failure over the limit: it cannot know without asking Redis")
	}
	if _, blocked := b.Blocked("192.0.2.8"); blocked {
		t.Error("another source is blocked")
	}
	if d, err := a.Failed(ctx, "192.0.2.7"); err != nil || d <= 0 {
		t.Fatalf("a's next failure: %v, %v; want the shared count over the limit", d, err)
	}
}

// TestRedisDownCountsLocally: while Redis does not answer, failures are
// counted in the process, so an outage opens no unthrottled way to test
// guessed keys.
func TestRedisDownCountsLocally(t *testing.T) {
	dead := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	l := NewRedis(dead, Options{Failures: 2, Period: time.Hour})
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		if d, err := l.Failed(ctx, "192.0.2.9"); err == nil || d != 0 {
			t.Fatalf("failure %d with Redis down: %v, %v; want counted locally (not blocked) and the error reported", i, d, err)
		}
	}
	if d, _ := l.Failed(ctx, "192.0.2.9"); d <= 0 {
		t.Fatal("third failure with Redis down: not blocked; want the local count over the limit")
	}
	if _, blocked := l.Blocked("192.0.2.9"); !blocked {
		t.Error("the source is not blocked")
	}
}
