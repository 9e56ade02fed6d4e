package quota

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// TargetState is what choosing among a route's targets needs to know of
// one: its pool's counters and whether Bedrock has it cooled down.
type TargetState struct {
	// Usage is the pool budget's counters now.
	Usage Usage
	// Cooling is how long the target stays cooled down; 0 when it is not.
	Cooling time.Duration
}

// Cooldown says when a target that Bedrock keeps refusing is set aside for
// every replica.
type Cooldown struct {
	// After is how many failures within Window start a cooldown.
	After int
	// Window is the period failures are counted over.
	Window time.Duration
	// Cool is how long a cooldown lasts (a Retry-After from Bedrock can
	// make one longer).
	Cool time.Duration
}

// DefaultCooldown cools a target for 5s after 3 failures within 10s:
// long enough for Bedrock's per-minute quotas to free some room, short
// enough that a recovered target is soon used again.
var DefaultCooldown = Cooldown{After: 3, Window: 10 * time.Second, Cool: 5 * time.Second}

// orDefault fills each unset field from DefaultCooldown.
func (c Cooldown) orDefault() Cooldown {
	if c.After <= 0 {
		c.After = DefaultCooldown.After
	}
	if c.Window <= 0 {
		c.Window = DefaultCooldown.Window
	}
	if c.Cool <= 0 {
		c.Cool = DefaultCooldown.Cool
	}
	return c
}

// Targets reads and records the state of route targets, shared by every
// replica that uses the same store.
type Targets interface {
	// TargetStates reads the state of each target's pool budget (as
	// PoolBudget gives it), in order, in one round trip.
	TargetStates(ctx context.Context, pools []Budget) ([]TargetState, error)
	// Failed records that Bedrock refused or failed a request to the pool
	// budget's target, and returns the cooldown now in force (0: none).
	// retryAfter is what Bedrock asked for (0: nothing).
	Failed(ctx context.Context, pool Budget, retryAfter time.Duration, c Cooldown) (time.Duration, error)
}

var (
	_ Targets = (*RedisStore)(nil)
	_ Targets = (*MemoryStore)(nil)
	_ Targets = (*Failover)(nil)
)

// TargetStates implements Targets with one pipelined script call per pool.
func (s *RedisStore) TargetStates(ctx context.Context, pools []Budget) ([]TargetState, error) {
	cctx, cancel := context.WithTimeout(ctx, s.set.timeout)
	defer cancel()
	cmds := make([]*redis.Cmd, len(pools))
	run := func() error {
		pipe := s.client.Pipeline()
		for i, b := range pools {
			bk, tk := s.keys.budget(b.Tag, b.ID), s.keys.tag(b.Tag)
			cmds[i] = usageScript.EvalSha(cctx, pipe, []string{bk[keyWindow], bk[keyDay], bk[keyConc], tk.cool}, s.width, s.buckets)
		}
		_, err := pipe.Exec(cctx)
		return err
	}
	err := run()
	// redis.Script falls back from EVALSHA to EVAL only outside a
	// pipeline: after a restart or SCRIPT FLUSH the script is loaded (on
	// every node, for a Cluster) and the pipeline sent once more.
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		if err = s.loadEverywhere(cctx, usageScript); err == nil {
			err = run()
		}
	}
	if err != nil {
		return nil, s.fail(ctx, "targets", err)
	}
	out := make([]TargetState, len(pools))
	for i, c := range cmds {
		v, err := c.Int64Slice()
		if err != nil {
			return nil, s.fail(ctx, "targets", err)
		}
		if len(v) != 5 {
			return nil, fmt.Errorf("quota: redis targets: reply has %d values, want 5", len(v))
		}
		out[i] = TargetState{
			Usage:   Usage{WindowTokens: v[0], WindowRequests: v[1], DayTokens: v[2], InFlight: v[3]},
			Cooling: time.Duration(v[4]) * time.Millisecond,
		}
	}
	return out, nil
}

// Failed implements Targets in one script call.
func (s *RedisStore) Failed(ctx context.Context, pool Budget, retryAfter time.Duration, c Cooldown) (time.Duration, error) {
	c = c.orDefault()
	cctx, cancel := context.WithTimeout(ctx, s.set.timeout)
	defer cancel()
	ms, err := cooldownScript.Run(cctx, s.client, []string{s.keys.tag(pool.Tag).cool},
		c.After, c.Window.Milliseconds(), c.Cool.Milliseconds(), max(retryAfter, 0).Milliseconds()).Int64()
	if err != nil {
		return 0, s.fail(ctx, "cooldown", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// TargetStates implements Targets.
func (s *MemoryStore) TargetStates(ctx context.Context, pools []Budget) ([]TargetState, error) {
	out := make([]TargetState, len(pools))
	for i, b := range pools {
		u, err := s.Usage(ctx, b)
		if err != nil {
			return nil, err
		}
		out[i].Usage = u
		s.mu.Lock()
		if cs := s.cool[b.Tag]; cs != nil {
			out[i].Cooling = max(cs.until.Sub(s.set.now()), 0)
		}
		s.mu.Unlock()
	}
	return out, nil
}

// coolState is one target's failures and cooldown in a MemoryStore, as
// cooldown.lua keeps them in Redis.
type coolState struct {
	n     int
	since time.Time
	until time.Time
}

// Failed implements Targets.
func (s *MemoryStore) Failed(ctx context.Context, pool Budget, retryAfter time.Duration, c Cooldown) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c = c.orDefault()
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.set.now()
	if s.cool == nil {
		s.cool = map[string]*coolState{}
	}
	cs := s.cool[pool.Tag]
	if cs == nil {
		cs = &coolState{}
		s.cool[pool.Tag] = cs
	}
	if now.Sub(cs.since) > c.Window {
		cs.n, cs.since = 0, now
	}
	cs.n++
	var target time.Time
	if retryAfter > 0 {
		target = now.Add(retryAfter)
	}
	if cs.n >= c.After && now.Add(c.Cool).After(target) {
		target = now.Add(c.Cool)
	}
	if target.After(cs.until) {
		cs.until = target
		cs.n, cs.since = 0, now
	}
	return max(cs.until.Sub(now), 0), nil
}

// TargetStates implements Targets on the store in use.
func (f *Failover) TargetStates(ctx context.Context, pools []Budget) ([]TargetState, error) {
	if t, ok := f.current().(Targets); ok {
		return t.TargetStates(ctx, pools)
	}
	return nil, fmt.Errorf("quota: %T cannot read targets", f.current())
}

// Failed implements Targets on the store in use.
func (f *Failover) Failed(ctx context.Context, pool Budget, retryAfter time.Duration, c Cooldown) (time.Duration, error) {
	if t, ok := f.current().(Targets); ok {
		return t.Failed(ctx, pool, retryAfter, c)
	}
	return 0, fmt.Errorf("quota: %T cannot record target failures", f.current())
}

// loadEverywhere loads a script on every master a Cluster client knows,
// or on the one server of any other client.
func (s *RedisStore) loadEverywhere(ctx context.Context, sc *redis.Script) error {
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return sc.Load(ctx, c).Err()
		})
	}
	return sc.Load(ctx, s.client).Err()
}

// current is the store serving now: the shared one, or the local one while
// degraded.
func (f *Failover) current() Store {
	if f.Degraded() {
		return f.Local
	}
	return f.Shared
}

// TargetCache keeps target states for a short time, so that a busy route
// reads the store once per TTL rather than once per request. Admission
// stays exact (it is not cached); what may be up to TTL old is the order in
// which targets are tried. A failure recorded through the cache updates it
// at once, so this replica never sends to a target it has just cooled down.
type TargetCache struct {
	// Targets is the store behind the cache.
	Targets Targets
	// TTL is how long a read is reused; zero means 100ms.
	TTL time.Duration

	mu      sync.Mutex
	entries map[string]cachedTarget // by the pool budget's tag
}

type cachedTarget struct {
	read  time.Time
	usage Usage
	until time.Time // end of the cooldown, zero for none
}

var _ Targets = (*TargetCache)(nil)

// maxCachedTargets bounds the cache; beyond it, it is emptied and refilled.
const maxCachedTargets = 4096

// TargetStates implements Targets from the cache when every pool's entry is
// fresh, else with one read of all of them.
func (c *TargetCache) TargetStates(ctx context.Context, pools []Budget) ([]TargetState, error) {
	ttl := c.TTL
	if ttl <= 0 {
		ttl = 100 * time.Millisecond
	}
	now := time.Now()
	out := make([]TargetState, len(pools))
	c.mu.Lock()
	fresh := true
	for i, b := range pools {
		e, ok := c.entries[b.Tag]
		if !ok || now.Sub(e.read) > ttl {
			fresh = false
			break
		}
		out[i] = TargetState{Usage: e.usage, Cooling: max(e.until.Sub(now), 0)}
	}
	c.mu.Unlock()
	if fresh {
		return out, nil
	}
	states, err := c.Targets.TargetStates(ctx, pools)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) > maxCachedTargets {
		c.entries = map[string]cachedTarget{}
	}
	for i, b := range pools {
		e := cachedTarget{read: now, usage: states[i].Usage}
		if states[i].Cooling > 0 {
			e.until = now.Add(states[i].Cooling)
		}
		// A cooldown recorded through the cache while this read was on
		// its way is newer than what the read saw.
		if old, ok := c.entries[b.Tag]; ok && old.until.After(e.until) {
			e.until = old.until
		}
		c.entries[b.Tag] = e
	}
	return states, nil
}

// Failed implements Targets: it records the failure in the store and the
// cooldown it returns in the cache.
func (c *TargetCache) Failed(ctx context.Context, pool Budget, retryAfter time.Duration, cd Cooldown) (time.Duration, error) {
	d, err := c.Targets.Failed(ctx, pool, retryAfter, cd)
	if err != nil || d <= 0 {
		return d, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cachedTarget{}
	}
	e := c.entries[pool.Tag] // a zero read time: the next read refreshes it
	e.until = time.Now().Add(d)
	c.entries[pool.Tag] = e
	c.mu.Unlock()
	return d, nil
}
