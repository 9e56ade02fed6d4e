package main

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
)

//go:embed demo-budgets.yaml
var demoBudgets []byte

// budgets is the budget machinery of one replica: the budgets in force, the
// store that counts against them, and the goroutines that keep both
// current. run owns those goroutines; they end when its ctx does.
type budgets struct {
	config   func() *quota.Config
	store    quota.Store
	failover *quota.Failover
	watcher  *quota.Watcher
	redis    redis.UniversalClient
	policy   quota.Policy
}

// newBudgets wires budgets from the configuration. Without a budgets file
// (and outside the demo) there are no model pools, but tenants' budgets
// and usage are still counted.
func newBudgets(cfg Config, demo bool, metrics *proxy.Metrics, log *slog.Logger) (*budgets, error) {
	b := &budgets{policy: quota.Policy(cfg.FailurePolicy)}
	switch {
	case cfg.BudgetsFile != "":
		w, err := quota.NewWatcher(cfg.BudgetsFile, log)
		if err != nil {
			return nil, fmt.Errorf("budgets file: %w", err)
		}
		b.watcher, b.config = w, w.Current
	case demo:
		c, err := quota.ParseConfig(demoBudgets)
		if err != nil {
			return nil, fmt.Errorf("demo budgets: %w", err)
		}
		b.config = func() *quota.Config { return c }
	default:
		// No pools, but tenants and their budgets may still come from the
		// admin API, and usage per tenant is still counted.
		log.Info("no QUOTAGATE_CONFIG: no model pool budgets")
		empty, _ := quota.ParseConfig(nil)
		b.config = func() *quota.Config { return empty }
	}

	opts := quota.Options{KeyPrefix: cfg.RedisPrefix, Window: cfg.BudgetWindow, Timeout: cfg.RedisTimeout, LeaseTTL: cfg.LeaseTTL}
	local := quota.NewMemoryStore(opts)
	if cfg.RedisURL == "" {
		if cfg.Replicas > 1 {
			log.Warn("budgets are in process memory: with several replicas each one enforces the whole budget; set QUOTAGATE_REDIS_URL", "replicas", cfg.Replicas)
		}
		b.store = local
		return b, nil
	}
	client, err := quota.NewClient(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("QUOTAGATE_REDIS_URL: %w", err)
	}
	b.redis = client
	b.failover = &quota.Failover{
		Shared:   quota.NewRedisStore(client, opts),
		Local:    local,
		Policy:   b.policy,
		Replicas: cfg.Replicas,
		// A write, not a PING: a replica that became read-only after a
		// failover answers PING but cannot admit.
		Probe: func(ctx context.Context) error {
			return client.Set(ctx, cfg.RedisPrefix+"probe", "1", time.Second).Err()
		},
		Logger:   log,
		OnSwitch: metrics.FailoverSwitched,
	}
	b.store = b.failover
	return b, nil
}

// run keeps the budgets file and the store's health current until ctx ends.
func (b *budgets) run(ctx context.Context) {
	var wg sync.WaitGroup
	if b.watcher != nil {
		wg.Go(func() { b.watcher.Run(ctx) })
	}
	if b.failover != nil {
		wg.Go(func() { b.failover.Run(ctx) })
	}
	wg.Wait()
}

func (b *budgets) close() {
	if b.redis != nil {
		_ = b.redis.Close()
	}
}

// ready reports whether budgets can be enforced: with fail-closed, Redis
// must answer; with fail-open the replica serves either way.
func (b *budgets) ready(ctx context.Context) error {
	if b.redis == nil || b.policy == quota.FailOpen {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := b.redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis unreachable: %w", err)
	}
	return nil
}

// wire gives the gateway its budgets.
func (b *budgets) wire(gw *proxy.Gateway, cfg Config) {
	if b.store == nil {
		return
	}
	gw.Quota = b.store
	if t, ok := b.store.(quota.Targets); ok {
		// Route targets' state is read once per 100ms per replica, not per
		// request: it orders targets, while admission stays exact.
		gw.Targets = &quota.TargetCache{Targets: t, TTL: 100 * time.Millisecond}
	}
	gw.Budgets = b.config
	gw.MaxWait = cfg.MaxWait
	gw.LeaseTTL = cfg.LeaseTTL
}
