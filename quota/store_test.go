package quota

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quotagate/quotagate/internal/redistest"
)

// testStore is the suite every Store implementation passes. newStore
// returns an empty store with options o (each call its own counters). The
// tests use real time: windows are short where time must pass, and long
// where it must not, so that no assertion depends on how fast the machine
// is.
func testStore(t *testing.T, newStore func(t *testing.T, o Options) Store) {
	t.Run("parallel", func(t *testing.T) {
		for _, tc := range storeCases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.run(t, newStore)
			})
		}
	})
	// The window property hammers the store with many goroutines; it runs
	// alone so that the other tests do not starve it of CPU.
	t.Run("WindowProperty", func(t *testing.T) { testWindowProperty(t, newStore) })
}

type storeCase struct {
	name string
	run  func(t *testing.T, newStore func(t *testing.T, o Options) Store)
}

var storeCases = []storeCase{
	{"AllOrNone", testAllOrNone},
	{"Dimensions", testDimensions},
	{"RefundMakesRoom", testRefundMakesRoom},
	{"OverrunCharges", testOverrunCharges},
	{"SettleIdempotent", testSettleIdempotent},
	{"SettleAfterLeaseExpired", testSettleAfterLeaseExpired},
	{"ConcurrencyRelease", testConcurrencyRelease},
	{"ConcurrencyExpiry", testConcurrencyExpiry},
	{"Renew", testRenew},
	{"RetryAfter", testRetryAfter},
	{"NeverFits", testNeverFits},
	{"QueueFairness", testQueueFairness},
	{"QueueCancel", testQueueCancel},
	{"QueueTicketExpiry", testQueueTicketExpiry},
	{"Remaining", testRemaining},
	{"Validation", testValidation},
}

// long is a window that does not move during a test.
var long = Options{Window: time.Hour, Buckets: 60}

// budget is a budget under the test's own tag, so that on a Cluster the
// tests' keys spread over the nodes.
func budget(t *testing.T, id string, l Limits) Budget {
	return Budget{Scope: "budget=" + id, Tag: "tag-" + t.Name(), ID: id, Limits: l}
}

func mustAdmit(t *testing.T, s Store, r Request) Decision {
	t.Helper()
	d, err := s.Admit(context.Background(), r)
	if err != nil {
		t.Fatalf("Admit(%d tokens): %v", r.Tokens, err)
	}
	return d
}

func wantAllowed(t *testing.T, s Store, r Request) Decision {
	t.Helper()
	d := mustAdmit(t, s, r)
	if !d.Allowed {
		t.Fatalf("Admit(%d tokens) denied by %s %s (retry %v), want allowed", r.Tokens, d.Scope, d.Dimension, d.RetryAfter)
	}
	return d
}

func wantDenied(t *testing.T, s Store, r Request, scope string, dim Dimension) Decision {
	t.Helper()
	d := mustAdmit(t, s, r)
	if d.Allowed {
		t.Fatalf("Admit(%d tokens) allowed, want denied by %s %s", r.Tokens, scope, dim)
	}
	if d.Scope != scope || d.Dimension != dim {
		t.Fatalf("Admit(%d tokens) denied by %s %s, want %s %s", r.Tokens, d.Scope, d.Dimension, scope, dim)
	}
	return d
}

func mustSettle(t *testing.T, s Store, l Lease, actual int64) {
	t.Helper()
	if err := s.Settle(context.Background(), l, actual); err != nil {
		t.Fatalf("Settle(%d): %v", actual, err)
	}
}

func mustCancel(t *testing.T, s Store, d Decision) {
	t.Helper()
	if d.Ticket == "" {
		return
	}
	if err := s.Cancel(context.Background(), "tag-"+t.Name(), d.Ticket); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
}

func testAllOrNone(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	a := budget(t, "a", Limits{TPM: 100})
	b := budget(t, "b", Limits{TPM: 1000})
	both := []Budget{a, b}
	wantAllowed(t, s, Request{Budgets: both, Tokens: 60})
	d := wantDenied(t, s, Request{Budgets: both, Tokens: 60}, a.Scope, TPM)
	mustCancel(t, s, d)
	// b holds only the first 60: the denied 60 was not charged to it.
	wantAllowed(t, s, Request{Budgets: []Budget{b}, Tokens: 940})
	wantDenied(t, s, Request{Budgets: []Budget{b}, Tokens: 1}, b.Scope, TPM)

	// The other way round: b denies, a is not charged.
	s = newStore(t, long)
	a.Limits, b.Limits = Limits{TPM: 1000, RPM: 10, Concurrency: 5, TokensPerDay: 1000}, Limits{Concurrency: 1}
	both = []Budget{a, b}
	wantAllowed(t, s, Request{Budgets: both, Tokens: 100})
	for range 3 {
		d := wantDenied(t, s, Request{Budgets: both, Tokens: 100}, b.Scope, Concurrency)
		mustCancel(t, s, d)
	}
	d = wantAllowed(t, s, Request{Budgets: []Budget{a}, Tokens: 900})
	if d.RemainingRequests != 8 {
		t.Errorf("remaining requests of a: got %d, want 8 (the denied requests were not counted)", d.RemainingRequests)
	}
}

func testDimensions(t *testing.T, newStore func(*testing.T, Options) Store) {
	cases := []struct {
		dim    Dimension
		limits Limits
		fill   []int64 // admitted first
		deny   int64   // then denied
	}{
		{TPM, Limits{TPM: 100}, []int64{60, 40}, 1},
		{RPM, Limits{RPM: 2, TPM: 1000}, []int64{1, 1}, 1},
		{Concurrency, Limits{Concurrency: 2}, []int64{1, 1}, 1},
		{TokensPerDay, Limits{TokensPerDay: 100, TPM: 1000}, []int64{70, 30}, 1},
	}
	for _, c := range cases {
		t.Run(string(c.dim), func(t *testing.T) {
			s := newStore(t, long)
			other := budget(t, "other", Limits{TPM: 1 << 40, RPM: 1 << 40, Concurrency: 1 << 40, TokensPerDay: 1 << 40})
			b := budget(t, "b", c.limits)
			bs := []Budget{other, b}
			for _, n := range c.fill {
				wantAllowed(t, s, Request{Budgets: bs, Tokens: n})
			}
			d := wantDenied(t, s, Request{Budgets: bs, Tokens: c.deny}, b.Scope, c.dim)
			switch c.dim {
			case Concurrency:
				if d.RetryAfter != 0 {
					t.Errorf("concurrency RetryAfter: got %v, want 0 (unknown)", d.RetryAfter)
				}
			case TokensPerDay:
				now := time.Now().UTC()
				midnight := now.Truncate(24 * time.Hour).Add(24 * time.Hour)
				if d.RetryAfter <= 0 || d.RetryAfter > 24*time.Hour {
					t.Errorf("day RetryAfter: got %v, want the time to the next UTC midnight (about %v)", d.RetryAfter, midnight.Sub(now))
				}
				if d.Ticket != "" {
					t.Errorf("day denial ticket: got %q, want none (the day resets for everyone at once)", d.Ticket)
				}
			default:
				if d.RetryAfter <= 0 || d.RetryAfter > time.Hour+time.Minute {
					t.Errorf("RetryAfter: got %v, want within the window (1h and a bucket)", d.RetryAfter)
				}
			}
			if c.dim != TokensPerDay && d.Ticket == "" {
				t.Errorf("Ticket: got none, want one: a denied request waits in the queue")
			}
		})
	}
}

func testRefundMakesRoom(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	b := []Budget{budget(t, "b", Limits{TPM: 100, TokensPerDay: 150})}
	first := wantAllowed(t, s, Request{Budgets: b, Tokens: 80})
	d := wantDenied(t, s, Request{Budgets: b, Tokens: 50}, b[0].Scope, TPM)
	mustSettle(t, s, first.Lease, 10)
	d = wantAllowed(t, s, Request{Budgets: b, Tokens: 50, Ticket: d.Ticket})
	if d.RemainingTokens != 40 {
		t.Errorf("RemainingTokens: got %d, want 40 (100 - 10 - 50)", d.RemainingTokens)
	}
	// The day was refunded too: 10 + 50 charged of 150.
	wantAllowed(t, s, Request{Budgets: []Budget{budget(t, "b", Limits{TokensPerDay: 150})}, Tokens: 90})
}

func testOverrunCharges(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	b := []Budget{budget(t, "b", Limits{TPM: 100, TokensPerDay: 1000})}
	d := wantAllowed(t, s, Request{Budgets: b, Tokens: 10})
	mustSettle(t, s, d.Lease, 70)
	d = wantDenied(t, s, Request{Budgets: b, Tokens: 31}, b[0].Scope, TPM)
	mustCancel(t, s, d)
	wantAllowed(t, s, Request{Budgets: b, Tokens: 30})

	day := []Budget{budget(t, "day", Limits{TokensPerDay: 1000})}
	d = wantAllowed(t, s, Request{Budgets: day, Tokens: 10})
	mustSettle(t, s, d.Lease, 500)
	wantDenied(t, s, Request{Budgets: day, Tokens: 501}, day[0].Scope, TokensPerDay)
	wantAllowed(t, s, Request{Budgets: day, Tokens: 500})
}

func testSettleIdempotent(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	b := []Budget{budget(t, "b", Limits{TPM: 100, Concurrency: 5, TokensPerDay: 1000})}
	l1 := wantAllowed(t, s, Request{Budgets: b, Tokens: 50}).Lease
	wantAllowed(t, s, Request{Budgets: b, Tokens: 50})
	mustSettle(t, s, l1, 0)
	mustSettle(t, s, l1, 0) // a second refund would free 50 more
	d := wantDenied(t, s, Request{Budgets: b, Tokens: 51}, b[0].Scope, TPM)
	mustCancel(t, s, d)
	l3 := wantAllowed(t, s, Request{Budgets: b, Tokens: 50}).Lease
	if got := wantAllowed(t, s, Request{Budgets: []Budget{budget(t, "b", Limits{TokensPerDay: 1000})}, Tokens: 0}).RemainingTokens; got != -1 {
		t.Fatalf("RemainingTokens without a TPM: got %d, want -1", got)
	}

	// Overruns are charged once too.
	mustSettle(t, s, l3, 0) // 50 in use
	l4 := wantAllowed(t, s, Request{Budgets: b, Tokens: 10}).Lease
	mustSettle(t, s, l4, 30)
	mustSettle(t, s, l4, 30)
	wantAllowed(t, s, Request{Budgets: b, Tokens: 20}) // 50 + 30 + 20 = 100

	// The day: 50+50+50+10+20 reserved, 50+50 refunded, 20 overrun: 100
	// charged; a double refund or overrun would show here.
	day := []Budget{budget(t, "b", Limits{TokensPerDay: 1000})}
	wantAllowed(t, s, Request{Budgets: day, Tokens: 900})
	wantDenied(t, s, Request{Budgets: day, Tokens: 1}, day[0].Scope, TokensPerDay)
}

func testSettleAfterLeaseExpired(t *testing.T, newStore func(*testing.T, Options) Store) {
	// The concurrency slot expires without a renewal; Settle still refunds,
	// once, because the lease's settle marker is not the slot.
	s := newStore(t, Options{Window: time.Hour, LeaseTTL: 50 * time.Millisecond})
	b := []Budget{budget(t, "b", Limits{TPM: 100, Concurrency: 1})}
	l := wantAllowed(t, s, Request{Budgets: b, Tokens: 80}).Lease
	time.Sleep(100 * time.Millisecond)
	wantAllowed(t, s, Request{Budgets: []Budget{budget(t, "b", Limits{Concurrency: 1})}, Tokens: 0}) // prunes the expired slot
	mustSettle(t, s, l, 0)
	mustSettle(t, s, l, 0)
	wantAllowed(t, s, Request{Budgets: []Budget{budget(t, "b", Limits{TPM: 100})}, Tokens: 100})
}

func testConcurrencyRelease(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	b := []Budget{budget(t, "b", Limits{Concurrency: 1})}
	a := wantAllowed(t, s, Request{Budgets: b, Tokens: 10})
	d := wantDenied(t, s, Request{Budgets: b, Tokens: 10}, b[0].Scope, Concurrency)
	mustSettle(t, s, a.Lease, 10)
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10, Ticket: d.Ticket})
}

func testConcurrencyExpiry(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, Options{Window: time.Hour, LeaseTTL: 100 * time.Millisecond})
	b := []Budget{budget(t, "b", Limits{Concurrency: 1})}
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10}) // never settled: its replica died
	d := wantDenied(t, s, Request{Budgets: b, Tokens: 10}, b[0].Scope, Concurrency)
	time.Sleep(150 * time.Millisecond)
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10, Ticket: d.Ticket})

	// Request.LeaseTTL overrides the store's.
	s = newStore(t, Options{Window: time.Hour, LeaseTTL: time.Hour})
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10, LeaseTTL: 100 * time.Millisecond})
	time.Sleep(150 * time.Millisecond)
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10})
}

func testRenew(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	b := []Budget{budget(t, "b", Limits{Concurrency: 1})}
	a := wantAllowed(t, s, Request{Budgets: b, Tokens: 10, LeaseTTL: time.Second})
	time.Sleep(500 * time.Millisecond)
	if err := s.Renew(context.Background(), a.Lease, 5*time.Second); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	time.Sleep(700 * time.Millisecond) // past the first TTL
	d := wantDenied(t, s, Request{Budgets: b, Tokens: 10}, b[0].Scope, Concurrency)
	mustCancel(t, s, d)
	mustSettle(t, s, a.Lease, 10)
	if err := s.Renew(context.Background(), a.Lease, 0); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Renew after Settle: got %v, want ErrLeaseExpired", err)
	}
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10})
	// A lease without a concurrency limit has nothing to renew.
	l := wantAllowed(t, s, Request{Budgets: []Budget{budget(t, "t", Limits{TPM: 10})}, Tokens: 1}).Lease
	if err := s.Renew(context.Background(), l, 0); err != nil {
		t.Fatalf("Renew without concurrency: %v", err)
	}
}

func testRetryAfter(t *testing.T, newStore func(*testing.T, Options) Store) {
	o := Options{Window: 2 * time.Second, Buckets: 20}
	bucket := o.Window / time.Duration(o.Buckets)
	for _, dim := range []Dimension{TPM, RPM} {
		t.Run(string(dim), func(t *testing.T) {
			t.Parallel()
			s := newStore(t, o)
			b := []Budget{budget(t, "b", Limits{TPM: 100, RPM: 4})}
			fill := []int64{25, 25, 25, 25} // TPM and RPM full at once
			if dim == RPM {
				fill = []int64{1, 1, 1, 1}
			}
			var first Decision
			for i, n := range fill {
				d := wantAllowed(t, s, Request{Budgets: b, Tokens: n})
				if i == 0 {
					first = d
				}
				if d.ResetTokens <= 0 || d.ResetTokens > o.Window+bucket {
					t.Errorf("ResetTokens: got %v, want in (0, window + bucket]", d.ResetTokens)
				}
			}
			d := wantDenied(t, s, Request{Budgets: b, Tokens: 10}, b[0].Scope, dim)
			if d.RetryAfter <= 0 || d.RetryAfter > o.Window+bucket {
				t.Fatalf("RetryAfter: got %v, want in (0, window + bucket]", d.RetryAfter)
			}
			// Waiting that long is enough: the first charge has left the window.
			time.Sleep(d.RetryAfter + 2*time.Millisecond)
			d2 := wantAllowed(t, s, Request{Budgets: b, Tokens: 10, Ticket: d.Ticket})
			if gone := d2.Lease.At - first.Lease.At; gone < o.Window.Milliseconds() {
				t.Errorf("admitted %dms after the first charge, want at least the window (%v)", gone, o.Window)
			}
		})
	}
}

func testNeverFits(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	b := budget(t, "b", Limits{TPM: 100})
	day := budget(t, "day", Limits{TokensPerDay: 50})
	d := wantDenied(t, s, Request{Budgets: []Budget{b}, Tokens: 101}, b.Scope, TPM)
	if d.RetryAfter != -1 || d.Ticket != "" {
		t.Errorf("too big for TPM: got RetryAfter %v ticket %q, want -1 (never) and no ticket", d.RetryAfter, d.Ticket)
	}
	d = wantDenied(t, s, Request{Budgets: []Budget{b, day}, Tokens: 60}, day.Scope, TokensPerDay)
	if d.RetryAfter >= 0 {
		t.Errorf("too big for the day: got RetryAfter %v, want -1 (never)", d.RetryAfter)
	}
	// It holds up nobody.
	wantAllowed(t, s, Request{Budgets: []Budget{b}, Tokens: 100})
}

func testQueueFairness(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	b := []Budget{budget(t, "b", Limits{TPM: 100})}
	held := wantAllowed(t, s, Request{Budgets: b, Tokens: 50})
	big := wantDenied(t, s, Request{Budgets: b, Tokens: 80}, b[0].Scope, TPM)
	if big.Ticket == "" {
		t.Fatal("denied request got no ticket")
	}
	// Small requests that would fit must now leave room for the big one.
	small := wantDenied(t, s, Request{Budgets: b, Tokens: 10}, b[0].Scope, Queue)
	if small.RetryAfter <= 0 || small.RetryAfter > maxPoll {
		t.Errorf("queue RetryAfter: got %v, want a short poll in (0, %v]", small.RetryAfter, maxPoll)
	}
	mustCancel(t, s, small) // this one gives up
	mustSettle(t, s, held.Lease, 0)
	// Room frees. Small requests may still use what the big one leaves...
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10})
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10})
	// ...but not what it needs, even though 10 would fit.
	small = wantDenied(t, s, Request{Budgets: b, Tokens: 10}, b[0].Scope, Queue)
	// The big one, retrying with its ticket, gets in ahead of the later small one.
	wantAllowed(t, s, Request{Budgets: b, Tokens: 80, Ticket: big.Ticket})
	small = wantDenied(t, s, Request{Budgets: b, Tokens: 10, Ticket: small.Ticket}, b[0].Scope, TPM)
	mustCancel(t, s, small)

	// Between two waiters, the older one keeps its place across retries.
	s = newStore(t, long)
	held = wantAllowed(t, s, Request{Budgets: b, Tokens: 100})
	w1 := wantDenied(t, s, Request{Budgets: b, Tokens: 60}, b[0].Scope, TPM)
	w2 := wantDenied(t, s, Request{Budgets: b, Tokens: 60}, b[0].Scope, TPM)
	w2 = wantDenied(t, s, Request{Budgets: b, Tokens: 60, Ticket: w2.Ticket}, b[0].Scope, TPM)
	mustSettle(t, s, held.Lease, 0)
	wantDenied(t, s, Request{Budgets: b, Tokens: 60, Ticket: w2.Ticket}, b[0].Scope, Queue)
	wantAllowed(t, s, Request{Budgets: b, Tokens: 60, Ticket: w1.Ticket})
	wantDenied(t, s, Request{Budgets: b, Tokens: 60, Ticket: w2.Ticket}, b[0].Scope, TPM)
}

func testQueueCancel(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	b := []Budget{budget(t, "b", Limits{Concurrency: 2})}
	a1 := wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
	wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
	waiter := wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, Concurrency)
	mustSettle(t, s, a1.Lease, 1)
	// One slot is free, but it is the waiter's.
	mustCancel(t, s, wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, Queue))
	mustCancel(t, s, waiter)
	wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
	// Cancelling twice, or an unknown ticket, is fine.
	mustCancel(t, s, waiter)
	mustCancel(t, s, Decision{Ticket: "no-such-ticket"})
}

func testQueueTicketExpiry(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, Options{Window: time.Hour, TicketTTL: 100 * time.Millisecond})
	b := []Budget{budget(t, "b", Limits{Concurrency: 2})}
	a1 := wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
	wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
	wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, Concurrency) // then its caller dies
	mustSettle(t, s, a1.Lease, 1)
	mustCancel(t, s, wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, Queue))
	time.Sleep(150 * time.Millisecond) // the dead waiter's ticket expires
	wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
}

func testRemaining(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	a := budget(t, "a", Limits{TPM: 100, RPM: 10})
	b := budget(t, "b", Limits{TPM: 50, RPM: 20})
	d := wantAllowed(t, s, Request{Budgets: []Budget{a, b}, Tokens: 30})
	if d.RemainingTokens != 20 || d.RemainingRequests != 9 {
		t.Errorf("remaining: got %d tokens %d requests, want 20 and 9 (the tightest budget of each)", d.RemainingTokens, d.RemainingRequests)
	}
	if d.ResetTokens <= 0 || d.ResetTokens > time.Hour+time.Minute {
		t.Errorf("ResetTokens: got %v, want within the window", d.ResetTokens)
	}
	if d.Lease.At <= 0 || d.Lease.ID == "" || d.Lease.Tokens != 30 || len(d.Lease.Budgets) != 2 || d.Lease.Tag != a.Tag {
		t.Errorf("lease: got %+v, want an id, the store's time, 30 tokens and both budgets", d.Lease)
	}
	d = wantDenied(t, s, Request{Budgets: []Budget{a, b}, Tokens: 30}, b.Scope, TPM)
	if d.RemainingTokens != 20 || d.RemainingRequests != 9 {
		t.Errorf("remaining after a denial: got %d tokens %d requests, want 20 and 9 (nothing charged)", d.RemainingTokens, d.RemainingRequests)
	}
	mustCancel(t, s, d)
	d = wantAllowed(t, s, Request{Budgets: []Budget{budget(t, "c", Limits{Concurrency: 3})}, Tokens: 30})
	if d.RemainingTokens != -1 || d.RemainingRequests != -1 || d.ResetTokens != 0 {
		t.Errorf("no window limits: got remaining %d/%d reset %v, want -1/-1 and 0", d.RemainingTokens, d.RemainingRequests, d.ResetTokens)
	}
}

func testValidation(t *testing.T, newStore func(*testing.T, Options) Store) {
	s := newStore(t, long)
	ctx := context.Background()
	a := budget(t, "a", Limits{TPM: 100})
	b := a
	b.Tag = "elsewhere"
	if _, err := s.Admit(ctx, Request{Budgets: []Budget{a, b}, Tokens: 1}); err == nil {
		t.Error("budgets with different tags: got no error")
	}
	if _, err := s.Admit(ctx, Request{Budgets: []Budget{a}, Tokens: -1}); err == nil {
		t.Error("negative reservation: got no error")
	}
	d := wantAllowed(t, s, Request{Tokens: 10})
	if err := s.Settle(ctx, d.Lease, 5); err != nil {
		t.Errorf("settling an unlimited lease: %v", err)
	}
	// Unlimited budgets may have any tag: they are not stored.
	free := Budget{Scope: "free", Tag: "other", ID: "x"}
	wantAllowed(t, s, Request{Budgets: []Budget{free, a}, Tokens: 100})
}

// testWindowProperty checks the promise itself: many goroutines admit
// random sizes for a few windows, waiting their turn when denied; in every
// window-long interval (by the store's own clock, Lease.At) the admitted
// tokens stay within the TPM, and over the saturated period they reach at
// least 95% of what the limit allows.
func testWindowProperty(t *testing.T, newStore func(*testing.T, Options) Store) {
	if testing.Short() {
		t.Skip("runs for a few seconds")
	}
	const (
		limit   = 20_000
		windows = 3
		workers = 32
	)
	o := Options{Window: 2 * time.Second, Buckets: 50}
	s := newStore(t, o)
	b := []Budget{budget(t, "b", Limits{TPM: limit})}
	window := o.Window.Milliseconds()

	type charge struct{ at, tokens int64 }
	var (
		mu      sync.Mutex
		charges []charge
		denied  = map[Dimension]int{}
	)
	ctx := context.Background()
	var start, end int64 // store time, set by the first admission
	var startOnce sync.Once
	deadline := time.Now().Add(time.Duration(windows)*o.Window + 200*time.Millisecond)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for time.Now().Before(deadline) {
				tokens := 1 + rng.Int64N(limit/50)
				r := Request{Budgets: b, Tokens: tokens}
				for time.Now().Before(deadline) {
					d, err := s.Admit(ctx, r)
					if err != nil {
						t.Errorf("Admit: %v", err)
						return
					}
					if d.Allowed {
						startOnce.Do(func() { start = d.Lease.At; end = start + windows*window })
						// Most requests cost a little less than reserved.
						actual := tokens - rng.Int64N(tokens/4+1)
						if err := s.Settle(ctx, d.Lease, actual); err != nil {
							t.Errorf("Settle: %v", err)
							return
						}
						mu.Lock()
						charges = append(charges, charge{d.Lease.At, actual})
						mu.Unlock()
						break
					}
					mu.Lock()
					denied[d.Dimension]++
					mu.Unlock()
					r.Ticket = d.Ticket
					time.Sleep(max(d.RetryAfter, time.Millisecond))
				}
				if r.Ticket != "" {
					_ = s.Cancel(ctx, b[0].Tag, r.Ticket)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.SortFunc(charges, func(a, b charge) int { return int(a.at - b.at) })

	// Every closed interval [s, s+W]: the worst one starts at a charge.
	var maxSum, sum int64
	j := 0
	for i := range charges {
		for j < len(charges) && charges[j].at <= charges[i].at+window {
			sum += charges[j].tokens
			j++
		}
		maxSum = max(maxSum, sum)
		sum -= charges[i].tokens
	}
	var total int64
	for _, c := range charges {
		if c.at >= start && c.at < end {
			total += c.tokens
		}
	}
	ratio := float64(total) / float64(windows*limit)
	t.Logf("%d admissions; denials %v; max window sum %d of %d; %d tokens in %d windows = %.1f%% of the limit",
		len(charges), denied, maxSum, limit, total, windows, 100*ratio)
	if maxSum > limit {
		t.Errorf("max tokens in a window: got %d, want at most the limit %d", maxSum, limit)
	}
	if ratio < 0.95 {
		t.Errorf("saturation: got %.1f%% of the limit, want at least 95%%", 100*ratio)
	}
}

func TestMemoryStore(t *testing.T) {
	testStore(t, func(t *testing.T, o Options) Store { return NewMemoryStore(o) })
}

func TestRedisStore(t *testing.T) {
	testStore(t, func(t *testing.T, o Options) Store {
		c, prefix := redistest.New(t)
		o.KeyPrefix = prefix
		return NewRedisStore(c, o)
	})
}

// testClock is a settable clock for the exact-time suite.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// testStoreClock checks exact times with a clock the test sets: setNow
// moves the store's clock (Options.Now for MemoryStore, the server's TIME
// for a miniredis-backed RedisStore). Both stores must give the same
// numbers, to the millisecond.
func testStoreClock(t *testing.T, newStore func(t *testing.T, o Options) (Store, func(time.Time))) {
	ctx := context.Background()
	// A day starts at a multiple of the bucket width, so bucket b spans
	// [b*1s, (b+1)*1s) in Unix ms.
	day0 := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	o := Options{Window: 10 * time.Second, Buckets: 10, LeaseTTL: time.Second, TicketTTL: time.Second}

	t.Run("RetryAfterExact", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{TPM: 100, RPM: 10})}
		t0 := day0.Add(12*time.Hour + 500*time.Millisecond) // mid-bucket
		setNow(t0)
		d := wantAllowed(t, s, Request{Budgets: b, Tokens: 60})
		if d.Lease.At != t0.UnixMilli() {
			t.Errorf("Lease.At: got %d, want the store's clock %d", d.Lease.At, t0.UnixMilli())
		}
		if d.ResetTokens != 10500*time.Millisecond {
			t.Errorf("ResetTokens: got %v, want 10.5s (the bucket leaves a window of 10 buckets plus the current one)", d.ResetTokens)
		}
		setNow(t0.Add(3200 * time.Millisecond))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 40})
		d = wantDenied(t, s, Request{Budgets: b, Tokens: 30}, b[0].Scope, TPM)
		if d.RetryAfter != 7300*time.Millisecond || d.ResetTokens != 7300*time.Millisecond {
			t.Errorf("RetryAfter, ResetTokens: got %v, %v; want 7.3s each (until the first bucket leaves)", d.RetryAfter, d.ResetTokens)
		}
		if d.RemainingTokens != 0 || d.RemainingRequests != 8 {
			t.Errorf("remaining: got %d tokens %d requests, want 0 and 8", d.RemainingTokens, d.RemainingRequests)
		}
		setNow(t0.Add(3200*time.Millisecond + d.RetryAfter - time.Millisecond))
		wantDenied(t, s, Request{Budgets: b, Tokens: 30, Ticket: d.Ticket}, b[0].Scope, TPM)
		setNow(t0.Add(3200*time.Millisecond + d.RetryAfter))
		d = wantAllowed(t, s, Request{Budgets: b, Tokens: 30, Ticket: d.Ticket})
		if d.RemainingTokens != 30 {
			t.Errorf("RemainingTokens: got %d, want 30 (40 + 30 in the window)", d.RemainingTokens)
		}
		// A charge exactly one window after another is still in its window.
		s, setNow = newStore(t, o)
		setNow(t0)
		wantAllowed(t, s, Request{Budgets: b, Tokens: 100})
		setNow(t0.Add(o.Window))
		mustCancel(t, s, wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, TPM))
		// An idle budget starts afresh.
		setNow(t0.Add(time.Hour))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 100})
	})

	t.Run("SettleMovesToTheSendingBucket", func(t *testing.T) {
		// Admitted at t0, sent 2.5 s later (a request that waited to go
		// out under load): the charge counts from when it was sent, so it
		// is still in the window when the admission's bucket has left.
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{TPM: 100, RPM: 10})}
		t0 := day0.Add(2*time.Hour + 500*time.Millisecond)
		setNow(t0)
		l := wantAllowed(t, s, Request{Budgets: b, Tokens: 80}).Lease
		l.SentAt = t0.Add(2500 * time.Millisecond).UnixMilli()
		setNow(t0.Add(3 * time.Second))
		mustSettle(t, s, l, 70)
		// After the admission's bucket left (t0 + 10.5 s), the 70 still
		// count; after the sending bucket left (t0 + 13.5 s), they do not.
		setNow(t0.Add(11 * time.Second))
		d := wantDenied(t, s, Request{Budgets: b, Tokens: 31}, b[0].Scope, TPM)
		mustCancel(t, s, d)
		d = wantAllowed(t, s, Request{Budgets: b, Tokens: 30})
		if d.RemainingRequests != 8 {
			t.Errorf("RemainingRequests: got %d, want 8 (the moved request still counts)", d.RemainingRequests)
		}
		mustSettle(t, s, d.Lease, 30)
		setNow(t0.Add(13500 * time.Millisecond))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 70})
		// A second settle moves nothing twice.
		mustSettle(t, s, l, 70)
		wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, TPM)
	})

	t.Run("RPMRetry", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{RPM: 2})}
		t0 := day0.Add(time.Hour)
		setNow(t0)
		wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
		setNow(t0.Add(2 * time.Second))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
		setNow(t0.Add(5 * time.Second))
		d := wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, RPM)
		if d.RetryAfter != 6*time.Second {
			t.Errorf("RetryAfter: got %v, want 6s", d.RetryAfter)
		}
		if d.RemainingTokens != -1 || d.RemainingRequests != 0 {
			t.Errorf("remaining: got %d tokens %d requests, want -1 and 0", d.RemainingTokens, d.RemainingRequests)
		}
	})

	t.Run("Day", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{TokensPerDay: 100})}
		late := day0.Add(24*time.Hour - time.Second)
		setNow(late)
		l := wantAllowed(t, s, Request{Budgets: b, Tokens: 100}).Lease
		d := wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, TokensPerDay)
		if d.RetryAfter != time.Second || d.Ticket != "" {
			t.Errorf("day denial: got RetryAfter %v ticket %q, want 1s to midnight and no ticket", d.RetryAfter, d.Ticket)
		}
		setNow(late.Add(time.Second)) // midnight
		l2 := wantAllowed(t, s, Request{Budgets: b, Tokens: 60}).Lease
		// Yesterday's refund is not today's to take; an overrun is.
		mustSettle(t, s, l, 0)
		wantDenied(t, s, Request{Budgets: b, Tokens: 41}, b[0].Scope, TokensPerDay)
		mustSettle(t, s, l2, 50)
		wantAllowed(t, s, Request{Budgets: b, Tokens: 50})
		wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, TokensPerDay)
	})

	t.Run("DayOverrunCarries", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{TokensPerDay: 100})}
		late := day0.Add(24*time.Hour - time.Second)
		setNow(late)
		l := wantAllowed(t, s, Request{Budgets: b, Tokens: 10}).Lease
		setNow(late.Add(2 * time.Second))
		mustSettle(t, s, l, 40) // 30 over, charged today
		wantAllowed(t, s, Request{Budgets: b, Tokens: 70})
		wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, TokensPerDay)
	})

	t.Run("SettleAfterWindow", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{TPM: 100})}
		t0 := day0.Add(time.Hour)
		setNow(t0)
		refund := wantAllowed(t, s, Request{Budgets: b, Tokens: 50}).Lease
		over := wantAllowed(t, s, Request{Budgets: b, Tokens: 10}).Lease
		setNow(t0.Add(11 * time.Second)) // both have left the window
		wantAllowed(t, s, Request{Budgets: b, Tokens: 60})
		mustSettle(t, s, refund, 0) // nothing to give back in this window
		mustSettle(t, s, over, 40)  // 30 over: charged to the current bucket
		d := wantAllowed(t, s, Request{Budgets: b, Tokens: 10})
		if d.RemainingTokens != 0 {
			t.Errorf("RemainingTokens: got %d, want 0 (60 + 30 + 10)", d.RemainingTokens)
		}
		// A settle within the window adjusts the bucket that was charged,
		// which then leaves the window on time.
		setNow(t0.Add(15 * time.Second))
		l := wantAllowed(t, s, Request{Budgets: []Budget{budget(t, "c", Limits{TPM: 100})}, Tokens: 50}).Lease
		setNow(t0.Add(20 * time.Second))
		mustSettle(t, s, l, 80)
		setNow(t0.Add(26 * time.Second)) // l's bucket (15s) has left
		wantAllowed(t, s, Request{Budgets: []Budget{budget(t, "c", Limits{TPM: 100})}, Tokens: 100})
	})

	t.Run("LeaseExpiry", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{Concurrency: 1})}
		t0 := day0.Add(time.Hour)
		setNow(t0)
		l := wantAllowed(t, s, Request{Budgets: b, Tokens: 1}).Lease
		setNow(t0.Add(999 * time.Millisecond))
		d := wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, Concurrency)
		if err := s.Renew(ctx, l, 2*time.Second); err != nil {
			t.Fatalf("Renew: %v", err)
		}
		setNow(t0.Add(2998 * time.Millisecond))
		d = wantDenied(t, s, Request{Budgets: b, Tokens: 1, Ticket: d.Ticket}, b[0].Scope, Concurrency)
		setNow(t0.Add(2999 * time.Millisecond))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 1, Ticket: d.Ticket})
		if err := s.Renew(ctx, l, 0); !errors.Is(err, ErrLeaseExpired) {
			t.Errorf("Renew of an expired, pruned lease: got %v, want ErrLeaseExpired", err)
		}
	})

	// LingerAfterAbandon: a lease settled with Linger keeps its slot until
	// then (the upstream may still be generating for an abandoned caller),
	// while its tokens are settled at once.
	t.Run("LingerAfterAbandon", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{Concurrency: 1, TPM: 1000})}
		t0 := day0.Add(time.Hour)
		setNow(t0)
		l := wantAllowed(t, s, Request{Budgets: b, Tokens: 500}).Lease
		l.Linger = 300 * time.Millisecond
		mustSettle(t, s, l, 100)
		setNow(t0.Add(299 * time.Millisecond))
		d := wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, Concurrency)
		setNow(t0.Add(300 * time.Millisecond))
		got := wantAllowed(t, s, Request{Budgets: b, Tokens: 1, Ticket: d.Ticket})
		if got.RemainingTokens != 1000-100-1 {
			t.Errorf("remaining tokens %d, want %d: the abandoned lease settled to its actual at once", got.RemainingTokens, 1000-100-1)
		}
	})

	t.Run("TicketExpiry", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{TPM: 100})}
		t0 := day0.Add(time.Hour)
		setNow(t0)
		wantAllowed(t, s, Request{Budgets: b, Tokens: 50})
		big := wantDenied(t, s, Request{Budgets: b, Tokens: 80}, b[0].Scope, TPM)
		if big.RetryAfter != 11*time.Second {
			t.Fatalf("RetryAfter: got %v, want 11s", big.RetryAfter)
		}
		// Its caller dies. Room frees; others may use what it leaves...
		setNow(t0.Add(11 * time.Second))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 20})
		// ...but not its share, until its ticket expires: TicketTTL after
		// the time it was told to retry.
		setNow(t0.Add(12*time.Second - time.Millisecond))
		mustCancel(t, s, wantDenied(t, s, Request{Budgets: b, Tokens: 30}, b[0].Scope, Queue))
		setNow(t0.Add(12 * time.Second))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 30})
		// A late waiter lost its place: it waits like a new one.
		mustCancel(t, s, wantDenied(t, s, Request{Budgets: b, Tokens: 80, Ticket: big.Ticket}, b[0].Scope, TPM))
	})

	t.Run("ClockBackwards", func(t *testing.T) {
		s, setNow := newStore(t, o)
		b := []Budget{budget(t, "b", Limits{TPM: 100})}
		t0 := day0.Add(time.Hour)
		setNow(t0)
		wantAllowed(t, s, Request{Budgets: b, Tokens: 60})
		setNow(t0.Add(-30 * time.Second))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 40})
		mustCancel(t, s, wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, TPM))
		setNow(t0.Add(10 * time.Second))
		mustCancel(t, s, wantDenied(t, s, Request{Budgets: b, Tokens: 1}, b[0].Scope, TPM))
		setNow(t0.Add(11 * time.Second))
		wantAllowed(t, s, Request{Budgets: b, Tokens: 100})
	})
}
