package quota

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestMemoryStoreClock(t *testing.T) {
	testStoreClock(t, func(t *testing.T, o Options) (Store, func(time.Time)) {
		c := &testClock{}
		o.Now = c.Now
		return NewMemoryStore(o), c.set
	})
}

func TestMemoryStoreZeroValue(t *testing.T) {
	var s MemoryStore // the zero value uses the default Options
	b := []Budget{{Scope: "s", Tag: "t", ID: "b", Limits: Limits{TPM: 10}}}
	d, err := s.Admit(context.Background(), Request{Budgets: b, Tokens: 10})
	if err != nil || !d.Allowed {
		t.Fatalf("Admit: got %+v, %v; want allowed", d, err)
	}
	if d.Lease.Store != StoreMemory {
		t.Errorf("Lease.Store: got %q, want %q", d.Lease.Store, StoreMemory)
	}
	if d.ResetTokens <= DefaultWindow || d.ResetTokens > DefaultWindow+DefaultWindow/DefaultBuckets {
		t.Errorf("ResetTokens: got %v, want in (60s, 61s]: the default window", d.ResetTokens)
	}
}

func TestMemoryStoreUnevenBuckets(t *testing.T) {
	// 2s in 60 buckets: a bucket is rounded up to 34ms, so the window is
	// 2.04s, never shorter than asked.
	set := Options{Window: 2 * time.Second, Buckets: 60}.settings()
	if set.width != 34 || set.width*set.buckets < 2000 {
		t.Errorf("bucket width: got %dms, want 34ms", set.width)
	}
	if set.poll != 17 {
		t.Errorf("queue poll: got %dms, want half a bucket, 17ms", set.poll)
	}
}

// TestMemoryStoreConcurrentTags runs admissions on many tags and budgets at
// once, for the race detector.
func TestMemoryStoreConcurrentTags(t *testing.T) {
	s := NewMemoryStore(Options{Window: time.Second, Buckets: 10})
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			tag := string(rune('a' + w%3))
			b := []Budget{
				{Scope: "pool", Tag: tag, ID: "pool", Limits: Limits{TPM: 1000, RPM: 50, Concurrency: 4}},
				{Scope: "tenant", Tag: tag, ID: "t" + string(rune('0'+w%2)), Limits: Limits{TPM: 500, TokensPerDay: 1 << 20}},
			}
			var ticket string
			for range 200 {
				d, err := s.Admit(ctx, Request{Budgets: b, Tokens: 7, Ticket: ticket})
				if err != nil {
					t.Error(err)
					return
				}
				if !d.Allowed {
					ticket = d.Ticket
					continue
				}
				ticket = ""
				_ = s.Renew(ctx, d.Lease, 0)
				if err := s.Settle(ctx, d.Lease, 5); err != nil {
					t.Error(err)
				}
			}
			_ = s.Cancel(ctx, tag, ticket)
		})
	}
	wg.Wait()
}
