package tenant

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/logbuf"
	"github.com/quotagate/quotagate/internal/redistest"
	"github.com/quotagate/quotagate/quota"
)

const noTenantsLeft = "no tenants left"

// newLoggedRegistry is a registry on c (nil: in process) with a log of its
// own, its file tenants set and its overrides loaded.
func newLoggedRegistry(t *testing.T, o Options, file map[string]quota.TenantConfig) (*Registry, *logbuf.Buffer) {
	t.Helper()
	logger, logs := testLogger()
	o.Logger, o.SecretsKey, o.Config = logger, testSecretsKey, testConfig
	r, err := NewRegistry(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetFile(file); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, logs
}

// wantClosedAndEmpty checks that r refuses everyone: not open, no tenant,
// and that it said so in its log exactly once, however often it is asked.
func wantClosedAndEmpty(t *testing.T, r *Registry, logs *logbuf.Buffer) {
	t.Helper()
	ctx := context.Background()
	for range 5 {
		dir := r.Current(ctx)
		if dir.Open() {
			t.Fatal("the gateway fell open: every caller would be served as the default tenant")
		}
		if n := len(dir.List()); n != 0 {
			t.Fatalf("got %d tenants, want none", n)
		}
		if _, ok := dir.Get(DefaultID); ok {
			t.Fatal("the default tenant is served in a closed directory")
		}
	}
	if n := strings.Count(logs.String(), noTenantsLeft); n != 1 {
		t.Errorf("%q logged %d times, want once:\n%s", noTenantsLeft, n, logs.String())
	}
}

// TestRegistryNeverReopens: once a registry has seen a tenant, it refuses
// everyone when none is left rather than fall open, whichever way the last
// one went.
func TestRegistryNeverReopens(t *testing.T) {
	ctx := context.Background()
	t.Run("redis lost its data", func(t *testing.T) {
		c, prefix := redistest.New(t)
		r, logs := newLoggedRegistry(t, Options{Client: c, KeyPrefix: prefix}, nil)
		if !r.Current(ctx).Open() {
			t.Fatal("a registry with nothing configured is not open")
		}
		if _, _, err := r.Put(ctx, "search", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		// As a Redis restarted without persistence: the overrides, their
		// version and the closed marker all gone.
		redistest.DeleteByPrefix(t, c, prefix)
		wantClosedAndEmpty(t, r, logs)
	})
	t.Run("last tenant deleted, then its tombstone removed", func(t *testing.T) {
		c, prefix := redistest.New(t)
		r, logs := newLoggedRegistry(t, Options{Client: c, KeyPrefix: prefix}, nil)
		if _, _, err := r.Put(ctx, "search", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := r.Delete(ctx, "search"); err != nil {
			t.Fatal(err)
		}
		if err := r.Reset(ctx, "search"); err != nil {
			t.Fatal(err)
		}
		wantClosedAndEmpty(t, r, logs)
		// A replica started now finds no tenant and no override, but the
		// closed marker: it must not open either.
		late, _ := newLoggedRegistry(t, Options{Client: c, KeyPrefix: prefix}, nil)
		if late.Current(ctx).Open() {
			t.Error("a replica started after the last tenant was removed is open")
		}
	})
	t.Run("in process, last tenant deleted and reset", func(t *testing.T) {
		r, logs := newLoggedRegistry(t, Options{}, nil)
		if _, _, err := r.Put(ctx, "search", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := r.Delete(ctx, "search"); err != nil {
			t.Fatal(err)
		}
		if err := r.Reset(ctx, "search"); err != nil {
			t.Fatal(err)
		}
		wantClosedAndEmpty(t, r, logs)
	})
	t.Run("a file reload drops the last tenant", func(t *testing.T) {
		c, prefix := redistest.New(t)
		r, logs := newLoggedRegistry(t, Options{Client: c, KeyPrefix: prefix}, map[string]quota.TenantConfig{"search": {}})
		if err := r.SetFile(nil); err != nil {
			t.Fatal(err)
		}
		wantClosedAndEmpty(t, r, logs)
		// Once per time the set becomes empty: a tenant back, then gone
		// again, is said again.
		if err := r.SetFile(map[string]quota.TenantConfig{"search": {}}); err != nil {
			t.Fatal(err)
		}
		if err := r.SetFile(nil); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(logs.String(), noTenantsLeft); n != 2 {
			t.Errorf("%q logged %d times after emptying twice, want twice", noTenantsLeft, n)
		}
	})
	t.Run("file tenants close a replica started later with none", func(t *testing.T) {
		c, prefix := redistest.New(t)
		r, _ := newLoggedRegistry(t, Options{Client: c, KeyPrefix: prefix}, map[string]quota.TenantConfig{"search": {}})
		if r.Current(ctx).Open() {
			t.Fatal("a registry with a file tenant is open")
		}
		// A replica started with a budgets file that lists none (an edit
		// that dropped the section) finds the marker the first one left.
		late, _ := newLoggedRegistry(t, Options{Client: c, KeyPrefix: prefix}, nil)
		if late.Current(ctx).Open() {
			t.Error("a replica started with no file tenants, after another had some, is open")
		}
	})
	t.Run("open until a tenant is defined", func(t *testing.T) {
		r, logs := newLoggedRegistry(t, Options{}, nil)
		if !r.Current(ctx).Open() {
			t.Fatal("a registry with nothing configured is not open")
		}
		if err := r.SetFile(map[string]quota.TenantConfig{"search": {}}); err != nil {
			t.Fatal(err)
		}
		if r.Current(ctx).Open() {
			t.Fatal("a registry with a tenant is open")
		}
		if err := r.SetFile(nil); err != nil {
			t.Fatal(err)
		}
		wantClosedAndEmpty(t, r, logs)
	})
}

// TestRegistryRequireAuth: with RequireAuth, a registry with no tenant is
// never open, with or without Redis.
func TestRegistryRequireAuth(t *testing.T) {
	c, prefix := redistest.New(t)
	for name, client := range map[string]redis.UniversalClient{"in process": nil, "redis": c} {
		t.Run(name, func(t *testing.T) {
			r, logs := newLoggedRegistry(t, Options{Client: client, KeyPrefix: prefix, RequireAuth: true}, nil)
			wantClosedAndEmpty(t, r, logs)
			if !r.Loaded() || !r.Current(context.Background()).Loaded() {
				t.Error("not loaded")
			}
		})
	}
}
