package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Policy is what admission does while the shared store is unreachable.
type Policy string

// The failure policies.
const (
	// FailClosed refuses requests (the gateway answers 503
	// ServiceUnavailableException) until the shared store answers again.
	FailClosed Policy = "fail-closed"
	// FailOpen admits against a local store that holds this replica to its
	// share of each budget (limit / Replicas), so the fleet as a whole stays
	// within the budget while Redis is away.
	FailOpen Policy = "fail-open"
)

// Store names recorded in Lease.Store.
const (
	StoreRedis  = "redis"
	StoreMemory = "memory"
	StoreLocal  = "local" // the fail-open fallback of a Failover
)

// Failover puts a fallback policy in front of a shared store. While the
// shared store answers, every call goes to it. The first call that fails
// with ErrUnavailable switches this replica to degraded mode at once; a
// probe then checks the shared store every ProbeInterval and switches back
// after several good probes in a row. Each lease is settled by the store that admitted it
// (Lease.Store), so nothing is charged twice across a switch: a lease the
// shared store admitted stays charged there (conservative) if it cannot be
// settled while Redis is away, and its concurrency slot expires by TTL.
type Failover struct {
	// Shared is the store every replica uses (a *RedisStore).
	Shared Store
	// Local is the fail-open fallback. Its limits are the shared limits
	// divided by Replicas.
	Local Store
	// Policy is FailClosed or FailOpen; empty means FailClosed.
	Policy Policy
	// Replicas is how many gateway replicas share the budgets; fail-open
	// holds each to 1/Replicas of every limit. Zero means 1.
	Replicas int
	// Probe checks the shared store. It should write (e.g. a SET with a
	// short expiry), since a Redis that answers PING may still refuse
	// writes (a read-only replica after a failover, out of memory).
	Probe func(ctx context.Context) error
	// ProbeInterval is how often a degraded replica probes; zero means 250ms.
	ProbeInterval time.Duration
	// Logger receives switch events; nil discards them.
	Logger *slog.Logger
	// OnSwitch, when set, is told of every switch (for metrics).
	OnSwitch func(degraded bool)

	degraded atomic.Bool
}

var _ Store = (*Failover)(nil)

// Degraded reports whether the shared store is considered down.
func (f *Failover) Degraded() bool { return f.degraded.Load() }

// Admit admits against the shared store, or applies the policy when it is
// down.
func (f *Failover) Admit(ctx context.Context, r Request) (Decision, error) {
	var sharedErr error
	if !f.degraded.Load() {
		d, err := f.Shared.Admit(ctx, r)
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return d, err
		}
		sharedErr = err
		f.setDegraded(true, err)
	}
	if f.Policy != FailOpen {
		if sharedErr == nil {
			sharedErr = fmt.Errorf("%w: shared budget store is down (fail-closed)", ErrUnavailable)
		}
		return Decision{}, sharedErr
	}
	d, err := f.Local.Admit(ctx, f.share(r))
	if d.Allowed {
		d.Lease.Store = StoreLocal
	}
	return d, err
}

// share scales every limit of r to this replica's part of it.
func (f *Failover) share(r Request) Request {
	n := int64(max(f.Replicas, 1))
	if n == 1 {
		return r
	}
	part := func(v int64) int64 {
		if v == 0 {
			return 0 // unlimited stays unlimited
		}
		return max(v/n, 1)
	}
	scaled := make([]Budget, len(r.Budgets))
	for i, b := range r.Budgets {
		b.Limits = Limits{TPM: part(b.Limits.TPM), RPM: part(b.Limits.RPM), Concurrency: part(b.Limits.Concurrency), TokensPerDay: part(b.Limits.TokensPerDay)}
		scaled[i] = b
	}
	r.Budgets = scaled
	if r.Shares != nil {
		sh := *r.Shares
		sh.Holders = make([]Holder, len(r.Shares.Holders))
		for i, h := range r.Shares.Holders {
			sh.Holders[i] = Holder{ID: h.ID, TPM: part(h.TPM)}
		}
		r.Shares = &sh
	}
	return r
}

var _ UsageReader = (*Failover)(nil)

// Usage reads from the store in use: the shared one, or this replica's
// local counters while degraded.
func (f *Failover) Usage(ctx context.Context, b Budget) (Usage, error) {
	s := f.Shared
	if f.Degraded() {
		s = f.Local
	}
	if u, ok := s.(UsageReader); ok {
		return u.Usage(ctx, b)
	}
	return Usage{}, fmt.Errorf("quota: %T cannot read usage", s)
}

func (f *Failover) storeFor(l Lease) Store {
	if l.Store == StoreLocal {
		return f.Local
	}
	return f.Shared
}

// Settle settles with the store that admitted the lease.
func (f *Failover) Settle(ctx context.Context, l Lease, actualTokens int64) error {
	err := f.storeFor(l).Settle(ctx, l, actualTokens)
	if errors.Is(err, ErrUnavailable) && l.Store != StoreLocal {
		f.setDegraded(true, err)
	}
	return err
}

// Renew renews with the store that admitted the lease.
func (f *Failover) Renew(ctx context.Context, l Lease, ttl time.Duration) error {
	return f.storeFor(l).Renew(ctx, l, ttl)
}

// Cancel removes a wait ticket from whichever store may hold it.
func (f *Failover) Cancel(ctx context.Context, tag, ticket string) error {
	if f.degraded.Load() {
		return f.Local.Cancel(ctx, tag, ticket)
	}
	return f.Shared.Cancel(ctx, tag, ticket)
}

// orphanReleaser is a shared store that can release the leases of
// admissions whose reply was lost (RedisStore).
type orphanReleaser interface {
	ReleaseOrphans(ctx context.Context) int
}

// probesToRecover is how many consecutive good probes switch a degraded
// replica back to the shared store.
const probesToRecover = 3

// Run probes the shared store while degraded and switches back when it
// answers. It returns when ctx ends; the caller owns it as a goroutine.
func (f *Failover) Run(ctx context.Context) {
	interval := f.ProbeInterval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	ok := 0 // consecutive good probes
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !f.degraded.Load() || f.Probe == nil {
			ok = 0
			if r, isReleaser := f.Shared.(orphanReleaser); isReleaser && !f.degraded.Load() {
				rctx, cancel := context.WithTimeout(ctx, interval)
				r.ReleaseOrphans(rctx)
				cancel()
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := f.Probe(pctx)
		cancel()
		if err != nil {
			ok = 0
			continue
		}
		// Several good probes in a row before switching back, so that a
		// Redis that answers now and then does not flip the replica
		// between policies every interval.
		if ok++; ok >= probesToRecover {
			ok = 0
			f.setDegraded(false, nil)
		}
	}
}

func (f *Failover) setDegraded(on bool, cause error) {
	if f.degraded.Swap(on) == on {
		return
	}
	if f.Logger != nil {
		if on {
			f.Logger.Error("shared budget store unavailable: switching policy", "policy", string(f.policy()), "error", cause)
		} else {
			f.Logger.Info("shared budget store is back: switching to shared budgets")
		}
	}
	if f.OnSwitch != nil {
		f.OnSwitch(on)
	}
}

func (f *Failover) policy() Policy {
	if f.Policy == "" {
		return FailClosed
	}
	return f.Policy
}
