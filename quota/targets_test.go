package quota

import (
	"context"
	"testing"
	"time"

	"github.com/quotagate/quotagate/internal/redistest"
)

// testTargets runs the target-state suite on one store kind. newPair
// returns two stores over the same shared state (two replicas).
func testTargets(t *testing.T, newPair func(t *testing.T) (Targets, Targets, Store)) {
	ctx := context.Background()
	a := PoolBudget("anthropic.x", Limits{TPM: 1000, Concurrency: 10})
	b := PoolBudget("meta.y@west", Limits{TPM: 1000})
	c := Cooldown{After: 3, Window: 10 * time.Second, Cool: 4 * time.Second}

	t.Run("FailuresCoolForEveryReplica", func(t *testing.T) {
		r1, r2, _ := newPair(t)
		for i := 1; i <= 2; i++ {
			if d, err := r1.Failed(ctx, a, 0, c); err != nil || d != 0 {
				t.Fatalf("failure %d: cooldown %v, %v; want none before the third", i, d, err)
			}
		}
		// The third failure comes from the other replica: the count is shared.
		d, err := r2.Failed(ctx, a, 0, c)
		if err != nil || d < 3900*time.Millisecond || d > c.Cool {
			t.Fatalf("third failure: cooldown %v, %v; want about %v", d, err, c.Cool)
		}
		st, err := r1.TargetStates(ctx, []Budget{a, b})
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Cooling <= 3*time.Second || st[0].Cooling > c.Cool {
			t.Errorf("replica 1 sees %s cooling for %v, want about %v", a.Tag, st[0].Cooling, c.Cool)
		}
		if st[1].Cooling != 0 {
			t.Errorf("%s cooling %v, want 0: cooldowns are per target", b.Tag, st[1].Cooling)
		}
	})

	t.Run("RetryAfterCoolsAtOnce", func(t *testing.T) {
		r1, r2, _ := newPair(t)
		d, err := r1.Failed(ctx, b, 7*time.Second, c)
		if err != nil || d < 6900*time.Millisecond || d > 7*time.Second {
			t.Fatalf("cooldown %v, %v; want 7s at once", d, err)
		}
		// A shorter cooldown never shortens the one in force.
		for range 3 {
			if d, err = r2.Failed(ctx, b, 0, c); err != nil {
				t.Fatal(err)
			}
		}
		if d < 6*time.Second {
			t.Errorf("after more failures: cooldown %v, want the 7s still in force", d)
		}
	})

	t.Run("StatesCarryUsage", func(t *testing.T) {
		r1, _, store := newPair(t)
		dec, err := store.Admit(ctx, Request{Budgets: []Budget{a}, Tokens: 300, LeaseTTL: time.Minute})
		if err != nil || !dec.Allowed {
			t.Fatalf("admit: %+v, %v", dec, err)
		}
		st, err := r1.TargetStates(ctx, []Budget{a, b})
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Usage.WindowTokens != 300 || st[0].Usage.InFlight != 1 || st[0].Usage.WindowRequests != 1 {
			t.Errorf("usage of %s: %+v, want 300 tokens, 1 request, 1 in flight", a.Tag, st[0].Usage)
		}
		if st[1].Usage != (Usage{}) {
			t.Errorf("usage of the unused %s: %+v, want zero", b.Tag, st[1].Usage)
		}
	})
}

func TestTargetsMemory(t *testing.T) {
	testTargets(t, func(t *testing.T) (Targets, Targets, Store) {
		s := NewMemoryStore(Options{})
		return s, s, s
	})
}

func TestTargetsRedis(t *testing.T) {
	testTargets(t, func(t *testing.T) (Targets, Targets, Store) {
		// Two stores over one server are two replicas: their state is
		// only what is in Redis. (One client, so that the embedded
		// fallback serves both.)
		c, prefix := redistest.New(t)
		s1 := NewRedisStore(c, Options{KeyPrefix: prefix})
		return s1, NewRedisStore(c, Options{KeyPrefix: prefix}), s1
	})
}

// TestTargetCache: reads within the TTL come from the cache, a failure
// recorded through it shows at once, and a stale entry is read again.
func TestTargetCache(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore(Options{})
	c := &TargetCache{Targets: store, TTL: time.Hour}
	a := PoolBudget("anthropic.x", Limits{TPM: 1000})
	if _, err := c.TargetStates(ctx, []Budget{a}); err != nil {
		t.Fatal(err)
	}
	if d, err := store.Admit(ctx, Request{Budgets: []Budget{a}, Tokens: 100}); err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	st, _ := c.TargetStates(ctx, []Budget{a})
	if st[0].Usage.WindowTokens != 0 {
		t.Errorf("within the TTL: %d tokens, want the cached 0", st[0].Usage.WindowTokens)
	}
	if d, _ := c.Failed(ctx, a, 3*time.Second, Cooldown{}); d <= 0 {
		t.Fatalf("a retry-after did not cool: %v", d)
	}
	if st, _ = c.TargetStates(ctx, []Budget{a}); st[0].Cooling <= 2*time.Second {
		t.Errorf("the cooldown recorded through the cache shows as %v", st[0].Cooling)
	}
	c.TTL = time.Nanosecond
	if st, _ = c.TargetStates(ctx, []Budget{a}); st[0].Usage.WindowTokens != 100 {
		t.Errorf("after the TTL: %d tokens, want the store's 100", st[0].Usage.WindowTokens)
	}
}
