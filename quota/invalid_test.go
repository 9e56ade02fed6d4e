package quota

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/redistest"
)

// TestTagBracesStayInside: a tag is a caller's model id, which may hold
// braces; they must not end the hash tag early and scatter the keys.
func TestTagBracesStayInside(t *testing.T) {
	for _, tag := range []string{"}evil", "a}b{c", "{x}", "100%"} {
		k := makeBudgetKeys("qg:", tag, "pool")
		for _, key := range []string{k[keyWindow], k[keyConc], makeTagKeys("qg:", tag).leases} {
			open := strings.IndexByte(key, '{')
			end := strings.IndexByte(key[open:], '}') + open
			if got := key[open+1 : end]; got != hashTag(tag) || strings.ContainsAny(got, "{}") {
				t.Errorf("key %q: hash tag %q, want the escaped tag %q", key, got, hashTag(tag))
			}
		}
	}
	// End to end: such a pool admits and settles like any other.
	c, prefix := redistest.New(t)
	s := NewRedisStore(c, Options{KeyPrefix: prefix})
	d, err := s.Admit(context.Background(), Request{Budgets: []Budget{{Scope: "x", Tag: "}evil", ID: "pool", Limits: Limits{TPM: 100, Concurrency: 1}}}, Tokens: 10})
	if err != nil || !d.Allowed {
		t.Fatalf("admit = %+v, %v", d, err)
	}
	if err := s.Settle(context.Background(), d.Lease, 5); err != nil {
		t.Fatal(err)
	}
}

// TestInvalidRequestsAreNotOutages: a request out of range is ErrInvalid,
// never ErrUnavailable, so a caller cannot flip a replica's failure policy.
func TestInvalidRequestsAreNotOutages(t *testing.T) {
	c, prefix := redistest.New(t)
	s := NewRedisStore(c, Options{KeyPrefix: prefix})
	_, err := s.Admit(context.Background(), Request{Budgets: []Budget{{Scope: "x", Tag: "t", ID: "pool", Limits: Limits{RPM: 10}}}, Tokens: MaxTokens + 1})
	if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnavailable) {
		t.Errorf("oversized reservation: got %v, want ErrInvalid and not ErrUnavailable", err)
	}
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("dial tcp: connection refused"), true},
		{context.DeadlineExceeded, true},
		{redis.ErrClosed, true},
		{redisReply("LOADING Redis is loading the dataset in memory"), true},
		{redisReply("READONLY You can't write against a read only replica."), true},
		{redisReply("CROSSSLOT Keys in request don't hash to the same slot"), false},
		{redisReply("ERR increment or decrement would overflow"), false},
	}
	for _, c := range cases {
		if got := unavailable(c.err); got != c.want {
			t.Errorf("unavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// redisReply is an error reply from a Redis server.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

// TestReleaseOrphans: an admission whose reply was lost (a timeout after
// the script ran) is released once Redis answers: the tokens come back and
// the slot frees, long before the lease TTL. An id that was never admitted
// changes nothing.
func TestReleaseOrphans(t *testing.T) {
	c, prefix := redistest.New(t)
	s := NewRedisStore(c, Options{KeyPrefix: prefix})
	ctx := context.Background()
	b := []Budget{{Scope: "model=m", Tag: "m", ID: "pool", Limits: Limits{TPM: 1000, Concurrency: 1}}}
	d, err := s.Admit(ctx, Request{Budgets: b, Tokens: 600})
	if err != nil || !d.Allowed {
		t.Fatalf("admit = %+v, %v", d, err)
	}
	// As Admit records it when the reply is lost: no admit time.
	s.orphan(Lease{ID: d.Lease.ID, Tag: "m", Budgets: b, Tokens: 600, Store: StoreRedis})
	s.orphan(Lease{ID: "never-admitted", Tag: "m", Budgets: b, Tokens: 600, Store: StoreRedis})
	if got := s.ReleaseOrphans(ctx); got != 2 {
		t.Fatalf("released %d, want 2", got)
	}
	d2, err := s.Admit(ctx, Request{Budgets: b, Tokens: 900})
	if err != nil || !d2.Allowed {
		t.Fatalf("after release: %+v, %v; want the slot free and the 600 tokens refunded", d2, err)
	}
	if d2.RemainingTokens != 100 {
		t.Errorf("remaining %d, want 100: the orphan refunded in full, nothing refunded twice", d2.RemainingTokens)
	}
}

// flakyClient fails every script call while fail is set, as a Redis that
// stopped answering would.
type flakyClient struct {
	rediser
	fail atomic.Bool
}

func (f *flakyClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if f.fail.Load() {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(errors.New("dial tcp: connection refused"))
		return cmd
	}
	return f.rediser.EvalSha(ctx, sha, keys, args...)
}

func (f *flakyClient) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	if f.fail.Load() {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(errors.New("dial tcp: connection refused"))
		return cmd
	}
	return f.rediser.Eval(ctx, script, keys, args...)
}

// TestVoidReleasedWhenRedisReturns: a void settle (the undo of a nested
// admission's first step) that cannot reach Redis is retried as an orphan,
// so the slot and the request are given back once Redis answers rather
// than at the lease TTL.
func TestVoidReleasedWhenRedisReturns(t *testing.T) {
	c, prefix := redistest.New(t)
	fc := &flakyClient{rediser: c}
	s := NewRedisStore(fc, Options{KeyPrefix: prefix})
	ctx := context.Background()
	b := []Budget{{Scope: "tenant=x model=*", Tag: "tenant:x", ID: "all", Limits: Limits{RPM: 1, Concurrency: 1}}}
	d, err := s.Admit(ctx, Request{Budgets: b, Tokens: 10})
	if err != nil || !d.Allowed {
		t.Fatalf("admit = %+v, %v", d, err)
	}
	fc.fail.Store(true)
	d.Lease.Void = true
	if err := s.Settle(ctx, d.Lease, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("void settle while Redis is down: %v, want ErrUnavailable", err)
	}
	fc.fail.Store(false)
	if got := s.ReleaseOrphans(ctx); got != 1 {
		t.Fatalf("released %d, want the void", got)
	}
	if d2, err := s.Admit(ctx, Request{Budgets: b, Tokens: 10}); err != nil || !d2.Allowed {
		t.Fatalf("after release: %+v, %v; want the request and the slot given back", d2, err)
	}
}
