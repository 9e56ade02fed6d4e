package tenant

import (
	"context"
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/logbuf"
	"github.com/quotagate/quotagate/internal/redistest"
	"github.com/quotagate/quotagate/quota"
)

var testSecretsKey = []byte("test secrets key, 32 bytes long!")

// testConfig is a budgets file with one pool that has a TPM, so that
// guarantees in it can be checked.
func testConfig() *quota.Config {
	return &quota.Config{Models: map[string]quota.ModelBudget{haiku: {Limits: quota.Limits{TPM: 1000}}}}
}

// replicas returns n registries sharing one Redis under a key prefix of the
// test's own, as n gateway replicas would, each with the same file tenants.
func replicas(t *testing.T, n int, file map[string]quota.TenantConfig) ([]*Registry, redis.UniversalClient, string) {
	t.Helper()
	c, prefix := redistest.New(t)
	rs := make([]*Registry, n)
	for i := range rs {
		rs[i] = newTestRegistry(t, c, prefix, file)
	}
	return rs, c, prefix
}

func newTestRegistry(t *testing.T, c redis.UniversalClient, prefix string, file map[string]quota.TenantConfig) *Registry {
	t.Helper()
	r, err := NewRegistry(Options{Client: c, KeyPrefix: prefix, SecretsKey: testSecretsKey, Config: testConfig})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetFile(file); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// testLogger returns a logger and what it wrote.
func testLogger() (*slog.Logger, *logbuf.Buffer) {
	var b logbuf.Buffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}
