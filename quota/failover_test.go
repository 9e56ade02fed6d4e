package quota

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flakyStore is a shared store that can be switched off, standing in for a
// Redis that stops answering.
type flakyStore struct {
	Store
	down atomic.Bool
	mu   sync.Mutex
	got  []string // calls received, for routing checks
}

func (f *flakyStore) call(name string) error {
	f.mu.Lock()
	f.got = append(f.got, name)
	f.mu.Unlock()
	if f.down.Load() {
		return fmt.Errorf("%w: connection refused", ErrUnavailable)
	}
	return nil
}

func (f *flakyStore) Admit(ctx context.Context, r Request) (Decision, error) {
	if err := f.call("admit"); err != nil {
		return Decision{}, err
	}
	return f.Store.Admit(ctx, r)
}

func (f *flakyStore) Settle(ctx context.Context, l Lease, n int64) error {
	if err := f.call("settle"); err != nil {
		return err
	}
	return f.Store.Settle(ctx, l, n)
}

func newFailover(policy Policy) (*Failover, *flakyStore) {
	shared := &flakyStore{Store: NewMemoryStore(Options{})}
	f := &Failover{
		Shared:        shared,
		Local:         NewMemoryStore(Options{}),
		Policy:        policy,
		Replicas:      4,
		Probe:         func(context.Context) error { return shared.call("probe") },
		ProbeInterval: 5 * time.Millisecond,
	}
	return f, shared
}

func rpmRequest(rpm int64) Request {
	return Request{Budgets: []Budget{{Scope: "model=m", Tag: "m", ID: "pool", Limits: Limits{RPM: rpm}}}, Tokens: 1}
}

func TestFailClosed(t *testing.T) {
	f, shared := newFailover(FailClosed)
	ctx := context.Background()
	if d, err := f.Admit(ctx, rpmRequest(100)); err != nil || !d.Allowed {
		t.Fatalf("healthy admit = %+v, %v", d, err)
	}
	shared.down.Store(true)
	if _, err := f.Admit(ctx, rpmRequest(100)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable under fail-closed", err)
	}
	if !f.Degraded() {
		t.Fatal("not degraded after the shared store failed")
	}
	if _, err := f.Admit(ctx, rpmRequest(100)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable while degraded", err)
	}
}

// TestFailOpenHoldsReplicaShare: while the shared store is down, a replica
// admits at most its share (limit / replicas), and switches back by itself.
func TestFailOpenHoldsReplicaShare(t *testing.T) {
	var switches []bool
	var mu sync.Mutex
	f, shared := newFailover(FailOpen)
	f.OnSwitch = func(d bool) { mu.Lock(); switches = append(switches, d); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	defer func() { cancel(); <-done }()

	shared.down.Store(true)
	admitted := 0
	var leases []Lease
	for range 100 {
		d, err := f.Admit(ctx, rpmRequest(100))
		if err != nil {
			t.Fatalf("fail-open admit: %v", err)
		}
		if d.Allowed {
			admitted++
			leases = append(leases, d.Lease)
		}
	}
	if admitted != 25 {
		t.Errorf("admitted %d while degraded, want 25 (100 rpm / 4 replicas)", admitted)
	}
	for _, l := range leases {
		if l.Store != StoreLocal {
			t.Fatalf("lease store %q, want %q", l.Store, StoreLocal)
		}
	}
	shared.mu.Lock()
	before := len(shared.got)
	shared.mu.Unlock()
	// Local leases settle locally even after the switch back: nothing is
	// charged to (or refunded from) the shared store that it never charged.
	shared.down.Store(false)
	waitUntil(t, "the switch back", func() bool { return !f.Degraded() })
	for _, l := range leases {
		if err := f.Settle(ctx, l, 1); err != nil {
			t.Fatal(err)
		}
	}
	shared.mu.Lock()
	for _, c := range shared.got[before:] {
		if c == "settle" {
			t.Errorf("a local lease was settled against the shared store")
		}
	}
	shared.mu.Unlock()
	if d, err := f.Admit(ctx, rpmRequest(100)); err != nil || !d.Allowed || d.Lease.Store == StoreLocal {
		t.Errorf("after recovery admit = %+v, %v; want the shared store", d, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(switches) != 2 || !switches[0] || switches[1] {
		t.Errorf("switches = %v, want [true false]", switches)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
