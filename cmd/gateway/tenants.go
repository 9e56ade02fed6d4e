package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/quotagate/quotagate/admin"
	"github.com/quotagate/quotagate/authfail"
	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tenant"
)

// tenants is who may call the gateway: the registry of tenants (the budgets
// file's, overridden through the admin API), the throttle on sources that
// keep failing authentication, and the admin API itself.
type tenants struct {
	registry *tenant.Registry
	limiter  proxy.AuthLimiter
	admin    *admin.Handler
	log      *slog.Logger
}

// newTenants wires the tenants over the budgets' Redis (if any), so that
// admin changes and authentication failures are shared by every replica.
func newTenants(cfg Config, bud *budgets, log *slog.Logger) (*tenants, error) {
	reg, err := tenant.NewRegistry(tenant.Options{
		Client:      bud.redis, // nil: in process
		KeyPrefix:   cfg.RedisPrefix,
		SecretsKey:  cfg.secretsKey(),
		Config:      bud.config,
		Logger:      log,
		RequireAuth: cfg.RequireAuth,
	})
	if err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	if bud.config != nil {
		if err := reg.SetConfig(bud.config()); err != nil {
			return nil, err
		}
	}
	if bud.watcher != nil {
		// A reload whose tenants cannot be put in force (a secret that
		// cannot be read) is refused whole: budgets and tenants change
		// together or not at all. Overrides that conflict with the new
		// file (guarantees over a pool it shrank) are logged, not refused:
		// the file cannot fix them, the admin API must.
		bud.watcher.Accept = reg.SetConfig
	}
	t := &tenants{registry: reg, log: log}
	limits := authfail.Options{Failures: cfg.AuthFailures, Period: time.Minute, KeyPrefix: cfg.RedisPrefix + "authfail:"}
	if bud.redis != nil {
		t.limiter = authfail.NewRedis(bud.redis, limits)
	} else {
		t.limiter = authfail.NewMemory(limits)
	}
	t.admin = &admin.Handler{Token: cfg.AdminToken, Tenants: reg, Config: bud.config, Logger: log}
	if u, ok := bud.store.(quota.UsageReader); ok {
		t.admin.Usage = u
	}
	return t, nil
}

// start reads the run-time overrides once and says how the gateway
// authenticates. A Redis that does not answer yet is not fatal: the
// registry retries, /readyz fails until it succeeds, and until then only
// the file's tenants are known and the gateway does not run open.
func (t *tenants) start(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := t.registry.Load(lctx); err != nil {
		t.log.Warn("tenant overrides not loaded yet; retrying, and not ready until they are", "error", err)
	}
	dir := t.registry.Current(ctx)
	switch n := len(dir.List()); {
	case dir.Open():
		t.log.Warn("no tenants configured: the gateway is open and every caller is tenant \"default\"; define tenants in the budgets file or through the admin API to require credentials, or set QUOTAGATE_REQUIRE_AUTH=true to refuse everyone until then")
	case n > 0:
		t.log.Info("tenants in force: callers must authenticate", "tenants", n)
	}
	// No tenant and not open: the registry has logged that every request
	// is refused.
}

// ready reports whether the tenants in force are known: the overrides
// were read at least once. Until then a key issued through the admin API
// would be refused as unknown.
func (t *tenants) ready() error {
	if !t.registry.Loaded() {
		return errors.New("tenant overrides not read from Redis yet")
	}
	return nil
}

// run keeps the registry current until ctx ends.
func (t *tenants) run(ctx context.Context) { t.registry.Run(ctx) }

// wire gives the gateway its tenants.
func (t *tenants) wire(gw *proxy.Gateway, cfg Config) {
	gw.Tenants = t.registry
	gw.AuthFailures = t.limiter
	gw.TrustedProxies, _ = cfg.trustedProxies() // validated at start-up
}

// adminHandler is the admin API, or nil when no admin token is set (the
// paths then fall through to the Bedrock routes and answer
// UnknownOperationException, revealing nothing).
func (t *tenants) adminHandler() http.Handler {
	if t.admin.Token == "" {
		return nil
	}
	return t.admin
}
