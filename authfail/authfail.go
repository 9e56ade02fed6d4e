// Package authfail counts failed authentications per source (a client
// address), so that a gateway can refuse a source that keeps guessing keys
// before it even looks at its next credentials. Redis shares the counts
// between replicas (redis_rate: GCRA, one script call per failure, on
// Redis's clock); Memory keeps them in one process. Both keep good
// requests off shared state: each replica remembers the sources it saw go
// over the limit in a local block list, bounded in size. They implement
// proxy.AuthLimiter.
package authfail

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Defaults of Options.
const (
	DefaultFailures   = 20
	DefaultPeriod     = time.Minute
	DefaultKeyPrefix  = "qg:authfail:"
	DefaultMaxSources = 10_000
)

// Options configure a limiter. The zero value allows 20
// failures per minute per source.
type Options struct {
	// Failures is how many failed authentications a source may have in a
	// burst, refilled evenly over Period; default DefaultFailures.
	Failures int
	// Period is the time over which Failures are allowed; default one
	// minute.
	Period time.Duration
	// KeyPrefix starts the Redis key of a source (after redis_rate's own
	// "rate:" prefix); default DefaultKeyPrefix.
	KeyPrefix string
	// MaxSources bounds how many sources one replica remembers (blocked
	// sources, and with Memory the counts too), so that a flood
	// from many addresses cannot grow memory without limit; default
	// DefaultMaxSources. A source forgotten early only gets its
	// failures counted afresh (memory) or looked up in Redis again.
	MaxSources int
	// Now is this replica's clock for the local block list and the
	// in-memory counts; nil means time.Now. The Redis counts use Redis's
	// own clock.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Failures <= 0 {
		o.Failures = DefaultFailures
	}
	if o.Period <= 0 {
		o.Period = DefaultPeriod
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.MaxSources <= 0 {
		o.MaxSources = DefaultMaxSources
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Redis counts failures in Redis with redis_rate (GCRA, one
// script call per failure, on Redis's clock), so that every replica shares
// one count per source. Good requests never reach Redis: each replica keeps
// the sources it saw go over the limit in a local block list. A replica
// that has not yet seen a source's failures lets one more attempt through,
// whose failure then finds the shared count over the limit.
//
// While Redis does not answer, failures are counted in this process
// instead (into the same block list), so that an outage does not open an
// unthrottled way to test guessed keys.
type Redis struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	opts    Options
	blocks  *blockList
	local   *Memory // the fallback while Redis fails
}

// NewRedis returns a limiter sharing its counts through client.
func NewRedis(client redis.UniversalClient, opts Options) *Redis {
	opts = opts.withDefaults()
	blocks := newBlockList(opts.MaxSources)
	return &Redis{
		limiter: redis_rate.NewLimiter(client),
		limit:   redis_rate.Limit{Rate: opts.Failures, Burst: opts.Failures, Period: opts.Period},
		opts:    opts,
		blocks:  blocks,
		local:   &Memory{opts: opts, blocks: blocks, buckets: make(map[string]*rate.Limiter)},
	}
}

// Blocked implements proxy.AuthLimiter from the local block list.
func (l *Redis) Blocked(source string) (time.Duration, bool) {
	return l.blocks.blocked(source, l.opts.Now())
}

// Failed implements proxy.AuthLimiter with one redis_rate call.
func (l *Redis) Failed(ctx context.Context, source string) (time.Duration, error) {
	res, err := l.limiter.Allow(ctx, l.opts.KeyPrefix+source, l.limit)
	if err != nil {
		// Counted here instead; the error still says the shared count
		// missed it, for the log.
		d, _ := l.local.Failed(ctx, source)
		return d, fmt.Errorf("counting a failed authentication in Redis (counted in this process instead): %w", err)
	}
	if res.Allowed > 0 || res.RetryAfter <= 0 {
		return 0, nil
	}
	now := l.opts.Now()
	l.blocks.block(source, now, now.Add(res.RetryAfter))
	return res.RetryAfter, nil
}

// Memory counts failures in this process only, for a single
// replica (the gateway without Redis). The counts are token buckets with
// the same shape as redis_rate's: Failures at once, refilled over Period.
type Memory struct {
	opts   Options
	blocks *blockList

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewMemory returns a limiter counting in this process.
func NewMemory(opts Options) *Memory {
	opts = opts.withDefaults()
	return &Memory{opts: opts, blocks: newBlockList(opts.MaxSources), buckets: make(map[string]*rate.Limiter)}
}

// Blocked implements proxy.AuthLimiter from the local block list.
func (l *Memory) Blocked(source string) (time.Duration, bool) {
	return l.blocks.blocked(source, l.opts.Now())
}

// Failed implements proxy.AuthLimiter.
func (l *Memory) Failed(_ context.Context, source string) (time.Duration, error) {
	now := l.opts.Now()
	l.mu.Lock()
	b := l.buckets[source]
	if b == nil {
		l.evictLocked(now)
		b = rate.NewLimiter(rate.Every(l.opts.Period/time.Duration(l.opts.Failures)), l.opts.Failures)
		l.buckets[source] = b
	}
	res := b.ReserveN(now, 1)
	d := res.DelayFrom(now)
	if d > 0 {
		// Like redis_rate, a refused failure is not counted: the source
		// is blocked instead, and its attempts no longer reach here.
		res.CancelAt(now)
	}
	l.mu.Unlock()
	if d <= 0 {
		return 0, nil
	}
	l.blocks.block(source, now, now.Add(d))
	return d, nil
}

// evictLocked makes room for one more bucket: first the full ones (a full
// bucket is the same as none), then any.
func (l *Memory) evictLocked(now time.Time) {
	if len(l.buckets) < l.opts.MaxSources {
		return
	}
	for s, b := range l.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.buckets, s)
		}
	}
	for s := range l.buckets {
		if len(l.buckets) < l.opts.MaxSources {
			break
		}
		delete(l.buckets, s)
	}
}

// blockList is a replica's memory of which sources are blocked until when,
// bounded in size.
type blockList struct {
	max   int
	mu    sync.RWMutex
	until map[string]time.Time
}

func newBlockList(maxSources int) *blockList {
	return &blockList{max: maxSources, until: make(map[string]time.Time)}
}

func (b *blockList) blocked(source string, now time.Time) (time.Duration, bool) {
	b.mu.RLock()
	until, ok := b.until[source]
	b.mu.RUnlock()
	if !ok || !now.Before(until) {
		return 0, false
	}
	return until.Sub(now), true
}

func (b *blockList) block(source string, now, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.until[source]; !ok && len(b.until) >= b.max {
		// Full: drop the blocks that ended, then, under a flood from more
		// sources than fit, arbitrary ones. A source dropped early is
		// only checked against the shared count again on its next
		// failure.
		for s, u := range b.until {
			if !now.Before(u) {
				delete(b.until, s)
			}
		}
		for s := range b.until {
			if len(b.until) < b.max {
				break
			}
			delete(b.until, s)
		}
	}
	b.until[source] = until
}
