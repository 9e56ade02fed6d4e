package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/redistest"
)

// sharedRedis returns the URL the replicas use and a client for the test's
// own inspection, under a key prefix of the test's own that is cleaned up
// when the test ends: the test Redis, or an embedded miniredis when none
// answers (it listens on a real loopback port, so separate processes can
// share it). It never flushes a server: the server may be someone else's.
func sharedRedis(t *testing.T) (url string, client *redis.Client, prefix string, embedded bool) {
	t.Helper()
	c, prefix := redistest.New(t)
	rc, ok := c.(*redis.Client)
	if !ok {
		t.Fatalf("the e2e tests need a single-node test Redis (QUOTAGATE_TEST_REDIS_URL)")
	}
	return "redis://" + rc.Options().Addr, rc, prefix, redistest.Reachable() != nil
}

// leaseCounts counts what admission left in Redis under prefix (see
// quota/keys.go): live members of the concurrency sets
// (<p>{tag}:<budget>:c, lease id -> expiry, on the server's clock), and
// unsettled leases (<p>{tag}:leases, kept two days so a second Settle is a
// no-op). Both are zero when every admitted request was settled. An
// expired member is no held slot: admissions prune it, and a real Redis
// drops the whole set a lease TTL after the last one, which an embedded
// miniredis does not do by itself.
func leaseCounts(ctx context.Context, c *redis.Client, prefix string) (slots, unsettled int64, err error) {
	now, err := c.Time(ctx).Result()
	if err != nil {
		return 0, 0, err
	}
	live := "(" + strconv.FormatInt(now.UnixMilli(), 10)
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		switch {
		case strings.HasSuffix(key, ":c"):
			n, err := c.ZCount(ctx, key, live, "+inf").Result()
			if err != nil {
				return 0, 0, err
			}
			slots += n
		case strings.HasSuffix(key, ":leases"):
			n, err := c.ZCard(ctx, key).Result()
			if err != nil {
				return 0, 0, err
			}
			unsettled += n
		}
	}
	return slots, unsettled, iter.Err()
}

// checkNoLeases waits up to ttl for every concurrency slot and every
// unsettled lease under prefix to go, and fails the test if any remains.
// A request still settling after the run may hold one briefly; a lease
// that outlives the TTL was never settled. (An unsettled lease's slot
// expires with the TTL, but its :leases entry does not, so it is caught.)
func checkNoLeases(t *testing.T, c *redis.Client, prefix string, ttl time.Duration) (slots, unsettled int64) {
	t.Helper()
	deadline := time.Now().Add(ttl)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		slots, unsettled, err = leaseCounts(ctx, c, prefix)
		cancel()
		if err != nil {
			t.Errorf("reading leases under %s: %v", prefix, err)
			return slots, unsettled
		}
		if slots == 0 && unsettled == 0 {
			return 0, 0
		}
		if time.Now().After(deadline) {
			t.Errorf("leases left in Redis %s after the run (waited the lease TTL %s): got %d concurrency slots and %d unsettled leases, want 0 and 0",
				prefix, ttl, slots, unsettled)
			return slots, unsettled
		}
		time.Sleep(50 * time.Millisecond)
	}
}
