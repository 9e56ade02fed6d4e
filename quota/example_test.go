package quota_test

import (
	"context"
	"fmt"
	"time"

	"github.com/quotagate/quotagate/quota"
)

func ExampleMemoryStore() {
	// A fixed clock makes the output exact; production uses the default.
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	s := quota.NewMemoryStore(quota.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	pool := quota.Budget{
		Scope:  "model=anthropic.claude-3-haiku-20240307-v1:0",
		Tag:    "anthropic.claude-3-haiku-20240307-v1:0",
		ID:     "pool",
		Limits: quota.Limits{TPM: 1000, Concurrency: 2},
	}

	// Reserve input estimate + max output tokens.
	first, _ := s.Admit(ctx, quota.Request{Budgets: []quota.Budget{pool}, Tokens: 400})
	fmt.Println("admitted:", first.Allowed, "remaining:", first.RemainingTokens)

	second, _ := s.Admit(ctx, quota.Request{Budgets: []quota.Budget{pool}, Tokens: 700})
	fmt.Println("admitted:", second.Allowed, "denied by", second.Dimension, "retry after", second.RetryAfter)

	// The first request used only 250: the refund makes room. The second
	// retries with its ticket, keeping its place in the queue.
	_ = s.Settle(ctx, first.Lease, 250)
	second, _ = s.Admit(ctx, quota.Request{Budgets: []quota.Budget{pool}, Tokens: 700, Ticket: second.Ticket})
	fmt.Println("admitted:", second.Allowed, "remaining:", second.RemainingTokens)

	huge, _ := s.Admit(ctx, quota.Request{Budgets: []quota.Budget{pool}, Tokens: 5000})
	fmt.Println("admitted:", huge.Allowed, "never fits:", huge.RetryAfter < 0)
	// Output:
	// admitted: true remaining: 600
	// admitted: false denied by tpm retry after 1m1s
	// admitted: true remaining: 50
	// admitted: false never fits: true
}

func ExampleNewRedisStore() {
	// One client for every replica's store; see NewClient for the URL forms.
	client, err := quota.NewClient("redis+cluster://redis-0:6379,redis-1:6379,redis-2:6379")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	s := quota.NewRedisStore(client, quota.Options{KeyPrefix: "qg:", Timeout: 250 * time.Millisecond})
	d, err := s.Admit(context.Background(), quota.Request{
		Budgets: []quota.Budget{{Scope: "model=m", Tag: "m", ID: "pool", Limits: quota.Limits{TPM: 400000, RPM: 200}}},
		Tokens:  1200,
	})
	if err != nil {
		fmt.Println("no decision; apply the failure policy:", err)
		return
	}
	fmt.Println(d.Allowed)
}
