package quota

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quotagate/quotagate/internal/redistest"
)

// TestRedisFailure kills the store's redis-server: calls must fail at once
// with ErrUnavailable rather than hang, and the same client must work again
// once the server is back on its port.
func TestRedisFailure(t *testing.T) {
	srv := redistest.StartServer(t)
	client, err := NewClient("redis://" + srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s := NewRedisStore(client, Options{})
	ctx := context.Background()
	b := []Budget{{Scope: "s", Tag: "pool", ID: "pool", Limits: Limits{TPM: 1000, Concurrency: 10}}}
	before := wantAllowed(t, s, Request{Budgets: b, Tokens: 10})

	srv.Stop()
	_, err = s.Admit(ctx, Request{Budgets: b, Tokens: 10})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Admit with Redis down: got %v, want ErrUnavailable", err)
	}
	if err := s.Settle(ctx, before.Lease, 5); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Settle with Redis down: got %v, want ErrUnavailable", err)
	}

	srv.Start() // same port, empty: no persistence
	var d Decision
	for attempt := 0; ; attempt++ {
		// A pooled connection from before the restart may fail once.
		d, err = s.Admit(ctx, Request{Budgets: b, Tokens: 10})
		if err == nil || attempt == 10 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !d.Allowed {
		t.Fatalf("Admit after the restart: got %+v, %v; want allowed", d, err)
	}
	// The old lease is unknown to the new server: settling it is a no-op.
	mustSettle(t, s, before.Lease, 5)
	mustSettle(t, s, d.Lease, 5)
}

// TestRedisUnresponsive points the store at a server that accepts
// connections and never answers, as a hung or partitioned Redis does: the
// per-call Timeout must end the call with ErrUnavailable.
func TestRedisUnresponsive(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // hold it open, say nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})

	client, err := NewClient("redis://" + l.Addr().String() + "?max_retries=-1")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s := NewRedisStore(client, Options{Timeout: 100 * time.Millisecond})
	b := []Budget{{Scope: "s", Tag: "pool", ID: "pool", Limits: Limits{TPM: 1000}}}
	_, err = s.Admit(context.Background(), Request{Budgets: b, Tokens: 10})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Admit against a silent server: got %v, want ErrUnavailable", err)
	}
}
